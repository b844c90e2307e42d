//! Build records: finding the build a configuration's content needs, or
//! creating it. Shared by the API (run and build creation) and the worker
//! (which re-resolves when its own engine differs from the record's).
//!
//! Builds are immutable and keyed by fingerprint within a configuration; a
//! partial unique index allows one build in progress per (configuration,
//! fingerprint), so concurrent requests converge on one record.

use crate::events::{NewEvent, Source, append_build_events};
use crate::identity::Identity;
use deadpool_postgres::GenericClient;
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
        /// `ready`, `queued` or `building`.
        status: String,
    },
    /// A new queued build (its `build.created` is already in its own stream).
    Created {
        /// The build.
        id: Uuid,
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
            Self::Existing { id, .. } | Self::Created { id } | Self::Failed { id, .. } => *id,
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
        .query_opt(
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
    let created = NewEvent::new(
        "build.created",
        Source::Api,
        serde_json::json!({"reason": reason.as_str(), "fingerprint": fingerprint}),
    );
    append_build_events(db, id, &[created]).await?;
    Ok(Resolved::Created { id })
}

/// The newest build to consider: ready first, then in progress, then failed.
async fn newest(
    db: &impl GenericClient,
    configuration_id: Uuid,
    fingerprint: &str,
) -> Result<Option<Resolved>, tokio_postgres::Error> {
    let row = db
        .query_opt(
            "SELECT id, status, coalesce(error_message, '') FROM builds
             WHERE configuration_id = $1 AND fingerprint = $2 AND status <> 'cancelled'
             ORDER BY CASE status WHEN 'ready' THEN 0 WHEN 'failed' THEN 2 ELSE 1 END, created_at DESC
             LIMIT 1",
            &[&configuration_id, &fingerprint],
        )
        .await?;
    Ok(row.map(|row| {
        let (id, status): (Uuid, String) = (row.get(0), row.get(1));
        if status == "failed" {
            Resolved::Failed {
                id,
                error: row.get(2),
            }
        } else {
            Resolved::Existing { id, status }
        }
    }))
}
