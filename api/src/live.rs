//! Live events: this instance's queue on the `<prefix>.events` fanout, and
//! the hub that hands each event to the followers of its stream.
//!
//! Every API instance binds its own exclusive, auto-delete queue named
//! `<prefix>.events.<instance id>` (a client-chosen name, so it can be
//! declared again after a reconnect). Each stream has a bounded broadcast
//! channel; a follower that falls behind loses live events and reads them
//! from PostgreSQL instead. After every (re)connect the hub tells all
//! followers to catch up from PostgreSQL, so nothing published while this
//! instance was disconnected is missed.

use crate::routes::streams::Frame;
use ade_common::amqp::{self, Topology};
use ade_common::events::Envelope;
use futures_util::StreamExt as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Live events buffered per stream before a slow follower must catch up from the database.
const STREAM_BUFFER: usize = 1024;

/// Routes live events to the followers of each stream.
pub struct Hub {
    streams: Mutex<HashMap<Uuid, broadcast::Sender<Arc<Frame>>>>,
    resync: watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            streams: Mutex::default(),
            resync: watch::channel(0).0,
        }
    }
}

impl Hub {
    /// Live events of the stream `key` (a run id, or a build id for a build's own stream).
    pub fn subscribe(&self, key: Uuid) -> broadcast::Receiver<Arc<Frame>> {
        let mut streams = self.streams.lock().expect("hub lock");
        streams
            .entry(key)
            .or_insert_with(|| broadcast::channel(STREAM_BUFFER).0)
            .subscribe()
    }

    /// Changes whenever followers must catch up from the database.
    pub fn resyncs(&self) -> watch::Receiver<u64> {
        self.resync.subscribe()
    }

    /// Tells every follower to catch up from the database.
    pub fn resync(&self) {
        self.resync.send_modify(|n| *n += 1);
    }

    /// Hands an event to its stream's followers.
    pub fn dispatch(&self, event: Envelope) {
        let key = event.run_id.or(event.build_id);
        let Some(key) = key else { return };
        let mut streams = self.streams.lock().expect("hub lock");
        if let Some(sender) = streams.get(&key)
            && sender.send(Arc::new(Frame::from(&event))).is_err()
        {
            streams.remove(&key);
        }
    }

    /// Forgets streams nobody follows any more.
    pub fn prune(&self) {
        self.streams
            .lock()
            .expect("hub lock")
            .retain(|_, s| s.receiver_count() > 0);
    }

    /// Streams with at least one channel (for tests and metrics).
    pub fn streams(&self) -> usize {
        self.streams.lock().expect("hub lock").len()
    }
}

/// Consumes this instance's events queue until `shutdown`, reconnecting with backoff.
pub async fn consume_loop(
    hub: Arc<Hub>,
    url: String,
    topology: Topology,
    instance: Uuid,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match consume(&hub, &url, &topology, instance, &shutdown, &mut backoff).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "events connection lost")
            }
        }
        // Whatever was published meanwhile is in the database.
        hub.resync();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn consume(
    hub: &Hub,
    url: &str,
    topology: &Topology,
    instance: Uuid,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let conn = amqp::connect(
        url,
        &format!("{}:api:{}:events", topology.prefix(), instance.simple()),
    )
    .await?;
    amqp::declare(&conn.create_channel().await?, topology).await?;
    let queue = topology.events_queue(instance);
    let mut deliveries = amqp::subscribe_fanout(&conn, &topology.events_exchange(), &queue).await?;
    *backoff = Duration::from_millis(100);
    // Bound from here on: anything earlier is read from the database.
    hub.resync();
    let mut prune = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = conn.close(200, "shutting down".into()).await;
                return Ok(());
            }
            _ = prune.tick() => hub.prune(),
            delivery = deliveries.next() => match delivery {
                Some(Ok(delivery)) => match serde_json::from_slice::<Vec<Envelope>>(&delivery.data) {
                    Ok(batch) => batch.into_iter().for_each(|e| hub.dispatch(e)),
                    Err(e) => tracing::warn!(error = %e, "ignoring an unreadable events message"),
                },
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the broker closed the events consumer"),
            },
        }
    }
}
