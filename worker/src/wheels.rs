//! The wheels a venv is installed from: the engine's (built once per host and
//! engine version, under `ADE_VENVS_DIR/.engine`) and the configuration's
//! (built once from the stored package and shared under
//! `ADE_DATA_DIR/builds/<build>/wheels`, so other hosts only install it).
//!
//! The engine wheel is built straight into a temporary folder beside its
//! place, then renamed into place. The configuration wheel is built in the
//! build's sandbox, then copied (never through a link) into a temporary
//! folder on shared storage and renamed into place: `ADE_DATA_DIR` and
//! `ADE_VENVS_DIR` are often different filesystems, where a rename between
//! them fails.

use crate::sandbox::build::BuildSandbox;
use crate::venv::{BuildError, BuildSpec, Progress, Step, VenvCache};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use uuid::Uuid;

impl VenvCache {
    /// The engine wheel, built from `ADE_ENGINE_DIR` on first use.
    pub(crate) async fn engine_wheel<F, Fut>(
        &self,
        step: &Step<'_>,
        progress: &mut F,
    ) -> Result<PathBuf, BuildError>
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
        if only_wheel(&dir).await.map_err(BuildError::Host)?.is_none() {
            let out = self
                .root
                .join(".engine")
                .join(format!(".tmp-{}", Uuid::now_v7().simple()));
            let built = step
                .run(
                    self.uv_cmd(&["build", "--wheel", "--quiet", "--out-dir"])
                        .arg(&out)
                        .arg(&self.engine_dir),
                    progress,
                )
                .await;
            // The engine is this host's own software: its failure is the host's.
            built.map_err(BuildError::on_host)?;
            // Another process may have won the race; its wheel is the same.
            if tokio::fs::rename(&out, &dir).await.is_err() {
                let _ = tokio::fs::remove_dir_all(&out).await;
            }
        }
        let wheel = only_wheel(&dir)
            .await
            .and_then(|w| w.context("uv build made no engine wheel"))
            .map_err(BuildError::Host)?;
        *self.engine_wheel.lock().expect("engine wheel lock") = Some(wheel.clone());
        Ok(wheel)
    }

    /// The configuration wheel: the shared copy if a build made it already,
    /// otherwise built from the stored package in the build's sandbox (its
    /// build backend is the tenant's code) and shared for other hosts.
    pub(crate) async fn config_wheel<F, Fut>(
        &self,
        spec: &BuildSpec,
        confined: &BuildSandbox<'_>,
        step: &Step<'_>,
        progress: &mut F,
    ) -> Result<PathBuf, BuildError>
    where
        F: FnMut(Progress) -> Fut,
        Fut: Future<Output = ()>,
    {
        let host =
            |what: &'static str| move |e| BuildError::Host(anyhow::Error::new(e).context(what));
        if let Some(wheel) = only_wheel(&spec.wheel_dir)
            .await
            .map_err(BuildError::Host)?
        {
            return Ok(wheel);
        }
        let src = confined.src();
        unpack(&spec.package, &src)
            .await
            .map_err(BuildError::Host)?;
        let mut build = confined
            .build_wheel()
            .await
            .map_err(|e| BuildError::Host(e.into()))?;
        step.run(&mut build, progress).await?;
        let Some(made) = only_wheel(&confined.wheel_dir())
            .await
            .map_err(BuildError::Host)?
        else {
            return Err(BuildError::Failed(
                "uv build made no configuration wheel".into(),
            ));
        };
        let parent = spec
            .wheel_dir
            .parent()
            .expect("the wheel folder has a parent");
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(host("creating the shared wheel folder"))?;
        let staged = parent.join(format!(".wheels-{}", Uuid::now_v7().simple()));
        if let Err(e) = publish(&made, &staged).await {
            let _ = tokio::fs::remove_dir_all(&staged).await;
            return Err(e);
        }
        // A concurrent builder's copy is equally good: keep whichever landed first.
        if tokio::fs::rename(&staged, &spec.wheel_dir).await.is_err() {
            let _ = tokio::fs::remove_dir_all(&staged).await;
        }
        only_wheel(&spec.wheel_dir)
            .await
            .and_then(|w| w.context("the shared configuration wheel vanished"))
            .map_err(BuildError::Host)
    }
}

/// Copies the wheel a sandbox made into `staged` (a new folder on shared
/// storage), refusing anything but a regular file: the sandbox chose what
/// lies in its scratch folder, and a link must not be followed.
async fn publish(made: &Path, staged: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let failed = |why: String| BuildError::Failed(format!("the configuration wheel {why}"));
    let name = made
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| ade_common::storage::is_safe_file_name(n))
        .ok_or_else(|| failed("has an unusable name".into()))?;
    let mut source = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(made)
        .map_err(|e| failed(format!("cannot be read: {e}")))?;
    let is_file = source.metadata().map(|m| m.is_file()).unwrap_or(false);
    if !is_file {
        return Err(failed("is not a regular file".into()));
    }
    let dest = staged.join(name);
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir(dest.parent().expect("in the staged folder"))?;
        let mut out = std::fs::File::create_new(&dest)?;
        std::io::copy(&mut source, &mut out)?;
        out.sync_all()
    })
    .await
    .expect("copying does not panic")
    .map_err(|e| BuildError::Host(anyhow::Error::new(e).context("sharing the configuration wheel")))
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
