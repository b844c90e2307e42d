//! Black-box tests of the API and workers against real PostgreSQL and
//! RabbitMQ. One binary (faster to link); one module per area.

mod chromium;
mod fixtures;
mod follow;
mod helpers;
mod infra;
mod modes;
mod proxy;

mod auth;
mod builds;
mod cli;
mod configurations;
mod documents;
mod engine;
mod fencing;
mod lifecycle;
mod limits;
mod metrics;
mod migrations;
mod openapi;
mod pages;
mod pool;
mod reliability;
mod retention;
mod runs;
mod sandbox;
mod streams;
mod workers;
mod workspaces;
