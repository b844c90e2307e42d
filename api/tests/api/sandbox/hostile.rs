//! What a hostile configuration can do from inside a run (nothing that
//! matters), in both engine modes: secrets, other tenants, the network,
//! descriptors and sockets it was not given, capabilities, namespaces, a
//! planted link in place of its output folder, and forged events.

use super::{run_console, verdict, wait_gone};
use crate::fixtures::run_code_package;
use crate::helpers::{Options, TestApp, ok_json};
use crate::modes::{Mode, assert_failed, in_both_modes, run_in};
use reqwest::StatusCode;
use serde_json::Value;
use std::os::fd::AsRawFd as _;

/// Every probe, tried from inside a run; each prints what it tried and what happened.
const HOSTILE: &str = r#"import ctypes, json, os, socket
def report(what, attempt):
    try:
        print(f"HOSTILE {what}: SUCCEEDED {attempt()}", flush=True)
    except BaseException as e:
        print(f"HOSTILE {what}: blocked {type(e).__name__}", flush=True)
def search():
    for top in ("DATA_DIR", "/run", "/tmp", "/root", "/home"):
        for folder, _, files in os.walk(top):
            if "VICTIM_ID" in files:
                return os.path.join(folder, "VICTIM_ID")
    raise FileNotFoundError("VICTIM_ID")
def sleeper():
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.execv("/bin/sleep", ["sleep", "NONCE"])
        os._exit(0)
    os.waitpid(child, 0)
    import time
    for _ in range(200):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if b"NONCE" in open(f"/proc/{pid}/cmdline", "rb").read():
                    return "running"
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError("the sleeper did not start")
def descriptors():
    held = []
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
            held.append(int(name))
        except OSError:
            pass
    return sorted(held)
def forge():
    sent = 0
    for fd in range(3, 1024):
        try:
            os.fstat(fd)
        except OSError:
            continue
        copy = os.dup(fd)
        try:
            s = socket.socket(fileno=copy)
        except OSError:
            os.close(copy)
            continue
        try:
            for run in range(1, 8):
                s.send(json.dumps({"op": "exited", "id": run, "code": 0}).encode())
                sent += 1
        except OSError:
            pass
        finally:
            s.close()
    if not sent:
        raise LookupError("no socket")
    return sent
def capabilities():
    for line in open("/proc/self/status"):
        if line.startswith("CapEff:"):
            return line.split()[1]
def user_namespace():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) != 0:
        raise PermissionError(ctypes.get_errno())
    return "made"
report("read /etc/shadow", lambda: open("/etc/shadow").read()[:10])
report("search the data dir", search)
report("open the other document", lambda: open("VICTIM_PATH").read()[:10])
report("connect 5432", lambda: socket.create_connection(("127.0.0.1", 5432), timeout=5))
report("connect 5672", lambda: socket.create_connection(("127.0.0.1", 5672), timeout=5))
report("double-fork a sleeper", sleeper)
report("link to /etc/passwd", lambda: os.symlink("/etc/passwd", os.path.join(run.output_dir, "passwd.csv")))
report("make a FIFO", lambda: os.mkfifo(os.path.join(run.output_dir, "fifo.csv")))
report("count processes", lambda: len([p for p in os.listdir("/proc") if p.isdigit()]))
report("list descriptors", descriptors)
report("use the worker's inherited descriptor", lambda: os.fstat(STRAY))
report("forge an exit on a socket", forge)
report("capabilities", capabilities)
report("make a user namespace", user_namespace)
"#;

/// A descriptor the test process (as a launching shell would) leaves open
/// across exec at a high number before its workers start.
fn inherited_descriptor() -> (std::io::PipeReader, i32) {
    let (reader, _writer) = std::io::pipe().unwrap();
    let fd = 251;
    // SAFETY: dup2 onto a number this test process does not use.
    assert_eq!(unsafe { libc::dup2(reader.as_raw_fd(), fd) }, fd);
    (reader, fd)
}

