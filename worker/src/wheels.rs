//! The wheels a venv is installed from: the engine's (built once per host and
//! engine version, under `ADE_VENVS_DIR/.engine`) and the configuration's
//! (built once from the stored package and shared under
//! `ADE_DATA_DIR/builds/<build>/wheels`, so other hosts only install it).

use crate::venv::{BuildSpec, Progress, Step, VenvCache};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use uuid::Uuid;

impl VenvCache {
    /// The engine wheel, built from `ADE_ENGINE_DIR` on first use.
    pub(crate) async fn engine_wheel<F, Fut>(
        &self,
        step: &Step<'_>,
        progress: &mut F,
    ) -> anyhow::Result<PathBuf>
    where
        F: FnMut(Progress) -> Fut,
        Fut: Future<Output = ()>,
    {
        let cached = self.engine_wheel.lock().expect("engine wheel lock").clone();
        // Deleting folders under the cache is always safe: a vanished wheel is rebuilt.
        if let Some(wheel) = cached.filter(|w| w.exists()) {
            return Ok(wheel);
        }
        let dir = self.root.join(".engine").join(&self.engine_version);
        if only_wheel(&dir).await?.is_none() {
            let out = self
                .root
                .join(".engine")
                .join(format!(".tmp-{}", Uuid::now_v7().simple()));
            step.run(
                self.uv_cmd(&["build", "--wheel", "--quiet", "--out-dir"])
                    .arg(&out)
                    .arg(&self.engine_dir),
                progress,
            )
            .await?;
            // Another process may have won the race; its wheel is the same.
            if tokio::fs::rename(&out, &dir).await.is_err() {
                let _ = tokio::fs::remove_dir_all(&out).await;
            }
        }
        let wheel = only_wheel(&dir)
            .await?
            .context("uv build made no engine wheel")?;
        *self.engine_wheel.lock().expect("engine wheel lock") = Some(wheel.clone());
        Ok(wheel)
    }

    /// The configuration wheel: the shared copy if a build made it already,
    /// otherwise built from the stored package and shared for other hosts.
    pub(crate) async fn config_wheel<F, Fut>(
        &self,
        spec: &BuildSpec,
        src: &Path,
        step: &Step<'_>,
        progress: &mut F,
    ) -> anyhow::Result<PathBuf>
    where
        F: FnMut(Progress) -> Fut,
        Fut: Future<Output = ()>,
    {
        if let Some(wheel) = only_wheel(&spec.wheel_dir).await? {
            return Ok(wheel);
        }
        unpack(&spec.package, src).await?;
        let out = src.with_extension("wheel");
        step.run(
            self.uv_cmd(&["build", "--wheel", "--quiet", "--out-dir"])
                .arg(&out)
                .arg(src),
            progress,
        )
        .await?;
        only_wheel(&out)
            .await?
            .context("uv build made no configuration wheel")?;
        // Publish to shared storage with a rename; a concurrent builder's copy is equally good.
        let parent = spec
            .wheel_dir
            .parent()
            .context("the wheel folder has a parent")?;
        tokio::fs::create_dir_all(parent).await?;
        let staged = parent.join(format!(".wheels-{}", Uuid::now_v7().simple()));
        tokio::fs::rename(&out, &staged).await?;
        if tokio::fs::rename(&staged, &spec.wheel_dir).await.is_err() {
            let _ = tokio::fs::remove_dir_all(&staged).await;
        }
        only_wheel(&spec.wheel_dir)
            .await?
            .context("the shared configuration wheel vanished")
    }
}

/// The single `.whl` in `dir`, if the folder exists.
async fn only_wheel(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    while let Some(entry) = entries.next_entry().await? {
        if entry.file_name().to_string_lossy().ends_with(".whl") {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

/// Unpacks the canonical package archive into `dest`.
pub(crate) async fn unpack(archive: &[u8], dest: &Path) -> anyhow::Result<()> {
    let archive = archive.to_vec();
    let dest = dest.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dest)?;
        // `unpack` refuses entries that would land outside `dest`.
        tar::Archive::new(flate2::read::GzDecoder::new(archive.as_slice())).unpack(&dest)
    })
    .await?
    .context("unpacking the configuration package")
}
