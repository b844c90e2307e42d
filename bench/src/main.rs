//! `ade-bench`: the ADE Runs fleet against the bare engine, in one process
//! run. It starts the real `ade-api` and workers (from this target folder)
//! on a fresh database and AMQP prefix, then measures, each against its
//! floor where it has one: end-to-end latency of sequential runs against the
//! bare engine spawned directly from the same venv; completed runs per
//! second with every slot busy, against the bare engine at the same
//! parallelism, with the CPU per run of every process; the accept path at 64
//! clients; and live event delivery through one API instance. It prints a
//! table and writes JSON. Numbers are reported, never asserted.

mod cpu;
mod phases;
mod runs;
mod sse;
mod stack;
mod stats;

use clap::Parser;
use phases::Pids;
use runs::{Bare, Job};
use serde::Serialize;
use stack::{Shape, Stack};

#[derive(Parser)]
#[command(
    version,
    about = "Benchmarks the ADE Runs fleet against the bare engine."
)]
struct Args {
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Runs at once per worker (`ADE_WORKER_CONCURRENCY`); default: CPUs.
    #[arg(long)]
    concurrency: Option<usize>,
    /// The warm engine pool (`ADE_ENGINE_POOL`): `on` or `off`.
    #[arg(long, default_value = "on")]
    pool: String,
    /// Sequential runs of each kind in the overhead phase.
    #[arg(long, default_value_t = 100)]
    latency_runs: usize,
    /// Runs of each kind in the throughput phase.
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Concurrent clients of the accept phase.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds of the accept phase.
    #[arg(long, default_value_t = 10.0)]
    accept_seconds: f64,
    /// Console lines of the events phase's burst run (printed as fast as Python can).
    #[arg(long, default_value_t = 20_000)]
    lines: usize,
    /// Lines per second of the events phase's paced run (its delivered rate
    /// is this times the followers).
    #[arg(long, default_value_t = 1_200)]
    paced_rate: usize,
    /// Seconds of the paced run.
    #[arg(long, default_value_t = 5)]
    paced_seconds: usize,
    /// Followers of the events phase's run.
    #[arg(long, default_value_t = 20)]
    followers: usize,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    workers: usize,
    concurrency: usize,
    pool: String,
    overhead: phases::Overhead,
    throughput: phases::Throughput,
    events_burst: phases::Events,
    events_paced: phases::Events,
    accept: phases::Accept,
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    memory_gib: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        matches!(args.pool.as_str(), "on" | "off"),
        "--pool is on or off"
    );
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let concurrency = args.concurrency.unwrap_or(cpus);
    let shape = Shape {
        workers: args.workers,
        concurrency,
        pool: args.pool.clone(),
    };
    let mut stack = Stack::start(&shape).await?;
    let result = measure(&args, &mut stack, concurrency).await;
    stack.stop().await?;
    let report = Report {
        machine: machine(cpus),
        workers: args.workers,
        concurrency,
        pool: args.pool.clone(),
        ..result?
    };
    print(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        println!("\nJSON written to {}", path.display());
    }
    Ok(())
}

async fn measure(args: &Args, stack: &mut Stack, concurrency: usize) -> anyhow::Result<Report> {
    let (ws, doc) = stack.workspace_with_sample().await?;
    let config = stack.template_config(&ws).await?;
    let burst = stack.chatty_config(&ws, args.lines, None).await?;
    let paced_lines = args.paced_rate * args.paced_seconds;
    let paced = stack
        .chatty_config(&ws, paced_lines, Some(args.paced_rate))
        .await?;
    let job = Job {
        base: stack.base.clone(),
        client: stack.client.clone(),
        config: config.clone(),
        doc: doc.clone(),
    };
    eprintln!("==> building the venvs");
    job.run().await?;
    for config in [&burst, &paced] {
        let job = Job {
            config: config.clone(),
            ..job.clone()
        };
        job.run().await?;
    }
    let build = latest_build(stack, &config).await?;
    let input = stack.scratch.join("members.csv");
    std::fs::copy(stack.sample(), &input)?;
    let bare = Bare {
        python: stack.venv_python(&ws, &config, &build),
        input,
        scratch: stack.scratch.join("bare"),
    };
    let pids = Pids {
        api: stack.api.id(),
        workers: stack.workers.iter().map(std::process::Child::id).collect(),
    };
    eprintln!(
        "==> overhead: {} sequential runs of each",
        args.latency_runs
    );
    let overhead = phases::overhead(&job, &bare, args.latency_runs).await?;
    eprintln!("==> throughput: {} runs of each", args.runs);
    let slots = args.workers * concurrency;
    let throughput = phases::throughput(&job, &bare, &pids, args.runs, slots).await?;
    eprintln!("==> events: {} followers", args.followers);
    let events_burst =
        phases::events(stack, &burst, &doc, args.lines, None, args.followers).await?;
    let events_paced = phases::events(
        stack,
        &paced,
        &doc,
        paced_lines,
        Some(args.paced_rate),
        args.followers,
    )
    .await?;
    eprintln!(
        "==> accept: {} clients for {} s",
        args.clients, args.accept_seconds
    );
    let accept = phases::accept(stack, &config, &doc, args.clients, args.accept_seconds).await?;
    Ok(Report {
        machine: machine(0),
        workers: 0,
        concurrency: 0,
        pool: String::new(),
        overhead,
        throughput,
        events_burst,
        events_paced,
        accept,
    })
}

