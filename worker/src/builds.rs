//! The build a run uses, and its venv on this host.
//!
//! The API chose the run's build record when it accepted the run. Here the
//! worker makes that build's venv present locally:
//! - a `failed` build fails the run (`build_failed`, with the build's error);
//! - a `ready` build whose venv this host lacks is rebuilt from the stored
//!   package and wheel ("hydration"), reported with reason `hydration`;
//! - a `queued` or `building` build puts the run in `waiting_for_build` while
//!   this host builds its own copy; the first host to finish marks it ready.
//!   The worker that moves it from `queued` to `building` is its builder and
//!   also writes the build's own event stream.
//!
//! If the record's engine or Python differ from this worker's, or the
//! configuration changed since, the worker re-resolves to a build for what it
//! will actually install, so a venv never disagrees with its record.

use crate::Context;
use crate::events::{EventSink, Stream};
use crate::process::Channel;
use crate::runs::Claim;
use crate::venv::{BuildSpec, Marker, Progress, Ready};
use ade_common::builds::{Reason, Resolved, Target, resolve};
use ade_common::db::retry_transient;
use ade_common::events::{NewEvent, Source};
use anyhow::Context as _;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A build record as the worker needs it.
pub struct BuildRow {
    /// The build.
    pub id: Uuid,
    /// Its status when read.
    pub status: String,
    /// Its error, when failed.
    pub error: Option<String>,
    /// The record's identity, for the marker.
    pub marker: Marker,
    /// The `packages` lock of a finished build.
    pub packages: Vec<String>,
}

/// Makes the run's venv present on this host. `Err` is the message of a `build_failed` failure.
pub async fn prepare(
    ctx: &Context,
    claim: &Claim,
    events: &EventSink,
    stop: CancellationToken,
) -> Result<Ready, String> {
    let planned = retry_transient(crate::DB_PATIENCE, || plan(ctx, claim, events))
        .await
        .map_err(|e| format!("could not prepare the build: {e:#}"))?;
    let (build, package) = planned;
    match build.status.as_str() {
        "failed" => {
            return Err(format!(
                "the build failed: {}",
                build.error.unwrap_or_default()
            ));
        }
        "ready" => {}
        _ => set_run_status(ctx, claim, "waiting_for_build").await,
    }
    let builder = build.status != "ready" && claim_build(ctx, build.id).await.unwrap_or(false);
    let build_events = builder.then(|| ctx.sink(Stream::Build(build.id)));
    let reason = (build.status == "ready").then_some(Reason::Hydration);
    let sinks = Sinks {
        run: Some(events),
        build: build_events.as_ref(),
        build_id: build.id,
    };
    let result = make_venv(ctx, &build, package, reason, &sinks, stop).await;
    if let Some(sink) = build_events {
        sink.finish().await;
    }
    set_run_status(ctx, claim, "running").await;
    result.map_err(|e| format!("the environment could not be built: {e}"))
}

/// Builds a queued build from the builds queue (no run involved).
pub async fn process_build(ctx: &Context, build_id: Uuid) -> anyhow::Result<bool> {
    if !claim_build(ctx, build_id).await? {
        return Ok(false);
    }
    let sink = ctx.sink(Stream::Build(build_id));
    let result = async {
        let (build, package) = load(ctx, build_id).await?;
        anyhow::ensure!(
            build.marker.engine_version == ctx.identity.engine_version
                && build.marker.python_version == ctx.identity.python_version,
            "this worker has engine {} on {}, the build asks for {} on {}",
            ctx.identity.engine_version,
            ctx.identity.python_version,
            build.marker.engine_version,
            build.marker.python_version
        );
        let package = package.context(
            "the configuration changed since this build was requested; request a new build",
        )?;
        let sinks = Sinks {
            run: None,
            build: Some(&sink),
            build_id,
        };
        make_venv(ctx, &build, package, None, &sinks, CancellationToken::new())
            .await
            .map_err(anyhow::Error::msg)
    }
    .await;
    if let Err(e) = &result {
        let error = format!("{e:#}");
        if record(ctx, build_id, None, Some(&error)).await? {
            // Failed before the venv work began: the stream still needs its end.
            let payload =
                json!({"status": "failed", "exit_code": 1, "duration_ms": 0, "error": error});
            Sinks {
                run: None,
                build: Some(&sink),
                build_id,
            }
            .emit("build.completed", payload)
            .await;
        }
    }
    sink.finish().await;
    Ok(true)
}

