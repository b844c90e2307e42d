//! Publishing that never makes a caller wait for a connection.
//!
//! A [`Publisher`] keeps one connection and channel. When they are missing
//! or broken, `publish` fails at once with [`BrokerError::NotConnected`] and
//! one background task (single flight) reconnects with capped backoff; the
//! caller's work is durable in PostgreSQL, and the redispatcher offers it
//! again. Job publishers use publisher confirms; the events publisher does
//! not (events are hints: followers read PostgreSQL).

use super::{BROKER_TIMEOUT, BrokerError, Topology, connect, declare};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Publishes over one lazily (re)opened connection; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    name: String,
    topology: Topology,
    confirms: bool,
    state: Mutex<State>,
    /// Bumped whenever a new connection is ready.
    connected: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    current: Option<(Connection, Channel)>,
    connecting: bool,
}

impl Publisher {
    /// A publisher with confirms; it connects on first use.
    pub fn new(url: impl Into<String>, name: impl Into<String>, topology: Topology) -> Self {
        Self::build(url.into(), name.into(), topology, true)
    }

    /// A publisher without confirms (for hints such as events).
    pub fn unconfirmed(
        url: impl Into<String>,
        name: impl Into<String>,
        topology: Topology,
    ) -> Self {
        Self::build(url.into(), name.into(), topology, false)
    }

    fn build(url: String, name: String, topology: Topology, confirms: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                url,
                name,
                topology,
                confirms,
                state: Mutex::default(),
                connected: watch::channel(0).0,
            }),
        }
    }

    /// The topology this publisher declares and publishes into.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Publishes one persistent message (and waits for its confirm, if any).
    pub async fn publish(&self, exchange: &str, key: &str, body: &[u8]) -> Result<(), BrokerError> {
        let channel = self.channel()?;
        let confirm = self.send(&channel, exchange, key, body).await?;
        self.settle(confirm).await
    }

    /// Publishes a job (`{"kind", "id"}`) on the jobs exchange.
    pub async fn publish_job(&self, job: crate::events::StreamRef) -> Result<(), BrokerError> {
        let body = serde_json::to_vec(&job).expect("a job always serializes");
        let exchange = self.inner.topology.jobs_exchange();
        self.publish(&exchange, super::job_key(job), &body).await
    }

    /// Publishes every message, then waits for all confirms: one round trip
    /// of latency for the batch. Returns, per message, whether it was confirmed.
    pub async fn publish_all(&self, exchange: &str, messages: &[(&str, Vec<u8>)]) -> Vec<bool> {
        let Ok(channel) = self.channel() else {
            return vec![false; messages.len()];
        };
        let mut pending = Vec::with_capacity(messages.len());
        for (key, body) in messages {
            pending.push(self.send(&channel, exchange, key, body).await.ok());
        }
        let mut confirmed = Vec::with_capacity(pending.len());
        for confirm in pending {
            confirmed.push(match confirm {
                Some(confirm) => self.settle(confirm).await.is_ok(),
                None => false,
            });
        }
        confirmed
    }

    /// True when connected now, or within `wait` (a reconnect is started if needed).
    pub async fn check(&self, wait: Duration) -> bool {
        let mut changes = self.inner.connected.subscribe();
        if self.channel().is_ok() {
            return true;
        }
        let _ = tokio::time::timeout(wait, changes.changed()).await;
        self.channel().is_ok()
    }

    async fn send(
        &self,
        channel: &Channel,
        exchange: &str,
        key: &str,
        body: &[u8],
    ) -> Result<PublisherConfirm, BrokerError> {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        let publish = channel.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        );
        match tokio::time::timeout(BROKER_TIMEOUT, publish).await {
            Ok(Ok(confirm)) => Ok(confirm),
            Ok(Err(e)) => {
                self.reset();
                Err(e.into())
            }
            Err(_) => {
                self.reset();
                Err(BrokerError::Timeout)
            }
        }
    }

    async fn settle(&self, confirm: PublisherConfirm) -> Result<(), BrokerError> {
        match tokio::time::timeout(BROKER_TIMEOUT, confirm).await {
            Ok(Ok(Confirmation::Ack(_) | Confirmation::NotRequested)) => Ok(()),
            Ok(Ok(Confirmation::Nack(_))) => Err(BrokerError::Nacked),
            Ok(Err(e)) => {
                self.reset();
                Err(e.into())
            }
            Err(_) => {
                self.reset();
                Err(BrokerError::Timeout)
            }
        }
    }

    /// The live channel, or `NotConnected` after starting a reconnect.
    fn channel(&self) -> Result<Channel, BrokerError> {
        let mut state = self.inner.state.lock().expect("publisher lock");
        if let Some((conn, channel)) = &state.current
            && conn.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        if let Some((conn, _)) = state.current.take() {
            close_later(conn);
        }
        if !state.connecting {
            state.connecting = true;
            tokio::spawn(reconnect(self.inner.clone()));
        }
        Err(BrokerError::NotConnected)
    }

    fn reset(&self) {
        if let Some((conn, _)) = self
            .inner
            .state
            .lock()
            .expect("publisher lock")
            .current
            .take()
        {
            close_later(conn);
        }
    }
}

