//! Running the engine for a claimed run (SPEC §9).
//!
//! Everything an attempt writes lives under
//! `ADE_DATA_DIR/runs/<id>/attempts/<n>/`, cleared when the attempt starts:
//! outputs go to `outputs/`. A late attempt can never touch the files of
//! another; the completing attempt's files become the run's outputs in the
//! completing transaction. The engine runs as `<venv>/bin/python -m
//! ade_engine run …` in the run's sandbox ([`crate::sandbox`]): each
//! document bound read-only as `/run/ade/inputs/<document id>.<ext>`, the
//! attempt's outputs writable at `/run/ade/outputs`, a scrubbed
//! environment, its events on fd 3, and the run's [`crate::limits`].

use crate::Context;
use crate::builds::Unready;
use crate::events::EventSink;
use crate::process::{self, Channel, Guard, ProcessError};
use crate::venv::Ready;
use ade_common::db::Cached as _;
use ade_common::db::retry_transient;
use ade_common::events::{EventKind, NewEvent, Source};
use ade_common::lifecycle::{Claim, Completion};
use ade_common::runs::Failure;
use ade_common::status::RunStatus;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio_util::sync::CancellationToken;

/// Input extensions passed through to the engine; others become `.bin`.
const KNOWN_EXTENSIONS: &[&str] = &["csv", "tsv", "txt", "xlsx", "xls"];

/// How an attempt's execution ended.
#[derive(Debug)]
pub enum Execution {
    /// It ran to an end of its own (success or failure): complete with this.
    Finished(Completion),
    /// A stop interrupted it; the stop's reason decides what happens.
    Interrupted,
}

/// Prepares the environment and inputs, runs the engine, and says how it ended.
pub async fn execute(
    ctx: &Context,
    claim: &Claim,
    events: &EventSink,
    stop: CancellationToken,
) -> Execution {
    let ready = match crate::builds::prepare(ctx, claim, events, stop.clone()).await {
        Ok(ready) => ready,
        Err(Unready::Stopped) => return Execution::Interrupted,
        Err(Unready::BuildFailed(message)) => {
            return failed(2, Failure::new("build", "build_failed", message));
        }
        Err(Unready::Host(message)) => {
            return failed(2, Failure::new("build", "environment_unavailable", message));
        }
    };
    let started = json!({"worker_id": ctx.claimant.worker_id, "host": ctx.host, "attempt": claim.attempt, "env_reused": ready.reused});
    events
        .emit(NewEvent::new(
            EventKind::RunStarted,
            Source::Worker,
            started,
        ))
        .await;
    let inputs = match retry_transient(crate::DB_PATIENCE, || stage_inputs(ctx, claim)).await {
        Ok(inputs) => inputs,
        Err(e) => {
            let failure = Failure::new("run", "input_unavailable", format!("{e:#}"));
            return failed(2, failure);
        }
    };
    run_engine(ctx, claim, &ready, &inputs, events, stop).await
}

fn failed(exit_code: i32, failure: Failure) -> Execution {
    Execution::Finished(Completion::failed(Some(exit_code), failure))
}

/// One input: the document's file, and its name for the engine (`<document id>.<ext>`).
type Input = crate::warm::Input;

