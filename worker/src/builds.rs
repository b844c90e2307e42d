//! The build a run uses, and its venv on this host.
//!
//! The API chose the run's build record when it accepted the run. Here the
//! worker makes that build's venv present locally:
//! - a `failed` build fails the run (`build_failed`, with the build's error);
//! - a `ready` build whose venv this host lacks is rebuilt from the stored
//!   package, wheel and exact package list ("hydration", see [`hydrate`]);
//! - a `queued` build is claimed: this worker becomes its builder, writes the
//!   build's own stream and its verdict (see [`builder`]);
//! - a `building` build (someone else's) puts the run in
//!   `waiting_for_build`; the run's stream shows the build's events as they
//!   happen, and when the build is ready this host hydrates it.
//!
//! If the record's engine or Python differ from this worker's, or the
//! configuration changed since, the worker re-resolves to a build for what it
//! will actually install, so a venv never disagrees with its record.

use crate::Context;
use crate::builder::{self, Sinks};
use crate::events::EventSink;
use crate::venv::{BuildError, Marker, Ready};
use ade_common::db::Cached as _;
use ade_common::db::retry_transient;
use ade_common::events::{EventKind, NewEvent, StreamRef};
use ade_common::lifecycle::builds::{self as lifecycle_builds, Reason, Resolved, Target, resolve};
use ade_common::lifecycle::{self, Claim};
use ade_common::status::BuildStatus;
use anyhow::Context as _;
use serde_json::Value;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often a run waiting for someone else's build looks at it.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// A build record as the worker needs it.
pub struct BuildRow {
    /// The build.
    pub id: Uuid,
    /// Its status when read.
    pub status: BuildStatus,
    /// Its error, when failed.
    pub error: Option<String>,
    /// The record's identity, for the marker.
    pub marker: Marker,
    /// The `packages` lock of a finished build.
    pub packages: Vec<String>,
}

/// Why a run's environment is not available.
#[derive(Debug)]
pub enum Unready {
    /// The build failed (for everyone).
    BuildFailed(String),
    /// This host could not make the venv.
    Host(String),
    /// The run was stopped while its environment was prepared.
    Stopped,
}

/// Makes the run's venv present on this host.
pub async fn prepare(
    ctx: &Context,
    claim: &Claim,
    events: &EventSink,
    stop: CancellationToken,
) -> Result<Ready, Unready> {
    let (mut build, package) = retry_transient(crate::DB_PATIENCE, || plan(ctx, claim, events))
        .await
        .map_err(|e| Unready::Host(format!("could not prepare the build: {e:#}")))?;
    let mut waiting = false;
    let mut copied = 0;
    loop {
        match build.status {
            BuildStatus::Failed | BuildStatus::Cancelled => {
                let error = build.error.clone().unwrap_or_default();
                return Err(Unready::BuildFailed(format!("the build failed: {error}")));
            }
            BuildStatus::Ready => {
                let ready = hydrate(ctx, &build, package.clone(), events, stop).await;
                if waiting {
                    set_running(ctx, claim).await;
                }
                return ready;
            }
            BuildStatus::Queued | BuildStatus::Building if !waiting => {
                waiting = true;
                set_waiting(ctx, claim).await;
            }
            _ => {}
        }
        if build.status == BuildStatus::Queued && claim_build(ctx, build.id).await {
            let sinks = Sinks::new(Some(events), build.id);
            match builder::build(ctx, &build, package.clone(), sinks, stop.clone()).await {
                Ok(Some(ready)) => {
                    set_running(ctx, claim).await;
                    return Ok(ready);
                }
                // Fenced out as builder: look again at whoever has it now.
                Ok(None) => {}
                Err(BuildError::Failed(e)) => {
                    return Err(Unready::BuildFailed(format!(
                        "the environment could not be built: {e}"
                    )));
                }
                Err(BuildError::Stopped) => return Err(Unready::Stopped),
                Err(BuildError::Host(e)) => return Err(Unready::Host(format!("{e:#}"))),
            }
        } else {
            wait(ctx, &build, events, &mut copied, &stop).await?;
        }
        build.status = current_status(ctx, &mut build).await?;
    }
}

/// Makes a ready build's venv present here, rebuilding it from the record
/// if this host lacks it. Its failure is this host's, never the build's.
async fn hydrate(
    ctx: &Context,
    build: &BuildRow,
    package: Vec<u8>,
    events: &EventSink,
    stop: CancellationToken,
) -> Result<Ready, Unready> {
    let sinks = Sinks::new(Some(events), build.id);
    match builder::ensure(ctx, build, package, Some(Reason::Hydration), &sinks, stop).await {
        Ok(ready) => Ok(ready),
        Err(BuildError::Stopped) => Err(Unready::Stopped),
        Err(e) => Err(Unready::Host(format!(
            "the environment could not be rebuilt on this host: {e}"
        ))),
    }
}

/// Waits a moment for someone else's build, copying its new events into the run's stream.
async fn wait(
    ctx: &Context,
    build: &BuildRow,
    events: &EventSink,
    copied: &mut i64,
    stop: &CancellationToken,
) -> Result<(), Unready> {
    tokio::select! {
        _ = stop.cancelled() => return Err(Unready::Stopped),
        _ = tokio::time::sleep(WAIT_POLL) => {}
    }
    let page = async {
        let db = ctx.pool.get().await?;
        anyhow::Ok(ade_common::events::page(&db, StreamRef::Build(build.id), *copied, 1000).await?)
    };
    match page.await {
        Ok(page) => {
            for event in page {
                *copied = event.sequence;
                if event.kind != EventKind::BuildCreated {
                    let copy = NewEvent::new(event.kind, event.source, event.payload);
                    events.emit(copy.with_build(build.id)).await;
                }
            }
        }
        Err(e) => {
            tracing::warn!(build.id = %build.id, error = %e, "could not read the build's events")
        }
    }
    Ok(())
}

