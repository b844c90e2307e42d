//! Shared by `ade-api` and `ade-worker`.
//!
//! - [`settings`]: connection settings common to both binaries.
//! - [`ids`]: the UUIDv7 identifiers and their newtypes.
//! - [`identity`]: engine and Python identity, build fingerprints.
//! - [`db`]: the PostgreSQL pool and migrations (under an advisory lock).
//! - [`amqp`]: RabbitMQ topology, connections and publishers.
//! - [`dispatch`]: offering committed jobs to the broker, and again later.
//! - [`status`]: `RunStatus` and `BuildStatus`, spelled once.
//! - [`lifecycle`]: every state change of a run or a build (claims, leases,
//!   fences, completion, the reaper, builds, dispatch marks).
//! - [`events`]: the event envelope; where an event is sequenced.
//! - [`metrics`]: the metric families of a process, on its own registry.
//! - [`net`]: accepting connections until shutdown.
//! - [`runs`]: run options, failures and output files.
//! - [`storage`]: where documents and outputs live under `ADE_DATA_DIR`.
//! - [`telemetry`]: tracing setup (text or JSON).
//! - [`time_fmt`]: the one timestamp format used on the wire.

pub mod amqp;
pub mod db;
pub mod dispatch;
pub mod events;
pub mod identity;
pub mod ids;
pub mod lifecycle;
pub mod metrics;
pub mod net;
pub mod runs;
pub mod settings;
pub mod status;
pub mod storage;
pub mod telemetry;
pub mod time_fmt;
