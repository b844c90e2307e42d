//! RabbitMQ: topology names, declaration, and confirmed publishing.
//!
//! Every name carries `ADE_AMQP_PREFIX`, so tests and tenants can share one
//! broker. A message is only a hint that work may be ready; PostgreSQL decides.

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use std::time::Duration;
use tokio::sync::Mutex;
use uuid::Uuid;

/// How long connecting or one confirmed publish may take before it counts as failed.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Routing key of run jobs on the jobs exchange.
pub const RUNS_KEY: &str = "runs";
/// Routing key of build jobs on the jobs exchange.
pub const BUILDS_KEY: &str = "builds";

/// Exchange and queue names under one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// Names under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }
    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// The durable direct exchange that carries jobs.
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }
    /// The durable queue of run jobs.
    pub fn runs_queue(&self) -> String {
        format!("{}.runs", self.prefix)
    }
    /// The durable queue of build jobs.
    pub fn builds_queue(&self) -> String {
        format!("{}.builds", self.prefix)
    }
    /// The fanout exchange of persisted events.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }
    /// The exclusive queue of one API instance on the events exchange.
    pub fn events_queue(&self, instance: Uuid) -> String {
        format!("{}.events.{}", self.prefix, instance.simple())
    }
    /// The fanout exchange of control messages (cancel) to every worker.
    pub fn control_exchange(&self) -> String {
        format!("{}.control", self.prefix)
    }
    /// Dead-letter exchange and queue for poison messages.
    pub fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }
}

/// A job on the jobs exchange: "this run (or build) may be ready".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMessage {
    /// What kind of job.
    pub kind: JobKind,
    /// The run or build id.
    pub id: Uuid,
}

/// The kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A run in `<prefix>.runs`.
    Run,
    /// A build in `<prefix>.builds`.
    Build,
}

/// Broker failures, as callers need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker could not be reached or the channel broke.
    #[error("broker unavailable: {0}")]
    Unavailable(#[from] lapin::Error),
    /// The broker did not answer in time.
    #[error("broker timed out")]
    Timeout,
    /// The broker refused the message (nack).
    #[error("broker refused the message")]
    Nacked,
}

/// Opens a connection named `name` (shown in the management UI).
pub async fn connect(url: &str, name: &str) -> Result<Connection, BrokerError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    tokio::time::timeout(BROKER_TIMEOUT, Connection::connect(url, props))
        .await
        .map_err(|_| BrokerError::Timeout)?
        .map_err(BrokerError::from)
}

