//! One run, from claim to terminal state.
//!
//! The claim (see [`ade_common::lifecycle::claim`]) gives this worker the
//! run's attempt under a fence; the lease keeper renews it while the run
//! works. Every write — events, status, outputs, the terminal state, the
//! hand-back — carries the claim and is refused once the run moved on.
//!
//! How an attempt ends is decided by [`decide`]: an engine that ended on its
//! own is completed with its own result, even if a stop arrived a moment
//! later; only an interrupted attempt is cancelled, handed back (drain) or
//! abandoned (lease lost).

use crate::Context;
use crate::engine::Execution;
use crate::stop::Reason;
use ade_common::db::retry_transient;
use ade_common::lifecycle::runs::{self, HandBack};
use ade_common::lifecycle::{Claim, Claimed, Completion};
use ade_common::runs::Failure;
use std::sync::Arc;
use tokio::time::Instant;
use uuid::Uuid;

/// What happened to a job.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This worker ran it to a terminal state.
    Completed,
    /// Nothing to do: already claimed, finished, or unknown.
    NotClaimed,
    /// Handed back to the queue (shutdown) and offered to the broker again.
    HandedBack,
    /// Another attempt owns the run now; nothing more was written.
    Lost,
}

/// What to do with an attempt that ended.
#[derive(Debug)]
pub enum Decision {
    /// Write this terminal state.
    Complete(Completion),
    /// Put the run back in the queue, same attempt.
    HandBack,
    /// Write nothing: the claim is (or may be) someone else's.
    Abandon,
}

/// Decides from how the attempt ended and why (if at all) it was stopped.
pub fn decide(execution: Execution, stop: Option<Reason>) -> Decision {
    match (execution, stop) {
        // The engine ended on its own: that result stands, whatever came after.
        (Execution::Finished(completion), _) => Decision::Complete(completion),
        (Execution::Interrupted, Some(Reason::Cancelled)) => {
            Decision::Complete(Completion::cancelled())
        }
        (Execution::Interrupted, Some(Reason::HandBack)) => Decision::HandBack,
        (Execution::Interrupted, Some(Reason::LeaseLost)) => Decision::Abandon,
        (Execution::Interrupted, None) => Decision::Complete(Completion::failed(
            None,
            Failure::new(
                "worker",
                "worker_error",
                "the run was interrupted without a reason",
            ),
        )),
    }
}

/// Claims and executes one run. Errors mean the database failed us; the
/// caller retries the message (the claim, if taken, is then covered by its lease).
pub async fn process_one(ctx: &Context, run_id: Uuid) -> anyhow::Result<Outcome> {
    let claimed_at = Instant::now();
    let claim = match claim(ctx, run_id).await? {
        Claimed::Run(claim) => {
            ctx.metrics
                .queue_wait
                .observe(claim.queue_wait.as_secs_f64());
            claim
        }
        Claimed::Cancelled(events) => {
            ctx.events.publish(events);
            return Ok(Outcome::NotClaimed);
        }
        Claimed::Nothing => return Ok(Outcome::NotClaimed),
    };
    let span = tracing::info_span!("run", run.id = %run_id, worker.id = %ctx.claimant.worker_id, attempt = claim.attempt);
    tracing::debug!(parent: &span, "claimed");
    let (stop, registration) = ctx.running.register((run_id, claim.attempt), claimed_at);
    let events = Arc::new(ctx.sink(claim.origin(), claim.fence()));
    // A write refused by the fence means the claim is gone: stop at once.
    let fenced = tokio::spawn({
        let (fenced, stop) = (events.fenced(), stop.clone());
        async move {
            fenced.cancelled().await;
            stop.stop(Reason::LeaseLost);
        }
    });
    // On its own task, so a panic becomes a failed run rather than a dead worker.
    let job = tokio::spawn({
        let (ctx, claim, events, token) =
            (ctx.clone(), claim.clone(), events.clone(), stop.token());
        async move { crate::engine::execute(&ctx, &claim, &events, token).await }
    });
    let execution = job.await.unwrap_or_else(|e| {
        tracing::error!(parent: &span, error = %e, "the run's task failed");
        let message = format!("the worker failed unexpectedly: {e}");
        let failure = Failure::new("worker", "worker_error", message);
        Execution::Finished(Completion::failed(None, failure))
    });
    if let Some(events) = Arc::into_inner(events) {
        events.finish().await;
    }
    fenced.abort();
    drop(registration);
    let decision = decide(execution, stop.reason());
    let outcome = settle(ctx, &claim, decision).await?;
    tracing::info!(parent: &span, ?outcome, "finished");
    Ok(outcome)
}

