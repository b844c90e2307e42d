//! The commands a sandbox becomes, and what a real one lets through.

use super::*;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::time::Duration;

fn limits() -> Limits {
    Limits::run(1 << 31, Duration::from_secs(60), 1 << 30)
}

/// A host with fixed paths, for the command line alone.
fn fixed_host(mode: Mode) -> Host {
    Host {
        mode,
        bwrap: "/usr/bin/bwrap".into(),
        init: "/opt/ade/ade-sandbox-init".into(),
        drop_to: Some(Ids {
            uid: 65534,
            gid: 65534,
        }),
        system: vec![
            bwrap::SystemPath::Bind("/usr".into()),
            bwrap::SystemPath::Link {
                path: "/lib".into(),
                target: "usr/lib".into(),
            },
        ],
        dns_files: vec!["/etc/resolv.conf".into()],
        tls_files: vec!["/etc/ssl/certs".into()],
        prefix: "/opt/python".into(),
        uv: "/opt/python/bin/uv".into(),
        build_hosts: Default::default(),
    }
}

fn engine_like(scratch: &Path) -> Sandbox {
    let mut sb = Sandbox::new("/run/ade/venv/bin/python", limits(), scratch);
    sb.read_only("/srv/venv", layout::VENV)
        .read_only("/srv/doc", "/run/ade/inputs/a.csv")
        .writable("/srv/out", layout::OUTPUTS)
        .args(["-m", "ade_engine", "run", "--input"])
        .path_arg("/run/ade/inputs/a.csv");
    sb
}

fn args_of(host: &Host, sb: &Sandbox) -> Vec<String> {
    bwrap::args(host, sb, &sb.mounts)
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect()
}

fn position(args: &[String], seq: &[&str]) -> usize {
    args.windows(seq.len())
        .position(|w| w.iter().zip(seq).all(|(a, b)| a == b))
        .unwrap_or_else(|| panic!("{seq:?} not in {args:?}"))
}

#[test]
fn a_run_gets_every_namespace_no_network_and_only_its_binds() {
    let host = fixed_host(Mode::Bwrap);
    let args = args_of(&host, &engine_like(Path::new("/scratch")));
    for flag in [
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
    ] {
        position(&args, &[flag]);
    }
    position(&args, &["--cap-drop", "ALL"]);
    position(&args, &["--uid", "65534", "--gid", "65534"]);
    position(&args, &["--proc", "/proc", "--dev", "/dev"]);
    position(
        &args,
        &["--size", &TMP_BYTES.to_string(), "--tmpfs", "/tmp"],
    );
    position(&args, &["--ro-bind", "/usr", "/usr"]);
    position(&args, &["--symlink", "usr/lib", "/lib"]);
    let venv = position(&args, &["--ro-bind", "/srv/venv", "/run/ade/venv"]);
    position(&args, &["--ro-bind", "/srv/doc", "/run/ade/inputs/a.csv"]);
    position(&args, &["--bind", "/srv/out", "/run/ade/outputs"]);
    let sealed = position(&args, &["--remount-ro", "/dev", "--remount-ro", "/"]);
    assert!(sealed > venv, "the root is sealed after the binds are made");
    assert!(
        !args.contains(&"/etc/resolv.conf".to_owned()),
        "no DNS without network"
    );
    position(
        &args,
        &["--ro-bind", "/opt/ade/ade-sandbox-init", "/run/ade/init"],
    );
    let tail = position(&args, &["--chdir", "/tmp", "--"]);
    assert_eq!(
        args[tail + 3..],
        [
            "/run/ade/init",
            "--nproc",
            "256",
            "--",
            "/run/ade/venv/bin/python",
            "-m",
            "ade_engine",
            "run",
            "--input",
            "/run/ade/inputs/a.csv"
        ]
    );
}

#[test]
fn network_and_nested_namespaces_only_when_asked() {
    let host = fixed_host(Mode::Bwrap);
    let mut sb = engine_like(Path::new("/scratch"));
    sb.network(true).allow_user_namespaces();
    let args = args_of(&host, &sb);
    assert!(!args.contains(&"--unshare-net".to_owned()));
    assert!(!args.contains(&"--disable-userns".to_owned()));
    position(
        &args,
        &["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"],
    );
}

#[test]
fn overlapping_relative_or_reserved_binds_are_refused() {
    let host = fixed_host(Mode::Bwrap);
    let cases: [(&str, &str, &str); 4] = [
        ("/srv/a", "/run/ade/outputs/x", "binds may not overlap"),
        ("/srv/a", "/run/ade/outputs", "binds may not overlap"),
        ("srv/a", "/run/x", "absolute"),
        ("/srv/a", "/etc", "provides this path"),
    ];
    for (source, dest, why) in cases {
        let mut sb = engine_like(Path::new("/scratch"));
        sb.read_only(source, dest);
        let err = host.command(&sb).unwrap_err().to_string();
        assert!(err.contains(why), "{source} → {dest}: {err}");
    }
    let mut sb = engine_like(Path::new("/scratch"));
    sb.read_only("/srv/a", "/run/ade/../etc");
    assert!(host.command(&sb).is_err());
}

