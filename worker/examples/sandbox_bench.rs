//! Measures what the engine sandbox costs per run on this machine: starting
//! `<venv>/bin/python -c pass` and a whole engine run over the sample CSV,
//! each through `ADE_ENGINE_SANDBOX=off` and `bwrap`, spawned and waited for
//! from this process as the worker does it (staging and uid drop included).
//!
//! `cargo run --release -p ade-worker --example sandbox_bench [VENV]`
//! (VENV: a venv with the engine and a configuration, made from `ADE_PYTHON`
//! (default `python3`); without it, one is built in a temporary folder). With `--print`,
//! it prints the bwrap command line of each case instead, to time it with
//! other tools.

use ade_worker::limits::Limits;
use ade_worker::sandbox::{Host, Mode, Sandbox, layout};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RUNS: usize = 30;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let print = args.iter().any(|a| a == "--print");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let scratch = std::env::temp_dir().join(format!("ade-sandbox-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let venv = match args.iter().find(|a| !a.starts_with("--")) {
        Some(v) => PathBuf::from(v),
        None => make_venv(&scratch, &repo)?,
    };
    let doc = repo.join("engine/samples/members.csv");
    for mode in [Mode::Off, Mode::Bwrap] {
        let host = Host::detect(mode, &python(), "uv").await?;
        for case in ["python -c pass", "engine run"] {
            let outputs = scratch.join("outputs");
            let _ = std::fs::remove_dir_all(&outputs);
            std::fs::create_dir_all(&outputs)?;
            host.lend(&outputs).await?;
            let sandbox = describe(&host, case, &venv, &doc, &outputs, &scratch)?;
            if print {
                let cmd = host.command(&sandbox)?;
                let std = cmd.as_std();
                let argv: Vec<_> = std::iter::once(std.get_program())
                    .chain(std.get_args())
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                println!("{} / {case}: {}", mode.as_str(), argv.join(" "));
                continue;
            }
            let mut times = Vec::new();
            for _ in 0..RUNS + 2 {
                let mut cmd = host.command(&sandbox)?;
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                let start = Instant::now();
                let status = cmd.status().await?;
                times.push(start.elapsed());
                anyhow::ensure!(
                    status.success(),
                    "{case} under {} failed: {status}",
                    mode.as_str()
                );
            }
            times.drain(..2);
            times.sort();
            println!(
                "{:<6} {:<15} min {:>7.1} ms  median {:>7.1} ms  max {:>7.1} ms  (n={RUNS})",
                mode.as_str(),
                case,
                ms(times[0]),
                ms(times[RUNS / 2]),
                ms(times[RUNS - 1]),
            );
        }
    }
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// The sandbox of one case, laid out as the worker lays out a run.
fn describe(
    host: &Host,
    case: &str,
    venv: &Path,
    doc: &Path,
    outputs: &Path,
    scratch: &Path,
) -> anyhow::Result<Sandbox> {
    let limits = Limits::run(2_147_483_648, Duration::from_secs(900), 1_073_741_824);
    let mut sb = Sandbox::new(Path::new(layout::VENV).join("bin/python"), limits, scratch);
    host.mount_venv(&mut sb, venv, false)?;
    if case == "python -c pass" {
        sb.args(["-c", "pass"]);
        return Ok(sb);
    }
    let input = Path::new(layout::INPUTS).join("doc.csv");
    sb.read_only(doc, &input)
        .writable(outputs, layout::OUTPUTS)
        .args(["-m", "ade_engine", "run", "--input"])
        .path_arg(input)
        .arg("--output-dir")
        .path_arg(layout::OUTPUTS)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    Ok(sb)
}

/// A venv from `python3` with the engine and the starter configuration.
fn make_venv(scratch: &Path, repo: &Path) -> anyhow::Result<PathBuf> {
    let venv = scratch.join("venv");
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let status = std::process::Command::new("uv").args(args).status()?;
        anyhow::ensure!(status.success(), "uv {args:?} failed");
        Ok(())
    };
    let venv_s = venv.to_string_lossy().into_owned();
    run(&[
        "venv",
        "--quiet",
        "--relocatable",
        "--python",
        &python(),
        &venv_s,
    ])?;
    let python = venv.join("bin/python").to_string_lossy().into_owned();
    let engine = repo.join("engine").to_string_lossy().into_owned();
    let config = repo
        .join("engine/src/ade_engine/templates/config")
        .to_string_lossy()
        .into_owned();
    run(&[
        "pip",
        "install",
        "--quiet",
        "--compile-bytecode",
        "--python",
        &python,
        &engine,
        &config,
    ])?;
    Ok(venv)
}

/// `ADE_PYTHON`, or `python3`.
fn python() -> String {
    std::env::var("ADE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
