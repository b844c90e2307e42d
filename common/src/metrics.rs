//! The metric families of one process (API or worker), on its own registry.
//!
//! Each process builds a `Registry`, registers a [`Metrics`] on it and
//! passes the `Metrics` (cheap to clone: every family is shared) to whatever
//! observes. Nothing is global. A family a process never touches still
//! shows, at zero, so dashboards and alerts see the same names everywhere;
//! Prometheus sums them over processes.
//!
//! Run outcomes and retries are read from the events a process commits (see
//! [`Metrics::observe_committed`]): every transition of the lifecycle
//! returns its events, and every committed batch goes through the process's
//! event publisher once, so a run is counted by the process that ended it.

use crate::events::{Envelope, EventKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The `Content-Type` of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of a finished run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunOutcome {
    /// `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// The failure code (`none` when the run did not fail).
    pub code: String,
}

/// Labels of an engine start.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaunchMode {
    /// `forked` (by a warm engine) or `spawned`.
    pub mode: String,
}

/// The families every process registers.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Run duration, started → terminal, in seconds.
    pub run_duration: Histogram,
    /// Queue wait, created → started (claimed), in seconds.
    pub queue_wait: Histogram,
    /// Build duration (a claimed build, to its verdict), in seconds.
    pub build_duration: Histogram,
    /// Hydration duration (a ready build's venv rebuilt on this host), in seconds.
    pub hydration_duration: Histogram,
    /// Event delivery lag, persisted → sent to a follower, in seconds.
    pub event_lag: Histogram,
    /// Runs ended, by status and failure code.
    pub runs_completed: Family<RunOutcome, Counter>,
    /// Attempts handed back or requeued (`run.retry`).
    pub retries: Counter,
    /// Runs whose lease expired and that the reaper took.
    pub reaped_leases: Counter,
    /// Jobs offered to the broker again by the redispatcher.
    pub redispatches: Counter,
    /// Messages this process dead-lettered (poison).
    pub dead_lettered: Counter,
    /// Runs whose venv was present on this host.
    pub cache_hits: Counter,
    /// Runs whose venv had to be built or hydrated here.
    pub cache_misses: Counter,
    /// Venvs removed by the cache collector.
    pub cache_evictions: Counter,
    /// Live SSE/NDJSON followers of this API instance.
    pub followers: Gauge,
    /// Run slots busy on this worker.
    pub slots_busy: Gauge,
    /// Run slots free on this worker.
    pub slots_free: Gauge,
    /// Size of this host's venv cache.
    pub cache_bytes: Gauge,
    /// Terminal runs deleted by retention.
    pub retention_deleted: Counter,
    /// Engines started, by how (`forked` or `spawned`).
    pub engine_launches: Family<LaunchMode, Counter>,
}

/// Buckets from 5 ms to about 45 min.
fn durations() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 20))
}

