//! Finding or creating the build a run needs, and making its venv present here.
//!
//! The database holds one build record per fingerprint and attempt to build
//! (a partial unique index allows one in progress); every host keeps its own
//! copy of the venv and builds it from the stored package when it lacks one.
//! Build events appear in the run's stream, tagged with the build id.

use crate::Context;
use crate::events::RunEvents;
use crate::process::Channel;
use crate::runs::Claim;
use crate::venv::{BuildSpec, Marker, Progress, Ready};
use ade_common::events::{NewEvent, Source};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The build record a run uses.
struct BuildRef {
    id: Uuid,
    /// Set when this call created the record (the `build.created` reason).
    created: Option<&'static str>,
}

/// Makes the run's venv present on this host. `Err` carries a message for the run's failure.
pub async fn prepare(
    ctx: &Context,
    claim: &Claim,
    events: &RunEvents,
    stop: CancellationToken,
) -> Result<Ready, String> {
    let (spec, build) = match plan(ctx, claim).await {
        Ok(planned) => planned,
        Err(e) => return Err(format!("could not prepare the build: {e:#}")),
    };
    let build_id = build.id;
    if let Some(reason) = build.created {
        let payload = json!({"reason": reason, "fingerprint": spec.marker.fingerprint});
        events
            .emit(build_event("build.created", payload, build_id))
            .await;
    }
    let started = Instant::now();
    let building = AtomicBool::new(false);
    let progress = |p: Progress| {
        let building = &building;
        async move {
            match p {
                Progress::Phase(phase) => {
                    if !building.swap(true, Ordering::Relaxed) {
                        events
                            .emit(build_event(
                                "build.started",
                                json!({"host": ctx.host}),
                                build_id,
                            ))
                            .await;
                    }
                    events
                        .emit(build_event(
                            "build.phase.started",
                            json!({"phase": phase.as_str()}),
                            build_id,
                        ))
                        .await;
                }
                Progress::Line(channel, line) => {
                    let stream = if channel == Channel::Stderr {
                        "stderr"
                    } else {
                        "stdout"
                    };
                    events.console("build", stream, line, Some(build_id)).await;
                }
            }
        }
    };
    let result = ctx.venvs.ensure(spec, stop, progress).await;
    let built_here = building.load(Ordering::Relaxed);
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    if built_here {
        let payload = json!({
            "status": if error.is_none() { "ready" } else { "failed" },
            "exit_code": if error.is_none() { 0 } else { 1 },
            "duration_ms": started.elapsed().as_millis() as u64,
            "error": error,
        });
        events
            .emit(build_event("build.completed", payload, build_id))
            .await;
    }
    if let Err(e) = record(ctx, build_id, result.as_ref().ok(), error.as_deref()).await {
        tracing::warn!(build.id = %build_id, error = %e, "could not record the build's state");
    }
    result.map_err(|e| format!("the environment could not be built: {e:#}"))
}

fn build_event(kind: &str, payload: serde_json::Value, build_id: Uuid) -> NewEvent {
    let mut event = NewEvent::new(kind, Source::Worker, payload);
    event.build_id = Some(build_id);
    event
}

/// Loads the configuration, picks the build record, and points the run at it.
async fn plan(ctx: &Context, claim: &Claim) -> anyhow::Result<(BuildSpec, BuildRef)> {
    let db = ctx.pool.get().await?;
    let row = db
        .query_one(
            "SELECT content_digest, package FROM configurations WHERE id = $1",
            &[&claim.configuration_id],
        )
        .await?;
    let (config_digest, package): (String, Vec<u8>) = (row.get(0), row.get(1));
    let fingerprint = ctx.identity.fingerprint(&config_digest);
    let build = resolve(ctx, claim, &fingerprint, &config_digest).await?;
    db.execute(
        "UPDATE runs SET build_id = $2 WHERE id = $1",
        &[&claim.run_id, &build.id],
    )
    .await?;
    let marker = Marker {
        build_id: build.id,
        workspace_id: claim.workspace_id,
        configuration_id: claim.configuration_id,
        fingerprint,
        config_digest,
        engine_version: ctx.identity.engine_version.clone(),
        python_version: ctx.identity.python_version.clone(),
        packages: vec![],
        created_at: String::new(),
    };
    Ok((BuildSpec { marker, package }, build))
}

/// The newest usable build of this fingerprint, or a new one.
async fn resolve(
    ctx: &Context,
    claim: &Claim,
    fingerprint: &str,
    config_digest: &str,
) -> anyhow::Result<BuildRef> {
    let db = ctx.pool.get().await?;
    let force = claim.options.force_rebuild;
    let existing = "SELECT id FROM builds
                    WHERE configuration_id = $1 AND fingerprint = $2 AND status IN ('ready', 'queued', 'building')
                    ORDER BY status = 'ready' DESC, created_at DESC LIMIT 1";
    if !force {
        if let Some(row) = db
            .query_opt(existing, &[&claim.configuration_id, &fingerprint])
            .await?
        {
            return Ok(BuildRef {
                id: row.get(0),
                created: None,
            });
        }
    }
    let reason = if force { "force_rebuild" } else { "missing" };
    let id = ade_common::ids::new_id();
    let inserted = db
        .query_opt(
            "INSERT INTO builds (id, workspace_id, configuration_id, status, reason, fingerprint,
                                 config_digest, engine_version, python_version, started_at)
             VALUES ($1, $2, $3, 'building', $4, $5, $6, $7, $8, now())
             ON CONFLICT (configuration_id, fingerprint) WHERE status IN ('queued', 'building') DO NOTHING
             RETURNING id",
            &[&id, &claim.workspace_id, &claim.configuration_id, &reason, &fingerprint, &config_digest,
              &ctx.identity.engine_version, &ctx.identity.python_version],
        )
        .await?;
    if inserted.is_some() {
        return Ok(BuildRef {
            id,
            created: Some(reason),
        });
    }
    // Another worker is building this fingerprint: share its record, build our own copy.
    let row = db
        .query_opt(existing, &[&claim.configuration_id, &fingerprint])
        .await?;
    let row = row.ok_or_else(|| anyhow::anyhow!("the build in progress vanished; retry"))?;
    Ok(BuildRef {
        id: row.get(0),
        created: None,
    })
}

/// Records the outcome on the build and makes it the configuration's active build.
async fn record(
    ctx: &Context,
    build_id: Uuid,
    ready: Option<&Ready>,
    error: Option<&str>,
) -> anyhow::Result<()> {
    let db = ctx.pool.get().await?;
    match ready {
        Some(ready) => {
            let packages = serde_json::to_value(&ready.marker.packages)?;
            db.execute(
                "UPDATE builds SET status = 'ready', packages = $2, exit_code = 0, completed_at = now()
                 WHERE id = $1 AND status IN ('queued', 'building')",
                &[&build_id, &packages],
            )
            .await?;
        }
        None => {
            let message: String = error
                .unwrap_or("unknown error")
                .chars()
                .take(4000)
                .collect();
            db.execute(
                "UPDATE builds SET status = 'failed', error_message = $2, exit_code = 1, completed_at = now()
                 WHERE id = $1 AND status IN ('queued', 'building')",
                &[&build_id, &message],
            )
            .await?;
        }
    }
    db.execute(
        "UPDATE configurations c SET active_build_id = b.id
         FROM builds b WHERE b.id = $1 AND c.id = b.configuration_id AND c.content_digest = b.config_digest",
        &[&build_id],
    )
    .await?;
    Ok(())
}
