//! Measures the venv cache on this machine: a cache hit, a warm hydration
//! (uv cache warm, shared wheel present), a cold build (empty uv cache), and
//! the same cold build with pip for comparison.
//!
//! `cargo run -p ade-worker --example venv_bench` (needs `uv`, `python3`, and
//! the package index for the cold build's build backend).

use ade_worker::venv::{BuildSpec, Marker, VenvCache};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let scratch = std::env::temp_dir().join(format!("ade-venv-bench-{}", Uuid::now_v7().simple()));
    let uv_cache = scratch.join("uv-cache");
    // SAFETY: set before any other thread reads the environment.
    unsafe { std::env::set_var("UV_CACHE_DIR", &uv_cache) };
    let engine_dir = repo.join("engine");
    let identity = ade_common::identity::Identity::detect(&engine_dir, "python3").await?;
    let cache = VenvCache {
        root: scratch.join("venvs"),
        uv: "uv".into(),
        python: "python3".into(),
        engine_dir: engine_dir.clone(),
        timeout: Duration::from_secs(600),
        engine_version: identity.engine_version.clone(),
        engine_wheel: Default::default(),
        sandbox: std::sync::Arc::new(
            ade_worker::sandbox::Host::detect(ade_worker::sandbox::Mode::Bwrap, "python3", "uv")
                .await?,
        ),
        limits: ade_worker::limits::Limits::build(
            2_147_483_648,
            Duration::from_secs(600),
            1_073_741_824,
        ),
    };
    let package = template_archive(&repo.join("engine/src/ade_engine/templates/config"))?;
    let marker = Marker {
        build_id: Uuid::now_v7(),
        workspace_id: Uuid::now_v7(),
        configuration_id: Uuid::now_v7(),
        fingerprint: identity.fingerprint("sha256:bench"),
        config_digest: "sha256:bench".into(),
        engine_version: identity.engine_version.clone(),
        python_version: identity.python_version.clone(),
        packages: vec![],
        created_at: String::new(),
    };
    let spec = || BuildSpec {
        marker: marker.clone(),
        package: package.clone(),
        wheel_dir: scratch.join("shared/wheels"),
        constraints: vec![],
    };
    let ensure = || async {
        cache
            .ensure(spec(), CancellationToken::new(), |_| async {})
            .await
    };

    let start = Instant::now();
    let built = ensure().await?;
    let cold = start.elapsed();
    assert!(!built.reused);
    drop(built);

    let mut hits = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        let ready = ensure().await?;
        hits.push(start.elapsed());
        assert!(ready.reused);
    }

    let mut warm = Vec::new();
    for _ in 0..5 {
        std::fs::remove_dir_all(cache.build_dir(&marker))?;
        let start = Instant::now();
        let ready = ensure().await?;
        warm.push(start.elapsed());
        assert!(!ready.reused);
    }

    let pip = pip_build(
        &scratch,
        &engine_dir,
        &repo.join("engine/src/ade_engine/templates/config"),
    )?;
    println!(
        "cache hit        p50 {:>9.3} ms  p99 {:>9.3} ms  (n={})",
        ms(pct(&mut hits, 50)),
        ms(pct(&mut hits, 99)),
        hits.len()
    );
    println!(
        "warm hydration   p50 {:>9.1} ms  max {:>9.1} ms  (n={})",
        ms(pct(&mut warm, 50)),
        ms(pct(&mut warm, 100)),
        warm.len()
    );
    println!(
        "cold build (uv)      {:>9.1} ms  (empty uv cache)",
        ms(cold)
    );
    println!(
        "cold build (pip)     {:>9.1} ms  (python -m venv + pip install, no pip cache)",
        ms(pip)
    );
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) * p) / 100]
}

/// The template as the canonical tar.gz the API stores.
fn template_archive(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for rel in [
        "pyproject.toml",
        "README.md",
        "src/ade_config/__init__.py",
        "src/ade_config/columns.py",
        "src/ade_config/hooks.py",
        "src/ade_config/rows.py",
        "src/ade_config/validators.py",
    ] {
        tar.append_path_with_name(dir.join(rel), rel)?;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar.into_inner()?)?;
    Ok(gz.finish()?)
}

/// The same environment with the standard tools.
fn pip_build(scratch: &Path, engine: &Path, config: &Path) -> anyhow::Result<Duration> {
    let venv: PathBuf = scratch.join("pip-venv");
    let start = Instant::now();
    let status = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?;
    anyhow::ensure!(status.success(), "python3 -m venv failed");
    let status = std::process::Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--no-cache-dir",
            "--disable-pip-version-check",
        ])
        .arg(engine)
        .arg(config)
        .status()?;
    anyhow::ensure!(status.success(), "pip install failed");
    Ok(start.elapsed())
}
