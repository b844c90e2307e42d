//! Running the engine for a claimed run, top-down:
//!
//! 1. [`execute`]: the build's venv on this host ([`crate::builds::prepare`]),
//!    the run's inputs found (documents on shared storage);
//! 2. [`launch`]: the engine forked by a warm engine or spawned, in the
//!    run's cgroup, with its area (`run.started` says which way);
//! 3. supervision ([`crate::process::supervise`]): every line to the run's
//!    events, the deadline, cancel, and the whole-run bounds watched;
//! 4. [`completion`]: how it ended, from what the worker observed;
//! 5. [`crate::outputs`]: a successful run's outputs copied out of its
//!    area into `ADE_DATA_DIR/runs/<id>/attempts/<n>/outputs/`, which the
//!    completing transaction makes the run's. A late attempt never touches
//!    another attempt's files.

pub mod completion;
pub mod launch;

use crate::Context;
use crate::builds::Unready;
use crate::events::EventSink;
use crate::process::{self, Breach, Channel, Guard};
use ade_common::db::Cached as _;
use ade_common::db::retry_transient;
use ade_common::events::{EventKind, NewEvent, Source};
use ade_common::lifecycle::{Claim, Completion};
use ade_common::runs::{Failure, OutputFile};
use ade_common::status::RunStatus;
use completion::{Observed, Verdict};
use launch::{Input, Launched, NotLaunched};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Input extensions passed through to the engine; others become `.bin`.
const KNOWN_EXTENSIONS: &[&str] = &["csv", "tsv", "txt", "xlsx", "xls"];
/// How often a run's memory kills and area fill are looked at.
const WATCH_EVERY: Duration = Duration::from_millis(50);

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
    let inputs = match retry_transient(crate::DB_PATIENCE, || stage_inputs(ctx, claim)).await {
        Ok(inputs) => inputs,
        Err(e) => {
            let failure = Failure::new("run", "input_unavailable", format!("{e:#}"));
            return failed(2, failure);
        }
    };
    let began = Instant::now();
    let deadline = tokio::time::Instant::from_std(began + ctx.run_timeout);
    let launching = launch::launch(ctx, claim, &ready, &inputs, events, &stop);
    let launched = match tokio::time::timeout_at(deadline, launching).await {
        Ok(Ok(launched)) => launched,
        Ok(Err(NotLaunched::Stopped)) => return Execution::Interrupted,
        Ok(Err(NotLaunched::Failed(why))) => {
            return failed(2, Failure::new("run", "environment_unavailable", why));
        }
        // A warm engine's start counts against the run's deadline.
        Err(_) => return failed(124, completion::timed_out(ctx.run_timeout)),
    };
    let mode = ade_common::metrics::LaunchMode {
        mode: launched.mode().into(),
    };
    ctx.metrics.engine_launches.get_or_create(&mode).inc();
    let started = json!({
        "worker_id": ctx.claimant.worker_id, "host": ctx.host, "attempt": claim.attempt,
        "env_reused": ready.reused, "launch": launched.mode(),
    });
    events
        .emit(NewEvent::new(
            EventKind::RunStarted,
            Source::Worker,
            started,
        ))
        .await;
    let timeout = ctx.run_timeout.saturating_sub(began.elapsed());
    finish(
        ctx,
        claim,
        launched,
        events,
        Guard {
            timeout,
            cancel: stop,
            events_pipe: true,
        },
        began,
    )
    .await
}

fn failed(exit_code: i32, failure: Failure) -> Execution {
    Execution::Finished(Completion::failed(Some(exit_code), failure))
}

/// Supervises a launched engine to its end and decides the run's outcome.
async fn finish(
    ctx: &Context,
    claim: &Claim,
    launched: Launched,
    events: &EventSink,
    guard: Guard,
    began: Instant,
) -> Execution {
    let Launched {
        launch,
        outputs,
        area,
        cgroup,
    } = launched;
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
    let breach = watch(cgroup.as_deref(), &area, ctx.max_output_bytes);
    let ended = process::supervise(launch, outputs, guard, breach, on_line).await;
    // Whatever of the run is left goes before its area is read.
    let oom_kills = match cgroup {
        Some(cgroup) => tokio::task::spawn_blocking(move || {
            cgroup.kill_all();
            cgroup.oom_kills()
        })
        .await
        .unwrap_or(0),
        None => 0,
    };
    let seen = Observed {
        ended,
        oom_kills,
        area_bytes: area.used_bytes(),
        elapsed: began.elapsed(),
    };
    let mut completion = match completion::verdict(seen, &ctx.completion_bounds()) {
        Verdict::Interrupted => return Execution::Interrupted,
        Verdict::Ended(completion) => completion,
        Verdict::Publish => {
            let dest = ctx.data_dir.attempt_outputs(claim.run_id, claim.attempt);
            match crate::outputs::publish(area, dest, ctx.max_output_bytes, events).await {
                Ok(files) => succeeded(files),
                Err(failure) => Completion::failed(Some(1), failure),
            }
        }
    };
    completion.summary = summary(&totals, events, &completion.outputs);
    Execution::Finished(completion)
}

fn succeeded(outputs: Vec<OutputFile>) -> Completion {
    Completion {
        status: RunStatus::Succeeded,
        exit_code: Some(0),
        failure: None,
        outputs,
        summary: json!({}),
    }
}

/// Resolves when the run passes a bound of the whole run: a memory kill
/// in its cgroup, or more than `max_output` bytes in its area.
async fn watch(
    cgroup: Option<&crate::cgroup::RunCgroup>,
    area: &crate::area::RunArea,
    max_output: u64,
) -> Breach {
    if cgroup.is_none() && area.used_bytes().is_none() {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        if cgroup.is_some_and(|c| c.oom_kills() > 0) {
            return Breach::Memory;
        }
        if area.used_bytes().is_some_and(|used| used > max_output) {
            return Breach::Output;
        }
    }
}

/// Clears this attempt's folder and finds each document's file.
async fn stage_inputs(ctx: &Context, claim: &Claim) -> anyhow::Result<Vec<Input>> {
    let attempt = ctx.data_dir.attempt(claim.run_id, claim.attempt);
    let _ = tokio::fs::remove_dir_all(&attempt).await;
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

/// What the engine said of its run, for `run.completed`'s summary: its
/// own run summary (the `summary` of its last `run.validation.summary`)
/// when it sends one, else its tables and rows counted from its events.
/// Kept apart, under `engine`, from what the worker counted itself.
#[derive(Default)]
struct Totals {
    tables: AtomicI64,
    rows: AtomicI64,
    engine: std::sync::Mutex<Option<Value>>,
}

/// `run.completed`'s summary: the worker's own counts (console lines,
/// dropped events, bytes of outputs), and the engine's word under `engine`.
fn summary(totals: &Totals, events: &EventSink, outputs: &[OutputFile]) -> Value {
    let engine = totals
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
    let mut summary = json!({
        "engine": engine,
        "output_bytes": outputs.iter().map(|f| f.byte_size).sum::<u64>(),
    });
    if let (Some(summary), Value::Object(counts)) = (summary.as_object_mut(), events.totals()) {
        summary.extend(counts);
    }
    summary
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
