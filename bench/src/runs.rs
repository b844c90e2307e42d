//! One run through the fleet, and one bare engine run, each timed.

use crate::sse::Sse;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a fleet run needs.
#[derive(Clone)]
pub struct Job {
    /// The API's base URL.
    pub base: String,
    /// A client with the key.
    pub client: reqwest::Client,
    /// The configuration.
    pub config: String,
    /// The document.
    pub doc: String,
}

impl Job {
    /// POSTs a run that answers with its own SSE stream and reads it to
    /// `run.completed`: the end-to-end latency in milliseconds.
    pub async fn run(&self) -> anyhow::Result<f64> {
        let started = Instant::now();
        let res = self
            .client
            .post(format!("{}/api/v1/configs/{}/runs", self.base, self.config))
            .header("accept", "text/event-stream")
            .json(&json!({"stream": true, "options": {"document_ids": [self.doc]}}))
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "run refused: {}", res.status());
        let mut events = Sse::new(res);
        while let Some(event) = events.next().await? {
            if event["type"] == "run.completed" {
                let status = &event["payload"]["status"];
                anyhow::ensure!(status == "succeeded", "a run ended {status}: {event}");
                return Ok(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        anyhow::bail!("the stream ended before run.completed")
    }
}

/// The bare engine: the venv's interpreter spawned directly on the input.
#[derive(Clone)]
pub struct Bare {
    /// `<venv>/bin/python`.
    pub python: PathBuf,
    /// The input file.
    pub input: PathBuf,
    /// Where each run's output folder goes.
    pub scratch: PathBuf,
}

impl Bare {
    /// Runs the engine once; its wall time in milliseconds.
    pub async fn run(&self, n: usize) -> anyhow::Result<f64> {
        let out = self.scratch.join(format!("bare-{n}"));
        let started = Instant::now();
        let status = tokio::process::Command::new(&self.python)
            .args(["-m", "ade_engine", "run", "--output-dir"])
            .arg(&out)
            .arg("--input")
            .arg(&self.input)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(status.success(), "the bare engine failed: {status}");
        remove(&out);
        Ok(ms)
    }
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