fn close_later(conn: Connection) {
    tokio::spawn(async move {
        let _ = conn.close(320, "reconnecting".into()).await;
    });
}

/// Connects (with capped backoff) until it succeeds, then hands the channel over.
async fn reconnect(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match open(&inner).await {
            Ok(opened) => {
                let mut state = inner.state.lock().expect("publisher lock");
                state.current = Some(opened);
                state.connecting = false;
                drop(state);
                inner.connected.send_modify(|n| *n += 1);
                return;
            }
            Err(e) => {
                tracing::debug!(publisher = %inner.name, error = %e, retry_in_ms = backoff.as_millis() as u64, "broker not reachable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn open(inner: &Inner) -> Result<(Connection, Channel), BrokerError> {
    let conn = connect(&inner.url, &inner.name).await?;
    let channel = conn.create_channel().await?;
    if inner.confirms {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
    }
    declare(&channel, &inner.topology).await?;
    Ok((conn, channel))
}

/// Publishes persisted events to the `<prefix>.events` fanout, off the hot path.
///
/// Writers hand over each committed batch without waiting; one background
/// task publishes them in order over its own connection. When the broker is
/// away or the queue is full, batches are dropped: events are already in
/// PostgreSQL, and followers catch up from there. Every committed batch
/// passes here once, so it is also where its runs' outcomes are counted.
#[derive(Clone)]
pub struct EventPublisher {
    tx: tokio::sync::mpsc::Sender<Vec<crate::events::Envelope>>,
    metrics: crate::metrics::Metrics,
}

impl EventPublisher {
    /// Starts the publishing task; committed batches are observed by `metrics`.
    pub fn spawn(
        url: impl Into<String>,
        name: impl Into<String>,
        topology: Topology,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<crate::events::Envelope>>(1024);
        let publisher = Publisher::unconfirmed(url, name, topology);
        tokio::spawn(async move {
            let exchange = publisher.topology().events_exchange();
            // Connect before the first batch arrives rather than drop it.
            publisher.check(super::BROKER_TIMEOUT).await;
            while let Some(batch) = rx.recv().await {
                let body = serde_json::to_vec(&batch).expect("envelopes serialize");
                let mut sent = publisher.publish(&exchange, "", &body).await;
                if matches!(sent, Err(BrokerError::NotConnected))
                    && publisher.check(Duration::from_millis(500)).await
                {
                    sent = publisher.publish(&exchange, "", &body).await;
                }
                if let Err(e) = sent {
                    tracing::debug!(error = %e, events = batch.len(), "events not published; followers read them from the database");
                }
            }
        });
        Self { tx, metrics }
    }

    /// Observes a committed batch and queues it for publishing; never waits.
    pub fn publish(&self, batch: Vec<crate::events::Envelope>) {
        self.metrics.observe_committed(&batch);
        if !batch.is_empty() {
            let _ = self.tx.try_send(batch);
        }
    }
}
