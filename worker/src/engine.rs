//! Running the engine for a claimed run (SPEC §9).
//!
//! Inputs are linked into a per-run working folder under names made from
//! document ids; outputs go to `ADE_DATA_DIR/runs/<id>/outputs`, cleared at
//! the start of each attempt. The engine runs as `<venv>/bin/python -m
//! ade_engine run …` with a scrubbed environment and its events on fd 3.

use crate::Context;
use crate::events::EventSink;
use crate::process::{self, Channel, Guard, ProcessError};
use crate::runs::{Claim, Completion};
use ade_common::db::retry_transient;
use ade_common::events::{NewEvent, Source};
use ade_common::runs::Failure;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use tokio_util::sync::CancellationToken;

/// Event types the engine may emit; anything else is reported, not stored.
const ENGINE_EVENTS: &[&str] = &[
    "run.phase.started",
    "run.table.summary",
    "run.validation.summary",
    "run.validation.issue",
    "run.progress",
    "run.error",
];

/// Input extensions passed through to the engine; others become `.bin`.
const KNOWN_EXTENSIONS: &[&str] = &["csv", "tsv", "txt", "xlsx", "xls"];

/// Prepares the environment and inputs, runs the engine, and says how it ended.
pub async fn execute(
    ctx: &Context,
    claim: &Claim,
    events: &EventSink,
    stop: CancellationToken,
) -> Completion {
    let ready = match crate::builds::prepare(ctx, claim, events, stop.clone()).await {
        Ok(ready) => ready,
        Err(message) => {
            return Completion::failed(2, Failure::new("build", "build_failed", message));
        }
    };
    let started = json!({"worker_id": ctx.worker_id, "host": ctx.host, "attempt": claim.attempt, "env_reused": ready.reused});
    events
        .emit(NewEvent::new("run.started", Source::Worker, started))
        .await;
    let inputs = match retry_transient(crate::DB_PATIENCE, || stage_inputs(ctx, claim)).await {
        Ok(inputs) => inputs,
        Err(e) => {
            return Completion::failed(
                2,
                Failure::new("run", "input_unavailable", format!("{e:#}")),
            );
        }
    };
    run_engine(ctx, claim, &ready.python, &inputs, events, stop).await
}

/// Links each document into `work/inputs/<document id>.<ext>`.
async fn stage_inputs(ctx: &Context, claim: &Claim) -> anyhow::Result<Vec<PathBuf>> {
    let work = work_dir(ctx, claim);
    let _ = tokio::fs::remove_dir_all(&work).await;
    let inputs_dir = work.join("inputs");
    tokio::fs::create_dir_all(&inputs_dir).await?;
    let outputs = ctx.data_dir.run_outputs(claim.run_id);
    let _ = tokio::fs::remove_dir_all(&outputs).await;
    tokio::fs::create_dir_all(&outputs).await?;
    let db = ctx.pool.get().await?;
    let mut inputs = Vec::new();
    for id in &claim.options.document_ids {
        let row = db
            .query_opt(
                "SELECT name FROM documents WHERE id = $1 AND workspace_id = $2",
                &[id, &claim.workspace_id],
            )
            .await?
            .ok_or_else(|| anyhow::anyhow!("document {id} no longer exists"))?;
        let source = ctx.data_dir.document(claim.workspace_id, *id);
        anyhow::ensure!(
            tokio::fs::metadata(&source).await.is_ok(),
            "the content of document {id} is missing from storage"
        );
        let link = inputs_dir.join(format!("{id}.{}", extension(row.get(0))));
        tokio::fs::symlink(&source, &link).await?;
        inputs.push(link);
    }
    Ok(inputs)
}

fn work_dir(ctx: &Context, claim: &Claim) -> PathBuf {
    ctx.data_dir.run(claim.run_id).join("work")
}

/// A known extension of the document's name, or `bin`: never user text in paths.
fn extension(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    KNOWN_EXTENSIONS
        .iter()
        .find(|k| **k == ext)
        .copied()
        .unwrap_or("bin")
}

