//! Live-stream benchmark: one run printing 50,000 lines as fast as it can,
//! followed by 100 SSE clients (events/s delivered, latency from persist to
//! client, API memory); the same with a run paced at 300 lines/s (latency
//! when the machine is not saturated); then the memory of a fresh API with
//! 5,000 idle SSE connections.
//!
//! Runs the real `ade-api` and `ade-worker` binaries from the same target
//! folder as this example, against local PostgreSQL and RabbitMQ, in a
//! database and AMQP prefix of its own. Use `scripts/bench`.

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const LINES: usize = 50_000;
const PACED_LINES: usize = 6_000;
const PACED_RATE: usize = 300;
const FOLLOWERS: usize = 100;
const IDLE: usize = 5_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let bins = std::env::current_exe()?
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let db_url = format!("postgres://postgres@127.0.0.1:5432/ade_bench_{tag}");
    let data = std::env::temp_dir().join(format!("ade-bench-{tag}"));
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let env = |cmd: &mut Command| {
        cmd.env("ADE_DATABASE_URL", &db_url)
            .env("ADE_AMQP_PREFIX", format!("bench-{tag}"))
            .env("ADE_DATA_DIR", &data)
            .env("ADE_VENVS_DIR", data.join("venvs"))
            .env("ADE_ENGINE_DIR", repo.join("engine"))
            .env("ADE_API_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn");
    };
    let result = bench(&base, &bins, &env, &repo).await;
    let admin = ade_common::db::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
    admin
        .execute(
            &format!("DROP DATABASE IF EXISTS ade_bench_{tag} WITH (FORCE)"),
            &[],
        )
        .await?;
    let _ = std::fs::remove_dir_all(&data);
    result
}

async fn bench(
    base: &str,
    bins: &Path,
    env: &dyn Fn(&mut Command),
    repo: &Path,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut api = spawn(&bins.join("ade-api"), env)?;
    wait_ready(&client, base).await?;
    let doc = setup(&client, base, repo).await?;
    let burst = config(&client, base, repo, &doc.0, LINES, None).await?;
    let paced = config(&client, base, repo, &doc.0, PACED_LINES, Some(PACED_RATE)).await?;
    follow_run(
        &client,
        base,
        api.id(),
        bins,
        env,
        &burst,
        &doc.1,
        &format!("{LINES} lines as fast as the engine prints"),
    )
    .await?;
    follow_run(
        &client,
        base,
        api.id(),
        bins,
        env,
        &paced,
        &doc.1,
        &format!("{PACED_LINES} lines at {PACED_RATE} lines/s"),
    )
    .await?;
    api.kill()?;
    api.wait()?;

    // Idle followers, on a fresh API process: a run that stays queued (no worker).
    let mut api = spawn(&bins.join("ade-api"), env)?;
    wait_ready(&client, base).await?;
    let run = post(
        &client,
        &format!("{base}/api/v1/configs/{paced}/runs"),
        json!({"options": {"document_ids": [doc.1]}}),
    )
    .await?;
    let url = format!(
        "{base}/api/v1/runs/{}/events?stream=true",
        run["id"].as_str().unwrap()
    );
    let before = rss_kb(api.id());
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let res = reqwest::Client::new()
            .get(&url)
            .header("accept", "text/event-stream")
            .send()
            .await?;
        anyhow::ensure!(
            res.status() == 200,
            "idle follower refused: {}",
            res.status()
        );
        idle.push(res);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kb(api.id());
    println!("{IDLE} idle SSE followers (fresh API):");
    println!(
        "  API RSS  before {:.1} MB  with followers {:.1} MB  (+{:.1} KB per follower)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after - before) as f64 / IDLE as f64
    );
    api.kill()?;
    api.wait()?;
    drop(idle);
    Ok(())
}

