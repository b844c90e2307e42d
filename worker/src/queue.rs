//! The consume loop around [`runs::process_one`] and [`builds::process_build`].
//!
//! Run messages are taken only into free slots ([`crate::slots`]); builds
//! without a run come one at a time beside them. Each delivery runs on its
//! own task and is acknowledged only after the job's terminal state is
//! committed (a handed-back run is published again by its worker, then its
//! message acknowledged). Unparseable messages are rejected without requeue
//! and so dead-lettered to `<prefix>.dead`. Cancel requests arrive on this
//! worker's own queue on the `<prefix>.control` fanout. A lost connection is
//! reopened with capped exponential backoff; jobs in flight carry on, and
//! their redelivered messages find the run already claimed or finished.
//!
//! On shutdown the consumers are cancelled first, so no new job starts; runs
//! in flight get the drain period to finish, and the rest are handed back
//! (requeued in PostgreSQL with the same attempt, and offered again) so
//! another worker starts them at once.

use crate::Context;
use crate::builds;
use crate::runs::{self, Outcome};
use crate::slots::{Prefetch, Slot};
use crate::stop::Reason;
use ade_common::amqp::{self, Topology};
use ade_common::events::StreamRef;
use futures_util::StreamExt as _;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// After the drain period, how long handed-back runs get to stop and requeue.
const HAND_BACK_GRACE: Duration = Duration::from_secs(10);

/// A cancel request on the control exchange.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ControlMessage {
    /// The run to cancel.
    pub cancel: Uuid,
}

/// A consumer of `<prefix>.runs`, `<prefix>.builds` and this worker's control queue.
pub struct Consumer {
    /// The job context.
    pub ctx: Context,
    /// Broker URL.
    pub url: String,
    /// Queue names.
    pub topology: Topology,
    /// How long shutdown waits for in-flight runs.
    pub drain: Duration,
}

/// A finished job: the channel generation of its run slot, if it had one.
type Ended = Option<u64>;

/// The channels of one connection.
struct Channels {
    conn: lapin::Connection,
    runs_channel: lapin::Channel,
    runs: Option<lapin::Consumer>,
    builds_channel: lapin::Channel,
    builds: lapin::Consumer,
    control: lapin::Consumer,
    prefetch: Prefetch,
}

