//! `ade smoke`: the runbook's post-deploy checks as one command.
//!
//! Each step prints ✓ (passed), ! (passed with a warning) or ✗ (failed)
//! with its time; the first failure ends the check with exit code 1. The
//! steps: health probes ([`health`]); every route group mounted
//! ([`routes`]); live workers; a workspace, template configuration and
//! tiny CSV named `ade-smoke` ([`setup`]); a dry run followed live to
//! `run.completed`, then the run, its events and its log file read back
//! through the API ([`dry_run`]).

mod dry_run;
mod health;
mod report;
mod routes;
mod setup;

use crate::args::SmokeArgs;
use crate::{Ctx, Exit};
use report::Report;

/// The name of the workspace, configuration and document the check uses.
pub const NAME: &str = "ade-smoke";

/// Runs every step in order; stops at the first failure.
pub async fn run(ctx: &Ctx, args: SmokeArgs) -> anyhow::Result<Exit> {
    let mut report = Report::new(ctx.json);
    let passed = steps(ctx, &args, &mut report).await.is_ok();
    report.finish(passed);
    Ok(if passed { Exit::Ok } else { Exit::Failed })
}

async fn steps(ctx: &Ctx, args: &SmokeArgs, report: &mut Report) -> Result<(), report::Failed> {
    report.step("health: live", health::live(ctx)).await?;
    report.step("health: ready", health::ready(ctx)).await?;
    report.step("routes", routes::check(ctx)).await?;
    let workers = report.step("workers", health::workers(ctx)).await?;
    let workspace = report.step("workspace", setup::workspace(ctx)).await?;
    let config = report
        .step("configuration", setup::configuration(ctx, &workspace))
        .await?;
    let document = report
        .step("document", setup::document(ctx, &workspace))
        .await?;
    let plan = dry_run::Plan {
        config,
        document,
        timeout: args.timeout,
        workers,
    };
    let streamed = report.step("dry run", dry_run::follow(ctx, &plan)).await?;
    report.run_id = Some(streamed.run_id.clone());
    report
        .step("run read back", dry_run::read_back(ctx, &streamed))
        .await?;
    report
        .step("events paged", dry_run::events(ctx, &streamed))
        .await?;
    let dir = match &args.save_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("ade-smoke-{}", streamed.run_id)),
    };
    let saved = report
        .step("log file", dry_run::logfile(ctx, &streamed, &dir))
        .await?;
    report.logfile = Some(saved);
    Ok(())
}