/// The build the configuration's runs used.
async fn latest_build(stack: &Stack, config: &str) -> anyhow::Result<String> {
    let db = ade_common::db::connect(&stack.db_url).await?;
    let row = db
        .query_one(
            "SELECT build_id::text FROM runs WHERE configuration_id = $1::text::uuid
             ORDER BY created_at DESC LIMIT 1",
            &[&config],
        )
        .await?;
    Ok(row.get(0))
}

fn machine(cpus: usize) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpus,
        cpu_model,
        memory_gib: kb / 1024.0 / 1024.0,
    }
}

fn print(r: &Report) {
    let (o, t, a) = (&r.overhead, &r.throughput, &r.accept);
    println!(
        "\nADE Runs bench: {} worker(s) x {} slots, engine pool {}; {} CPUs ({}), {:.0} GiB",
        r.workers, r.concurrency, r.pool, r.machine.cpus, r.machine.cpu_model, r.machine.memory_gib
    );
    println!("\n| measure | fleet | bare engine | fleet - bare / fleet ÷ bare |");
    println!("|---|---|---|---|");
    println!(
        "| end-to-end latency, median ({} runs) | {:.1} ms | {:.1} ms | {:+.1} ms |",
        o.fleet.n,
        o.fleet.p50_ms,
        o.bare.p50_ms,
        o.fleet.p50_ms - o.bare.p50_ms
    );
    println!(
        "| end-to-end latency, p99 | {:.1} ms | {:.1} ms | {:+.1} ms |",
        o.fleet.p99_ms,
        o.bare.p99_ms,
        o.fleet.p99_ms - o.bare.p99_ms
    );
    println!(
        "| throughput, all slots busy ({} runs) | {:.1} runs/s | {:.1} runs/s | {:.2}x |",
        t.runs,
        t.fleet_per_s,
        t.bare_per_s,
        t.fleet_per_s / t.bare_per_s
    );
    let (f, b) = (&t.fleet_cpu, &t.bare_cpu);
    println!("\nCPU per run (ms), throughput phase:\n");
    println!("| process | fleet | bare engine |");
    println!("|---|---|---|");
    for (name, fleet, bare) in [
        (
            "engine: sandboxes, zygotes, engines (the rest of the machine)",
            f.engine_ms,
            b.engine_ms,
        ),
        ("ade-worker", f.worker_ms, 0.0),
        ("ade-api", f.api_ms, 0.0),
        ("PostgreSQL", f.postgres_ms, 0.0),
        ("RabbitMQ", f.rabbitmq_ms, 0.0),
        ("bench client", f.client_ms, b.client_ms),
    ] {
        println!("| {name} | {fleet:.1} | {bare:.1} |");
    }
    let total = f.engine_ms + f.worker_ms + f.api_ms + f.postgres_ms + f.rabbitmq_ms;
    println!(
        "| total without the client | {total:.1} | {:.1} |",
        b.engine_ms
    );
    println!(
        "\naccept: {} clients, {} runs accepted (each found in PostgreSQL), {:.0} runs/s, p50 {:.1} ms, p99 {:.1} ms",
        a.clients, a.accepted, a.per_s, a.latency.p50_ms, a.latency.p99_ms
    );
    for e in [&r.events_burst, &r.events_paced] {
        let pace = e.rate.map_or("as fast as it prints".to_owned(), |r| {
            format!("{r} lines/s")
        });
        println!(
            "events: a run printing {} lines {pace}, {} SSE followers: {:.0} events/s delivered, lag p50 {:.1} ms, p99 {:.1} ms",
            e.lines, e.followers, e.delivered_per_s, e.latency.p50_ms, e.latency.p99_ms
        );
    }
}
