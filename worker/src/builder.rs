//! The builder of a build: the worker incarnation that claimed it makes its
//! venv, writes the build's own event stream, and gives the verdict.
//!
//! Only a real build failure (a step failed, the build timed out) is
//! recorded as `failed`. A builder that is stopped (cancel, drain, lost
//! lease) or fails for a reason of its own host releases the build to
//! `queued`, so another worker builds it; a builder whose fence broke (the
//! reaper gave the build to someone else) writes nothing more.

use crate::Context;
use crate::builds::BuildRow;
use crate::events::EventSink;
use crate::process::Channel;
use crate::venv::{BuildError, BuildSpec, Progress, Ready};
use ade_common::events::{EventKind, NewEvent, Origin, Source, StreamRef};
use ade_common::lifecycle::Fence;
use ade_common::lifecycle::builds::{self, Reason, Verdict};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Where build events go: the run's stream, the build's own, or both.
pub struct Sinks<'a> {
    run: Option<&'a EventSink>,
    own: Option<&'a EventSink>,
    build_id: Uuid,
}

impl<'a> Sinks<'a> {
    /// Build events for `build_id`, shown in the run's stream if there is one.
    pub fn new(run: Option<&'a EventSink>, build_id: Uuid) -> Self {
        Self {
            run,
            own: None,
            build_id,
        }
    }

    async fn emit(&self, kind: EventKind, payload: Value) {
        for sink in [self.run, self.own].into_iter().flatten() {
            let event = NewEvent::new(kind, Source::Worker, payload.clone());
            sink.emit(event.with_build(self.build_id)).await;
        }
    }

    async fn console(&self, stream: &str, line: String) {
        for sink in [self.run, self.own].into_iter().flatten() {
            sink.console("build", stream, line.clone(), Some(self.build_id))
                .await;
        }
    }
}

