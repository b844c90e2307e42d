//! The fleet under test: a fresh database and AMQP prefix, the real
//! `ade-api` and `ade-worker` binaries from this target folder, an admin key,
//! a workspace, configurations and the sample document.

use ade_common::amqp::Topology;
use anyhow::Context as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where the fleet runs and how it is reached.
pub struct Stack {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The repository (engine source, samples).
    pub repo: PathBuf,
    /// Scratch folder: data, venvs, bare-engine outputs.
    pub scratch: PathBuf,
    /// The database URL.
    pub db_url: String,
    /// The API process.
    pub api: Child,
    /// The worker processes.
    pub workers: Vec<Child>,
    /// An HTTP client that sends the admin key.
    pub client: reqwest::Client,
    bins: PathBuf,
    env: Vec<(String, String)>,
    db_name: String,
    prefix: String,
}

/// How to start the fleet.
pub struct Shape {
    /// Worker processes.
    pub workers: usize,
    /// `ADE_WORKER_CONCURRENCY` of each.
    pub concurrency: usize,
    /// `ADE_ENGINE_POOL`.
    pub pool: String,
}

impl Stack {
    /// Migrates a fresh database, makes a key and starts the API and workers.
    pub async fn start(shape: &Shape) -> anyhow::Result<Self> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("the repository")?
            .to_owned();
        let bins = std::env::current_exe()?
            .parent()
            .context("the target folder")?
            .to_owned();
        let tag = uuid::Uuid::now_v7().simple().to_string();
        let db_name = format!("ade_bench_{tag}");
        let db_url = format!("{}/{db_name}", server_url());
        let prefix = format!("bench-{tag}");
        let scratch = std::env::temp_dir().join(format!("ade-bench-{tag}"));
        std::fs::create_dir_all(&scratch)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let env: Vec<(String, String)> = [
            ("ADE_DATABASE_URL", db_url.clone()),
            ("ADE_AMQP_PREFIX", prefix.clone()),
            ("ADE_DATA_DIR", scratch.join("data").display().to_string()),
            ("ADE_VENVS_DIR", scratch.join("venvs").display().to_string()),
            ("ADE_ENGINE_DIR", repo.join("engine").display().to_string()),
            ("ADE_API_ADDR", format!("127.0.0.1:{port}")),
            ("ADE_MAX_QUEUED_RUNS", "10000000".into()),
            ("ADE_RATE_LIMIT_PER_SECOND", "0".into()),
            ("ADE_ENGINE_POOL", shape.pool.clone()),
            ("ADE_WORKER_CONCURRENCY", shape.concurrency.to_string()),
            ("RUST_LOG", "warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut stack = Self {
            base: format!("http://127.0.0.1:{port}"),
            repo,
            scratch,
            db_url,
            api: dummy()?,
            workers: vec![],
            client: reqwest::Client::new(),
            bins,
            env,
            db_name,
            prefix,
        };
        stack.command("ade-api").arg("migrate").status()?;
        let key = stack
            .command("ade-api")
            .args(["keys", "create", "--admin", "--name", "bench"])
            .stderr(Stdio::null())
            .output()?;
        let key = String::from_utf8(key.stdout)?.trim().to_owned();
        anyhow::ensure!(key.starts_with("ade_"), "no key was made");
        stack.client = client(&key)?;
        stack.api = stack.command("ade-api").spawn()?;
        stack.wait_ready().await?;
        for _ in 0..shape.workers {
            stack.start_worker()?;
        }
        Ok(stack)
    }

    /// Starts one more worker.
    pub fn start_worker(&mut self) -> anyhow::Result<()> {
        let id = format!(
            "bench-worker-{}-{}",
            self.workers.len(),
            uuid::Uuid::now_v7().simple()
        );
        let worker = self
            .command("ade-worker")
            .env("ADE_WORKER_ID", id)
            .spawn()?;
        self.workers.push(worker);
        Ok(())
    }

    fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(self.bins.join(bin));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        for _ in 0..300 {
            let ready = self
                .client
                .get(format!("{}/health/ready", self.base))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the API did not become ready")
    }

    /// Stops the workers (SIGKILL: nothing is measured after this).
    pub fn stop_workers(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        self.workers.clear();
    }

