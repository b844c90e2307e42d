//! A build's transitions: create (or find), claim, release, finish.
//!
//! Builds are immutable and keyed by fingerprint within a configuration; a
//! partial unique index allows one build in progress per (configuration,
//! fingerprint), so concurrent requests converge on one record. One worker
//! incarnation claims a queued build and is its builder: only it writes the
//! build's own stream and its outcome. A builder that is stopped (cancel,
//! drain, lost lease) or fails for a reason of its own host releases the
//! build back to `queued` for someone else; only a real build failure
//! (a step that failed, the build timeout) marks it `failed`.

use super::fence::{Claimant, Fence};
use crate::db::Cached as _;
use crate::events::{Envelope, EventKind, NewEvent, Origin, Source, StreamRef, append};
use crate::identity::Identity;
use crate::status::BuildStatus;
use deadpool_postgres::{GenericClient, Transaction};
use serde_json::{Value, json};
use uuid::Uuid;

/// Why a build record was created (the `build.created` reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A run asked for `force_rebuild`.
    ForceRebuild,
    /// No usable build existed for the content.
    Missing,
    /// A host lacked the venv of a ready build.
    Hydration,
    /// Requested through the builds endpoint.
    OnDemand,
}

impl Reason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ForceRebuild => "force_rebuild",
            Self::Missing => "missing",
            Self::Hydration => "hydration",
            Self::OnDemand => "on_demand",
        }
    }
}

/// What a build is for: one configuration's content under one engine and Python.
#[derive(Debug, Clone)]
pub struct Target {
    /// The configuration's workspace.
    pub workspace_id: Uuid,
    /// The configuration.
    pub configuration_id: Uuid,
    /// Its content digest.
    pub config_digest: String,
}

/// The outcome of [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A ready or in-progress build to use.
    Existing {
        /// The build.
        id: Uuid,
        /// Ready, queued or building.
        status: BuildStatus,
    },
    /// A new queued build (its `build.created` is already in its own stream).
    Created {
        /// The build.
        id: Uuid,
        /// Its `build.created` payload.
        created: Value,
    },
    /// The newest build of this content failed and nothing usable exists.
    Failed {
        /// The failed build.
        id: Uuid,
        /// Its error.
        error: String,
    },
}

impl Resolved {
    /// The build id, whatever the outcome.
    pub fn id(&self) -> Uuid {
        match self {
            Self::Existing { id, .. } | Self::Created { id, .. } | Self::Failed { id, .. } => *id,
        }
    }
}

/// Finds a usable build of `target` (unless `force`), reports a failed one
/// (unless `create_after_failure`), or creates a queued one. Call in a transaction.
pub async fn resolve(
    db: &impl GenericClient,
    target: &Target,
    identity: &Identity,
    force: bool,
    create_after_failure: bool,
    reason: Reason,
) -> Result<Resolved, tokio_postgres::Error> {
    let fingerprint = identity.fingerprint(&target.config_digest);
    if !force && let Some(found) = newest(db, target.configuration_id, &fingerprint).await? {
        match found {
            Resolved::Failed { .. } if create_after_failure => {}
            found => return Ok(found),
        }
    }
    let id = crate::ids::new_id();
    let inserted = db
        .cached_query_opt(
            "INSERT INTO builds (id, workspace_id, configuration_id, status, reason, fingerprint,
                                 config_digest, engine_version, python_version)
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8)
             ON CONFLICT (configuration_id, fingerprint) WHERE status IN ('queued', 'building') DO NOTHING
             RETURNING id",
            &[&id, &target.workspace_id, &target.configuration_id, &reason.as_str(), &fingerprint,
              &target.config_digest, &identity.engine_version, &identity.python_version],
        )
        .await?;
    if inserted.is_none() {
        // Someone else's build of the same content is in progress: share it.
        let found = newest(db, target.configuration_id, &fingerprint).await?;
        return Ok(found.expect("the conflicting build exists in this snapshot or a later one"));
    }
    let created = json!({"reason": reason.as_str(), "fingerprint": fingerprint});
    let origin = Origin {
        stream: StreamRef::Build(id),
        workspace_id: target.workspace_id,
        configuration_id: target.configuration_id,
        build_id: Some(id),
        attempt: None,
    };
    let event = NewEvent::new(EventKind::BuildCreated, Source::Api, created.clone());
    append(db, &origin, &Fence::Unfenced, &[event]).await?;
    Ok(Resolved::Created { id, created })
}

