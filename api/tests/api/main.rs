//! Black-box tests of the API and workers against real PostgreSQL and
//! RabbitMQ. One binary (faster to link); one module per area.

mod chromium;
mod fixtures;
mod follow;
mod helpers;
mod infra;
mod proxy;

mod auth;
mod builds;
mod configurations;
mod documents;
mod fencing;
mod lifecycle;
mod limits;
mod openapi;
mod pages;
mod reliability;
mod runs;
mod streams;
mod workers;
mod workspaces;