/// Where build events go: the run's stream, the build's own, or both.
struct Sinks<'a> {
    run: Option<&'a EventSink>,
    build: Option<&'a EventSink>,
    build_id: Uuid,
}

impl Sinks<'_> {
    async fn emit(&self, kind: &str, payload: Value) {
        for sink in [self.run, self.build].into_iter().flatten() {
            let mut event = NewEvent::new(kind, Source::Worker, payload.clone());
            event.build_id = Some(self.build_id);
            sink.emit(event).await;
        }
    }

    async fn console(&self, stream: &str, line: String) {
        for sink in [self.run, self.build].into_iter().flatten() {
            sink.console("build", stream, line.clone(), Some(self.build_id))
                .await;
        }
    }
}

/// Ensures the venv, reporting progress, and records the outcome on the build.
async fn make_venv(
    ctx: &Context,
    build: &BuildRow,
    package: Vec<u8>,
    reason: Option<Reason>,
    sinks: &Sinks<'_>,
    stop: CancellationToken,
) -> Result<Ready, String> {
    let spec = BuildSpec {
        marker: build.marker.clone(),
        package,
        wheel_dir: ctx
            .data_dir
            .root()
            .join("builds")
            .join(build.id.to_string())
            .join("wheels"),
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
                            sinks.emit("build.created", payload).await;
                        }
                        sinks.emit("build.started", json!({"host": ctx.host})).await;
                    }
                    sinks
                        .emit("build.phase.started", json!({"phase": phase.as_str()}))
                        .await;
                }
                Progress::Line(channel, line) => {
                    sinks
                        .console(
                            if channel == Channel::Stderr {
                                "stderr"
                            } else {
                                "stdout"
                            },
                            line,
                        )
                        .await;
                }
            }
        }
    };
    let result = ctx.venvs.ensure(spec, stop, progress).await;
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    if building.load(Ordering::Relaxed) {
        let ok = error.is_none();
        let payload = json!({
            "status": if ok { "ready" } else { "failed" },
            "exit_code": if ok { 0 } else { 1 },
            "duration_ms": started.elapsed().as_millis() as u64,
            "error": error,
        });
        sinks.emit("build.completed", payload).await;
    }
    // A failed hydration of a ready build is this host's problem, not the build's.
    if build.status != "ready"
        && let Err(e) = record(ctx, build.id, result.as_ref().ok(), error.as_deref()).await
    {
        tracing::warn!(build.id = %build.id, error = %e, "could not record the build's state");
    }
    result.map_err(|e| format!("{e:#}"))
}

/// The run's build record (re-resolved if it does not match this worker) and its package.
async fn plan(
    ctx: &Context,
    claim: &Claim,
    events: &EventSink,
) -> anyhow::Result<(BuildRow, Vec<u8>)> {
    let db = ctx.pool.get().await?;
    let build_id: Uuid = db
        .query_one("SELECT build_id FROM runs WHERE id = $1", &[&claim.run_id])
        .await?
        .get::<_, Option<Uuid>>(0)
        .context("the run has no build")?;
    let (build, package) = load(ctx, build_id).await?;
    let matches = build.marker.engine_version == ctx.identity.engine_version
        && build.marker.python_version == ctx.identity.python_version;
    if let (true, Some(package)) = (matches, package) {
        return Ok((build, package));
    }
    let target = Target {
        workspace_id: claim.workspace_id,
        configuration_id: claim.configuration_id,
        config_digest: db
            .query_one(
                "SELECT content_digest FROM configurations WHERE id = $1",
                &[&claim.configuration_id],
            )
            .await?
            .get(0),
    };
    let mut tx_db = ctx.pool.get().await?;
    let tx = tx_db.transaction().await?;
    let resolved = resolve(&tx, &target, &ctx.identity, false, true, Reason::Missing).await?;
    tx.execute(
        "UPDATE runs SET build_id = $2 WHERE id = $1",
        &[&claim.run_id, &resolved.id()],
    )
    .await?;
    tx.commit().await?;
    if let Resolved::Created { id } = resolved {
        let mut event = NewEvent::new(
            "build.created",
            Source::Worker,
            json!({"reason": "missing", "fingerprint": ctx.identity.fingerprint(&target.config_digest)}),
        );
        event.build_id = Some(id);
        events.emit(event).await;
    }
    let (build, package) = load(ctx, resolved.id()).await?;
    Ok((
        build,
        package.context("the configuration changed again; retry the run")?,
    ))
}

