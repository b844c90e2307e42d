//! The warm engine pool (`ADE_ENGINE_POOL=on`): per build and host, one
//! zygote that has imported the engine and the configuration forks a child
//! per run, so a run skips starting Python and importing.
//!
//! - [`zygote`]: one zygote process and its control socket.
//! - [`warm`]: one run through a zygote, isolated like a spawned run.
//!
//! A zygote belongs to one build, so never to two workspaces. It is
//! recycled after `ADE_ENGINE_POOL_MAX_RUNS` runs or
//! `ADE_ENGINE_POOL_IDLE_SECONDS` without one; at most
//! `ADE_ENGINE_POOL_SIZE` live per host, the least recently used going
//! first. A retired zygote dies when its last run is done (runs hold it).
//! It writes nothing on the host: its runs work in tmpfs areas of their
//! own. A zygote that cannot start, dies, or is refused (something was left
//! running after the configuration's import) is never fatal: the run spawns
//! the engine instead, and a failed start is remembered for a minute, so
//! the build's next runs spawn at once rather than wait for another try.

pub mod warm;
pub mod zygote;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use zygote::{Zygote, ZygoteError};

/// How long a build whose zygote failed to start spawns its runs.
pub const REMEMBER_FAILURE: Duration = Duration::from_secs(60);

/// The pool's limits.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Live zygotes per host at most.
    pub size: usize,
    /// Runs per zygote before it is replaced.
    pub max_runs: u32,
    /// A zygote without a run for this long is stopped.
    pub idle: Duration,
}

struct Entry {
    /// Which copy of the venv it imported (its folder's inode): a venv
    /// rebuilt in place (hydration after a deletion) is a new copy, and the
    /// old zygote, bound to the deleted files, is retired.
    venv: u64,
    zygote: Arc<Zygote>,
    runs: u32,
    last_used: Instant,
}

/// The zygotes of this host, by build.
#[derive(Default)]
pub struct Pool {
    settings: Option<PoolSettings>,
    entries: Mutex<HashMap<Uuid, Entry>>,
    starting: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// Builds whose zygote failed to start, when and why.
    failed: Mutex<HashMap<Uuid, (Instant, ZygoteError)>>,
}

/// What starts a build's zygote: its sandboxed command and the cgroup
/// that command joins.
pub type Launch = (Command, Option<Arc<crate::cgroup::RunCgroup>>);

impl Pool {
    /// An empty pool.
    pub fn new(settings: PoolSettings) -> Self {
        Self {
            settings: Some(settings),
            ..Self::default()
        }
    }

    fn settings(&self) -> PoolSettings {
        self.settings.expect("a pool has settings")
    }

    /// The zygote of `build`, started with what `launch` makes if there is
    /// none (or it is spent or dead). `Err` means: spawn the engine instead,
    /// or, for [`ZygoteError::Stopped`], stop (the run was stopped meanwhile).
    pub async fn lease<F, Fut>(
        &self,
        build: Uuid,
        venv: &Path,
        launch: F,
        stop: &CancellationToken,
    ) -> Result<Arc<Zygote>, ZygoteError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<Launch>>,
    {
        let venv = std::os::unix::fs::MetadataExt::ino(&tokio::fs::metadata(venv).await?);
        if let Some(zygote) = self.take(build, venv) {
            return Ok(zygote);
        }
        self.failed_recently(build)?;
        // One start per build at a time; later runs wait for it and share it.
        let gate = self
            .starting
            .lock()
            .expect("pool lock")
            .entry(build)
            .or_default()
            .clone();
        let _starting = tokio::select! {
            biased;
            _ = stop.cancelled() => return Err(ZygoteError::Stopped),
            held = gate.lock() => held,
        };
        if let Some(zygote) = self.take(build, venv) {
            return Ok(zygote);
        }
        self.failed_recently(build)?;
        let started = async {
            let (cmd, cgroup) = launch()
                .await
                .map_err(|e| ZygoteError::Unavailable(format!("{e:#}")))?;
            Zygote::start(cmd, cgroup).await
        };
        let zygote = tokio::select! {
            biased;
            _ = stop.cancelled() => return Err(ZygoteError::Stopped),
            started = started => started,
        };
        let zygote = match zygote {
            Ok(zygote) => Arc::new(zygote),
            Err(e) => {
                let failed = (Instant::now(), e.clone());
                self.failed.lock().expect("pool lock").insert(build, failed);
                return Err(e);
            }
        };
        tracing::info!(build.id = %build, "warm engine started");
        self.insert(build, venv, zygote.clone());
        Ok(zygote)
    }

