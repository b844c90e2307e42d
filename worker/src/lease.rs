//! The lease keeper: one task per worker that keeps the leases of every run
//! in flight, notices cancels, and fences the worker itself.
//!
//! Every third of the lease it renews all held attempts in one statement;
//! every second in between it reads (without locking) which runs it still
//! holds and which have a cancel pending — the fallback for a lost control
//! message. An attempt that is no longer held is stopped as `LeaseLost`.
//! Self-fencing: an attempt whose lease was last set a whole lease period
//! ago (the worker was frozen, or PostgreSQL unreachable) is stopped before
//! anyone else may claim it; its writes would be refused anyway.

use crate::Context;
use crate::stop::{Key, Reason};
use ade_common::lifecycle::lease::{self, Held};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the keeper looks at the held runs.
pub const TICK: Duration = Duration::from_secs(1);

/// Keeps leases until `done` fires (after the worker has drained).
pub async fn keep_loop(ctx: Context, done: CancellationToken) {
    let mut last_renewal = Instant::now();
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        self_fence(&ctx);
        let held: Vec<Key> = ctx.running.held().into_iter().map(|(k, _)| k).collect();
        if held.is_empty() {
            continue;
        }
        let renew = last_renewal.elapsed() >= ctx.lease / 3;
        let sent = Instant::now();
        match check(&ctx, &held, renew).await {
            Ok(found) => {
                if renew {
                    last_renewal = sent;
                    let kept: Vec<Key> = found.iter().map(|h| (h.run_id, h.attempt)).collect();
                    ctx.running.renewed(&kept, sent);
                }
                react(&ctx, &held, &found);
            }
            Err(e) => tracing::warn!(error = %e, "lease check failed; retrying"),
        }
    }
}

/// Stops the attempts whose lease may have expired by now.
fn self_fence(ctx: &Context) {
    for (key, renewed) in ctx.running.held() {
        if renewed.elapsed() >= ctx.lease && ctx.running.stop_attempt(key, Reason::LeaseLost) {
            tracing::warn!(run.id = %key.0, attempt = key.1, "lease not renewed for a whole lease period; stopped the run");
        }
    }
}

async fn check(ctx: &Context, held: &[Key], renew: bool) -> anyhow::Result<Vec<Held>> {
    let db = ctx.pool.get().await?;
    let incarnation = ctx.claimant.incarnation;
    Ok(if renew {
        lease::renew(&db, incarnation, held, ctx.lease).await?
    } else {
        lease::poll(&db, incarnation).await?
    })
}

/// Stops what moved on or was cancelled.
fn react(ctx: &Context, held: &[Key], found: &[Held]) {
    for key in held {
        match found.iter().find(|h| (h.run_id, h.attempt) == *key) {
            // Missing: it moved on, or it ended while the check was under way
            // (its registration is dropped before its completing transaction,
            // so then it is no longer here and nothing is stopped or reported).
            None => {
                if ctx.running.stop_attempt(*key, Reason::LeaseLost) {
                    tracing::warn!(run.id = %key.0, attempt = key.1, "the run is no longer ours; stopped it");
                }
            }
            Some(h) if h.cancel_requested => {
                tracing::info!(run.id = %key.0, "cancel requested; stopping the run");
                ctx.running.stop_attempt(*key, Reason::Cancelled);
            }
            Some(_) => {}
        }
    }
}
