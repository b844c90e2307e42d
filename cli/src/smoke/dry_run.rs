//! The dry run: followed live to `run.completed`, then read back three ways
//! (the run, its paged events, its log file), each compared with the stream.

use super::health::count_workers;
use super::report::{Checked, Note};
use crate::Ctx;
use crate::follow::{Event, Follower, Step};
use crate::output;
use crate::runs;
use anyhow::Context as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// What the dry run needs.
pub struct Plan {
    /// The configuration.
    pub config: String,
    /// The document.
    pub document: String,
    /// From creation to `run.completed`.
    pub timeout: Duration,
    /// Live workers as listed before (`None`: the key cannot list them).
    pub workers: Option<usize>,
}

/// The run as its stream delivered it.
pub struct Streamed {
    /// The run's id.
    pub run_id: String,
    /// Every event, in the order received.
    pub events: Vec<Event>,
}

/// Creates a dry run and follows its SSE stream to `run.completed`.
pub async fn follow(ctx: &Ctx, plan: &Plan) -> Checked<Streamed> {
    let deadline = Instant::now() + plan.timeout;
    let path = format!("/api/v1/configs/{}/runs", plan.config);
    let body = json!({"options": {"dry_run": true, "document_ids": [plan.document]}});
    let run = ctx.client.post(&path, &body).await?;
    let run_id = run.value["id"]
        .as_str()
        .context("a run without an id")?
        .to_owned();
    if !ctx.json {
        eprintln!(
            "  following run {run_id} (up to {})",
            output::duration_ms(plan.timeout.as_millis() as i64)
        );
    }
    let mut follower = Follower::run(&ctx.client, &run_id);
    let mut events = Vec::new();
    let streamed = tokio::time::timeout_at(deadline, async {
        while let Some(step) = follower.next().await? {
            if let Step::Event(event) = step {
                events.push(*event);
            }
        }
        anyhow::Ok(())
    })
    .await;
    match streamed {
        Ok(result) => result?,
        Err(_) => anyhow::bail!(timed_out(ctx, plan, &run_id).await),
    }
    let repairs = follower.repairs;
    anyhow::ensure!(
        repairs.duplicates == 0 && repairs.filled == 0,
        "the stream repeated {} events and skipped {} (read from /events instead)",
        repairs.duplicates,
        repairs.filled
    );
    check_gapless(&events, "the stream")?;
    let completed = events.last().context("no events")?.payload().clone();
    anyhow::ensure!(
        completed["status"] == "succeeded",
        "the dry run {}: {} (see `ade runs logs {run_id}`)",
        output::cell(&completed["status"]),
        output::cell(&completed["failure"])
    );
    let mut note = format!(
        "run {run_id} succeeded: {} events streamed live",
        events.len()
    );
    if repairs.reconnects > 0 {
        note.push_str(&format!(", {} reconnects", repairs.reconnects));
    }
    Ok((Streamed { run_id, events }, Note::Ok(note)))
}

/// Says why the run did not finish in time, and cancels it.
async fn timed_out(ctx: &Ctx, plan: &Plan, run_id: &str) -> String {
    let within = output::duration_ms(plan.timeout.as_millis() as i64);
    let run = ctx.client.get(&format!("/api/v1/runs/{run_id}")).await;
    let run = run.map(|r| r.value).unwrap_or(Value::Null);
    let why = match run["status"].as_str() {
        Some("queued") | None => {
            let workers = count_workers(ctx).await.ok().flatten().or(plan.workers);
            let listed = match workers {
                Some(0) => "GET /api/v1/workers lists none".to_owned(),
                Some(n) => format!(
                    "GET /api/v1/workers lists {n} live (do they use this API's database and AMQP prefix?)"
                ),
                None => "the key cannot list workers (not an admin key)".to_owned(),
            };
            format!("no worker took the run within {within}; {listed}")
        }
        Some("waiting_for_build") => format!(
            "the run waited for build {} for {within} (see `ade builds get {}`)",
            output::cell(&run["build_id"]),
            output::cell(&run["build_id"])
        ),
        Some(status) => format!(
            "the run did not finish within {within} (still {status} on {})",
            output::cell(&run["worker_id"])
        ),
    };
    let cancelled = match ctx
        .client
        .post_empty(&format!("/api/v1/runs/{run_id}/cancel"))
        .await
    {
        Ok(_) => "the run was cancelled".to_owned(),
        Err(e) => format!("cancelling it failed: {e}"),
    };
    format!("{why}; {cancelled}")
}

