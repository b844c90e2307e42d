//! Showing a followed run (or build) to a person, and ending it well.
//!
//! Console lines go to stdout as they arrive (build lines marked `[build]`);
//! what happens to the run (queued, started, retried, validated, ended) is
//! printed as `==>` notes. On a terminal, `run.progress` events drive a
//! progress bar on stderr. With `--json` every event is printed as the API
//! sent it, one per line. Ctrl-C stops following (exit 130) and cancels the
//! run, after asking when there is a terminal to ask on.

use crate::follow::{Event, FollowError, Follower, Step};
use crate::output;
use crate::{Ctx, Exit};
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::collections::HashSet;
use std::io::IsTerminal as _;

/// Renders events for people (or as NDJSON for scripts).
pub struct Watch {
    json: bool,
    bar: Option<ProgressBar>,
    /// How many documents the run reads (for progress without a percent).
    documents: usize,
    inputs_seen: HashSet<String>,
}

/// How following ended.
pub enum Ended {
    /// The terminal event arrived.
    Completed(Box<Event>),
    /// The user pressed Ctrl-C.
    Interrupted,
}

impl Watch {
    /// A renderer; the progress bar shows only on a terminal, never with `--json`.
    pub fn new(json: bool, documents: usize) -> Self {
        Self {
            json,
            bar: None,
            documents,
            inputs_seen: HashSet::new(),
        }
    }

    /// Shows one event.
    pub fn show(&mut self, event: &Event) {
        if self.json {
            return println!("{}", event.raw);
        }
        if event.kind == "run.progress" {
            return self.progress(event.payload());
        }
        if event.kind == "run.completed"
            && let Some(bar) = self.bar.take()
        {
            bar.finish_and_clear();
        }
        if let Some(text) = describe(event) {
            self.print(&text);
        }
    }

    /// Notes a reconnect (on stderr, so stdout keeps only the run's story).
    pub fn reconnecting(&self, after: i64, reason: &str) {
        if !self.json {
            let note = format!("==> connection lost ({reason}); resuming after event {after}");
            match &self.bar {
                Some(bar) => bar.suspend(|| eprintln!("{note}")),
                None => eprintln!("{note}"),
            }
        }
    }

    fn print(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    /// Moves the bar to the event's `percent`, or to the share of inputs seen.
    fn progress(&mut self, payload: &Value) {
        let percent = match payload["percent"].as_f64() {
            Some(p) => p,
            None if self.documents > 0 => {
                if let Some(input) = payload["input"].as_str() {
                    self.inputs_seen.insert(input.to_owned());
                }
                100.0 * self.inputs_seen.len() as f64 / self.documents as f64
            }
            None => return,
        };
        let Some(bar) = self.bar() else { return };
        bar.set_position((percent.clamp(0.0, 100.0) * 10.0).round() as u64);
        if let Some(input) = payload["input"].as_str() {
            bar.set_message(input.to_owned());
        }
    }

    fn bar(&mut self) -> Option<&ProgressBar> {
        if self.bar.is_none() && std::io::stderr().is_terminal() {
            let style = ProgressStyle::with_template("{bar:30} {percent:>3}% {msg}")
                .expect("a valid template");
            self.bar = Some(ProgressBar::new(1000).with_style(style));
        }
        self.bar.as_ref()
    }
}

/// The line an event shows as, if any.
pub fn describe(event: &Event) -> Option<String> {
    let p = event.payload();
    let text = match event.kind.as_str() {
        "console.line" if p["scope"] == "build" => format!("[build] {}", text(&p["message"])),
        "console.line" => text(&p["message"]),
        "run.queued" => format!("==> run {} queued{}", text(&event.json["run_id"]), mode(p)),
        "build.created" => format!(
            "==> build {} created ({})",
            text(&event.json["build_id"]),
            text(&p["reason"])
        ),
        "build.started" => format!("==> build started on {}", text(&p["host"])),
        "build.completed" => build_completed(p),
        "run.started" => format!(
            "==> run started on {} (attempt {}, {} environment)",
            text(&p["worker_id"]),
            output::cell(&p["attempt"]),
            if p["env_reused"] == true {
                "reused"
            } else {
                "new"
            }
        ),
        "run.retry" => format!(
            "==> run requeued ({}); next attempt {}",
            text(&p["reason"]),
            output::cell(&p["next_attempt"])
        ),
        "run.error" => format!("==> error: {}", text(&p["message"])),
        "run.validation.summary" => format!(
            "==> validation: {} issues ({} errors, {} warnings)",
            output::cell(&p["issues"]),
            output::cell(&p["errors"]),
            output::cell(&p["warnings"])
        ),
        "run.completed" => run_completed(p),
        _ => return None,
    };
    Some(text)
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| output::cell(value), str::to_owned)
}

