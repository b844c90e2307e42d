//! One run, from claim to terminal state.
//!
//! The claim is a compare-and-set (`queued → running`) that gives this worker
//! a lease; a duplicate or redelivered message finds nothing to claim. While
//! the run works, a task renews the lease every third of it; if renewal finds
//! the run no longer ours, the engine is stopped. The terminal state and
//! `run.completed` are written in one transaction, guarded by the same owner
//! and attempt, and only then is the message acknowledged (by the caller).

use crate::Context;
use crate::events::Stream;
use crate::stop::{Reason, Stop};
use ade_common::events::{NewEvent, Source, append_run_events};
use ade_common::runs::{Failure, RunOptions};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A run this worker owns.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The run.
    pub run_id: Uuid,
    /// Its workspace.
    pub workspace_id: Uuid,
    /// Its configuration.
    pub configuration_id: Uuid,
    /// The attempt this claim executes.
    pub attempt: i32,
    /// What the client asked for.
    pub options: RunOptions,
}

/// How a run ended, as written to the database.
#[derive(Debug, Clone)]
pub struct Completion {
    /// `succeeded`, `failed` or `cancelled`.
    pub status: &'static str,
    /// Process exit code (`null` when cancelled).
    pub exit_code: Option<i32>,
    /// Why it failed.
    pub failure: Option<Failure>,
    /// Output file names.
    pub outputs: Vec<String>,
    /// Counts gathered from the engine's events.
    pub summary: Value,
}

impl Completion {
    /// A cancelled run.
    pub fn cancelled() -> Self {
        Self {
            status: "cancelled",
            exit_code: None,
            failure: None,
            outputs: vec![],
            summary: json!({}),
        }
    }

    /// A failed run.
    pub fn failed(exit_code: i32, failure: Failure) -> Self {
        Self {
            status: "failed",
            exit_code: Some(exit_code),
            failure: Some(failure),
            outputs: vec![],
            summary: json!({}),
        }
    }
}

/// What happened to a job.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This worker ran it to a terminal state.
    Completed,
    /// Nothing to do: already claimed, finished, or unknown.
    NotClaimed,
    /// The run was handed back to the queue (shutdown); requeue the message.
    HandedBack,
    /// Another attempt owns the run now; nothing was written.
    Lost,
}

/// Claims and executes one run. Errors mean the database failed us; the
/// caller retries the message (the claim, if taken, is then covered by its lease).
pub async fn process_one(ctx: &Context, run_id: Uuid) -> anyhow::Result<Outcome> {
    let Some(claim) = claim(ctx, run_id).await? else {
        return Ok(Outcome::NotClaimed);
    };
    let span = tracing::info_span!("run", run.id = %run_id, worker.id = %ctx.worker_id, attempt = claim.attempt);
    tracing::info!(parent: &span, "claimed");
    let (stop, _registration) = ctx.running.register(run_id);
    let supervisor = tokio::spawn(supervise(ctx.clone(), claim.clone(), stop.clone()));
    let events = Arc::new(ctx.sink(Stream::Run(run_id)));
    // On its own task, so a panic becomes a failed run rather than a dead worker.
    let job = tokio::spawn({
        let (ctx, claim, events, token) =
            (ctx.clone(), claim.clone(), events.clone(), stop.token());
        async move { crate::engine::execute(&ctx, &claim, &events, token).await }
    });
    let mut completion = job.await.unwrap_or_else(|e| {
        tracing::error!(run.id = %run_id, error = %e, "the run's task failed");
        let message = format!("the worker failed unexpectedly: {e}");
        Completion::failed(2, Failure::new("worker", "worker_error", message))
    });
    if let Some(events) = Arc::into_inner(events) {
        events.finish().await;
    }
    supervisor.abort();
    let outcome = match stop.reason() {
        Some(Reason::LeaseLost) => Outcome::Lost,
        Some(Reason::HandBack) if !cancel_requested(ctx, run_id).await? => {
            hand_back(ctx, &claim).await?;
            Outcome::HandedBack
        }
        Some(Reason::HandBack) => {
            // Cancelled while draining: it ends here rather than in the queue.
            completion = Completion::cancelled();
            complete(ctx, &claim, &completion).await?;
            Outcome::Completed
        }
        Some(Reason::Cancelled) => {
            completion = Completion::cancelled();
            complete(ctx, &claim, &completion).await?;
            Outcome::Completed
        }
        None => {
            complete(ctx, &claim, &completion).await?;
            Outcome::Completed
        }
    };
    tracing::info!(parent: &span, status = completion.status, exit_code = ?completion.exit_code, ?outcome, "finished");
    Ok(outcome)
}

async fn claim(ctx: &Context, run_id: Uuid) -> anyhow::Result<Option<Claim>> {
    let db = ctx.pool.get().await?;
    let row = db
        .query_opt(
            "UPDATE runs SET worker_id = $2, started_at = now(),
                 lease_expires_at = now() + make_interval(secs => $3),
                 status = CASE WHEN (SELECT status FROM builds b WHERE b.id = runs.build_id) = 'ready'
                               THEN 'running' ELSE 'waiting_for_build' END
             WHERE id = $1 AND status = 'queued' AND cancel_requested_at IS NULL
             RETURNING workspace_id, configuration_id, attempt, options",
            &[&run_id, &ctx.worker_id, &ctx.lease.as_secs_f64()],
        )
        .await?;
    Ok(row.map(|row| Claim {
        run_id,
        workspace_id: row.get(0),
        configuration_id: row.get(1),
        attempt: row.get(2),
        options: serde_json::from_value(row.get(3)).unwrap_or_default(),
    }))
}