async fn claim(ctx: &Context, run_id: Uuid) -> anyhow::Result<Claimed> {
    let mut db = ctx.pool.get().await?;
    Ok(ade_common::lifecycle::claim::claim(&mut db, run_id, &ctx.claimant, ctx.lease).await?)
}

async fn settle(ctx: &Context, claim: &Claim, decision: Decision) -> anyhow::Result<Outcome> {
    match decision {
        Decision::Complete(completion) => complete(ctx, claim, &completion).await,
        Decision::HandBack => hand_back(ctx, claim).await,
        Decision::Abandon => Ok(Outcome::Lost),
    }
}

/// Writes the terminal state (waiting out a database outage for a while).
async fn complete(ctx: &Context, claim: &Claim, c: &Completion) -> anyhow::Result<Outcome> {
    let written = retry_transient(crate::DB_PATIENCE, || async {
        let mut db = ctx.pool.get().await?;
        Ok(runs::complete(&mut db, claim, &[], c).await?)
    })
    .await?;
    Ok(match written {
        Some(events) => {
            ctx.events.publish(events);
            Outcome::Completed
        }
        None => Outcome::Lost,
    })
}

/// Puts the run back in the queue and offers it to the broker again itself
/// (the delivery's channel may be long gone after a reconnect).
async fn hand_back(ctx: &Context, claim: &Claim) -> anyhow::Result<Outcome> {
    let reason = format!("worker {} is shutting down", ctx.claimant.worker_id);
    let handed = retry_transient(crate::DB_PATIENCE, || async {
        let mut db = ctx.pool.get().await?;
        Ok(runs::hand_back(&mut db, claim, &reason).await?)
    })
    .await?;
    Ok(match handed {
        HandBack::Queued(events, job) => {
            ctx.events.publish(events);
            ctx.dispatcher.offer(job);
            Outcome::HandedBack
        }
        HandBack::Cancelled(events) => {
            ctx.events.publish(events);
            Outcome::Completed
        }
        HandBack::Lost => Outcome::Lost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ade_common::status::RunStatus;

    fn succeeded() -> Execution {
        let mut c = Completion::cancelled();
        c.status = RunStatus::Succeeded;
        c.exit_code = Some(0);
        Execution::Finished(c)
    }

    #[test]
    fn an_engine_that_ended_on_its_own_keeps_its_result_whatever_stop_came_after() {
        for reason in [
            None,
            Some(Reason::Cancelled),
            Some(Reason::HandBack),
            Some(Reason::LeaseLost),
        ] {
            match decide(succeeded(), reason) {
                Decision::Complete(c) => assert_eq!(c.status, RunStatus::Succeeded, "{reason:?}"),
                other => panic!("{reason:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn only_an_interrupted_attempt_is_cancelled_handed_back_or_abandoned() {
        assert!(matches!(
            decide(Execution::Interrupted, Some(Reason::Cancelled)),
            Decision::Complete(c) if c.status == RunStatus::Cancelled
        ));
        assert!(matches!(
            decide(Execution::Interrupted, Some(Reason::HandBack)),
            Decision::HandBack
        ));
        assert!(matches!(
            decide(Execution::Interrupted, Some(Reason::LeaseLost)),
            Decision::Abandon
        ));
    }
}
