//! RabbitMQ: topology names, declaration, connections and publishers.
//!
//! Every name carries `ADE_AMQP_PREFIX`, so tests and tenants can share one
//! broker. A message is only a hint that work may be ready; PostgreSQL decides.
//! Job queues are quorum queues (replicated; the type a cluster needs) with a
//! delivery limit, so the broker itself dead-letters a message that keeps
//! failing consumers. A job message is a [`crate::events::StreamRef`]:
//! `{"kind": "run" | "build", "id": …}`.

mod publisher;

pub use publisher::{EventPublisher, Publisher};

use crate::events::StreamRef;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use std::time::Duration;
use uuid::Uuid;

/// How long connecting or one confirmed publish may take before it counts as failed.
pub(crate) const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Routing key of run jobs on the jobs exchange.
pub const RUNS_KEY: &str = "runs";
/// Routing key of build jobs on the jobs exchange.
pub const BUILDS_KEY: &str = "builds";
/// Deliveries of one job message before the broker dead-letters it.
pub const DELIVERY_LIMIT: i64 = 10;

/// The routing key of a job.
pub fn job_key(job: StreamRef) -> &'static str {
    match job {
        StreamRef::Run(_) => RUNS_KEY,
        StreamRef::Build(_) => BUILDS_KEY,
    }
}

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
    /// Not connected right now; a reconnect is under way in the background.
    #[error("not connected to the broker; reconnecting")]
    NotConnected,
    /// A job queue exists with other arguments than this release declares
    /// (a classic queue of a release before quorum queues): a queue's
    /// arguments cannot change in place.
    #[error(
        "the queue {queue} exists with other arguments than this release declares ({detail}); \
         a queue's arguments cannot change in place: move it as docs/operations.md says \
         (\"Moving the job queues to quorum queues\")"
    )]
    Inequivalent {
        /// The queue.
        queue: String,
        /// The broker's words.
        detail: String,
    },
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
pub async fn declare(channel: &Channel, topology: &Topology) -> Result<(), BrokerError> {
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
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
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
            .await
            .map_err(|e| inequivalent(e, &name))?;
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

/// Deletes every queue and exchange [`declare`] makes under the topology's
/// prefix (tests and benchmarks clean up after themselves; quorum queues
/// keep their files until deleted). Missing ones are no error.
pub async fn delete(conn: &Connection, topology: &Topology) -> Result<(), lapin::Error> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    // A failed delete closes its channel: one channel per object.
    for queue in [
        topology.runs_queue(),
        topology.builds_queue(),
        topology.dead(),
    ] {
        let channel = conn.create_channel().await?;
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in [
        topology.jobs_exchange(),
        topology.events_exchange(),
        topology.control_exchange(),
        topology.dead(),
    ] {
        let channel = conn.create_channel().await?;
        let _ = channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    Ok(())
}

/// The broker's refusal of a queue declared with other arguments, named as
/// such; any other error as it is.
fn inequivalent(error: lapin::Error, queue: &str) -> BrokerError {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e)
            if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) =>
        {
            BrokerError::Inequivalent {
                queue: queue.to_owned(),
                detail: e.get_message().to_string(),
            }
        }
        _ => BrokerError::Unavailable(error),
    }
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