async fn current_status(ctx: &Context, build: &mut BuildRow) -> Result<BuildStatus, Unready> {
    let read = retry_transient(crate::DB_PATIENCE, || async {
        let db = ctx.pool.get().await?;
        Ok(lifecycle_builds::status(&db, build.id).await?)
    });
    match read.await {
        Ok(Some((status, error))) => {
            build.error = error;
            if status == BuildStatus::Ready {
                // The builder recorded the exact packages to reproduce.
                let (row, _) = load(ctx, build.id)
                    .await
                    .map_err(|e| Unready::Host(format!("{e:#}")))?;
                build.packages = row.packages;
            }
            Ok(status)
        }
        Ok(None) => Err(Unready::Host("the run's build no longer exists".into())),
        Err(e) => Err(Unready::Host(format!("could not read the build: {e:#}"))),
    }
}

/// Builds a queued build from the builds queue (no run involved).
pub async fn process_build(ctx: &Context, build_id: Uuid) -> anyhow::Result<bool> {
    if !lifecycle_builds::claim(&ctx.pool.get().await?, build_id, &ctx.claimant).await? {
        return Ok(false);
    }
    let (build, package) = load(ctx, build_id).await?;
    let skew = build.marker.engine_version != ctx.identity.engine_version
        || build.marker.python_version != ctx.identity.python_version;
    let refusal = if skew {
        Some(format!(
            "this worker has engine {} on {}, the build asks for {} on {}",
            ctx.identity.engine_version,
            ctx.identity.python_version,
            build.marker.engine_version,
            build.marker.python_version
        ))
    } else if package.is_none() {
        Some("the configuration changed since this build was requested; request a new build".into())
    } else {
        None
    };
    match (refusal, package) {
        (Some(error), _) => builder::refuse(ctx, &build, error).await?,
        (None, Some(package)) => {
            let sinks = Sinks::new(None, build_id);
            if let Err(e) =
                builder::build(ctx, &build, package, sinks, CancellationToken::new()).await
            {
                tracing::warn!(build.id = %build_id, error = %e, "build did not finish");
            }
        }
        (None, None) => unreachable!("a missing package is a refusal"),
    }
    Ok(true)
}

async fn claim_build(ctx: &Context, build_id: Uuid) -> bool {
    let claimed = async {
        let db = ctx.pool.get().await?;
        anyhow::Ok(lifecycle_builds::claim(&db, build_id, &ctx.claimant).await?)
    };
    claimed.await.unwrap_or_else(|e| {
        tracing::warn!(build.id = %build_id, error = %e, "could not claim the build");
        false
    })
}

/// The run's build record (re-resolved if it does not match this worker) and its package.
async fn plan(
    ctx: &Context,
    claim: &Claim,
    events: &EventSink,
) -> anyhow::Result<(BuildRow, Vec<u8>)> {
    let build_id = claim.build_id.context("the run has no build")?;
    let (build, package) = load(ctx, build_id).await?;
    let matches = build.marker.engine_version == ctx.identity.engine_version
        && build.marker.python_version == ctx.identity.python_version;
    if let (true, Some(package)) = (matches, package) {
        return Ok((build, package));
    }
    let resolved = rebind(ctx, claim).await?;
    if let Resolved::Created { id, created } = &resolved {
        let event = NewEvent::new(
            EventKind::BuildCreated,
            ade_common::events::Source::Worker,
            created.clone(),
        );
        events.emit(event.with_build(*id)).await;
    }
    let (build, package) = load(ctx, resolved.id()).await?;
    Ok((
        build,
        package.context("the configuration changed again; retry the run")?,
    ))
}

/// Resolves the build for what this worker installs and makes it the run's.
async fn rebind(ctx: &Context, claim: &Claim) -> anyhow::Result<Resolved> {
    let mut db = ctx.pool.get().await?;
    let tx = db.transaction().await?;
    let digest: String = tx
        .cached_query_one(
            "SELECT content_digest FROM configurations WHERE id = $1",
            &[&claim.configuration_id],
        )
        .await?
        .get(0);
    let target = Target {
        workspace_id: claim.workspace_id,
        configuration_id: claim.configuration_id,
        config_digest: digest,
    };
    let resolved = resolve(&tx, &target, &ctx.identity, false, true, Reason::Missing).await?;
    anyhow::ensure!(
        lifecycle::claim::rebind_build(&tx, claim, resolved.id()).await?,
        "the run is no longer ours"
    );
    tx.commit().await?;
    Ok(resolved)
}

/// Reads a build and, if the configuration still has the build's content, its package.
pub async fn load(ctx: &Context, build_id: Uuid) -> anyhow::Result<(BuildRow, Option<Vec<u8>>)> {
    let db = ctx.pool.get().await?;
    let row = db
        .cached_query_one(
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

async fn set_waiting(ctx: &Context, claim: &Claim) {
    claimed_status(ctx, claim, true).await;
}

async fn set_running(ctx: &Context, claim: &Claim) {
    claimed_status(ctx, claim, false).await;
}

/// Moves the claimed run between `waiting_for_build` and `running`; a
/// fenced-out claim is noticed by the lease keeper, so failures only log.
async fn claimed_status(ctx: &Context, claim: &Claim, waiting: bool) {
    let result = async {
        let db = ctx.pool.get().await?;
        anyhow::Ok(if waiting {
            lifecycle::claim::wait_for_build(&db, claim).await?
        } else {
            lifecycle::claim::start(&db, claim).await?
        })
    };
    if let Err(e) = result.await {
        tracing::warn!(run.id = %claim.run_id, error = %e, "could not update the run's status");
    }
}
