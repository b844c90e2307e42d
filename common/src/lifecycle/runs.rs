//! A run's transitions after its claim, and the ones nobody claims: create,
//! complete, hand back, cancel, ending a run that no worker runs, and
//! deleting ended runs (one by one, or by retention).
//!
//! Each is one guarded statement plus its event, in one transaction.
//! Terminal states are written once: every statement that ends a run
//! requires a non-terminal status.

use super::claim::Claim;
use super::fence::Fence;
use super::queue::Job;
use crate::db::Cached as _;
use crate::events::{Envelope, EventKind, NewEvent, Origin, Source, StreamRef, append};
use crate::runs::{Failure, OutputFile};
use crate::status::RunStatus;
use deadpool_postgres::{GenericClient, Transaction};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

/// How a run ended, as written to the database and to `run.completed`.
#[derive(Debug, Clone)]
pub struct Completion {
    /// `succeeded`, `failed` or `cancelled`.
    pub status: RunStatus,
    /// The engine's exit code (`null` when there is none).
    pub exit_code: Option<i32>,
    /// Why it failed.
    pub failure: Option<Failure>,
    /// The regular files of the completing attempt's output folder.
    pub outputs: Vec<OutputFile>,
    /// Totals gathered from the engine's events.
    pub summary: Value,
}

impl Completion {
    /// A cancelled run.
    pub fn cancelled() -> Self {
        Self {
            status: RunStatus::Cancelled,
            exit_code: None,
            failure: None,
            outputs: vec![],
            summary: json!({}),
        }
    }

    /// A failed run.
    pub fn failed(exit_code: Option<i32>, failure: Failure) -> Self {
        Self {
            status: RunStatus::Failed,
            exit_code,
            failure: Some(failure),
            outputs: vec![],
            summary: json!({}),
        }
    }

    /// The `run.completed` payload: the one place it is built.
    pub fn payload(
        &self,
        started_at: Option<OffsetDateTime>,
        completed_at: OffsetDateTime,
    ) -> Value {
        let started = started_at.unwrap_or(completed_at);
        let outputs: Vec<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
        json!({
            "status": self.status,
            "exit_code": self.exit_code,
            "failure": self.failure,
            "execution": {
                "started_at": started_at.map(crate::time_fmt::format),
                "completed_at": crate::time_fmt::format(completed_at),
                "duration_ms": (completed_at - started).whole_milliseconds() as i64,
            },
            "artifacts": {"outputs": outputs},
            "summary": self.summary,
        })
    }

    fn failure_json(&self) -> Option<Value> {
        self.failure.as_ref().map(|f| {
            let mut value = serde_json::to_value(f).expect("a failure serializes");
            crate::events::sanitize(&mut value);
            value
        })
    }
}

/// A run to create.
pub struct NewRun<'a> {
    /// Its id.
    pub id: Uuid,
    /// Its workspace.
    pub workspace_id: Uuid,
    /// Its configuration.
    pub configuration_id: Uuid,
    /// The build it will use.
    pub build_id: Uuid,
    /// Its options, as JSON.
    pub options: &'a Value,
    /// The client's `Idempotency-Key`.
    pub idempotency_key: Option<&'a str>,
    /// Digest of the request, to tell a reused key apart.
    pub request_digest: &'a str,
}

/// Inserts a queued run with its first events (`run.queued`, …); returns
/// the row with `returning` columns and the events written.
pub async fn create(
    tx: &Transaction<'_>,
    run: &NewRun<'_>,
    events: &[NewEvent],
    returning: &str,
) -> Result<(tokio_postgres::Row, Vec<Envelope>), tokio_postgres::Error> {
    let row = tx
        .cached_query_one(
            &format!(
                "INSERT INTO runs (id, workspace_id, configuration_id, build_id, status, options,
                                   idempotency_key, request_digest)
                 VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7) RETURNING {returning}"
            ),
            &[
                &run.id,
                &run.workspace_id,
                &run.configuration_id,
                &run.build_id,
                run.options,
                &run.idempotency_key,
                &run.request_digest,
            ],
        )
        .await?;
    let origin = Origin {
        stream: StreamRef::Run(run.id),
        workspace_id: run.workspace_id,
        configuration_id: run.configuration_id,
        build_id: Some(run.build_id),
        attempt: Some(1),
    };
    let written = append(tx, &origin, &Fence::Unfenced, events).await?;
    Ok((row, written.written()))
}

