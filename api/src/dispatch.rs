//! The API's share of dispatch: the redispatcher and the reaper.
//!
//! Accepted runs are offered to RabbitMQ through the
//! [`ade_common::dispatch::Dispatcher`] after their transaction commits; no
//! request waits for the broker. Every few seconds this loop reaps runs
//! whose worker was lost and offers again the queued jobs no broker
//! confirmed (broker down, crash between commit and publish).

use crate::state::AppState;
use ade_common::dispatch::{GRACE, redispatch};
use tokio_util::sync::CancellationToken;

/// Reaps and redispatches every [`GRACE`] until `stop`.
pub async fn redispatch_loop(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(GRACE);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match ade_common::lifecycle::reaper::reap(&state.pool, state.settings.common.max_attempts)
            .await
        {
            Ok(reaped) => {
                state.metrics.reaped_leases.inc_by(reaped.leases as u64);
                state.events.publish(reaped.events);
                for job in reaped.requeued {
                    state.dispatcher.offer(job);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reaping failed"),
        }
        match redispatch(&state.pool, &state.dispatcher).await {
            Ok(offered) => {
                state.metrics.redispatches.inc_by(offered as u64);
            }
            Err(e) => tracing::warn!(error = %e, "redispatch scan failed"),
        }
    }
}