async fn a_hostile_configuration_gets_nothing(mode: Mode) {
    let mut app = TestApp::with(Options::default()).await;
    let (_stray, stray) = inherited_descriptor();
    mode.start_worker(&mut app, |_| {}).await;
    // Workspace B's document, the one the attacker looks for.
    let other = app.create_workspace().await;
    let other = other["id"].as_str().unwrap();
    let victim = app
        .upload_document(other, "payroll.csv", b"name,salary\nceo,1000000\n".to_vec())
        .await;
    let victim_id = victim["id"].as_str().unwrap();
    let victim_path = app.data_dir.join("documents").join(other).join(victim_id);
    assert!(
        victim_path.is_file(),
        "the victim is where the attacker looks"
    );
    // A duration no other process has on its command line: `sleep 7NNNNNNNNN`.
    let nonce = format!("7{:09}", uuid::Uuid::now_v7().as_u128() % 1_000_000_000);
    let code = HOSTILE
        .replace("DATA_DIR", &app.data_dir.to_string_lossy())
        .replace("VICTIM_ID", victim_id)
        .replace("VICTIM_PATH", &victim_path.to_string_lossy())
        .replace("NONCE", &nonce)
        .replace("STRAY", &stray.to_string());
    let (config, doc) = app.package_setup(run_code_package(&code)).await;

    let run = run_in(&app, mode, &config, &doc).await;
    let id = run["id"].as_str().unwrap();
    let console = run_console(&app.all_events(id).await);
    for (what, blocked) in [
        ("read /etc/shadow", "FileNotFoundError"),
        ("search the data dir", "FileNotFoundError"),
        ("open the other document", "FileNotFoundError"),
        ("use the worker's inherited descriptor", "OSError"),
        ("forge an exit on a socket", "LookupError"),
        ("make a user namespace", "PermissionError"),
    ] {
        assert_eq!(
            verdict(&console, what),
            format!("blocked {blocked}"),
            "{what}"
        );
    }
    for port in ["connect 5432", "connect 5672"] {
        let said = verdict(&console, port);
        assert!(said.starts_with("blocked"), "{port}: {said}");
    }
    assert_eq!(
        verdict(&console, "capabilities"),
        "SUCCEEDED 0000000000000000"
    );
    // Only the protocol's descriptors: stdio, events, and (forked) the input.
    let held = verdict(&console, "list descriptors");
    let allowed = ["SUCCEEDED [0, 1, 2, 3]", "SUCCEEDED [0, 1, 2, 3, 10]"];
    assert!(allowed.contains(&held), "{held}");
    // What the sandbox allows, and what becomes of it.
    assert_eq!(
        verdict(&console, "double-fork a sleeper"),
        "SUCCEEDED running"
    );
    assert_eq!(verdict(&console, "link to /etc/passwd"), "SUCCEEDED None");
    assert_eq!(verdict(&console, "make a FIFO"), "SUCCEEDED None");
    let seen: u32 = verdict(&console, "count processes")
        .trim_start_matches("SUCCEEDED ")
        .parse()
        .unwrap();
    assert!(seen <= 4, "the run sees only its own processes ({seen})");

    // The run itself completes; the planted entries are reported, not published.
    assert_eq!(run["status"], "succeeded", "{run}");
    for planted in ["passwd.csv", "fifo.csv"] {
        assert!(
            console
                .iter()
                .any(|l| l.contains(&format!("{planted:?}")) && l.contains("not published")),
            "{planted} is reported: {console:#?}"
        );
    }
    let names = output_names(&app, id).await;
    assert!(!names.is_empty(), "the engine's own outputs are published");
    for planted in ["passwd.csv", "fifo.csv"] {
        assert!(!names.contains(&planted.to_owned()), "{names:?}");
        let res = app
            .get(&format!("/api/v1/runs/{id}/outputs/{planted}"))
            .await;
        assert_eq!(
            res.status(),
            StatusCode::NOT_FOUND,
            "{planted} is not served"
        );
    }
    // The double-forked, setsid sleeper died with the run.
    wait_gone(&nonce).await;
    app.finish().await;
}

async fn output_names(app: &TestApp, id: &str) -> Vec<String> {
    let outputs = ok_json(
        app.get(&format!("/api/v1/runs/{id}/outputs")).await,
        StatusCode::OK,
    )
    .await;
    outputs["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The run moves its output folder away and plants a link to a host
/// folder only root may read, then ends at once.
const SWAP: &str = r#"d = run.output_dir.rstrip("/")
os.rename(d, d + ".x")
os.symlink("SECRET_DIR", d)
os._exit(0)"#;

async fn a_link_in_place_of_the_output_folder_publishes_nothing_of_the_host(mode: Mode) {
    use std::os::unix::fs::PermissionsExt as _;
    let mut app = TestApp::with(Options::default()).await;
    mode.start_worker(&mut app, |_| {}).await;
    let secret_dir = app.data_dir.join("root-only");
    std::fs::create_dir_all(&secret_dir).unwrap();
    let secret = secret_dir.join("shadow.csv");
    std::fs::write(&secret, "root:$6$secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&secret_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let code = SWAP.replace("SECRET_DIR", &secret_dir.to_string_lossy());
    let (config, doc) = app.package_setup(run_code_package(&code)).await;
    let run = run_in(&app, mode, &config, &doc).await;
    let id = run["id"].as_str().unwrap();
    assert_eq!(run["status"], "succeeded", "the engine exited 0: {run}");
    assert_eq!(output_names(&app, id).await, Vec::<String>::new());
    let res = app
        .get(&format!("/api/v1/runs/{id}/outputs/shadow.csv"))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let mode_after = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode_after, 0o600, "the host file's mode is untouched");
    let console = run_console(&app.all_events(id).await);
    assert!(
        console
            .iter()
            .any(|l| l.contains("output folder could not be read")),
        "{console:#?}"
    );
    app.finish().await;
}

/// Engine events that claim a limit and inflate the summary, then a failure.
const FORGERY: &str = r#"fd = int(os.environ["ADE_EVENTS_FD"])
os.write(fd, b'{"type": "run.error", "payload": {"code": "memory_limit", "message": "forged"}}\n')
os.write(fd, b'{"type": "run.validation.summary", "payload": {"errors": 0, "summary": {"rows": 999999, "console_lines": 5, "output_bytes": 1}}}\n')
raise SystemExit(1)"#;

async fn engine_events_tell_the_story_but_never_set_the_outcome(mode: Mode) {
    let mut app = TestApp::with(Options::default()).await;
    mode.start_worker(&mut app, |_| {}).await;
    let (config, doc) = app.package_setup(run_code_package(FORGERY)).await;
    let run = run_in(&app, mode, &config, &doc).await;
    let id = run["id"].as_str().unwrap();
    assert_failed(&run, "engine_failed");
    let events = app.all_events(id).await;
    let completed: &Value = events.last().unwrap();
    let summary = &completed["payload"]["summary"];
    assert_eq!(
        summary["engine"]["rows"], 999_999,
        "the engine's word, kept as its: {summary}"
    );
    assert_ne!(
        summary["console_lines"], 5,
        "the worker's own count: {summary}"
    );
    assert_eq!(summary["output_bytes"], 0, "{summary}");
    app.finish().await;
}

in_both_modes!(
    a_hostile_configuration_gets_nothing,
    a_link_in_place_of_the_output_folder_publishes_nothing_of_the_host,
    engine_events_tell_the_story_but_never_set_the_outcome,
);