/// The newest build to consider: ready first, then in progress, then failed.
async fn newest(
    db: &impl GenericClient,
    configuration_id: Uuid,
    fingerprint: &str,
) -> Result<Option<Resolved>, tokio_postgres::Error> {
    let row = db
        .cached_query_opt(
            "SELECT id, status, coalesce(error_message, '') FROM builds
             WHERE configuration_id = $1 AND fingerprint = $2 AND status <> 'cancelled'
             ORDER BY CASE status WHEN 'ready' THEN 0 WHEN 'failed' THEN 2 ELSE 1 END, created_at DESC
             LIMIT 1",
            &[&configuration_id, &fingerprint],
        )
        .await?;
    Ok(row.map(|row| {
        let (id, status): (Uuid, BuildStatus) = (row.get(0), row.get(1));
        match status {
            BuildStatus::Failed => Resolved::Failed {
                id,
                error: row.get(2),
            },
            status => Resolved::Existing { id, status },
        }
    }))
}

/// `queued → building` with `claimant` as the builder; false if not queued.
pub async fn claim(
    db: &impl GenericClient,
    build_id: Uuid,
    claimant: &Claimant,
) -> Result<bool, tokio_postgres::Error> {
    let n = db
        .cached_execute(
            "UPDATE builds SET status = 'building', builder_id = $2, builder_incarnation = $3,
                               started_at = now()
             WHERE id = $1 AND status = 'queued'",
            &[&build_id, &claimant.worker_id, &claimant.incarnation],
        )
        .await?;
    Ok(n == 1)
}

/// `building → queued`: the builder stops without a verdict (it was stopped,
/// or its host failed); another worker will build it.
pub async fn release(
    db: &impl GenericClient,
    build_id: Uuid,
    incarnation: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let n = db
        .cached_execute(
            "UPDATE builds SET status = 'queued', builder_id = NULL, builder_incarnation = NULL,
                               started_at = NULL, dispatched_at = NULL, dispatch_epoch = dispatch_epoch + 1
             WHERE id = $1 AND builder_incarnation = $2 AND status = 'building'",
            &[&build_id, &incarnation],
        )
        .await?;
    Ok(n == 1)
}

/// A builder's verdict.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The venv was made; these are its exact packages.
    Ready {
        /// `uv pip freeze` of the venv.
        packages: Vec<String>,
    },
    /// The build itself failed.
    Failed {
        /// Why.
        error: String,
    },
}

/// `building → ready | failed`, with `build.completed` in the build's own
/// stream, in one transaction; a ready build becomes its configuration's
/// active build if the content is still current. `None` when this
/// incarnation is no longer the builder.
pub async fn finish(
    db: &mut deadpool_postgres::Object,
    origin: &Origin,
    incarnation: Uuid,
    verdict: &Verdict,
    duration_ms: u64,
) -> Result<Option<Vec<Envelope>>, tokio_postgres::Error> {
    let build_id = origin.stream.id();
    let tx = db.transaction().await?;
    let (status, packages, error) = match verdict {
        Verdict::Ready { packages } => ("ready", Some(json!(packages)), None),
        Verdict::Failed { error } => {
            let mut error: String = error.chars().take(4000).collect();
            crate::events::sanitize_text(&mut error);
            ("failed", None, Some(error))
        }
    };
    let n = tx
        .cached_execute(
            "UPDATE builds SET status = $3, packages = $4, error_message = $5,
                               exit_code = CASE WHEN $3 = 'ready' THEN 0 ELSE 1 END, completed_at = now()
             WHERE id = $1 AND builder_incarnation = $2 AND status = 'building'",
            &[&build_id, &incarnation, &status, &packages, &error],
        )
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if status == "ready" {
        activate(&tx, build_id).await?;
    }
    let payload = completed_payload(verdict, duration_ms);
    let event = NewEvent::new(EventKind::BuildCompleted, Source::Worker, payload);
    let written = append(&tx, origin, &Fence::Unfenced, &[event]).await?;
    tx.commit().await?;
    Ok(Some(written.written()))
}

/// The `build.completed` payload: the one place it is built.
pub fn completed_payload(verdict: &Verdict, duration_ms: u64) -> Value {
    let (status, exit_code, error) = match verdict {
        Verdict::Ready { .. } => ("ready", 0, None),
        Verdict::Failed { error } => ("failed", 1, Some(error.as_str())),
    };
    json!({"status": status, "exit_code": exit_code, "duration_ms": duration_ms, "error": error})
}

async fn activate(tx: &Transaction<'_>, build_id: Uuid) -> Result<(), tokio_postgres::Error> {
    tx.cached_execute(
        "UPDATE configurations c SET active_build_id = b.id
         FROM builds b WHERE b.id = $1 AND c.id = b.configuration_id AND c.content_digest = b.config_digest",
        &[&build_id],
    )
    .await?;
    Ok(())
}

/// The status of a build, if it exists.
pub async fn status(
    db: &impl GenericClient,
    build_id: Uuid,
) -> Result<Option<(BuildStatus, Option<String>)>, tokio_postgres::Error> {
    let row = db
        .cached_query_opt(
            "SELECT status, error_message FROM builds WHERE id = $1",
            &[&build_id],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}