    /// `Err` with the earlier failure if `build`'s zygote failed to start
    /// less than [`REMEMBER_FAILURE`] ago.
    fn failed_recently(&self, build: Uuid) -> Result<(), ZygoteError> {
        let mut failed = self.failed.lock().expect("pool lock");
        failed.retain(|_, (at, _)| at.elapsed() < REMEMBER_FAILURE);
        match failed.get(&build) {
            Some((_, e)) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn insert(&self, build: Uuid, venv: u64, zygote: Arc<Zygote>) {
        let mut entries = self.entries.lock().expect("pool lock");
        evict_for_one_more(&mut entries, self.settings().size);
        let entry = Entry {
            venv,
            zygote,
            runs: 1,
            last_used: Instant::now(),
        };
        entries.insert(build, entry);
    }

    /// The live zygote of `build` for this copy of its venv, counting one
    /// more run, if it has runs left.
    fn take(&self, build: Uuid, venv: u64) -> Option<Arc<Zygote>> {
        let mut entries = self.entries.lock().expect("pool lock");
        let entry = entries.get_mut(&build)?;
        let spent = entry.runs >= self.settings().max_runs;
        if !entry.zygote.is_alive() || spent || entry.venv != venv {
            // Retired: it dies when its last run lets go of it.
            entries.remove(&build);
            return None;
        }
        entry.runs += 1;
        entry.last_used = Instant::now();
        Some(entry.zygote.clone())
    }

    /// Retires zygotes idle for too long; call periodically.
    pub fn collect_idle(&self) {
        let idle = self.settings().idle;
        let mut entries = self.entries.lock().expect("pool lock");
        entries.retain(|_, e| e.last_used.elapsed() < idle);
    }

    /// Stops every zygote at once (at shutdown, once runs have drained).
    pub async fn close(&self) {
        let all: Vec<Entry> = self
            .entries
            .lock()
            .expect("pool lock")
            .drain()
            .map(|(_, e)| e)
            .collect();
        for entry in all {
            entry.zygote.stop().await;
        }
    }

    /// Live zygotes.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("pool lock").len()
    }

    /// True when no zygote lives.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Retires the least recently used entries until one more fits in `size`.
fn evict_for_one_more(entries: &mut HashMap<Uuid, Entry>, size: usize) {
    while !entries.is_empty() && entries.len() + 1 > size.max(1) {
        let oldest = entries
            .iter()
            .min_by_key(|(_, e)| e.last_used)
            .map(|(build, _)| *build)
            .expect("not empty");
        entries.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in zygote: says it is ready, then waits for the worker to hang up.
    async fn fake() -> anyhow::Result<Launch> {
        let mut cmd = Command::new("python3");
        cmd.args([
            "-c",
            "import os, socket\n\
             s = socket.socket(fileno=int(os.environ['ADE_ZYGOTE_FD']))\n\
             s.send(b'{\"op\": \"ready\"}')\n\
             s.recv(1)",
        ]);
        Ok((cmd, None))
    }

    /// A stand-in that fails to start.
    async fn broken() -> anyhow::Result<Launch> {
        Ok((Command::new("false"), None))
    }

    fn pool(max_runs: u32) -> Pool {
        Pool::new(PoolSettings {
            size: 2,
            max_runs,
            idle: Duration::from_secs(3600),
        })
    }

    #[tokio::test]
    async fn a_spent_zygote_lives_until_its_last_run_lets_go() {
        let pool = pool(1);
        let (build, venv, stop) = (
            Uuid::now_v7(),
            std::env::temp_dir(),
            CancellationToken::new(),
        );
        let first = pool.lease(build, &venv, fake, &stop).await.unwrap();
        let second = pool.lease(build, &venv, fake, &stop).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &second), "a new zygote took over");
        assert!(first.is_alive(), "the retired zygote still serves its run");
        drop(first);
        assert_eq!(pool.len(), 1);
        pool.close().await;
        assert!(!second.is_alive());
    }

    #[tokio::test]
    async fn a_failed_start_is_remembered_and_a_stop_ends_the_wait() {
        let pool = pool(10);
        let (build, venv, stop) = (
            Uuid::now_v7(),
            std::env::temp_dir(),
            CancellationToken::new(),
        );
        let first = pool.lease(build, &venv, broken, &stop).await.err().unwrap();
        assert!(matches!(first, ZygoteError::Unavailable(_)), "{first}");
        // The next run does not try again: it would have started fine.
        let again = pool.lease(build, &venv, fake, &stop).await.err().unwrap();
        assert_eq!(again.to_string(), first.to_string());
        stop.cancel();
        let other = Uuid::now_v7();
        let stopped = pool.lease(other, &venv, fake, &stop).await.err().unwrap();
        assert!(matches!(stopped, ZygoteError::Stopped), "{stopped}");
    }
}