    /// Stops everything and drops the database, the broker's queues and
    /// exchanges of the prefix, and the scratch folder.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop_workers();
        let _ = self.api.kill();
        let _ = self.api.wait();
        let url = ade_common::settings::amqp_url_from_env();
        let conn = ade_common::amqp::connect(&url, "ade-bench-cleanup").await?;
        ade_common::amqp::delete(&conn, &Topology::new(self.prefix.clone())).await?;
        let _ = conn.close(200, "done".into()).await;
        let admin = ade_common::db::connect(&format!("{}/postgres", server_url())).await?;
        admin
            .execute(
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name),
                &[],
            )
            .await?;
        let _ = std::fs::remove_dir_all(&self.scratch);
        Ok(())
    }

    /// POSTs JSON and returns the reply's JSON (2xx only).
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    /// A workspace and the sample document uploaded to it.
    pub async fn workspace_with_sample(&self) -> anyhow::Result<(String, String)> {
        let ws = self
            .post("/api/v1/workspaces", json!({"name": "bench"}))
            .await?;
        let ws = id(&ws)?;
        let part =
            reqwest::multipart::Part::bytes(std::fs::read(self.sample())?).file_name("members.csv");
        let doc: Value = self
            .client
            .post(format!("{}/api/v1/workspaces/{ws}/documents", self.base))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await?
            .json()
            .await?;
        Ok((ws, id(&doc)?))
    }

    /// The sample input (a 16-row member export).
    pub fn sample(&self) -> PathBuf {
        self.repo.join("engine/samples/members.csv")
    }

    /// The starter template configuration.
    pub async fn template_config(&self, ws: &str) -> anyhow::Result<String> {
        let body = json!({"name": "bench", "source": {"type": "template"}});
        id(&self
            .post(&format!("/api/v1/workspaces/{ws}/configurations"), body)
            .await?)
    }

    /// A configuration whose runs each print `lines` console lines (from the
    /// per-run hook, so a warm engine prints them on every run too), as fast
    /// as Python prints or at `rate` lines per second.
    pub async fn chatty_config(
        &self,
        ws: &str,
        lines: usize,
        rate: Option<usize>,
    ) -> anyhow::Result<String> {
        let template = self.repo.join("engine/src/ade_engine/templates/config");
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for name in files_under(&template, Path::new(""))? {
            let name = name.to_string_lossy().into_owned();
            let mut body = std::fs::read_to_string(template.join(&name))?;
            if name.ends_with("hooks.py") {
                body = body.replace(
                    "    run.state[\"tables\"] = 0\n",
                    &format!(
                        "    run.state[\"tables\"] = 0\n{}",
                        print_lines(lines, rate)
                    ),
                );
                anyhow::ensure!(body.contains("range("), "the template's hook changed");
            }
            zip.start_file(name, zip::write::SimpleFileOptions::default())?;
            std::io::Write::write_all(&mut zip, body.as_bytes())?;
        }
        let form = reqwest::multipart::Form::new()
            .text("name", format!("chatty-{lines}-{}", rate.unwrap_or(0)))
            .part(
                "package",
                reqwest::multipart::Part::bytes(zip.finish()?.into_inner()).file_name("c.zip"),
            );
        let config: Value = self
            .client
            .post(format!(
                "{}/api/v1/workspaces/{ws}/configurations",
                self.base
            ))
            .multipart(form)
            .send()
            .await?
            .json()
            .await?;
        id(&config)
    }

    /// The interpreter of a build's venv on this host.
    pub fn venv_python(&self, ws: &str, config: &str, build: &str) -> PathBuf {
        self.scratch
            .join("venvs")
            .join(ws)
            .join(config)
            .join(build)
            .join(".venv/bin/python")
    }
}

/// The files under `dir/rel` (bytecode caches aside), as paths relative to `dir`.
fn files_under(dir: &Path, rel: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.join(rel))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        if entry.file_name() == "__pycache__" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            files.extend(files_under(dir, &path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

/// Python that prints `lines` lines, paced in steps of 10 lines at `rate`.
fn print_lines(lines: usize, rate: Option<usize>) -> String {
    match rate {
        None => format!("    for i in range({lines}):\n        print(f\"line {{i}}\")\n"),
        Some(rate) => format!(
            "    import time\n    start = time.monotonic()\n    for i in range({lines}):\n        print(f\"line {{i}}\", flush=True)\n        if i % 10 == 9:\n            time.sleep(max(0.0, start + (i + 1) / {rate} - time.monotonic()))\n"
        ),
    }
}

/// The PostgreSQL server (no database): `ADE_BENCH_DATABASE_SERVER` or local.
fn server_url() -> String {
    std::env::var("ADE_BENCH_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_owned()
}

fn client(key: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse()?);
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(256)
        .build()?)
}

/// A placeholder child until the API starts (`true` exits at once).
fn dummy() -> anyhow::Result<Child> {
    Ok(Command::new("true").spawn()?)
}

/// The `id` of a resource.
pub fn id(v: &Value) -> anyhow::Result<String> {
    v["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no id in {v}"))
}
