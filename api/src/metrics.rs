//! The API's registry: the shared families, plus gauges read from
//! PostgreSQL at scrape time (queue depth, live workers) and this
//! instance's followed streams.

use ade_common::lifecycle::queue::Counts;
use ade_common::metrics::Metrics;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Gauges set from the database before each scrape.
#[derive(Debug, Default)]
struct Scraped {
    runs_queued: Gauge,
    runs_waiting_for_build: Gauge,
    runs_running: Gauge,
    builds_queued: Gauge,
    builds_building: Gauge,
    oldest_queued_run_age: Gauge<f64, AtomicU64>,
    workers_live: Gauge,
    followed_streams: Gauge,
}

/// The API process's registry and the gauges it sets at scrape time.
#[derive(Debug)]
pub struct ApiRegistry {
    registry: Registry,
    scraped: Scraped,
}

impl ApiRegistry {
    /// A registry with the shared families (returned) and the API's gauges.
    pub fn new() -> (Self, Metrics) {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let s = Scraped::default();
        let r = &mut registry;
        r.register(
            "ade_runs_queued",
            "Runs waiting for a worker",
            s.runs_queued.clone(),
        );
        r.register(
            "ade_runs_waiting_for_build",
            "Runs waiting for their build",
            s.runs_waiting_for_build.clone(),
        );
        r.register(
            "ade_runs_running",
            "Runs being executed",
            s.runs_running.clone(),
        );
        r.register(
            "ade_builds_queued",
            "Builds waiting for a worker",
            s.builds_queued.clone(),
        );
        r.register(
            "ade_builds_building",
            "Builds in progress",
            s.builds_building.clone(),
        );
        r.register(
            "ade_queue_oldest_run_age_seconds",
            "Age of the oldest queued run (the autoscaling signal)",
            s.oldest_queued_run_age.clone(),
        );
        r.register(
            "ade_workers_live",
            "Workers with a recent heartbeat",
            s.workers_live.clone(),
        );
        r.register(
            "ade_api_followed_streams",
            "Streams with live followers on this API instance",
            s.followed_streams.clone(),
        );
        let this = Self {
            registry,
            scraped: s,
        };
        (this, metrics)
    }

    /// The registry as text, with the gauges set to what was just read.
    pub fn render(&self, queue: &Counts, workers_live: i64, followed_streams: usize) -> String {
        let s = &self.scraped;
        s.runs_queued.set(queue.queued_runs);
        s.runs_waiting_for_build.set(queue.waiting_for_build_runs);
        s.runs_running.set(queue.running_runs);
        s.builds_queued.set(queue.queued_builds);
        s.builds_building.set(queue.building_builds);
        s.oldest_queued_run_age
            .set(queue.oldest_queued_run_age_seconds.unwrap_or(0.0));
        s.workers_live.set(workers_live);
        s.followed_streams.set(followed_streams as i64);
        ade_common::metrics::encode(&self.registry)
    }
}
