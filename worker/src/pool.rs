//! The warm engine pool (`ADE_ENGINE_POOL=on`): per build and host, one
//! zygote that has imported the engine and the configuration forks a child
//! per run, so a run skips starting Python and importing.
//!
//! A zygote belongs to one build, so never to two workspaces. It is
//! recycled after `ADE_ENGINE_POOL_MAX_RUNS` runs or
//! `ADE_ENGINE_POOL_IDLE_SECONDS` without one; at most
//! `ADE_ENGINE_POOL_SIZE` live per host, the least recently used going
//! first. Each zygote has a scratch folder of its own, host-local, where its
//! runs work and write their outputs (see [`Pool::scratch`]); it is removed
//! with the zygote. A zygote that cannot start, or dies, is never fatal:
//! the run spawns the engine instead.

use crate::zygote::{Zygote, ZygoteError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Command;
use uuid::Uuid;

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
    scratch: PathBuf,
    runs: u32,
    last_used: Instant,
}

/// The zygotes of this host, by build.
pub struct Pool {
    settings: PoolSettings,
    root: PathBuf,
    entries: Mutex<HashMap<Uuid, Entry>>,
    starting: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

/// A zygote lent to one run.
pub struct Lease {
    /// The zygote.
    pub zygote: Arc<Zygote>,
    /// Its scratch folder on the host (the zygote sees it as `/scratch` when sandboxed).
    pub scratch: PathBuf,
}

impl Pool {
    /// A pool keeping its zygotes' scratch folders under `root`.
    pub fn new(settings: PoolSettings, root: PathBuf) -> Self {
        Self {
            settings,
            root,
            entries: Mutex::default(),
            starting: Mutex::default(),
        }
    }

