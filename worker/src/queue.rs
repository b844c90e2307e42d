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
use crate::builds;
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
        let name = format!("{}:{}", self.topology.prefix(), self.ctx.worker_id);
        let conn = amqp::connect(&self.url, &name).await?;
        let (runs_channel, mut runs) = self
            .subscribe(&conn, &self.topology.runs_queue(), self.prefetch)
            .await?;
        // Builds without a run are rare; one at a time keeps run slots free.
        let (builds_channel, mut builds) = self
            .subscribe(&conn, &self.topology.builds_queue(), 1)
            .await?;
        *backoff = Duration::from_millis(100);
        tracing::info!(queue = %self.topology.runs_queue(), prefetch = self.prefetch, "consuming");
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => {
                    for (channel, consumer) in [(&runs_channel, &runs), (&builds_channel, &builds)] {
                        let _ = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
                    }
                    // Keep the channels open while draining: in-flight jobs ack on them.
                    self.drain(tasks).await;
                    let _ = conn.close(200, "worker stopping".into()).await;
                    return Ok(());
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                delivery = runs.next() => delivery,
                delivery = builds.next() => delivery,
            };
            match delivery {
                Some(Ok(delivery)) => {
                    tasks.spawn(handle(self.ctx.clone(), delivery));
                }
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the broker closed a consumer"),
            }
        }
    }

    /// A channel with `prefetch` consuming `queue`.
    async fn subscribe(
        &self,
        conn: &lapin::Connection,
        queue: &str,
        prefetch: u16,
    ) -> anyhow::Result<(lapin::Channel, lapin::Consumer)> {
        let channel = conn.create_channel().await?;
        amqp::declare(&channel, &self.topology).await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("{}-{}", self.ctx.worker_id, uuid::Uuid::now_v7().simple());
        let consumer = channel
            .basic_consume(
                queue.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
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
    let Ok(job) = serde_json::from_slice::<JobMessage>(&delivery.data) else {
        tracing::warn!(
            body_bytes = delivery.data.len(),
            "poison message; dead-lettering it"
        );
        let _ = delivery
            .nack(BasicNackOptions {
                requeue: false,
                ..Default::default()
            })
            .await;
        return;
    };
    let result = match job.kind {
        JobKind::Run => runs::process_one(&ctx, job.id)
            .await
            .map(|o| o == Outcome::Completed),
        JobKind::Build => builds::process_build(&ctx, job.id).await,
    };
    match result {
        Ok(done) => {
            if !done {
                tracing::debug!(job = ?job.kind, id = %job.id, "nothing to claim");
            }
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                tracing::warn!(id = %job.id, error = %e, "ack failed; the message will come back and find the job done");
            }
        }
        Err(e) => {
            tracing::warn!(job = ?job.kind, id = %job.id, error = %e, "job could not be processed; requeueing");
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