/// Builds a build this worker claimed and records the verdict. `Ok(None)`
/// when the build was taken from this builder meanwhile (look again).
pub async fn build(
    ctx: &Context,
    build: &BuildRow,
    package: Vec<u8>,
    sinks: Sinks<'_>,
    stop: CancellationToken,
) -> Result<Option<Ready>, BuildError> {
    let own = ctx.sink(origin(build), fence(ctx));
    let fenced = own.fenced();
    let stop = stop.child_token();
    let watcher = tokio::spawn({
        let (fenced, stop) = (fenced.clone(), stop.clone());
        async move {
            fenced.cancelled().await;
            stop.cancel();
        }
    });
    let run = sinks.run;
    let started = Instant::now();
    let result = {
        let sinks = Sinks {
            own: Some(&own),
            ..sinks
        };
        ensure(ctx, build, package, None, &sinks, stop).await
    };
    own.finish().await;
    watcher.abort();
    if fenced.is_cancelled() {
        return Ok(None);
    }
    let verdict = match &result {
        Ok(ready) => Verdict::Ready {
            packages: ready.marker.packages.clone(),
        },
        Err(BuildError::Failed(error)) => Verdict::Failed {
            error: error.clone(),
        },
        Err(e) => {
            tracing::info!(build.id = %build.id, error = %e, "releasing the build for another worker");
            release(ctx, build.id).await;
            return result.map(Some);
        }
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    match record(ctx, build, &verdict, duration_ms).await {
        Some(()) => {
            ctx.metrics
                .build_duration
                .observe(duration_ms as f64 / 1000.0);
            if let Some(run) = run {
                let payload = builds::completed_payload(&verdict, duration_ms);
                let event = NewEvent::new(EventKind::BuildCompleted, Source::Worker, payload);
                run.emit(event.with_build(build.id)).await;
            }
            result.map(Some)
        }
        None => Ok(None),
    }
}

/// Fails a claimed build without building it (it cannot be built here at all).
pub async fn refuse(ctx: &Context, build: &BuildRow, error: String) -> anyhow::Result<()> {
    tracing::warn!(build.id = %build.id, %error, "refusing the build");
    record(ctx, build, &Verdict::Failed { error }, 0).await;
    Ok(())
}

/// Writes the verdict and `build.completed`; `None` when no longer the builder.
async fn record(
    ctx: &Context,
    build: &BuildRow,
    verdict: &Verdict,
    duration_ms: u64,
) -> Option<()> {
    let written = ade_common::db::retry_transient(crate::DB_PATIENCE, || async {
        let mut db = ctx.pool.get().await?;
        let incarnation = ctx.claimant.incarnation;
        Ok(builds::finish(&mut db, &origin(build), incarnation, verdict, duration_ms).await?)
    })
    .await;
    match written {
        Ok(Some(events)) => {
            ctx.events.publish(events);
            Some(())
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(build.id = %build.id, error = %e, "could not record the build's verdict");
            None
        }
    }
}

async fn release(ctx: &Context, build_id: Uuid) {
    let released = async {
        let db = ctx.pool.get().await?;
        anyhow::Ok(builds::release(&db, build_id, ctx.claimant.incarnation).await?)
    };
    if let Err(e) = released.await {
        // Its heartbeat goes on, so the reaper will not take it; it stays
        // `building` until this worker stops. Say so.
        tracing::warn!(build.id = %build_id, error = %e, "could not release the build");
    }
}

/// Makes the venv present, reporting progress as build events. When there
/// is no own stream (hydration), `build.completed` goes to the run's stream.
pub async fn ensure(
    ctx: &Context,
    build: &BuildRow,
    package: Vec<u8>,
    reason: Option<Reason>,
    sinks: &Sinks<'_>,
    stop: CancellationToken,
) -> Result<Ready, BuildError> {
    let spec = BuildSpec {
        marker: build.marker.clone(),
        package,
        wheel_dir: ctx.data_dir.build_wheels(build.id),
        constraints: build.packages.clone(),
    };
    let started = Instant::now();
    let building = AtomicBool::new(false);
    let progress = |p: Progress| {
        let building = &building;
        async move {
            match p {
                Progress::Phase(phase) => {
                    if !building.swap(true, Ordering::Relaxed) {
                        if let Some(reason) = reason {
                            let payload = json!({"reason": reason.as_str(), "fingerprint": build.marker.fingerprint});
                            sinks.emit(EventKind::BuildCreated, payload).await;
                        }
                        sinks
                            .emit(EventKind::BuildStarted, json!({"host": ctx.host}))
                            .await;
                    }
                    let payload = json!({"phase": phase.as_str()});
                    sinks.emit(EventKind::BuildPhaseStarted, payload).await;
                }
                Progress::Line(channel, line) => {
                    let stream = if channel == Channel::Stderr {
                        "stderr"
                    } else {
                        "stdout"
                    };
                    sinks.console(stream, line).await;
                }
            }
        }
    };
    let result = ctx.venvs.ensure(spec, stop, progress).await;
    let built_here = building.load(Ordering::Relaxed);
    if result.is_ok() {
        let lookups = &ctx.metrics;
        let counter = if built_here {
            &lookups.cache_misses
        } else {
            &lookups.cache_hits
        };
        counter.inc();
    }
    if sinks.own.is_none() && built_here {
        ctx.metrics
            .hydration_duration
            .observe(started.elapsed().as_secs_f64());
        let verdict = match &result {
            Ok(ready) => Verdict::Ready {
                packages: ready.marker.packages.clone(),
            },
            Err(e) => Verdict::Failed {
                error: e.to_string(),
            },
        };
        let payload = builds::completed_payload(&verdict, started.elapsed().as_millis() as u64);
        sinks.emit(EventKind::BuildCompleted, payload).await;
    }
    result
}

fn origin(build: &BuildRow) -> Origin {
    Origin {
        stream: StreamRef::Build(build.id),
        workspace_id: build.marker.workspace_id,
        configuration_id: build.marker.configuration_id,
        build_id: Some(build.id),
        attempt: None,
    }
}

fn fence(ctx: &Context) -> Fence {
    Fence::Builder {
        incarnation: ctx.claimant.incarnation,
    }
}