/// How often a running run looks for a cancel request in the database (the
/// control exchange is the fast path; this is the fallback).
const CANCEL_POLL: Duration = Duration::from_secs(1);

/// Beside a running run: renews its lease every third of it, and stops it
/// when it is cancelled or no longer ours.
async fn supervise(ctx: Context, claim: Claim, stop: Stop) {
    let renew_every = (ctx.lease / 3).max(CANCEL_POLL);
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(CANCEL_POLL).await;
        let renew = last_renewal.elapsed() >= renew_every;
        match check(&ctx, &claim, renew).await {
            Ok(Check::Ours) => {
                if renew {
                    last_renewal = tokio::time::Instant::now();
                }
            }
            Ok(Check::Cancelled) => {
                tracing::info!(run.id = %claim.run_id, "cancel requested; stopping the run");
                stop.stop(Reason::Cancelled);
            }
            Ok(Check::Lost) => {
                tracing::warn!(run.id = %claim.run_id, "lease lost; stopping the run");
                stop.stop(Reason::LeaseLost);
                return;
            }
            Err(e) => {
                tracing::warn!(run.id = %claim.run_id, error = %e, "lease check failed; retrying")
            }
        }
    }
}

enum Check {
    Ours,
    Cancelled,
    Lost,
}

/// Reads (and if `renew`, extends) the lease, and the cancel flag.
async fn check(ctx: &Context, claim: &Claim, renew: bool) -> anyhow::Result<Check> {
    let db = ctx.pool.get().await?;
    let row = db
        .query_opt(
            "UPDATE runs SET lease_expires_at = CASE WHEN $4 THEN now() + make_interval(secs => $5)
                                                     ELSE lease_expires_at END
             WHERE id = $1 AND worker_id = $2 AND attempt = $3
               AND status IN ('running', 'waiting_for_build')
             RETURNING cancel_requested_at IS NOT NULL",
            &[
                &claim.run_id,
                &ctx.worker_id,
                &claim.attempt,
                &renew,
                &ctx.lease.as_secs_f64(),
            ],
        )
        .await?;
    Ok(match row {
        None => Check::Lost,
        Some(row) if row.get::<_, bool>(0) => Check::Cancelled,
        Some(_) => Check::Ours,
    })
}

async fn cancel_requested(ctx: &Context, run_id: Uuid) -> anyhow::Result<bool> {
    let db = ctx.pool.get().await?;
    let row = db
        .query_one(
            "SELECT cancel_requested_at IS NOT NULL FROM runs WHERE id = $1",
            &[&run_id],
        )
        .await?;
    Ok(row.get(0))
}

/// Puts a run this worker could not finish back in the queue, same attempt.
async fn hand_back(ctx: &Context, claim: &Claim) -> anyhow::Result<()> {
    let mut db = ctx.pool.get().await?;
    let tx = db.transaction().await?;
    let n = tx
        .execute(
            "UPDATE runs SET status = 'queued', worker_id = NULL, lease_expires_at = NULL, started_at = NULL
             WHERE id = $1 AND worker_id = $2 AND attempt = $3 AND status IN ('running', 'waiting_for_build')",
            &[&claim.run_id, &ctx.worker_id, &claim.attempt],
        )
        .await?;
    if n == 1 {
        let payload = json!({"reason": format!("worker {} is shutting down", ctx.worker_id), "next_attempt": claim.attempt});
        let written = append_run_events(
            &tx,
            claim.run_id,
            &[NewEvent::new("run.retry", Source::Worker, payload)],
        )
        .await?;
        tx.commit().await?;
        ctx.events.publish(written);
    }
    Ok(())
}

/// Writes the terminal state and `run.completed` in one transaction.
/// Returns false when the run was no longer ours (nothing written).
async fn complete(ctx: &Context, claim: &Claim, c: &Completion) -> anyhow::Result<bool> {
    ade_common::db::retry_transient(crate::DB_PATIENCE, || try_complete(ctx, claim, c)).await
}

async fn try_complete(ctx: &Context, claim: &Claim, c: &Completion) -> anyhow::Result<bool> {
    let mut db = ctx.pool.get().await?;
    let tx = db.transaction().await?;
    let failure = c
        .failure
        .as_ref()
        .map(|f| serde_json::to_value(f).expect("a failure serializes"));
    let row = tx
        .query_opt(
            "UPDATE runs SET status = $2, exit_code = $3, failure = $4, completed_at = now(), lease_expires_at = NULL
             WHERE id = $1 AND status IN ('running', 'waiting_for_build') AND worker_id = $5 AND attempt = $6
             RETURNING started_at, completed_at",
            &[&claim.run_id, &c.status, &c.exit_code, &failure, &ctx.worker_id, &claim.attempt],
        )
        .await?;
    let Some(row) = row else { return Ok(false) };
    let (started, completed): (time::OffsetDateTime, time::OffsetDateTime) =
        (row.get(0), row.get(1));
    let payload = json!({
        "status": c.status,
        "exit_code": c.exit_code,
        "failure": failure,
        "execution": {
            "started_at": ade_common::time_fmt::format(started),
            "completed_at": ade_common::time_fmt::format(completed),
            "duration_ms": (completed - started).whole_milliseconds() as i64,
        },
        "artifacts": {"outputs": c.outputs},
        "summary": c.summary,
    });
    let completed = NewEvent::new("run.completed", Source::Worker, payload);
    let written = append_run_events(&tx, claim.run_id, &[completed]).await?;
    tx.commit().await?;
    ctx.events.publish(written);
    Ok(true)
}
