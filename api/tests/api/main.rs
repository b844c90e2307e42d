//! Black-box tests of the API and workers against real PostgreSQL and
//! RabbitMQ. One binary (faster to link); one module per area.

mod follow;
mod helpers;
mod infra;

mod builds;
mod configurations;
mod documents;
mod engine;
mod reliability;
mod runs;
mod streams;
mod workers;
mod workspaces;