#[test]
fn a_venv_must_name_the_workers_interpreter() {
    let dir = tempdir("venv");
    let prefix = std::fs::canonicalize(tempdir("prefix")).unwrap();
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    let mut host = fixed_host(Mode::Bwrap);
    host.prefix = prefix.clone();
    let mut sb = engine_like(&dir);
    // The tenant's build could rewrite pyvenv.cfg: a `home` elsewhere is refused.
    std::fs::write(dir.join("pyvenv.cfg"), "home = /etc\n").unwrap();
    let err = host.mount_venv(&mut sb, &dir, false).unwrap_err();
    assert!(
        matches!(err, SandboxError::ForeignInterpreter { .. }),
        "{err}"
    );
    let cfg = format!(
        "home = {}\nversion_info = 3.11\n",
        prefix.join("bin").display()
    );
    std::fs::write(dir.join("pyvenv.cfg"), cfg).unwrap();
    let mut sb = Sandbox::new("/run/ade/venv/bin/python", limits(), &dir);
    host.mount_venv(&mut sb, &dir, false).unwrap();
    assert_eq!(
        sb.mounts,
        [
            Mount {
                source: dir.clone(),
                dest: layout::VENV.into(),
                writable: false
            },
            Mount {
                source: prefix.clone(),
                dest: prefix.clone(),
                writable: false
            },
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&prefix);
}

#[test]
fn off_maps_inside_paths_to_links_in_the_scratch_folder() {
    let scratch = tempdir("off");
    let doc = scratch.join("doc");
    std::fs::write(&doc, "a,b\n").unwrap();
    let host = fixed_host(Mode::Off);
    let mut sb = Sandbox::new("/bin/cat", limits(), &scratch);
    sb.read_only(&doc, "/run/ade/inputs/a.csv")
        .path_arg("/run/ade/inputs/a.csv");
    let cmd = host.command(&sb).unwrap();
    let std = cmd.as_std();
    let view = scratch.join("view");
    assert_eq!(std.get_program(), "/bin/cat");
    let args: Vec<_> = std.get_args().collect();
    assert_eq!(args, [view.join("run/ade/inputs/a.csv").as_os_str()]);
    assert_eq!(std.get_current_dir(), Some(view.join("tmp").as_path()));
    assert_eq!(
        std::fs::read_link(view.join("run/ade/inputs/a.csv")).unwrap(),
        doc
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn search_permission_is_the_owners_the_groups_or_everyones() {
    let nobody = Ids {
        uid: 65534,
        gid: 65534,
    };
    assert!(!stage::may_search(0o700, 0, 0, nobody));
    assert!(stage::may_search(0o711, 0, 0, nobody));
    assert!(stage::may_search(0o700, 65534, 0, nobody));
    assert!(stage::may_search(0o710, 0, 65534, nobody));
    assert!(
        !stage::may_search(0o701, 0, 65534, nobody),
        "the group's bit applies, not others'"
    );
}

/// A fresh folder under the system's temporary folder.
fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("ade-sandbox-tests")
        .join(format!("{name}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `script` with `sh` in a real sandbox; returns (exit code, stdout, stderr).
async fn run_sh(host: &Host, sb: &mut Sandbox, script: &str) -> (i32, String, String) {
    sb.args(["-c", script]);
    let mut cmd = host.command(sb).unwrap();
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the sandbox finishes")
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

async fn real_host() -> Host {
    Host::detect(Mode::Bwrap, "python3", "uv")
        .await
        .expect("bubblewrap works on the test host")
}

#[tokio::test]
async fn a_real_sandbox_sees_only_its_binds() {
    let host = real_host().await;
    let dir = tempdir("real");
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    host.lend(&out).await.unwrap();
    // A source under a folder nobody may not search is still bound (staged).
    let hidden = dir.join("hidden");
    std::fs::create_dir_all(hidden.join("inner")).unwrap();
    std::fs::write(hidden.join("inner/doc.csv"), "a,b\n").unwrap();
    std::fs::write(hidden.join("secret.txt"), "no\n").unwrap();
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut sb = Sandbox::new("/bin/sh", limits(), &dir);
    sb.read_only(hidden.join("inner/doc.csv"), "/run/ade/inputs/doc.csv")
        .writable(&out, layout::OUTPUTS);
    let script = r#"
        id -u
        cat /run/ade/inputs/doc.csv
        cat /etc/shadow 2>/dev/null || echo no-shadow
        ls /root 2>/dev/null || echo no-root
        ls /proc | grep -c '^[0-9]'
        echo x > /run/ade/inputs/doc.csv 2>/dev/null || echo inputs-read-only
        touch /usr/x 2>/dev/null || echo usr-read-only
        touch /x 2>/dev/null || echo root-read-only
        echo made > /run/ade/outputs/made.txt && echo outputs-writable
        echo scratch > /tmp/t && echo tmp-writable
    "#;
    let (code, stdout, stderr) = run_sh(&host, &mut sb, script).await;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "65534");
    assert_eq!(lines[1], "a,b");
    assert_eq!(lines[2..4], ["no-shadow", "no-root"]);
    let visible: u32 = lines[4].parse().unwrap();
    assert!(
        visible <= 6,
        "the sandbox sees only its own processes ({visible})"
    );
    assert_eq!(
        lines[5..],
        [
            "inputs-read-only",
            "usr-read-only",
            "root-read-only",
            "outputs-writable",
            "tmp-writable"
        ]
    );
    // Written as nobody outside too, not as the worker's root.
    let made = std::fs::metadata(out.join("made.txt")).unwrap();
    assert_eq!((made.uid(), made.gid()), (65534, 65534));
    host.reclaim(&out).await.unwrap();
    assert_eq!(std::fs::metadata(out.join("made.txt")).unwrap().uid(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_real_sandbox_has_no_network_unless_asked() {
    let host = real_host().await;
    let dir = tempdir("net");
    let mut sb = Sandbox::new("/bin/bash", limits(), &dir);
    let probe = "(exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && echo reached || echo unreachable";
    let (_, closed, _) = run_sh(&host, &mut sb, probe).await;
    assert_eq!(closed.trim(), "unreachable");
    let mut sb = Sandbox::new("/bin/bash", limits(), &dir);
    sb.network(true);
    let (_, open, _) = run_sh(&host, &mut sb, probe).await;
    assert_eq!(
        open.trim(),
        "reached",
        "the same probe does reach PostgreSQL with network"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_process_limit_is_per_sandbox() {
    let host = real_host().await;
    let dir = tempdir("nproc");
    let mut few = limits();
    few.processes = 20;
    // Thirty background sleepers cannot start under a limit of twenty.
    let mut sb = Sandbox::new("/bin/sh", few, &dir);
    let script = "for i in $(seq 1 30); do sleep 5 & done 2>/dev/null; echo all-started";
    let (code, stdout, _) = run_sh(&host, &mut sb, script).await;
    assert!(
        code != 0 || !stdout.contains("all-started"),
        "{code} {stdout}"
    );
    // Two sandboxes of fifteen each at once are fine: the count is not shared.
    let fifteen = "for i in $(seq 1 15); do sleep 1 & done; wait; echo done";
    let (mut a, mut b) = (
        Sandbox::new("/bin/sh", few, &dir),
        Sandbox::new("/bin/sh", few, &dir),
    );
    let (ra, rb) = tokio::join!(
        run_sh(&host, &mut a, fifteen),
        run_sh(&host, &mut b, fifteen)
    );
    assert_eq!((ra.0, ra.1.trim()), (0, "done"), "{}", ra.2);
    assert_eq!((rb.0, rb.1.trim()), (0, "done"), "{}", rb.2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_real_sandbox_hands_over_its_area_and_keeps_only_the_descriptors_it_is_given() {
    use std::os::fd::AsRawFd as _;
    let host = real_host().await;
    let dir = tempdir("area");
    // A descriptor the worker holds without close-on-exec, as a launching
    // shell's pipe would be: the init closes it.
    let (stray, _keep) = std::io::pipe().unwrap();
    let stray = rustix::io::fcntl_dupfd_cloexec(&stray, 200).unwrap();
    rustix::io::fcntl_setfd(&stray, rustix::io::FdFlags::empty()).unwrap();
    let mut sb = Sandbox::new("/bin/sh", limits(), &dir);
    sb.area(crate::area::capacity(1 << 20))
        .cwd(crate::area::WORK);
    let script = format!(
        "ls /proc/self/fd | sort -n | tr '\\n' ' '; test -e /proc/self/fd/{} && echo stray-open; \
         echo kept > /run/ade/run/outputs/kept.csv; head -c 40000000 /dev/zero > /run/ade/run/work/big 2>/dev/null || echo full",
        stray.as_raw_fd()
    );
    sb.args(["-c", &script]);
    let sandboxed = host.sandboxed(&sb).unwrap();
    let mut cmd = sandboxed.command;
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let run = tokio::spawn(cmd.output());
    let area = sandboxed
        .area
        .unwrap()
        .receive(Duration::from_secs(30))
        .await
        .unwrap();
    let out = run.await.unwrap().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.lines().next(), Some("0 1 2 3 full"), "{said}");
    // The sandbox is gone; its area is still readable through the descriptor.
    let used = area.used_bytes().unwrap();
    assert!(used <= crate::area::capacity(1 << 20), "{used}");
    let outputs = area.outputs().unwrap();
    let kept = rustix::fs::openat(
        &outputs,
        "kept.csv",
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    assert_eq!(
        std::io::read_to_string(std::fs::File::from(kept)).unwrap(),
        "kept\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
