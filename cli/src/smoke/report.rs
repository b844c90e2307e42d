//! The smoke check's report: one line per step as it ends, or JSON at the end.

use serde_json::{Value, json};
use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

/// What a passing step says about itself.
pub enum Note {
    /// All is well.
    Ok(String),
    /// It passed, but someone should look.
    Warn(String),
}

/// A step's value and note.
pub type Checked<T> = anyhow::Result<(T, Note)>;

/// Marks that a step failed (its message is already printed).
#[derive(Debug)]
pub struct Failed;

/// Steps so far.
pub struct Report {
    json: bool,
    steps: Vec<Value>,
    /// The dry run's id, once created.
    pub run_id: Option<String>,
    /// Where the log file was saved.
    pub logfile: Option<PathBuf>,
}

impl Report {
    /// An empty report; `json` prints one JSON document at the end instead of lines.
    pub fn new(json: bool) -> Self {
        Self {
            json,
            steps: Vec::new(),
            run_id: None,
            logfile: None,
        }
    }

    /// Runs one step, timing it and printing its line.
    pub async fn step<T>(
        &mut self,
        name: &str,
        work: impl Future<Output = Checked<T>>,
    ) -> Result<T, Failed> {
        let started = Instant::now();
        let result = work.await;
        let ms = started.elapsed().as_millis() as u64;
        let (mark, status, detail, value) = match result {
            Ok((value, Note::Ok(detail))) => ("✓", "passed", detail, Some(value)),
            Ok((value, Note::Warn(detail))) => ("!", "warning", detail, Some(value)),
            Err(error) => ("✗", "failed", format!("{error:#}"), None),
        };
        if !self.json {
            println!("{mark} {name:<15} {ms:>6} ms  {detail}");
        }
        self.steps.push(json!({"name": name, "status": status,
                               "duration_ms": ms, "detail": detail}));
        value.ok_or(Failed)
    }

    /// Prints the verdict (or the JSON report).
    pub fn finish(&self, passed: bool) {
        if self.json {
            let report = json!({"ok": passed, "steps": self.steps,
                                "run_id": self.run_id, "logfile": self.logfile});
            println!("{report}");
        } else if passed {
            println!("smoke check passed");
        } else {
            let failed = self
                .steps
                .last()
                .map_or("?", |s| s["name"].as_str().unwrap_or("?"));
            println!("smoke check FAILED at step \"{failed}\"");
        }
    }
}