/// Clears this attempt's folder and finds each document's file.
async fn stage_inputs(ctx: &Context, claim: &Claim) -> anyhow::Result<Vec<Input>> {
    let attempt = ctx.data_dir.attempt(claim.run_id, claim.attempt);
    let _ = tokio::fs::remove_dir_all(&attempt).await;
    tokio::fs::create_dir_all(attempt.join("work")).await?;
    tokio::fs::create_dir_all(ctx.data_dir.attempt_outputs(claim.run_id, claim.attempt)).await?;
    let db = ctx.pool.get().await?;
    let mut inputs = Vec::new();
    for id in &claim.options.document_ids {
        let row = db
            .cached_query_opt(
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
        inputs.push((source, format!("{id}.{}", extension(row.get(0)))));
    }
    Ok(inputs)
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

/// Totals gathered from the engine's events for `run.completed`'s summary;
/// the engine's own run summary (the `summary` of its last
/// `run.validation.summary`) is taken whole when it sends one; and the code
/// of its first `run.error` (it names a limit it hit).
#[derive(Default)]
struct Totals {
    tables: AtomicI64,
    rows: AtomicI64,
    engine: std::sync::Mutex<Option<Value>>,
    error_code: std::sync::Mutex<Option<String>>,
}

impl Totals {
    /// Keeps the `code` of the first `run.error` (empty if it had none).
    fn first_error(&self, payload: &Value) {
        let code = payload
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut kept = self.error_code.lock().expect("totals lock");
        kept.get_or_insert_with(|| code.to_owned());
    }
}

/// Runs the engine — forked by the build's warm engine when the pool has
/// one, else spawned — and says how it ended.
async fn run_engine(
    ctx: &Context,
    claim: &Claim,
    ready: &Ready,
    inputs: &[Input],
    events: &EventSink,
    stop: CancellationToken,
) -> Execution {
    let outputs = ctx.data_dir.attempt_outputs(claim.run_id, claim.attempt);
    let venv = ready
        .python
        .parent()
        .and_then(Path::parent)
        .expect("<venv>/bin/python");
    let warm = crate::warm::start(ctx, claim, ready.marker.build_id, venv, inputs).await;
    let cmd = match &warm {
        Some(_) => None,
        None => match engine_command(ctx, claim, &ready.python, inputs, &outputs).await {
            Ok(cmd) => Some(cmd),
            Err(e) => {
                return failed(
                    2,
                    Failure::new("run", "environment_unavailable", format!("{e:#}")),
                );
            }
        },
    };
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
    let started = std::time::Instant::now();
    let (result, warm) = match (warm, cmd) {
        (Some(warm), _) => {
            let ran = process::supervise(warm.child, warm.outputs, guard, on_line).await;
            (ran, Some(warm.folder))
        }
        (None, Some(cmd)) => (process::run(cmd, guard, on_line).await, None),
        (None, None) => unreachable!("either a warm run or a command"),
    };
    let mut summary = totals
        .engine
        .lock()
        .expect("totals lock")
        .take()
        .unwrap_or_else(|| {
            json!({
                "tables": totals.tables.load(Ordering::Relaxed),
                "rows": totals.rows.load(Ordering::Relaxed),
            })
        });
    if let (Some(summary), Value::Object(counts)) = (summary.as_object_mut(), events.totals()) {
        summary.extend(counts);
    }
    let published = match (&result, &warm) {
        (Ok(0), Some(warm)) => Some(crate::warm::publish(ctx, warm, &outputs, events).await),
        (Ok(0), None) => {
            Some(crate::outputs::publish(&ctx.sandbox, &outputs, &ctx.limits, events).await)
        }
        _ => None,
    };
    if let Some(warm) = warm {
        crate::warm::clean(warm).await;
    }
    let mut completion = match result {
        Ok(0) => match published.expect("published after a success") {
            Ok(files) => Completion {
                status: RunStatus::Succeeded,
                exit_code: Some(0),
                failure: None,
                outputs: files,
                summary: json!({}),
            },
            Err(failure) => Completion::failed(Some(1), failure),
        },
        Ok(code) => {
            let reported = totals.error_code.lock().expect("totals lock").clone();
            let failure = ctx
                .limits
                .failure(code, reported.as_deref(), started.elapsed());
            Completion::failed(Some(code), failure)
        }
        Err(ProcessError::Timeout(t)) => Completion::failed(
            Some(124),
            Failure::new(
                "run",
                "timeout",
                format!(
                    "the engine ran longer than {}s and was stopped",
                    t.as_secs()
                ),
            ),
        ),
        Err(ProcessError::Cancelled) => return Execution::Interrupted,
        Err(e) => Completion::failed(
            Some(2),
            Failure::new("run", "environment_unavailable", e.to_string()),
        ),
    };
    completion.summary = summary;
    Execution::Finished(completion)
}

/// The engine's command in the run's sandbox: the venv and each input
/// read-only, the attempt's output folder writable, no network, events on fd 3.
async fn engine_command(
    ctx: &Context,
    claim: &Claim,
    python: &Path,
    inputs: &[Input],
    outputs: &Path,
) -> anyhow::Result<tokio::process::Command> {
    use crate::sandbox::{Sandbox, layout};
    let venv = python
        .parent()
        .and_then(Path::parent)
        .expect("<venv>/bin/python");
    let work = ctx
        .data_dir
        .attempt(claim.run_id, claim.attempt)
        .join("work");
    let mut sb = Sandbox::new(
        Path::new(layout::VENV).join("bin/python"),
        ctx.limits,
        &work,
    );
    ctx.sandbox.mount_venv(&mut sb, venv, false)?;
    sb.args(["-m", "ade_engine", "run"]);
    for (source, name) in inputs {
        let inside = Path::new(layout::INPUTS).join(name);
        sb.read_only(source, &inside)
            .arg("--input")
            .path_arg(inside);
    }
    tokio::fs::create_dir_all(outputs).await?;
    ctx.sandbox.lend(outputs).await?;
    sb.writable(outputs, layout::OUTPUTS)
        .arg("--output-dir")
        .path_arg(layout::OUTPUTS);
    for sheet in &claim.options.input_sheet_names {
        sb.arg("--input-sheet").arg(sheet);
    }
    if claim.options.dry_run {
        sb.arg("--dry-run");
    }
    if claim.options.validate_only {
        sb.arg("--validate-only");
    }
    sb.env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("ADE_EVENTS_FD", process::EVENTS_FD.to_string());
    Ok(ctx.sandbox.command(&sb)?)
}

/// Wraps one engine line in the envelope, or reports why it could not.
async fn engine_event(events: &EventSink, totals: &Totals, line: &str) {
    let parsed: Option<(EventKind, Value)> =
        serde_json::from_str::<Value>(line).ok().and_then(|v| {
            let kind = EventKind::engine(v.get("type")?.as_str()?)?;
            let payload = v.get("payload").cloned().unwrap_or(json!({}));
            payload.is_object().then_some((kind, payload))
        });
    match parsed {
        Some((kind, payload)) => {
            if kind == EventKind::RunValidationSummary
                && let Some(summary) = payload.get("summary").filter(|s| s.is_object())
            {
                *totals.engine.lock().expect("totals lock") = Some(summary.clone());
            }
            if kind == EventKind::RunError {
                totals.first_error(&payload);
            }
            if kind == EventKind::RunTableSummary {
                totals.tables.fetch_add(1, Ordering::Relaxed);
                totals.rows.fetch_add(
                    payload.get("rows").and_then(Value::as_i64).unwrap_or(0),
                    Ordering::Relaxed,
                );
            }
            events.engine(kind, payload, line.len()).await;
        }
        None => {
            let shown: String = line.chars().take(200).collect();
            let message = format!("ignored an invalid engine event: {shown}");
            events.console("run", "stderr", message, None).await;
        }
    }
}
