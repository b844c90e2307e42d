//! A run is bounded as a whole, in both engine modes: its processes
//! together by its memory (`memory_limit`), its files together by
//! `ADE_MAX_OUTPUT_BYTES` (`output_limit`) — sampled from outside while it
//! runs, and each failure code decided by the worker.

use crate::fixtures::run_code_package;
use crate::helpers::{Options, TestApp, ok_json, processes_mentioning};
use crate::modes::{Mode, assert_failed, in_both_modes, run_in};
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

async fn a_run_over_its_memory_limit_fails_with_memory_limit(mode: Mode) {
    let mut app = TestApp::with(Options::default()).await;
    mode.start_worker(&mut app, |_| {}).await;
    let (config, doc) = app
        .package_setup(run_code_package("_hog = bytearray(3 * 1024 ** 3)"))
        .await;
    let run = run_in(&app, mode, &config, &doc).await;
    assert_failed(&run, "memory_limit");
    let message = run["failure"]["message"].as_str().unwrap();
    assert!(message.contains("2147483648"), "{message}");
    // The worker is unharmed: the next run of another configuration succeeds.
    let (config, doc) = app.sample_setup().await;
    let next = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(next["status"], "succeeded", "{next}");
    app.finish().await;
}

/// Four processes, each touching 400 MiB and holding it.
const FOUR_HOGS: &str = r#"import subprocess
hog = "import time; b = bytearray(400 * 1024 * 1024); time.sleep(30)"
procs = [subprocess.Popen([sys.executable, "-c", hog, "MARKER"]) for _ in range(4)]
for p in procs:
    p.wait()"#;

async fn four_processes_are_held_to_the_memory_of_their_run(mode: Mode) {
    let mut app = TestApp::with(Options::default()).await;
    mode.start_worker(&mut app, |s| s.run_memory_bytes = 1024 * MIB)
        .await;
    // The random tail of a UUIDv7 (its head is the time, shared by tests started together).
    let marker = format!(
        "ade-hog-{}",
        &uuid::Uuid::now_v7().simple().to_string()[16..]
    );
    let code = FOUR_HOGS.replace("MARKER", &marker);
    let (config, doc) = app.package_setup(run_code_package(&code)).await;
    let sampler = Sampler::start({
        let marker = marker.clone();
        move || resident_bytes(&marker)
    });
    let run = run_in(&app, mode, &config, &doc).await;
    let peak = sampler.stop();
    assert_failed(&run, "memory_limit");
    assert!(
        peak <= 1024 * MIB * 11 / 10,
        "the run's processes held {} MiB together",
        peak / MIB
    );
    assert!(peak >= 400 * MIB, "the hogs ran ({} MiB)", peak / MIB);
    assert!(
        processes_mentioning(&marker).is_empty(),
        "the hogs died with the run"
    );
    app.finish().await;
}

async fn outputs_over_the_cap_fail_the_run_with_output_limit(mode: Mode) {
    let mut app = TestApp::with(Options::default()).await;
    mode.start_worker(&mut app, |s| s.max_output_bytes = MIB)
        .await;
    // Two files under the per-file limit, over the total together.
    let code = r#"for _n in ("a", "b"):
    with open(os.path.join(run.output_dir, f"{_n}.bin"), "wb") as _f:
        _f.write(b"x" * 700 * 1024)"#;
    let (config, doc) = app.package_setup(run_code_package(code)).await;
    let run = run_in(&app, mode, &config, &doc).await;
    let id = run["id"].as_str().unwrap();
    assert_failed(&run, "output_limit");
    let outputs = ok_json(
        app.get(&format!("/api/v1/runs/{id}/outputs")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        outputs["files"],
        json!([]),
        "nothing of a failed run is served"
    );
    app.finish().await;
}

/// Four processes, each writing 100 MiB into the run's output folder.
const FOUR_WRITERS: &str = r#"import subprocess
write = "import sys; f = open(sys.argv[1], 'wb'); [f.write(b'x' * (1 << 20)) for _ in range(100)]; f.close()"
procs = [subprocess.Popen([sys.executable, "-c", write, os.path.join(run.output_dir, f"{i}.bin")]) for i in range(4)]
for p in procs:
    p.wait()
import time
time.sleep(30)"#;

async fn a_run_never_holds_more_disk_than_its_output_bound(mode: Mode) {
    let mut app = TestApp::with(Options::default()).await;
    mode.start_worker(&mut app, |s| s.max_output_bytes = 64 * MIB)
        .await;
    let (config, doc) = app.package_setup(run_code_package(FOUR_WRITERS)).await;
    // A first run builds the venv (files of the host's own), the second is measured.
    app.run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    // Where a run's files landed before runs had an area of their own:
    // the attempt's folder (spawned) and the warm engine's scratch (forked).
    let data = app.data_dir.clone();
    let baseline = disk_bytes(&data);
    let sampler = Sampler::start(move || disk_bytes(&data).saturating_sub(baseline));
    let run = run_in(&app, mode, &config, &doc).await;
    let peak = sampler.stop();
    assert_failed(&run, "output_limit");
    assert!(
        peak <= (64 + 32) * MIB,
        "the run held {} MiB of the host's disk",
        peak / MIB
    );
    app.finish().await;
}

in_both_modes!(
    a_run_over_its_memory_limit_fails_with_memory_limit,
    four_processes_are_held_to_the_memory_of_their_run,
    outputs_over_the_cap_fail_the_run_with_output_limit,
    a_run_never_holds_more_disk_than_its_output_bound,
);

/// Samples a figure every 10 ms on a thread of its own; keeps the highest.
struct Sampler {
    peak: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(sample: impl Fn() -> u64 + Send + 'static) -> Self {
        let (peak, done) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let thread = std::thread::spawn({
            let (peak, done) = (peak.clone(), done.clone());
            move || {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(sample(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        Self { peak, done, thread }
    }

    fn stop(self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

/// Resident memory of the processes whose command line mentions `marker`.
fn resident_bytes(marker: &str) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        total += kib * 1024;
    }
    total
}

/// Bytes of regular files under `folder` (what a run could leave on the host's disk).
fn disk_bytes(folder: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![folder.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => total += std::os::unix::fs::MetadataExt::blocks(&m) * 512,
                _ => {}
            }
        }
    }
    total
}
