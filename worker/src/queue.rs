//! The consume loop around [`runs::process_one`].
//!
//! Prefetch equals the worker's concurrency, so the broker never hands this
//! worker more jobs than it has free slots. Each delivery runs on its own
//! task and is acknowledged only after the run's terminal state is committed.
//! Unparseable messages are rejected without requeue and so dead-lettered to
//! `<prefix>.dead`. A lost connection is reopened with capped exponential
//! backoff; runs in flight carry on, and their redelivered messages find the
//! run already claimed or finished.

use crate::Context;
use crate::runs::{self, Outcome};
use ade_common::amqp::{self, JobKind, JobMessage, Topology};
use futures_util::StreamExt as _;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A consumer of `<prefix>.runs`.
pub struct Consumer {
    /// The job context.
    pub ctx: Context,
    /// Broker URL.
    pub url: String,
    /// Queue names.
    pub topology: Topology,
    /// Unacknowledged deliveries at most (= concurrency).
    pub prefetch: u16,
    /// How long shutdown waits for in-flight runs.
    pub drain: Duration,
}

impl Consumer {
    /// Consumes until `shutdown`; reconnects on failures.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            match self.consume(&shutdown, &mut tasks, &mut backoff).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "broker connection lost")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        self.drain(&mut tasks).await;
    }

    async fn consume(
        &self,
        shutdown: &CancellationToken,
        tasks: &mut JoinSet<()>,
        backoff: &mut Duration,
    ) -> anyhow::Result<()> {
        let conn = amqp::connect(&self.url, &self.ctx.worker_id).await?;
        let channel = conn.create_channel().await?;
        amqp::declare(&channel, &self.topology).await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("{}-{}", self.ctx.worker_id, uuid::Uuid::now_v7().simple());
        let mut deliveries = channel
            .basic_consume(
                self.topology.runs_queue().as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        *backoff = Duration::from_millis(100);
        tracing::info!(queue = %self.topology.runs_queue(), prefetch = self.prefetch, "consuming");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                    // Keep the channel open while draining: in-flight runs ack on it.
                    self.drain(tasks).await;
                    let _ = conn.close(200, "worker stopping".into()).await;
                    return Ok(());
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                delivery = deliveries.next() => match delivery {
                    Some(Ok(delivery)) => { tasks.spawn(handle(self.ctx.clone(), delivery)); }
                    Some(Err(e)) => return Err(e.into()),
                    None => anyhow::bail!("the broker closed the consumer"),
                },
            }
        }
    }

    /// Waits for in-flight runs, at most the drain period.
    async fn drain(&self, tasks: &mut JoinSet<()>) {
        if tasks.is_empty() {
            return;
        }
        tracing::info!(in_flight = tasks.len(), "draining");
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.drain, all).await.is_err() {
            tracing::warn!(
                in_flight = tasks.len(),
                "drain period over; leaving the rest to their leases"
            );
            tasks.abort_all();
        }
    }
}

/// Runs one delivery and settles it with the broker.
async fn handle(ctx: Context, delivery: Delivery) {
    let job = serde_json::from_slice::<JobMessage>(&delivery.data);
    let run_id = match job {
        Ok(JobMessage {
            kind: JobKind::Run,
            id,
        }) => id,
        other => {
            tracing::warn!(job = ?other.ok(), body_bytes = delivery.data.len(), "poison message; dead-lettering it");
            let _ = delivery
                .nack(BasicNackOptions {
                    requeue: false,
                    ..Default::default()
                })
                .await;
            return;
        }
    };
    match runs::process_one(&ctx, run_id).await {
        Ok(outcome) => {
            if outcome == Outcome::NotClaimed {
                tracing::debug!(run.id = %run_id, "nothing to claim");
            }
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                tracing::warn!(run.id = %run_id, error = %e, "ack failed; the message will come back and find the run done");
            }
        }
        Err(e) => {
            tracing::warn!(run.id = %run_id, error = %e, "run could not be processed; requeueing");
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await;
        }
    }
}
