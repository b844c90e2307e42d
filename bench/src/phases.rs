//! The measurements, each against its floor where it has one.

use crate::cpu::{self, Snapshot};
use crate::runs::{Bare, Job};
use crate::sse::Sse;
use crate::stack::Stack;
use crate::stats::{Summary, summarize};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// End-to-end latency of sequential runs, fleet and bare interleaved.
#[derive(Serialize)]
pub struct Overhead {
    /// POST → `run.completed` seen on the run's stream.
    pub fleet: Summary,
    /// The bare engine spawned directly.
    pub bare: Summary,
}

/// Measures `n` sequential runs of each, one fleet run then one bare run.
pub async fn overhead(job: &Job, bare: &Bare, n: usize) -> anyhow::Result<Overhead> {
    for i in 0..3 {
        job.run().await?;
        bare.run(i).await?;
    }
    let (mut fleet, mut floor) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        fleet.push(job.run().await?);
        floor.push(bare.run(i).await?);
    }
    Ok(Overhead {
        fleet: summarize(fleet),
        bare: summarize(floor),
    })
}

/// CPU seconds per run of each process, over a throughput phase.
#[derive(Serialize, Default)]
pub struct CpuPerRun {
    /// `ade-api`.
    pub api_ms: f64,
    /// `ade-worker` processes themselves.
    pub worker_ms: f64,
    /// Everything else the machine spent: the workers' sandboxes, zygotes
    /// and engines (and any background noise).
    pub engine_ms: f64,
    /// The PostgreSQL server (all its processes).
    pub postgres_ms: f64,
    /// The RabbitMQ server.
    pub rabbitmq_ms: f64,
    /// This benchmark's own process (its HTTP client).
    pub client_ms: f64,
}

/// Completed runs per second with every slot busy.
#[derive(Serialize)]
pub struct Throughput {
    /// Runs completed.
    pub runs: usize,
    /// Fleet runs per second.
    pub fleet_per_s: f64,
    /// Bare engine runs per second at the same parallelism.
    pub bare_per_s: f64,
    /// CPU per fleet run, by process.
    pub fleet_cpu: CpuPerRun,
    /// CPU per bare run (the engine; the client is the spawner).
    pub bare_cpu: CpuPerRun,
}

/// The processes whose CPU is counted.
pub struct Pids {
    /// `ade-api`.
    pub api: u32,
    /// The workers.
    pub workers: Vec<u32>,
}

fn cpu_now(pids: &Pids) -> [f64; 7] {
    let s = Snapshot::take();
    let me = std::process::id();
    let service = |name| cpu::service_root(name).map_or(0.0, |pid| s.tree(pid));
    [
        s.own(pids.api),
        pids.workers.iter().map(|w| s.own(*w)).sum(),
        cpu::machine_busy(),
        service("postgres"),
        service("beam.smp"),
        s.own(me),
        0.0,
    ]
}

fn per_run(before: [f64; 7], after: [f64; 7], runs: usize) -> CpuPerRun {
    let d = |i: usize| (after[i] - before[i]) * 1000.0 / runs as f64;
    let named = d(0) + d(1) + d(3) + d(4) + d(5);
    CpuPerRun {
        api_ms: d(0),
        worker_ms: d(1),
        engine_ms: (d(2) - named).max(0.0),
        postgres_ms: d(3),
        rabbitmq_ms: d(4),
        client_ms: d(5),
    }
}