impl Metrics {
    /// Registers the families on `registry` (names prefixed `ade_`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            run_duration: durations(),
            queue_wait: durations(),
            build_duration: durations(),
            hydration_duration: durations(),
            event_lag: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            runs_completed: Family::default(),
            retries: Counter::default(),
            reaped_leases: Counter::default(),
            redispatches: Counter::default(),
            dead_lettered: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_evictions: Counter::default(),
            followers: Gauge::default(),
            slots_busy: Gauge::default(),
            slots_free: Gauge::default(),
            cache_bytes: Gauge::default(),
            retention_deleted: Counter::default(),
            engine_launches: Family::default(),
        };
        let r = registry;
        r.register(
            "ade_run_duration_seconds",
            "Run duration, started to terminal",
            m.run_duration.clone(),
        );
        r.register(
            "ade_run_queue_wait_seconds",
            "Queue wait, created to started",
            m.queue_wait.clone(),
        );
        r.register(
            "ade_build_duration_seconds",
            "Build duration, claim to verdict",
            m.build_duration.clone(),
        );
        r.register(
            "ade_hydration_duration_seconds",
            "Venv rebuilt on a host from a ready build's record",
            m.hydration_duration.clone(),
        );
        r.register(
            "ade_event_delivery_lag_seconds",
            "Event persisted to sent to a follower",
            m.event_lag.clone(),
        );
        r.register(
            "ade_runs_completed",
            "Runs ended, by status and failure code",
            m.runs_completed.clone(),
        );
        r.register(
            "ade_run_retries",
            "Attempts handed back or requeued",
            m.retries.clone(),
        );
        r.register(
            "ade_leases_reaped",
            "Runs whose lease expired, taken by the reaper",
            m.reaped_leases.clone(),
        );
        r.register(
            "ade_jobs_redispatched",
            "Jobs offered to the broker again",
            m.redispatches.clone(),
        );
        r.register(
            "ade_messages_dead_lettered",
            "Poison messages dead-lettered",
            m.dead_lettered.clone(),
        );
        r.register(
            "ade_venv_cache_hits",
            "Runs whose venv was present on the host",
            m.cache_hits.clone(),
        );
        r.register(
            "ade_venv_cache_misses",
            "Runs whose venv was built or hydrated on the host",
            m.cache_misses.clone(),
        );
        r.register(
            "ade_venv_cache_evictions",
            "Venvs removed by the cache collector",
            m.cache_evictions.clone(),
        );
        r.register(
            "ade_stream_followers",
            "Live SSE/NDJSON followers",
            m.followers.clone(),
        );
        r.register(
            "ade_worker_slots_busy",
            "Run slots busy",
            m.slots_busy.clone(),
        );
        r.register(
            "ade_worker_slots_free",
            "Run slots free",
            m.slots_free.clone(),
        );
        r.register(
            "ade_venv_cache_bytes",
            "Size of the host's venv cache",
            m.cache_bytes.clone(),
        );
        r.register(
            "ade_retention_deleted_runs",
            "Terminal runs deleted by retention",
            m.retention_deleted.clone(),
        );
        r.register(
            "ade_engine_launches",
            "Engines started, forked by a warm engine or spawned",
            m.engine_launches.clone(),
        );
        m
    }

    /// Observes what a committed batch of events says: runs ended
    /// (`run.completed`: status, failure code, duration) and retries.
    pub fn observe_committed(&self, events: &[Envelope]) {
        for event in events {
            match event.kind {
                EventKind::RunCompleted => self.run_completed(&event.payload),
                EventKind::RunRetry => {
                    self.retries.inc();
                }
                _ => {}
            }
        }
    }

    fn run_completed(&self, payload: &Value) {
        let text = |v: &Value| v.as_str().unwrap_or("none").to_owned();
        let outcome = RunOutcome {
            status: text(&payload["status"]),
            code: text(&payload["failure"]["code"]),
        };
        self.runs_completed.get_or_create(&outcome).inc();
        let execution = &payload["execution"];
        if !execution["started_at"].is_null()
            && let Some(ms) = execution["duration_ms"].as_i64()
        {
            self.run_duration.observe(ms.max(0) as f64 / 1000.0);
        }
    }

    /// Observes the delivery lag of an event persisted at `created_at`
    /// (RFC 3339, as in the envelope) that is being sent to a follower now.
    pub fn observe_delivery(&self, created_at: OffsetDateTime) {
        let lag = (OffsetDateTime::now_utc() - created_at).as_seconds_f64();
        self.event_lag.observe(lag.max(0.0));
    }
}

/// An envelope's `created_at`, parsed.
pub fn persisted_at(event: &Envelope) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(&event.created_at, &Rfc3339).ok()
}

/// The registry as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn completed(payload: Value) -> Envelope {
        Envelope {
            event_id: "evt_x".into(),
            kind: EventKind::RunCompleted,
            sequence: 1,
            created_at: crate::time_fmt::format(OffsetDateTime::now_utc()),
            source: crate::events::Source::Worker,
            workspace_id: uuid::Uuid::nil(),
            configuration_id: uuid::Uuid::nil(),
            run_id: None,
            build_id: None,
            attempt: Some(1),
            payload,
        }
    }

    #[test]
    fn a_completed_run_is_counted_by_status_and_code() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.observe_committed(&[
            completed(
                json!({"status": "failed", "failure": {"code": "engine_failed"},
                "execution": {"started_at": "x", "duration_ms": 1500}}),
            ),
            completed(json!({"status": "cancelled", "failure": null,
                "execution": {"started_at": null, "duration_ms": 0}})),
        ]);
        let text = encode(&registry);
        assert!(
            text.contains(r#"ade_runs_completed_total{status="failed",code="engine_failed"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ade_runs_completed_total{status="cancelled",code="none"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("ade_run_duration_seconds_count 1"),
            "a run never started has no duration: {text}"
        );
        assert!(text.contains("ade_run_duration_seconds_sum 1.5"), "{text}");
    }
}