impl Consumer {
    /// Consumes until `shutdown`; reconnects on failures.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        let mut backoff = Duration::from_millis(100);
        let mut generation = 0;
        while !shutdown.is_cancelled() {
            generation += 1;
            match self
                .consume(&shutdown, &mut tasks, &mut backoff, generation)
                .await
            {
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
        tasks: &mut JoinSet<Ended>,
        backoff: &mut Duration,
        generation: u64,
    ) -> anyhow::Result<()> {
        let mut ch = self.open(generation).await?;
        *backoff = Duration::from_millis(100);
        loop {
            let runs = async {
                match ch.runs.as_mut() {
                    Some(runs) => runs.next().await,
                    None => std::future::pending().await,
                }
            };
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.stop_consuming(&ch).await;
                    // Keep the channels open while draining: in-flight jobs ack on them.
                    self.drain(tasks).await;
                    let _ = ch.conn.close(200, "worker stopping".into()).await;
                    return Ok(());
                }
                Some(ended) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(Some(generation)) = ended {
                        self.slot_freed(&mut ch, generation).await?;
                    }
                    continue;
                }
                message = ch.control.next() => {
                    self.on_control(message)?;
                    continue;
                }
                delivery = runs => delivery.map(|d| (d, true)),
                delivery = ch.builds.next() => delivery.map(|d| (d, false)),
            };
            match delivery {
                Some((Ok(delivery), is_run)) => {
                    let slot = if is_run {
                        match self.ctx.slots.take(generation) {
                            Some(slot) => Some(slot),
                            None => {
                                // Cannot happen while prefetch ≤ free slots; never run over.
                                let _ = delivery
                                    .nack(BasicNackOptions {
                                        requeue: true,
                                        ..Default::default()
                                    })
                                    .await;
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    tasks.spawn(handle(self.ctx.clone(), delivery, slot));
                }
                Some((Err(e), _)) => return Err(e.into()),
                None => anyhow::bail!("the broker closed a consumer"),
            }
        }
    }

    /// Connects, declares, and starts consuming (runs only if a slot is free).
    async fn open(&self, generation: u64) -> anyhow::Result<Channels> {
        let name = format!("{}:{}", self.topology.prefix(), self.ctx.claimant.worker_id);
        let conn = amqp::connect(&self.url, &name).await?;
        let runs_channel = conn.create_channel().await?;
        amqp::declare(&runs_channel, &self.topology).await?;
        let prefetch = Prefetch::open(generation, &self.ctx.slots);
        let runs = if prefetch.count > 0 {
            Some(self.consume_runs(&runs_channel, prefetch.count).await?)
        } else {
            None
        };
        // Builds without a run are rare; one at a time beside the run slots.
        let builds_channel = conn.create_channel().await?;
        builds_channel
            .basic_qos(1, BasicQosOptions::default())
            .await?;
        let builds = self
            .basic_consume(&builds_channel, &self.topology.builds_queue())
            .await?;
        let control = self.control(&conn).await?;
        tracing::info!(queue = %self.topology.runs_queue(), prefetch = prefetch.count, "consuming");
        Ok(Channels {
            conn,
            runs_channel,
            runs,
            builds_channel,
            builds,
            control,
            prefetch,
        })
    }

    /// A run of an older channel ended: the current one may take one more.
    async fn slot_freed(&self, ch: &mut Channels, generation: u64) -> anyhow::Result<()> {
        let Some(count) = ch.prefetch.ended(generation) else {
            return Ok(());
        };
        match &ch.runs {
            Some(_) => {
                ch.runs_channel
                    .basic_qos(count, BasicQosOptions::default())
                    .await?
            }
            None => ch.runs = Some(self.consume_runs(&ch.runs_channel, count).await?),
        }
        Ok(())
    }

    async fn consume_runs(
        &self,
        channel: &lapin::Channel,
        prefetch: u16,
    ) -> anyhow::Result<lapin::Consumer> {
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        self.basic_consume(channel, &self.topology.runs_queue())
            .await
    }

    async fn basic_consume(
        &self,
        channel: &lapin::Channel,
        queue: &str,
    ) -> anyhow::Result<lapin::Consumer> {
        let tag = format!(
            "{}-{}",
            self.ctx.claimant.worker_id,
            Uuid::now_v7().simple()
        );
        Ok(channel
            .basic_consume(
                queue.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?)
    }

    async fn stop_consuming(&self, ch: &Channels) {
        let consumers = [
            (&ch.runs_channel, ch.runs.as_ref()),
            (&ch.builds_channel, Some(&ch.builds)),
        ];
        for (channel, consumer) in consumers {
            if let Some(consumer) = consumer {
                let _ = channel
                    .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                    .await;
            }
        }
    }

    /// This worker's exclusive queue on the control fanout (client-named, so it
    /// can be declared again after a reconnect).
    async fn control(&self, conn: &lapin::Connection) -> anyhow::Result<lapin::Consumer> {
        let queue = format!(
            "{}.control.{}",
            self.topology.prefix(),
            Uuid::now_v7().simple()
        );
        Ok(amqp::subscribe_fanout(conn, &self.topology.control_exchange(), &queue).await?)
    }

    fn on_control(&self, message: Option<lapin::Result<Delivery>>) -> anyhow::Result<()> {
        let delivery =
            message.ok_or_else(|| anyhow::anyhow!("the broker closed the control consumer"))??;
        match serde_json::from_slice::<ControlMessage>(&delivery.data) {
            Ok(ControlMessage { cancel }) => {
                if self.ctx.running.stop(cancel, Reason::Cancelled) {
                    tracing::info!(run.id = %cancel, "cancel requested; stopping the run");
                }
            }
            Err(e) => tracing::warn!(error = %e, "ignoring an unreadable control message"),
        }
        Ok(())
    }

    /// Waits for in-flight jobs for the drain period, then hands back the rest.
    async fn drain(&self, tasks: &mut JoinSet<Ended>) {
        if tasks.is_empty() {
            return;
        }
        tracing::info!(
            in_flight = tasks.len(),
            drain_s = self.drain.as_secs(),
            "draining"
        );
        if tokio::time::timeout(self.drain, join_all(tasks))
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!(
            in_flight = tasks.len(),
            "drain period over; handing back the remaining runs"
        );
        self.ctx.running.stop_all(Reason::HandBack);
        if tokio::time::timeout(HAND_BACK_GRACE, join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = tasks.len(),
                "runs did not stop; their leases will expire"
            );
            tasks.abort_all();
        }
    }
}

async fn join_all(tasks: &mut JoinSet<Ended>) {
    while tasks.join_next().await.is_some() {}
}

/// Runs one delivery and settles it with the broker; returns its slot's generation.
async fn handle(ctx: Context, delivery: Delivery, slot: Option<Slot>) -> Ended {
    let generation = slot.as_ref().map(|s| s.generation);
    let Ok(job) = serde_json::from_slice::<StreamRef>(&delivery.data) else {
        tracing::warn!(
            body_bytes = delivery.data.len(),
            "poison message; dead-lettering it"
        );
        ctx.metrics.dead_lettered.inc();
        let _ = delivery
            .nack(BasicNackOptions {
                requeue: false,
                ..Default::default()
            })
            .await;
        return generation;
    };
    let result = match job {
        StreamRef::Run(id) => runs::process_one(&ctx, id).await,
        StreamRef::Build(id) => builds::process_build(&ctx, id).await.map(|built| {
            if built {
                Outcome::Completed
            } else {
                Outcome::NotClaimed
            }
        }),
    };
    let settled = match result {
        Ok(_) => delivery.ack(BasicAckOptions::default()).await,
        Err(e) => {
            tracing::warn!(?job, error = %e, "job could not be processed; requeueing");
            tokio::time::sleep(Duration::from_secs(1)).await;
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
    };
    if let Err(e) = settled {
        tracing::warn!(?job, error = %e, "settling the message failed; it will come back and find the job done");
    }
    drop(slot);
    generation
}