    /// The zygote of `build`, started with the command `launch(scratch)`
    /// makes if there is none (or it is spent or dead). `Err` means: spawn
    /// the engine instead.
    pub async fn lease<F, Fut>(
        &self,
        build: Uuid,
        venv: &std::path::Path,
        launch: F,
    ) -> Result<Lease, ZygoteError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = anyhow::Result<Command>>,
    {
        let venv = std::os::unix::fs::MetadataExt::ino(&tokio::fs::metadata(venv).await?);
        if let Some(lease) = self.take(build, venv) {
            return Ok(lease);
        }
        // One start per build at a time; later runs wait for it and share it.
        let gate = self
            .starting
            .lock()
            .expect("pool lock")
            .entry(build)
            .or_default()
            .clone();
        let _starting = gate.lock().await;
        if let Some(lease) = self.take(build, venv) {
            return Ok(lease);
        }
        let scratch = self
            .root
            .join(build.to_string())
            .join(Uuid::now_v7().simple().to_string());
        tokio::fs::create_dir_all(&scratch).await?;
        let started = match launch(scratch.clone()).await {
            Ok(cmd) => Zygote::start(cmd).await,
            Err(e) => Err(ZygoteError::Unavailable(format!("{e:#}"))),
        };
        let zygote = match started {
            Ok(zygote) => Arc::new(zygote),
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&scratch).await;
                return Err(e);
            }
        };
        tracing::info!(build.id = %build, "warm engine started");
        let evicted = {
            let mut entries = self.entries.lock().expect("pool lock");
            let evicted = evict_for_one_more(&mut entries, self.settings.size);
            entries.insert(
                build,
                Entry {
                    venv,
                    zygote: zygote.clone(),
                    scratch: scratch.clone(),
                    runs: 1,
                    last_used: Instant::now(),
                },
            );
            evicted
        };
        retire(evicted).await;
        Ok(Lease { zygote, scratch })
    }

    /// The live zygote of `build` for this copy of its venv, counting one
    /// more run, if it has runs left.
    fn take(&self, build: Uuid, venv: u64) -> Option<Lease> {
        let mut entries = self.entries.lock().expect("pool lock");
        let entry = entries.get_mut(&build)?;
        let spent = entry.runs >= self.settings.max_runs;
        if !entry.zygote.is_alive() || spent || entry.venv != venv {
            let spent = entries.remove(&build).expect("just found");
            tokio::spawn(retire(vec![spent]));
            return None;
        }
        entry.runs += 1;
        entry.last_used = Instant::now();
        Some(Lease {
            zygote: entry.zygote.clone(),
            scratch: entry.scratch.clone(),
        })
    }

    /// Stops zygotes idle for too long; call periodically.
    pub async fn collect_idle(&self) {
        let idle = {
            let mut entries = self.entries.lock().expect("pool lock");
            let stale: Vec<Uuid> = entries
                .iter()
                .filter(|(_, e)| e.last_used.elapsed() >= self.settings.idle)
                .map(|(build, _)| *build)
                .collect();
            stale
                .into_iter()
                .filter_map(|build| entries.remove(&build))
                .collect()
        };
        retire(idle).await;
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
            let _ = tokio::fs::remove_dir_all(&entry.scratch).await;
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

/// Removes the least recently used entries until one more fits in `size`.
fn evict_for_one_more(entries: &mut HashMap<Uuid, Entry>, size: usize) -> Vec<Entry> {
    let mut evicted = Vec::new();
    while !entries.is_empty() && entries.len() + 1 > size.max(1) {
        let oldest = entries
            .iter()
            .min_by_key(|(_, e)| e.last_used)
            .map(|(build, _)| *build)
            .expect("not empty");
        evicted.extend(entries.remove(&oldest));
    }
    evicted
}

/// Stops zygotes and removes their scratch folders. A zygote's runs keep
/// their own references (the engine's handle while it runs, the run's
/// folder until its outputs are copied): it dies, and its scratch goes,
/// when the last one is done.
async fn retire(entries: Vec<Entry>) {
    for entry in entries {
        tracing::debug!(runs = entry.runs, "retiring a warm engine");
        let scratch = entry.scratch;
        let zygote = entry.zygote;
        tokio::spawn(async move {
            // Wait for runs that still use it (they hold clones of the Arc).
            while Arc::strong_count(&zygote) > 1 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            drop(zygote);
            let _ = tokio::fs::remove_dir_all(&scratch).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warm::{RunFolder, clean};

    /// A stand-in zygote: says it is ready, then waits for the worker to hang up.
    async fn fake(_scratch: PathBuf) -> anyhow::Result<Command> {
        let mut cmd = Command::new("python3");
        cmd.args([
            "-c",
            "import os, socket\n\
             s = socket.socket(fileno=int(os.environ['ADE_ZYGOTE_FD']))\n\
             s.send(b'{\"op\": \"ready\"}')\n\
             s.recv(1)",
        ]);
        Ok(cmd)
    }

    async fn gone_within(path: &std::path::Path, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if !path.exists() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        !path.exists()
    }

    #[tokio::test]
    async fn a_retired_zygotes_scratch_stays_until_its_runs_folders_are_cleaned() {
        let root = std::env::temp_dir().join(format!("ade-pool-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&root).unwrap();
        let settings = PoolSettings {
            size: 2,
            max_runs: 1,
            idle: Duration::from_secs(3600),
        };
        let pool = Pool::new(settings, root.join("pool"));
        let build = Uuid::now_v7();
        let first = pool.lease(build, &root, fake).await.unwrap();
        // A run's folder, with an output its worker has yet to copy; the
        // engine's handle (the lease here) is gone, as when the engine exited.
        let folder = RunFolder::new(&first, "run-1");
        let output = folder.path().join("outputs").join("table.csv");
        std::fs::create_dir_all(output.parent().unwrap()).unwrap();
        std::fs::write(&output, "id\n1\n").unwrap();
        let first_scratch = first.scratch.clone();
        drop(first);

        // The next run finds the zygote spent (one run each) and retires it.
        let second = pool.lease(build, &root, fake).await.unwrap();
        assert_ne!(second.scratch, first_scratch, "a new zygote took over");
        assert!(
            !gone_within(&output, Duration::from_millis(600)).await,
            "the output was removed before the run's worker copied it"
        );

        clean(folder).await;
        assert!(
            gone_within(&first_scratch, Duration::from_secs(3)).await,
            "the retired zygote's scratch is removed once its last run is done"
        );
        drop(second);
        pool.close().await;
        let _ = std::fs::remove_dir_all(&root);
    }
}
