//! `ADE_ENGINE_SANDBOX=off`: the same description, run without a sandbox.

use super::{Sandbox, SandboxError, Sandboxed, Value, io_error, layout};
use crate::area::{self, RunArea};
use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// `off`: the program runs directly, with the same limits (and cgroup).
/// Binds become links in `<scratch>/view`, `/tmp` and the area folders
/// there, and paths inside map to the view, so callers describe one layout
/// for both modes. The area is a host folder, opened here.
pub(super) fn unconfined(sandbox: &Sandbox) -> Result<Sandboxed, SandboxError> {
    let view = sandbox.scratch.join("view");
    let _ = std::fs::remove_dir_all(&view);
    let made = |p: &Path| io_error(format!("preparing {}", p.display()));
    let tmp = view.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(made(&tmp))?;
    for m in &sandbox.mounts {
        let link = view.join(m.dest.strip_prefix("/").expect("checked absolute"));
        let parent = link.parent().expect("inside the view");
        std::fs::create_dir_all(parent).map_err(made(parent))?;
        std::os::unix::fs::symlink(&m.source, &link).map_err(made(&link))?;
    }
    let area = match sandbox.area {
        Some(_) => {
            let folder = view.join(area::INSIDE.trim_start_matches('/'));
            let area = RunArea::host_folder(&folder).map_err(made(&folder))?;
            Some(area::Handover::Ready(area))
        }
        None => None,
    };
    let map = |v: &Value| -> OsString {
        match v {
            Value::Text(t) => t.clone(),
            Value::Path(p) => view_path(sandbox, &view, p).into_os_string(),
        }
    };
    let mut cmd = Command::new(view_path(sandbox, &view, &sandbox.program));
    cmd.args(sandbox.args.iter().map(map))
        .current_dir(view_path(sandbox, &view, &sandbox.cwd))
        .env_clear();
    for (name, value) in &sandbox.env {
        cmd.env(name, map(value));
    }
    let (limits, cgroup) = (sandbox.limits, sandbox.cgroup.clone());
    // SAFETY: `apply` only calls setrlimit(2); joining the cgroup only
    // open/write/close on prepared paths.
    unsafe {
        cmd.as_std_mut().pre_exec(move || {
            if let Some(cgroup) = &cgroup {
                cgroup.join_in_child()?;
            }
            limits.apply()
        });
    }
    Ok(Sandboxed { command: cmd, area })
}

/// Where `off` has a path inside: under a bind or `/tmp`, in the view.
fn view_path(sandbox: &Sandbox, view: &Path, inside: &Path) -> PathBuf {
    let viewed = sandbox.mounts.iter().any(|m| inside.starts_with(&m.dest))
        || inside.starts_with(layout::TMP)
        || (sandbox.area.is_some() && inside.starts_with(area::INSIDE));
    if viewed {
        view.join(inside.strip_prefix("/").unwrap_or(inside))
    } else {
        inside.to_owned()
    }
}