/// Reads a build and, if the configuration still has the build's content, its package.
pub async fn load(ctx: &Context, build_id: Uuid) -> anyhow::Result<(BuildRow, Option<Vec<u8>>)> {
    let db = ctx.pool.get().await?;
    let row = db
        .query_one(
            "SELECT b.status, b.error_message, b.workspace_id, b.configuration_id, b.fingerprint, b.config_digest,
                    b.engine_version, b.python_version, b.packages,
                    CASE WHEN c.content_digest = b.config_digest THEN c.package END
             FROM builds b JOIN configurations c ON c.id = b.configuration_id WHERE b.id = $1",
            &[&build_id],
        )
        .await?;
    let packages: Option<Value> = row.get(8);
    let marker = Marker {
        build_id,
        workspace_id: row.get(2),
        configuration_id: row.get(3),
        fingerprint: row.get(4),
        config_digest: row.get(5),
        engine_version: row.get(6),
        python_version: row.get(7),
        packages: vec![],
        created_at: String::new(),
    };
    let build = BuildRow {
        id: build_id,
        status: row.get(0),
        error: row.get(1),
        marker,
        packages: packages
            .and_then(|p| serde_json::from_value(p).ok())
            .unwrap_or_default(),
    };
    Ok((build, row.get(9)))
}

/// Moves a queued build to `building` with this worker as its builder.
async fn claim_build(ctx: &Context, build_id: Uuid) -> anyhow::Result<bool> {
    let db = ctx.pool.get().await?;
    let n = db
        .execute(
            "UPDATE builds SET status = 'building', builder_id = $2, started_at = now()
             WHERE id = $1 AND status = 'queued'",
            &[&build_id, &ctx.worker_id],
        )
        .await?;
    Ok(n == 1)
}

async fn set_run_status(ctx: &Context, claim: &Claim, status: &str) {
    let result = async {
        let db = ctx.pool.get().await?;
        db.execute(
            "UPDATE runs SET status = $2 WHERE id = $1 AND worker_id = $3 AND status IN ('running', 'waiting_for_build')",
            &[&claim.run_id, &status, &ctx.worker_id],
        )
        .await?;
        anyhow::Ok(())
    };
    if let Err(e) = result.await {
        tracing::warn!(run.id = %claim.run_id, error = %e, "could not update the run's status");
    }
}

/// Records the outcome on the build (if still in progress) and makes it the
/// configuration's active build.
async fn record(
    ctx: &Context,
    build_id: Uuid,
    ready: Option<&Ready>,
    error: Option<&str>,
) -> anyhow::Result<bool> {
    let db = ctx.pool.get().await?;
    let ended = match ready {
        Some(ready) => {
            let packages = serde_json::to_value(&ready.marker.packages)?;
            db.execute(
                "UPDATE builds SET status = 'ready', packages = $2, exit_code = 0, completed_at = now(),
                        started_at = coalesce(started_at, now())
                 WHERE id = $1 AND status IN ('queued', 'building')",
                &[&build_id, &packages],
            )
            .await?
        }
        None => {
            let message: String = error
                .unwrap_or("unknown error")
                .chars()
                .take(4000)
                .collect();
            db.execute(
                "UPDATE builds SET status = 'failed', error_message = $2, exit_code = 1, completed_at = now(),
                        started_at = coalesce(started_at, now())
                 WHERE id = $1 AND status IN ('queued', 'building')",
                &[&build_id, &message],
            )
            .await?
        }
    };
    db.execute(
        "UPDATE configurations c SET active_build_id = b.id
         FROM builds b WHERE b.id = $1 AND c.id = b.configuration_id AND c.content_digest = b.config_digest",
        &[&build_id],
    )
    .await?;
    Ok(ended == 1)
}