/// Sequences run 1, 2, …, N with no hole and no repeat.
fn check_gapless(events: &[Event], what: &str) -> anyhow::Result<()> {
    for (i, event) in events.iter().enumerate() {
        anyhow::ensure!(
            event.sequence == i as i64 + 1,
            "{what} is not gapless: event {} has sequence {}",
            i + 1,
            event.sequence
        );
    }
    Ok(())
}

/// `GET /runs/{id}` agrees with the stream's `run.completed`.
pub async fn read_back(ctx: &Ctx, streamed: &Streamed) -> Checked<()> {
    let run = ctx
        .client
        .get(&format!("/api/v1/runs/{}", streamed.run_id))
        .await?
        .value;
    let completed = streamed.events.last().context("no events")?.payload();
    anyhow::ensure!(
        run["status"] == completed["status"] && run["exit_code"] == completed["exit_code"],
        "the run reads back as {} (exit code {}), the stream said {} (exit code {})",
        run["status"],
        run["exit_code"],
        completed["status"],
        completed["exit_code"]
    );
    anyhow::ensure!(
        !run["completed_at"].is_null(),
        "the run has no completed_at"
    );
    let took = run["duration_ms"]
        .as_i64()
        .map_or("-".into(), output::duration_ms);
    let note = format!(
        "{}, exit code {}, worker {}, {took}",
        output::cell(&run["status"]),
        output::cell(&run["exit_code"]),
        output::cell(&run["worker_id"])
    );
    Ok(((), Note::Ok(note)))
}

/// The paged `/events` hold exactly the streamed events.
pub async fn events(ctx: &Ctx, streamed: &Streamed) -> Checked<()> {
    let stored = runs::stored_events(ctx, &streamed.run_id).await?;
    check_gapless(&stored, "the stored events")?;
    same_events(&stored, &streamed.events, "GET …/events")?;
    let note = format!("{} events, sequences 1..{0}, as streamed", stored.len());
    Ok(((), Note::Ok(note)))
}

/// The same events (by sequence and id) in both lists.
fn same_events(got: &[Event], streamed: &[Event], what: &str) -> anyhow::Result<()> {
    let key = |e: &Event| (e.sequence, e.json["event_id"].clone());
    anyhow::ensure!(
        got.len() == streamed.len(),
        "{what} holds {} events, the stream delivered {}",
        got.len(),
        streamed.len()
    );
    if let Some((a, _)) = got.iter().zip(streamed).find(|(a, b)| key(a) != key(b)) {
        anyhow::bail!("{what} differs from the stream at sequence {}", a.sequence);
    }
    Ok(())
}

/// Downloads `GET /runs/{id}/logfile` into `dir` and checks it holds every event.
pub async fn logfile(ctx: &Ctx, streamed: &Streamed, dir: &Path) -> Checked<PathBuf> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join(format!("run-{}-events.ndjson", streamed.run_id));
    let path = format!("/api/v1/runs/{}/logfile", streamed.run_id);
    let bytes = runs::save(ctx, &path, &file).await?;
    let text = tokio::fs::read_to_string(&file).await?;
    let logged: Vec<Event> = text
        .lines()
        .map(|line| Event::parse(line.to_owned()).context("a log line is not an event"))
        .collect::<anyhow::Result<_>>()?;
    same_events(&logged, &streamed.events, "the log file")?;
    let note = format!("{} ({})", file.display(), output::bytes(bytes));
    Ok((file, Note::Ok(note)))
}
