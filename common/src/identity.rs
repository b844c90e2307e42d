//! What makes two builds equal: the engine's version and sources, the Python
//! interpreter, and the configuration's digest, hashed into a fingerprint.

use crate::ids::Digest;
use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// The engine and interpreter this worker builds venvs with.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `<version>+src.<digest prefix>`: a changed engine makes new builds.
    pub engine_version: String,
    /// e.g. `cpython-3.11.7-x86_64`.
    pub python_version: String,
}

impl Identity {
    /// Reads the engine sources and asks the interpreter who it is.
    pub async fn detect(engine_dir: &Path, python: &str) -> anyhow::Result<Self> {
        let engine_version = engine_version(engine_dir).await?;
        let out = tokio::process::Command::new(python)
            .args(["-c", "import sys, platform; print(f'{sys.implementation.name}-{platform.python_version()}-{platform.machine()}')"])
            .output()
            .await
            .with_context(|| format!("running {python}"))?;
        anyhow::ensure!(
            out.status.success(),
            "{python} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let python_version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(Self {
            engine_version,
            python_version,
        })
    }

    /// The build fingerprint for a configuration digest.
    pub fn fingerprint(&self, config_digest: &str) -> String {
        let text = format!(
            "{config_digest}\n{}\n{}",
            self.engine_version, self.python_version
        );
        Digest::sha256(text.as_bytes()).to_string()
    }
}

async fn engine_version(dir: &Path) -> anyhow::Result<String> {
    let pyproject = tokio::fs::read_to_string(dir.join("pyproject.toml"))
        .await
        .with_context(|| format!("reading {}/pyproject.toml (ADE_ENGINE_DIR)", dir.display()))?;
    let version = pyproject
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("version").map(|v| {
                v.trim_start_matches([' ', '='])
                    .trim_matches('"')
                    .to_owned()
            })
        })
        .context("the engine's pyproject.toml has no version")?;
    let dir = dir.to_owned();
    let digest = tokio::task::spawn_blocking(move || sources_digest(&dir)).await??;
    Ok(format!("{version}+src.{}", &digest.hex()[..16]))
}

/// SHA-256 over the engine's pyproject and sources, in a stable order.
fn sources_digest(dir: &Path) -> std::io::Result<Digest> {
    use sha2::Digest as _;
    let mut files = vec![dir.join("pyproject.toml")];
    collect(&dir.join("src"), &mut files)?;
    files.sort();
    let mut hasher = sha2::Sha256::new();
    for file in files {
        hasher.update(
            file.strip_prefix(dir)
                .unwrap_or(&file)
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update([0]);
        hasher.update(std::fs::read(&file)?);
    }
    Ok(Digest::from_hasher(hasher))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == "__pycache__" || name.ends_with(".pyc") {
            continue;
        }
        if path.is_dir() {
            collect(&path, out)?
        } else {
            out.push(path)
        }
    }
    Ok(())
}