/// Starts FOLLOWERS followers of a new run of `config`, then a worker, and reports.
#[allow(clippy::too_many_arguments)]
async fn follow_run(
    client: &reqwest::Client,
    base: &str,
    api_pid: u32,
    bins: &Path,
    env: &dyn Fn(&mut Command),
    config: &str,
    doc: &str,
    label: &str,
) -> anyhow::Result<()> {
    let run = post(
        client,
        &format!("{base}/api/v1/configs/{config}/runs"),
        json!({"options": {"document_ids": [doc]}}),
    )
    .await?;
    let url = format!(
        "{base}/api/v1/runs/{}/events?stream=true",
        run["id"].as_str().unwrap()
    );
    let followers: Vec<_> = (0..FOLLOWERS)
        .map(|_| tokio::spawn(follow(url.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss_kb(api_pid);
    PEAK.store(0, std::sync::atomic::Ordering::Relaxed);
    let sampler = tokio::spawn(peak_rss(api_pid));
    let mut worker = spawn(&bins.join("ade-worker"), env)?;
    let mut latencies = Vec::new();
    let (mut delivered, mut first, mut last) = (0usize, None::<Instant>, None::<Instant>);
    for f in followers {
        let f = f.await??;
        delivered += f.latencies_ms.len();
        latencies.extend(f.latencies_ms);
        first = first.min(Some(f.first)).or(Some(f.first));
        last = last.max(Some(f.last));
    }
    sampler.abort();
    let peak = PEAK.load(std::sync::atomic::Ordering::Relaxed);
    worker.kill()?;
    worker.wait()?;
    latencies.sort_by(f64::total_cmp);
    let secs = (last.unwrap() - first.unwrap()).as_secs_f64();
    println!("run of {label}, {FOLLOWERS} SSE followers:");
    println!(
        "  events delivered   {delivered} in {secs:.2} s = {:.0} events/s",
        delivered as f64 / secs
    );
    println!(
        "  latency persist->client  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        pct(&latencies, 50.0),
        pct(&latencies, 99.0),
        pct(&latencies, 100.0)
    );
    println!(
        "  API RSS  before {:.1} MB  peak {:.1} MB",
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    Ok(())
}

struct Followed {
    latencies_ms: Vec<f64>,
    first: Instant,
    last: Instant,
}

/// Follows an SSE stream to its end, timing each event against its `created_at`.
async fn follow(url: String) -> anyhow::Result<Followed> {
    let res = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .send()
        .await?;
    let mut body = res.bytes_stream();
    let mut buf = Vec::new();
    let mut out = Followed {
        latencies_ms: Vec::with_capacity(LINES + 100),
        first: Instant::now(),
        last: Instant::now(),
    };
    let mut started = false;
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            let Some(data) = frame
                .split(|b| *b == b'\n')
                .find_map(|l| l.strip_prefix(b"data: "))
            else {
                continue;
            };
            let event: Value = serde_json::from_slice(data)?;
            let now = time::OffsetDateTime::now_utc();
            let created = time::OffsetDateTime::parse(
                event["created_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )?;
            if !started && event["type"] == "console.line" {
                started = true;
                out.first = Instant::now();
            }
            out.latencies_ms
                .push((now - created).as_seconds_f64() * 1000.0);
            out.last = Instant::now();
        }
    }
    Ok(out)
}

static PEAK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn peak_rss(pid: u32) {
    loop {
        PEAK.fetch_max(rss_kb(pid), std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[(((sorted.len() - 1) as f64) * p / 100.0) as usize]
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn(bin: &PathBuf, env: &dyn Fn(&mut Command)) -> anyhow::Result<Child> {
    let mut cmd = Command::new(bin);
    env(&mut cmd);
    Ok(cmd.spawn()?)
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the API did not become ready")
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let res = client.post(url).json(&body).send().await?;
    anyhow::ensure!(res.status().is_success(), "POST {url}: {}", res.status());
    Ok(res.json().await?)
}

/// A workspace and the sample document: `(workspace_id, document_id)`.
async fn setup(
    client: &reqwest::Client,
    base: &str,
    repo: &Path,
) -> anyhow::Result<(String, String)> {
    let ws = post(
        client,
        &format!("{base}/api/v1/workspaces"),
        json!({"name": "bench"}),
    )
    .await?;
    let ws = ws["id"].as_str().unwrap().to_owned();
    let part =
        reqwest::multipart::Part::bytes(std::fs::read(repo.join("engine/samples/members.csv"))?)
            .file_name("members.csv");
    let doc: Value = client
        .post(format!("{base}/api/v1/workspaces/{ws}/documents"))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await?
        .json()
        .await?;
    Ok((ws, doc["id"].as_str().unwrap().to_owned()))
}

/// A configuration whose runs print `lines` lines, at `rate` lines/s if given.
async fn config(
    client: &reqwest::Client,
    base: &str,
    repo: &Path,
    ws: &str,
    lines: usize,
    rate: Option<usize>,
) -> anyhow::Result<String> {
    let template = repo.join("engine/src/ade_engine/templates/config");
    let pause = rate.map_or(0.0, |r| 1.0 / r as f64);
    let columns = std::fs::read_to_string(template.join("src/ade_config/columns.py"))?
        + &format!(
            "\nimport os as _os, time as _time\nif _os.environ.get('ADE_EVENTS_FD'):\n    for _i in range({lines}):\n        print(f'line {{_i}}', flush={flush})\n        if {pause}:\n            _time.sleep({pause})\n",
            flush = if rate.is_some() { "True" } else { "False" }
        );
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, body) in [
        (
            "pyproject.toml",
            std::fs::read_to_string(template.join("pyproject.toml"))?,
        ),
        (
            "README.md",
            std::fs::read_to_string(template.join("README.md"))?,
        ),
        (
            "src/ade_config/__init__.py",
            std::fs::read_to_string(template.join("src/ade_config/__init__.py"))?,
        ),
        ("src/ade_config/columns.py", columns),
        (
            "src/ade_config/hooks.py",
            std::fs::read_to_string(template.join("src/ade_config/hooks.py"))?,
        ),
        (
            "src/ade_config/rows.py",
            std::fs::read_to_string(template.join("src/ade_config/rows.py"))?,
        ),
        (
            "src/ade_config/validators.py",
            std::fs::read_to_string(template.join("src/ade_config/validators.py"))?,
        ),
    ] {
        zip.start_file(name, zip::write::SimpleFileOptions::default())?;
        std::io::Write::write_all(&mut zip, body.as_bytes())?;
    }
    let form = reqwest::multipart::Form::new()
        .text("name", format!("chatty-{lines}"))
        .part(
            "package",
            reqwest::multipart::Part::bytes(zip.finish()?.into_inner()).file_name("c.zip"),
        );
    let config: Value = client
        .post(format!("{base}/api/v1/workspaces/{ws}/configurations"))
        .multipart(form)
        .send()
        .await?
        .json()
        .await?;
    Ok(config["id"].as_str().unwrap().to_owned())
}
