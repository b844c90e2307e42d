//! `ade workers` and `ade queue`: the fleet as operators see it (admin key).

use crate::output::{self, Table};
use crate::{Ctx, Exit};

/// Lists live workers.
pub async fn workers(ctx: &Ctx) -> anyhow::Result<Exit> {
    let reply = ctx.client.get("/api/v1/workers").await?;
    if ctx.json {
        output::raw(&reply);
        return Ok(Exit::Ok);
    }
    let mut table = Table::new(&[
        "ID",
        "HOST",
        "SLOTS",
        "IN FLIGHT",
        "VENV CACHE",
        "STARTED",
        "HEARTBEAT",
    ]);
    for w in reply.value["items"].as_array().into_iter().flatten() {
        table.row(vec![
            output::cell(&w["id"]),
            output::cell(&w["host"]),
            output::cell(&w["concurrency"]),
            output::cell(&w["in_flight"]),
            output::bytes(w["venv_cache_bytes"].as_u64().unwrap_or(0)),
            output::time(&w["started_at"]),
            output::time(&w["last_heartbeat_at"]),
        ]);
    }
    table.print("no live workers (none has sent a heartbeat in the last 30 s)");
    Ok(Exit::Ok)
}

/// Shows the queue depth.
pub async fn queue(ctx: &Ctx) -> anyhow::Result<Exit> {
    let reply = ctx.client.get("/api/v1/queue").await?;
    if ctx.json {
        output::raw(&reply);
        return Ok(Exit::Ok);
    }
    let q = &reply.value;
    let oldest = q["oldest_queued_run_age_seconds"]
        .as_f64()
        .map_or("-".into(), |s| output::duration_ms((s * 1000.0) as i64));
    output::fields(&[
        ("queued runs", output::cell(&q["queued_runs"])),
        (
            "waiting for build",
            output::cell(&q["waiting_for_build_runs"]),
        ),
        ("running runs", output::cell(&q["running_runs"])),
        ("queued builds", output::cell(&q["queued_builds"])),
        ("building", output::cell(&q["building_builds"])),
        ("oldest queued run", oldest),
    ]);
    Ok(Exit::Ok)
}