fn mode(payload: &Value) -> &'static str {
    let options = &payload["options"];
    if options["dry_run"] == true {
        " (dry run)"
    } else if options["validate_only"] == true {
        " (validate only)"
    } else {
        ""
    }
}

fn build_completed(p: &Value) -> String {
    let took = p["duration_ms"].as_i64().map_or(String::new(), |ms| {
        format!(" in {}", output::duration_ms(ms))
    });
    match p["status"].as_str() {
        Some("ready") => format!("==> build ready{took}"),
        _ => format!(
            "==> build {}{took}: {}",
            text(&p["status"]),
            text(&p["error"])
        ),
    }
}

fn run_completed(p: &Value) -> String {
    let took = p["execution"]["duration_ms"]
        .as_i64()
        .map_or(String::new(), |ms| {
            format!(" in {}", output::duration_ms(ms))
        });
    let status = text(&p["status"]);
    let mut line = format!("==> run {status}{took}");
    if !p["exit_code"].is_null() {
        line.push_str(&format!(" (exit code {})", p["exit_code"]));
    }
    let failure = &p["failure"];
    if failure.is_object() {
        line.push_str(&format!(
            ": {} at {}: {}",
            text(&failure["code"]),
            text(&failure["stage"]),
            text(&failure["message"])
        ));
    }
    if let Some(outputs) = p["artifacts"]["outputs"]
        .as_array()
        .filter(|o| !o.is_empty())
    {
        let names: Vec<String> = outputs.iter().map(text).collect();
        line.push_str(&format!("\n==> outputs: {}", names.join(", ")));
    }
    line
}

/// Follows `follower` to its end, showing each event; Ctrl-C ends it early.
pub async fn follow(watch: &mut Watch, follower: &mut Follower) -> Result<Ended, FollowError> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut last = None;
    loop {
        let step = tokio::select! {
            _ = &mut ctrl_c => return Ok(Ended::Interrupted),
            step = follower.next() => step?,
        };
        match step {
            Some(Step::Event(event)) => {
                watch.show(&event);
                last = Some(event);
            }
            Some(Step::Reconnecting { after, reason }) => watch.reconnecting(after, &reason),
            None => return Ok(Ended::Completed(last.expect("a terminal event"))),
        }
    }
}

/// What Ctrl-C does to the followed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Ask on a terminal; cancel without asking when there is none (the run is ours).
    Cancel,
    /// Ask on a terminal; leave the run alone when there is none.
    AskOnly,
}

/// Follows run `id` until it ends; exits with its result.
pub async fn run(
    ctx: &Ctx,
    id: &str,
    documents: usize,
    on_interrupt: OnInterrupt,
) -> anyhow::Result<Exit> {
    let mut watch = Watch::new(ctx.json, documents);
    let mut follower = Follower::run(&ctx.client, id);
    let ended = follow(&mut watch, &mut follower)
        .await
        .with_context(|| format!("following run {id} (resume: ade runs logs {id} --follow)"))?;
    match ended {
        Ended::Completed(event) if event.payload()["status"] == "succeeded" => Ok(Exit::Ok),
        Ended::Completed(_) => Ok(Exit::Failed),
        Ended::Interrupted => interrupted(ctx, id, &watch, on_interrupt).await,
    }
}

/// After Ctrl-C: asks on a terminal, then cancels the run if told to.
async fn interrupted(
    ctx: &Ctx,
    id: &str,
    watch: &Watch,
    on_interrupt: OnInterrupt,
) -> anyhow::Result<Exit> {
    if let Some(bar) = &watch.bar {
        bar.finish_and_clear();
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let cancel = if interactive {
        confirm("cancel the run? [y/N] ").await
    } else {
        on_interrupt == OnInterrupt::Cancel
    };
    if !cancel {
        eprintln!("the run goes on; follow it again with `ade runs logs {id} --follow`");
        return Ok(Exit::Interrupted);
    }
    let path = format!("/api/v1/runs/{id}/cancel");
    match ctx.client.post_empty(&path).await {
        Ok(reply) => eprintln!(
            "cancel requested (the run was {})",
            text(&reply.value["status"])
        ),
        Err(e) if e.code() == Some("run_already_terminal") => {
            eprintln!("the run had already ended")
        }
        Err(e) => return Err(anyhow::Error::new(e).context("cancelling the run")),
    }
    Ok(Exit::Interrupted)
}

/// Asks a yes/no question on stderr; a second Ctrl-C or anything but `y` is no.
async fn confirm(question: &str) -> bool {
    eprint!("\n{question}");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    tokio::select! {
        _ = tokio::signal::ctrl_c() => false,
        answer = answer => matches!(
            answer.ok().and_then(Result::ok).as_deref().map(str::trim),
            Some("y" | "Y" | "yes")
        ),
    }
}