/// Writes the terminal state, the claim's last events (`tail`) and
/// `run.completed` in one transaction. `None` when the claim no longer
/// holds: nothing was written.
pub async fn complete(
    db: &mut deadpool_postgres::Object,
    claim: &Claim,
    tail: &[NewEvent],
    c: &Completion,
) -> Result<Option<Vec<Envelope>>, tokio_postgres::Error> {
    debug_assert!(c.status.is_terminal());
    let tx = db.transaction().await?;
    let outputs = serde_json::to_value(&c.outputs).expect("outputs serialize");
    let row = tx
        .cached_query_opt(
            "UPDATE runs SET status = $2, exit_code = $3, failure = $4, completed_at = now(),
                             lease_expires_at = NULL, output_attempt = $5, outputs = $6
             WHERE id = $1 AND worker_incarnation = $7 AND attempt = $5
               AND status IN ('running', 'waiting_for_build')
             RETURNING started_at, completed_at",
            &[
                &claim.run_id,
                &c.status.as_str(),
                &c.exit_code,
                &c.failure_json(),
                &claim.attempt,
                &outputs,
                &claim.incarnation,
            ],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let completed = NewEvent::new(
        EventKind::RunCompleted,
        Source::Worker,
        c.payload(row.get(0), row.get(1)),
    );
    let mut events = tail.to_vec();
    events.push(completed);
    // The claim was checked by the UPDATE above, which holds the row lock.
    let written = append(&tx, &claim.origin(), &Fence::Unfenced, &events).await?;
    tx.commit().await?;
    Ok(Some(written.written()))
}

/// What a hand-back did.
#[derive(Debug)]
pub enum HandBack {
    /// Back in the queue with the same attempt (offer this job again).
    Queued(Vec<Envelope>, Job),
    /// A cancel was pending: the run ended `cancelled` instead.
    Cancelled(Vec<Envelope>),
    /// The claim no longer held; nothing was written.
    Lost,
}

/// Puts an interrupted run back in the queue, same attempt, undispatched
/// (its worker publishes it again). A run whose cancel is pending ends
/// `cancelled` instead: a queued run with a pending cancel is never left behind.
pub async fn hand_back(
    db: &mut deadpool_postgres::Object,
    claim: &Claim,
    reason: &str,
) -> Result<HandBack, tokio_postgres::Error> {
    let tx = db.transaction().await?;
    let row = tx
        .cached_query_opt(
            "UPDATE runs SET status = 'queued', worker_id = NULL, worker_incarnation = NULL,
                             lease_expires_at = NULL, started_at = NULL, dispatched_at = NULL,
                             dispatch_epoch = dispatch_epoch + 1
             WHERE id = $1 AND worker_incarnation = $2 AND attempt = $3
               AND status IN ('running', 'waiting_for_build') AND cancel_requested_at IS NULL
             RETURNING dispatch_epoch",
            &[&claim.run_id, &claim.incarnation, &claim.attempt],
        )
        .await?;
    let Some(row) = row else {
        drop(tx);
        return Ok(
            match complete(db, claim, &[], &Completion::cancelled()).await? {
                Some(events) => HandBack::Cancelled(events),
                None => HandBack::Lost,
            },
        );
    };
    let job = Job {
        stream: StreamRef::Run(claim.run_id),
        epoch: row.get(0),
    };
    let retry = NewEvent::new(
        EventKind::RunRetry,
        Source::Worker,
        json!({"reason": reason, "next_attempt": claim.attempt}),
    );
    let written = append(&tx, &claim.origin(), &Fence::Unfenced, &[retry]).await?;
    tx.commit().await?;
    Ok(HandBack::Queued(written.written(), job))
}

/// What a cancel request did.
#[derive(Debug)]
pub enum Cancel {
    /// No such run.
    NotFound,
    /// The run had already ended.
    AlreadyTerminal(RunStatus),
    /// It was queued: it is `cancelled` now (publish these).
    Cancelled(Vec<Envelope>),
    /// It is claimed: its worker will stop it (tell the workers).
    Requested,
}

/// A client's cancel: ends a queued run at once, flags a claimed one.
pub async fn cancel(
    db: &mut deadpool_postgres::Object,
    run_id: Uuid,
) -> Result<Cancel, tokio_postgres::Error> {
    let tx = db.transaction().await?;
    let Some(row) = tx
        .cached_query_opt(
            "SELECT status FROM runs WHERE id = $1 FOR UPDATE",
            &[&run_id],
        )
        .await?
    else {
        return Ok(Cancel::NotFound);
    };
    let status: RunStatus = row.get(0);
    let outcome = match status {
        s if s.is_terminal() => return Ok(Cancel::AlreadyTerminal(s)),
        RunStatus::Queued => {
            let cancelled = Completion::cancelled();
            let events = end_unclaimed(&tx, run_id, "status = 'queued'", &cancelled, Source::Api)
                .await?
                .expect("the locked queued run can be ended");
            Cancel::Cancelled(events)
        }
        _ => {
            tx.cached_execute(
                "UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, now()) WHERE id = $1",
                &[&run_id],
            )
            .await?;
            Cancel::Requested
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Ends a run that no live claim holds (a queued run, or one whose worker
/// was lost) if `condition` holds; returns its `run.completed`.
pub(super) async fn end_unclaimed(
    tx: &Transaction<'_>,
    run_id: Uuid,
    condition: &str,
    c: &Completion,
    source: Source,
) -> Result<Option<Vec<Envelope>>, tokio_postgres::Error> {
    let sql = format!(
        "UPDATE runs SET status = $2, exit_code = $3, failure = $4, completed_at = now(),
                         lease_expires_at = NULL, cancel_requested_at = CASE WHEN $2 = 'cancelled'
                             THEN coalesce(cancel_requested_at, now()) ELSE cancel_requested_at END
         WHERE id = $1 AND {condition}
         RETURNING started_at, completed_at, workspace_id, configuration_id, build_id, attempt"
    );
    let row = tx
        .cached_query_opt(
            sql.as_str(),
            &[&run_id, &c.status.as_str(), &c.exit_code, &c.failure_json()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let origin = Origin {
        stream: StreamRef::Run(run_id),
        workspace_id: row.get(2),
        configuration_id: row.get(3),
        build_id: row.get(4),
        attempt: Some(row.get(5)),
    };
    let completed = NewEvent::new(
        EventKind::RunCompleted,
        source,
        c.payload(row.get(0), row.get(1)),
    );
    let written = append(tx, &origin, &Fence::Unfenced, &[completed]).await?;
    Ok(Some(written.written()))
}

/// What a delete did.
#[derive(Debug)]
pub enum Deleted {
    /// The run and its events are gone (its files are the caller's to remove).
    Deleted,
    /// The run is not terminal yet; nothing was deleted.
    Open(RunStatus),
    /// No such run.
    Missing,
}

/// Deletes a terminal run and its events, in one transaction.
pub async fn delete(
    db: &mut deadpool_postgres::Object,
    run_id: Uuid,
) -> Result<Deleted, tokio_postgres::Error> {
    let tx = db.transaction().await?;
    let Some(row) = tx
        .cached_query_opt(
            "SELECT status FROM runs WHERE id = $1 FOR UPDATE",
            &[&run_id],
        )
        .await?
    else {
        return Ok(Deleted::Missing);
    };
    let status: RunStatus = row.get(0);
    if !status.is_terminal() {
        return Ok(Deleted::Open(status));
    }
    delete_rows(&tx, &[run_id]).await?;
    tx.commit().await?;
    Ok(Deleted::Deleted)
}

/// Deletes up to `limit` terminal runs that finished more than `days` days
/// ago, with their events, in one short transaction; returns their ids
/// (their files are the caller's to remove, after this commit). Rows
/// another process holds are skipped (`SKIP LOCKED`), so several
/// collectors never wait on each other or on a run being read for update.
pub async fn delete_expired(
    db: &mut deadpool_postgres::Object,
    days: u32,
    limit: i64,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let tx = db.transaction().await?;
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let ids: Vec<Uuid> = tx
        .cached_query(
            "SELECT id FROM runs
             WHERE status IN ('succeeded', 'failed', 'cancelled')
               AND completed_at < now() - make_interval(days => $1)
             ORDER BY completed_at LIMIT $2
             FOR UPDATE SKIP LOCKED",
            &[&days, &limit],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    delete_rows(&tx, &ids).await?;
    tx.commit().await?;
    Ok(ids)
}

/// Deletes locked terminal runs and their events.
async fn delete_rows(tx: &Transaction<'_>, ids: &[Uuid]) -> Result<(), tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.cached_execute("DELETE FROM run_events WHERE run_id = ANY($1)", &[&ids])
        .await?;
    tx.cached_execute("DELETE FROM runs WHERE id = ANY($1)", &[&ids])
        .await?;
    Ok(())
}