/// Totals gathered from the engine's events for `run.completed`'s summary.
#[derive(Default)]
struct Totals {
    tables: AtomicI64,
    rows: AtomicI64,
}

async fn run_engine(
    ctx: &Context,
    claim: &Claim,
    python: &Path,
    inputs: &[PathBuf],
    events: &EventSink,
    stop: CancellationToken,
) -> Completion {
    let outputs = ctx.data_dir.run_outputs(claim.run_id);
    let mut cmd = crate::venv::scrubbed(python);
    cmd.args(["-m", "ade_engine", "run"]);
    for input in inputs {
        cmd.arg("--input").arg(input);
    }
    cmd.arg("--output-dir").arg(&outputs);
    for sheet in &claim.options.input_sheet_names {
        cmd.arg("--input-sheet").arg(sheet);
    }
    if claim.options.dry_run {
        cmd.arg("--dry-run");
    }
    if claim.options.validate_only {
        cmd.arg("--validate-only");
    }
    let work = work_dir(ctx, claim);
    cmd.current_dir(&work)
        .env("HOME", &work)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("ADE_EVENTS_FD", process::EVENTS_FD.to_string());
    let guard = Guard {
        timeout: ctx.run_timeout,
        cancel: stop,
        events_pipe: true,
    };
    let totals = Totals::default();
    let on_line = |channel: Channel, line: String| {
        let totals = &totals;
        async move {
            match channel {
                Channel::Stdout => events.console("run", "stdout", line, None).await,
                Channel::Stderr => events.console("run", "stderr", line, None).await,
                Channel::Events => engine_event(events, totals, &line).await,
            }
        }
    };
    let result = process::run(cmd, guard, on_line).await;
    let summary = json!({
        "tables": totals.tables.load(Ordering::Relaxed),
        "rows": totals.rows.load(Ordering::Relaxed),
        "console_lines": events.console_lines(),
    });
    let mut completion = match result {
        Ok(0) => Completion {
            status: "succeeded",
            exit_code: Some(0),
            failure: None,
            outputs: list_outputs(&outputs).await,
            summary: json!({}),
        },
        Ok(code) => Completion::failed(
            code,
            Failure::new(
                "run",
                "engine_failed",
                format!(
                    "the engine exited with code {code}; its output is in the run's console.line events"
                ),
            ),
        ),
        Err(ProcessError::Timeout(t)) => Completion::failed(
            124,
            Failure::new(
                "run",
                "timeout",
                format!(
                    "the engine ran longer than {}s and was stopped",
                    t.as_secs()
                ),
            ),
        ),
        Err(ProcessError::Cancelled) => Completion::cancelled(),
        Err(e) => Completion::failed(
            2,
            Failure::new("run", "environment_unavailable", e.to_string()),
        ),
    };
    completion.summary = summary;
    completion
}

/// Wraps one engine line in the envelope, or reports why it could not.
async fn engine_event(events: &EventSink, totals: &Totals, line: &str) {
    let parsed: Option<(String, Value)> = serde_json::from_str::<Value>(line).ok().and_then(|v| {
        let kind = v.get("type")?.as_str()?.to_owned();
        let payload = v.get("payload").cloned().unwrap_or(json!({}));
        payload.is_object().then_some((kind, payload))
    });
    match parsed {
        Some((kind, payload)) if ENGINE_EVENTS.contains(&kind.as_str()) => {
            if kind == "run.table.summary" {
                totals.tables.fetch_add(1, Ordering::Relaxed);
                totals.rows.fetch_add(
                    payload.get("rows").and_then(Value::as_i64).unwrap_or(0),
                    Ordering::Relaxed,
                );
            }
            events
                .emit(NewEvent::new(kind, Source::Engine, payload))
                .await;
        }
        _ => {
            let shown: String = line.chars().take(200).collect();
            events
                .console(
                    "run",
                    "stderr",
                    format!("ignored an invalid engine event: {shown}"),
                    None,
                )
                .await;
        }
    }
}

async fn list_outputs(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(dir).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if ade_common::storage::is_safe_file_name(&name) {
                names.push(name);
            }
        }
    }
    names.sort();
    names
}