/// Declares every exchange and queue (idempotent).
pub async fn declare(channel: &Channel, topology: &Topology) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let dead = topology.dead();
    channel
        .exchange_declare(
            dead.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    let queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(dead.as_str().into(), queue, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            dead.as_str().into(),
            dead.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let jobs = topology.jobs_exchange();
    channel
        .exchange_declare(
            jobs.as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(dead.as_str())),
    );
    for (name, key) in [
        (topology.runs_queue(), RUNS_KEY),
        (topology.builds_queue(), BUILDS_KEY),
    ] {
        channel
            .queue_declare(name.as_str().into(), queue, args.clone())
            .await?;
        channel
            .queue_bind(
                name.as_str().into(),
                jobs.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    for fanout in [topology.events_exchange(), topology.control_exchange()] {
        channel
            .exchange_declare(
                fanout.as_str().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Consumes a fanout exchange through an exclusive, auto-delete queue named
/// by the client (lapin cannot redeclare server-named `amq.gen-*` queues
/// after a reconnect). Messages need no acknowledgement: they are hints.
pub async fn subscribe_fanout(
    conn: &Connection,
    exchange: &str,
    queue: &str,
) -> Result<lapin::Consumer, lapin::Error> {
    use lapin::options::BasicConsumeOptions;
    let channel = conn.create_channel().await?;
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consume = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    channel
        .basic_consume(queue.into(), "".into(), consume, FieldTable::default())
        .await
}

/// Publishes with confirms over one lazily (re)opened connection.
///
/// The connection is opened on first use and dropped on any failure, so the
/// next publish reconnects; callers own retrying (PostgreSQL keeps the work).
pub struct Publisher {
    url: String,
    name: String,
    topology: Topology,
    state: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    /// A publisher that has not connected yet.
    pub fn new(url: impl Into<String>, name: impl Into<String>, topology: Topology) -> Self {
        Self {
            url: url.into(),
            name: name.into(),
            topology,
            state: Mutex::new(None),
        }
    }

    /// The topology this publisher declares and publishes into.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Publishes a job persistently and waits for the broker's confirm.
    pub async fn publish_job(&self, job: JobMessage) -> Result<(), BrokerError> {
        let key = match job.kind {
            JobKind::Run => RUNS_KEY,
            JobKind::Build => BUILDS_KEY,
        };
        let body = serde_json::to_vec(&job).expect("a job always serializes");
        self.publish(&self.topology.jobs_exchange(), key, &body)
            .await
    }

    /// Publishes one persistent message and waits for its confirm.
    pub async fn publish(&self, exchange: &str, key: &str, body: &[u8]) -> Result<(), BrokerError> {
        let channel = self.channel().await?;
        let result = tokio::time::timeout(BROKER_TIMEOUT, async {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into());
            channel
                .basic_publish(
                    exchange.into(),
                    key.into(),
                    BasicPublishOptions::default(),
                    body,
                    props,
                )
                .await?
                .await
        })
        .await;
        match result {
            Ok(Ok(Confirmation::Ack(_))) => Ok(()),
            Ok(Ok(_)) => Err(BrokerError::Nacked),
            Ok(Err(e)) => {
                self.reset().await;
                Err(e.into())
            }
            Err(_) => {
                self.reset().await;
                Err(BrokerError::Timeout)
            }
        }
    }

    /// Connects if needed; `Ok` when the broker is reachable.
    pub async fn check(&self) -> Result<(), BrokerError> {
        self.channel().await.map(|_| ())
    }

    async fn channel(&self) -> Result<Channel, BrokerError> {
        let mut state = self.state.lock().await;
        if let Some((conn, channel)) = state.as_ref()
            && conn.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        let conn = connect(&self.url, &self.name).await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        declare(&channel, &self.topology).await?;
        *state = Some((conn, channel.clone()));
        Ok(channel)
    }

    async fn reset(&self) {
        if let Some((conn, _)) = self.state.lock().await.take() {
            let _ = conn.close(320, "reconnecting".into()).await;
        }
    }
}

/// Publishes persisted events to the `<prefix>.events` fanout, off the hot path.
///
/// Writers hand over each committed batch without waiting; one background
/// task publishes them in order over its own connection. When the broker is
/// away or the queue is full, batches are dropped: events are already in
/// PostgreSQL, and followers catch up from there.
#[derive(Clone)]
pub struct EventPublisher {
    tx: tokio::sync::mpsc::Sender<Vec<crate::events::Envelope>>,
}

impl EventPublisher {
    /// Starts the publishing task.
    pub fn spawn(url: impl Into<String>, name: impl Into<String>, topology: Topology) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<crate::events::Envelope>>(1024);
        let publisher = Publisher::new(url, name, topology);
        tokio::spawn(async move {
            let exchange = publisher.topology().events_exchange();
            while let Some(batch) = rx.recv().await {
                let body = serde_json::to_vec(&batch).expect("envelopes serialize");
                if let Err(e) = publisher.publish(&exchange, "", &body).await {
                    tracing::debug!(error = %e, events = batch.len(), "events not published; followers read them from the database");
                }
            }
        });
        Self { tx }
    }

    /// Queues a committed batch for publishing; never waits.
    pub fn publish(&self, batch: Vec<crate::events::Envelope>) {
        if !batch.is_empty() {
            let _ = self.tx.try_send(batch);
        }
    }
}
