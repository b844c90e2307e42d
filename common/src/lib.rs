//! Shared by `ade-api` and `ade-worker`.
//!
//! - [`settings`]: connection settings common to both binaries.
//! - [`ids`]: the UUIDv7 identifiers and their newtypes.
//! - [`identity`]: engine and Python identity, build fingerprints.
//! - [`db`]: the PostgreSQL pool and migrations (under an advisory lock).
//! - [`amqp`]: RabbitMQ topology, connection and confirmed publishing.
//! - [`builds`]: finding or creating the build a configuration needs.
//! - [`events`]: the event envelope and gapless, transactional appends.
//! - [`runs`]: run options, statuses and failures.
//! - [`reaper`]: requeueing or failing runs whose worker was lost.
//! - [`storage`]: where documents and outputs live under `ADE_DATA_DIR`.
//! - [`telemetry`]: tracing setup (text or JSON).
//! - [`time_fmt`]: the one timestamp format used on the wire.

pub mod amqp;
pub mod builds;
pub mod db;
pub mod events;
pub mod identity;
pub mod ids;
pub mod reaper;
pub mod runs;
pub mod settings;
pub mod storage;
pub mod telemetry;
pub mod time_fmt;