/// `runs` through the fleet with `window` in flight, then `runs` bare
/// engines `slots` at a time.
pub async fn throughput(
    job: &Job,
    bare: &Bare,
    pids: &Pids,
    runs: usize,
    slots: usize,
) -> anyhow::Result<Throughput> {
    let before = cpu_now(pids);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..2 * slots {
        let (job, next) = (job.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < runs {
                job.run().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let fleet_secs = started.elapsed().as_secs_f64();
    let fleet_cpu = per_run(before, cpu_now(pids), runs);

    let me = std::process::id();
    let (own, busy) = (Snapshot::take().own(me), cpu::machine_busy());
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..slots {
        let (bare, next) = (bare.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= runs {
                    return anyhow::Ok(());
                }
                bare.run(n).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let bare_secs = started.elapsed().as_secs_f64();
    let client = (Snapshot::take().own(me) - own) * 1000.0 / runs as f64;
    let bare_cpu = CpuPerRun {
        engine_ms: ((cpu::machine_busy() - busy) * 1000.0 / runs as f64 - client).max(0.0),
        client_ms: client,
        ..Default::default()
    };
    Ok(Throughput {
        runs,
        fleet_per_s: runs as f64 / fleet_secs,
        bare_per_s: runs as f64 / bare_secs,
        fleet_cpu,
        bare_cpu,
    })
}

/// Live events through one API instance.
#[derive(Serialize)]
pub struct Events {
    /// Followers of the run.
    pub followers: usize,
    /// Console lines the run printed.
    pub lines: usize,
    /// The run printed this many lines per second (`None`: as fast as it could).
    pub rate: Option<usize>,
    /// Events delivered to all followers together, per second.
    pub delivered_per_s: f64,
    /// Persisted (`created_at`) → read by a follower.
    pub latency: Summary,
}

/// A run of `config` printing `lines` lines, followed by `followers` SSE
/// clients that connect while it is queued (no worker), then one worker.
pub async fn events(
    stack: &mut Stack,
    config: &str,
    doc: &str,
    lines: usize,
    rate: Option<usize>,
    followers: usize,
) -> anyhow::Result<Events> {
    stack.stop_workers();
    let run = stack
        .post(
            &format!("/api/v1/configs/{config}/runs"),
            json!({"options": {"document_ids": [doc]}}),
        )
        .await?;
    let url = format!(
        "{}/api/v1/runs/{}/events?stream=true",
        stack.base,
        crate::stack::id(&run)?
    );
    let mut readers = Vec::new();
    for _ in 0..followers {
        let res = stack
            .client
            .get(&url)
            .header("accept", "text/event-stream")
            .send()
            .await?;
        anyhow::ensure!(
            res.status() == 200,
            "a follower was refused: {}",
            res.status()
        );
        readers.push(tokio::spawn(follow(Sse::new(res))));
    }
    stack.start_worker()?;
    let (mut latencies, mut first, mut last) = (Vec::new(), None::<Instant>, None::<Instant>);
    for r in readers {
        let (lat, f, l) = r.await??;
        latencies.extend(lat);
        first = Some(first.map_or(f, |x: Instant| x.min(f)));
        last = Some(last.map_or(l, |x: Instant| x.max(l)));
    }
    stack.stop_workers();
    let secs = (last.unwrap_or_else(Instant::now) - first.unwrap_or_else(Instant::now))
        .as_secs_f64()
        .max(1e-9);
    Ok(Events {
        followers,
        lines,
        rate,
        delivered_per_s: latencies.len() as f64 / secs,
        latency: summarize(latencies),
    })
}

/// Reads a stream to its end: each event's lag, the first and last receipt.
async fn follow(mut sse: Sse) -> anyhow::Result<(Vec<f64>, Instant, Instant)> {
    let (mut lat, mut first, mut last) = (Vec::new(), None, Instant::now());
    while let Some(event) = sse.next().await? {
        let created = time::OffsetDateTime::parse(
            event["created_at"].as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )?;
        let now = time::OffsetDateTime::now_utc();
        lat.push((now - created).as_seconds_f64() * 1000.0);
        last = Instant::now();
        first.get_or_insert(last);
        if event["type"] == "run.completed" {
            break;
        }
    }
    Ok((lat, first.unwrap_or(last), last))
}

/// The accept path: `POST /runs` at a fixed concurrency.
#[derive(Serialize)]
pub struct Accept {
    /// Concurrent clients.
    pub clients: usize,
    /// Runs accepted (201), each checked durable in PostgreSQL.
    pub accepted: usize,
    /// Accepted runs per second.
    pub per_s: f64,
    /// Request latency.
    pub latency: Summary,
}

/// `clients` clients POST runs for `seconds` (no worker consumes them).
pub async fn accept(
    stack: &mut Stack,
    config: &str,
    doc: &str,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<Accept> {
    stack.stop_workers();
    let db = ade_common::db::connect(&stack.db_url).await?;
    let count = "SELECT count(*) FROM runs WHERE configuration_id = $1::text::uuid";
    let before: i64 = db.query_one(count, &[&config]).await?.get(0);
    let url = format!("{}/api/v1/configs/{config}/runs", stack.base);
    let body = json!({"options": {"document_ids": [doc]}});
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, body) = (stack.client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while started.elapsed().as_secs_f64() < seconds {
                let t = Instant::now();
                let res = client.post(&url).json(&body).send().await?;
                anyhow::ensure!(res.status() == 201, "POST /runs answered {}", res.status());
                res.bytes().await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    let after: i64 = db.query_one(count, &[&config]).await?.get(0);
    let accepted = latencies.len();
    anyhow::ensure!(
        (after - before) as usize == accepted,
        "{accepted} runs accepted but {} stored",
        after - before
    );
    Ok(Accept {
        clients,
        accepted,
        per_s: accepted as f64 / secs,
        latency: summarize(latencies),
    })
}
