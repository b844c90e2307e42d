//! The `ade` command-line client, run as a real process (the built
//! `target/*/ade`) against a real API with real workers.

use crate::configurations::{config_package, template_dir};
use crate::fixtures::{run_code_package, silent_sleeper_package};
use crate::helpers::{DEADLINE, Options, TestApp, assert_gapless, make_key, repo_root};
use crate::proxy::Proxy;
use crate::streams::chatty_setup;
use ade_api::keys::Scope;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const NIL: &str = "00000000-0000-0000-0000-000000000000";

/// The built `ade` binary (`scripts/test` builds every binary first).
fn ade_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("ade");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// Where `ade` talks to, and with which key.
struct Target {
    base: String,
    key: Option<String>,
}

impl Target {
    /// The test's API with its admin key.
    fn admin(app: &TestApp) -> Self {
        Self::at(&app.base, Some(&app.key))
    }

    /// An API at `base` with `key`.
    fn at(base: &str, key: Option<&str>) -> Self {
        Self {
            base: base.to_owned(),
            key: key.map(str::to_owned),
        }
    }
}

/// `ade <args>` against `target`, with no terminal.
fn ade(target: &Target, args: &[&str]) -> Command {
    let mut cmd = Command::new(ade_bin());
    cmd.args(args).env("ADE_API_URL", &target.base);
    match &target.key {
        Some(key) => cmd.env("ADE_API_KEY", key),
        None => cmd.env_remove("ADE_API_KEY"),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// What a finished `ade` printed, and how it exited.
#[derive(Debug)]
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    /// Asserts exit code 0 and parses stdout as one JSON document.
    fn json(&self) -> Value {
        assert_eq!(self.code, Some(0), "{self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// Parses stdout as NDJSON.
    fn ndjson(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Runs `ade` to its end.
async fn run_ade(target: &Target, args: &[&str]) -> Output {
    let child = ade(target, args).spawn().unwrap();
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("ade {args:?} did not end"))
        .unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A running `ade` whose stdout is read line by line as it prints.
struct Live {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Live {
    fn spawn(target: &Target, args: &[&str]) -> Self {
        let mut child = ade(target, args).spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stdout until a line satisfies `wanted`; returns it.
    async fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.seen.push(line.clone());
                if wanted(&line) {
                    return line;
                }
            }
            panic!("ade ended before printing {what}: {:?}", self.seen)
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .unwrap_or_else(|_| panic!("ade never printed {what}"))
    }

    /// Reads the rest and waits for the exit.
    async fn finish(mut self) -> Output {
        let rest = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.seen.push(line);
            }
            let mut stderr = String::new();
            let mut pipe = self.child.stderr.take().unwrap();
            pipe.read_to_string(&mut stderr).await.unwrap();
            let status = self.child.wait().await.unwrap();
            (status, stderr)
        };
        let (status, stderr) = tokio::time::timeout(DEADLINE, rest)
            .await
            .expect("ade ends");
        Output {
            code: status.code(),
            stdout: self.seen.join("\n"),
            stderr,
        }
    }
}

/// Waits until `GET /api/v1/workers` lists a worker (its first heartbeat).
async fn wait_for_live_worker(app: &TestApp) {
    let start = std::time::Instant::now();
    loop {
        let workers: Value = app.get("/api/v1/workers").await.json().await.unwrap();
        if !workers["items"].as_array().unwrap().is_empty() {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "no worker became live");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The run id in `==> run <id> queued`.
fn run_id_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("==> run ")?.split_once(" queued"))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("no `==> run <id> queued` line: {stdout}"))
}

/// The console lines of a run's log, as `ade` prints them.
fn logged_console(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "console.line")
        .map(|e| {
            let message = e["payload"]["message"].as_str().unwrap();
            match e["payload"]["scope"].as_str() {
                Some("build") => format!("[build] {message}"),
                _ => message.to_owned(),
            }
        })
        .collect()
}

/// What `ade` printed apart from its `==>` notes: the console lines.
fn printed_console(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !l.starts_with("==> "))
        .map(str::to_owned)
        .collect()
}

/// The template, printing a line when the build checks that it imports
/// (so the run's stream holds build console lines too).
fn build_line_package() -> Vec<u8> {
    let columns =
        std::fs::read_to_string(template_dir().join("src/ade_config/columns.py")).unwrap();
    let extra = "\nimport os as _os\nif not _os.environ.get('ADE_EVENTS_FD'):\n    print('imported by the build check', flush=True)\n";
    config_package(&(columns + extra))
}

#[tokio::test]
async fn runs_create_follow_shows_a_run_live_and_exits_0_when_it_succeeds() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.package_setup(build_line_package()).await;
    let out = run_ade(
        &Target::admin(&app),
        &[
            "runs", "create", "--config", &config, "--doc", &doc, "--follow",
        ],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let id = run_id_of(&out.stdout);
    let events = app.all_events(&id).await;
    let console = logged_console(&events);
    assert!(
        console.contains(&"[build] imported by the build check".to_owned()),
        "{console:?}"
    );
    assert!(
        console.iter().any(|l| l.contains("-> member_id")),
        "{console:?}"
    );
    assert_eq!(
        printed_console(&out.stdout),
        console,
        "every line once, in order"
    );
    for note in [
        "==> build ready in ",
        "==> run started on ",
        "==> validation: 0 issues (0 errors, 0 warnings)",
        "==> run succeeded in ",
        ".normalized.xlsx",
    ] {
        assert!(
            out.stdout.contains(note),
            "{note:?} missing: {}",
            out.stdout
        );
    }
    assert_eq!(app.run(&id).await["status"], "succeeded");
    app.finish().await;
}

#[tokio::test]
async fn runs_create_follow_exits_1_when_the_run_fails() {
    let app = TestApp::spawn().await;
    let package = run_code_package("raise RuntimeError('configuration broken on purpose')");
    let (config, doc) = app.package_setup(package).await;
    let out = run_ade(
        &Target::admin(&app),
        &[
            "runs", "create", "--config", &config, "--doc", &doc, "--follow",
        ],
    )
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("broken on purpose"), "{}", out.stdout);
    assert!(out.stdout.contains("==> run failed"), "{}", out.stdout);
    let id = run_id_of(&out.stdout);
    assert_eq!(app.run(&id).await["status"], "failed");
    app.finish().await;
}

#[tokio::test]
async fn a_followed_run_resumes_after_its_connection_is_cut_without_gap_or_repeat() {
    let app = TestApp::spawn().await;
    let proxy = Proxy::start(&app.base).await;
    let (config, doc) = chatty_setup(&app, 400, 0.02).await;
    let mut live = Live::spawn(
        &Target::at(&proxy.base, Some(&app.key)),
        &[
            "runs", "create", "--config", &config, "--doc", &doc, "--follow",
        ],
    );
    for line in ["line 20", "line 200"] {
        live.wait_for(line, |l| l == line).await;
        assert!(proxy.cut() > 0, "the stream's connection was open");
        assert!(
            !proxy.delivered("event: run.completed"),
            "the cut came after the run's end: the test proves nothing"
        );
    }
    let out = live.finish().await;
    assert_eq!(out.code, Some(0), "{out:?}");

    let id = run_id_of(&out.stdout);
    let console = logged_console(&app.all_events(&id).await);
    assert!(console.len() > 400, "{} lines", console.len());
    assert_eq!(
        printed_console(&out.stdout),
        console,
        "every line once, in order"
    );
    assert_eq!(
        out.stderr.matches("resuming after event").count(),
        2,
        "{}",
        out.stderr
    );
    let resumed: Vec<i64> = proxy
        .requests()
        .iter()
        .filter(|r| r.target().contains("/events?stream=true"))
        .filter_map(|r| r.header("last-event-id").map(|v| v.parse().unwrap()))
        .collect();
    assert_eq!(resumed.len(), 2, "{resumed:?}");
    assert!(resumed.iter().all(|&n| n > 0), "{resumed:?}");
    app.finish().await;
}

#[tokio::test]
async fn ctrl_c_without_a_terminal_cancels_the_run_and_exits_130() {
    let app = TestApp::spawn().await;
    let (config, doc) = app
        .package_setup(silent_sleeper_package("ade-cli-sleeper"))
        .await;
    let mut live = Live::spawn(
        &Target::admin(&app),
        &[
            "runs", "create", "--config", &config, "--doc", &doc, "--follow",
        ],
    );
    let queued = live
        .wait_for("the run's id", |l| l.ends_with(" queued"))
        .await;
    live.wait_for("the run's start", |l| l.starts_with("==> run started on "))
        .await;
    let pid = live.child.id().unwrap() as i32;
    // SAFETY: signalling a child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = live.finish().await;
    assert_eq!(out.code, Some(130), "{out:?}");
    assert!(out.stderr.contains("cancel requested"), "{}", out.stderr);
    let run = app.wait_for_run(&run_id_of(&queued)).await;
    assert_eq!(run["status"], "cancelled");
    app.finish().await;
}

#[tokio::test]
async fn smoke_passes_with_a_worker_and_saves_the_log_file() {
    let app = TestApp::spawn().await;
    wait_for_live_worker(&app).await;
    let save = app.data_dir.join("smoke");
    let out = run_ade(
        &Target::admin(&app),
        &["smoke", "--save-dir", save.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for step in [
        "health: live",
        "health: ready",
        "routes",
        "workers",
        "workspace",
        "configuration",
        "document",
        "dry run",
        "run read back",
        "events paged",
        "log file",
    ] {
        assert!(
            out.stdout.contains(&format!("✓ {step} ")),
            "step {step:?} did not pass: {}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("9 groups answer"), "{}", out.stdout);
    assert!(
        out.stdout.ends_with("smoke check passed\n"),
        "{}",
        out.stdout
    );

    // The saved log file is the run's whole log.
    let saved: Vec<PathBuf> = std::fs::read_dir(&save)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    let name = saved[0].file_name().unwrap().to_str().unwrap().to_owned();
    let id = name
        .strip_prefix("run-")
        .and_then(|n| n.strip_suffix("-events.ndjson"))
        .unwrap();
    assert!(
        out.stdout.contains(saved[0].to_str().unwrap()),
        "the path is printed"
    );
    let logged: Vec<Value> = std::fs::read_to_string(&saved[0])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_gapless(&logged);
    assert_eq!(logged, app.all_events(id).await);
    assert_eq!(app.run(id).await["options"]["dry_run"], true);

    // Again, as JSON: the workspace and configuration are reused.
    let again = run_ade(&Target::admin(&app), &["--json", "smoke"])
        .await
        .json();
    assert_eq!(again["ok"], true, "{again}");
    let detail = |name: &str| {
        again["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(detail("workspace").ends_with("(reused)"));
    assert!(detail("configuration").ends_with("(reused)"));
    let logfile = PathBuf::from(again["logfile"].as_str().unwrap());
    assert!(logfile.exists());
    let _ = std::fs::remove_dir_all(logfile.parent().unwrap());
    app.finish().await;
}

#[tokio::test]
async fn smoke_fails_clearly_without_a_worker() {
    let app = TestApp::with(Options::default()).await;
    let out = run_ade(&Target::admin(&app), &["smoke", "--timeout", "3"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout.contains("! workers ") && out.stdout.contains("lists none"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "✗ dry run"
        ) && out.stdout.contains(
            "no worker took the run within 3.0 s; GET /api/v1/workers lists none; the run was cancelled"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .ends_with("smoke check FAILED at step \"dry run\"\n"),
        "{}",
        out.stdout
    );
    app.finish().await;
}

/// A copy of the starter template with the clutter a working folder collects.
fn template_copy(to: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    copy(&template_dir(), to);
    for junk in [
        ".git/HEAD",
        "src/ade_config/__pycache__/x.pyc",
        ".venv/pyvenv.cfg",
    ] {
        let path = to.join(junk);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "junk").unwrap();
    }
}

#[tokio::test]
async fn configs_create_from_a_folder_round_trips_to_the_templates_digest() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    let template = app.create_template_configuration(ws).await;
    let dir = app.data_dir.join("my-roster");
    template_copy(&dir);

    let args = [
        "--json",
        "configs",
        "create",
        "--workspace",
        ws,
        "--from-dir",
    ];
    let made = run_ade(
        &Target::admin(&app),
        &[&args[..], &[dir.to_str().unwrap()]].concat(),
    )
    .await
    .json();
    assert_eq!(made["name"], "my-roster");
    assert_eq!(made["content_digest"], template["content_digest"]);
    let id = made["id"].as_str().unwrap();
    let got = run_ade(
        &Target::admin(&app),
        &["--json", "configs", "get", "--workspace", ws, id],
    )
    .await
    .json();
    assert_eq!(got, made);

    // A symlink is refused before anything is sent.
    std::os::unix::fs::symlink("/etc/hostname", dir.join("src/ade_config/link.py")).unwrap();
    let refused = run_ade(
        &Target::admin(&app),
        &[
            "configs",
            "create",
            "--workspace",
            ws,
            "--from-dir",
            dir.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused.stderr.contains("link.py is a symbolic link"),
        "{}",
        refused.stderr
    );
    let listed = run_ade(
        &Target::admin(&app),
        &["--json", "configs", "list", "--workspace", ws],
    )
    .await
    .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    app.finish().await;
}

#[test]
fn the_cli_packs_under_the_apis_own_limits() {
    use ade_api::package as api;
    use ade_cli::pack as cli;
    assert_eq!(cli::MAX_ARCHIVE_BYTES, api::MAX_ARCHIVE_BYTES);
    assert_eq!(cli::MAX_ENTRIES, api::MAX_ENTRIES);
    assert_eq!(cli::MAX_EXPANDED_BYTES, api::MAX_EXPANDED_BYTES);
    assert_eq!(cli::MAX_PATH_LEN, api::MAX_PATH_LEN);
}

#[tokio::test]
async fn every_command_prints_the_apis_json() {
    let app = TestApp::spawn().await;
    wait_for_live_worker(&app).await;
    let base = &Target::admin(&app);
    let ws = run_ade(base, &["--json", "workspaces", "create", "cli"])
        .await
        .json();
    let ws = ws["id"].as_str().unwrap();
    let listed = run_ade(base, &["--json", "workspaces", "list"])
        .await
        .json();
    assert_eq!(listed["items"][0]["id"], ws);
    let config = run_ade(
        base,
        &[
            "--json",
            "configs",
            "create",
            "--workspace",
            ws,
            "--template",
        ],
    )
    .await
    .json();
    let config = config["id"].as_str().unwrap();
    let sample = repo_root().join("engine/samples/members.csv");
    let doc = run_ade(
        base,
        &[
            "--json",
            "docs",
            "upload",
            "--workspace",
            ws,
            sample.to_str().unwrap(),
        ],
    )
    .await
    .json();
    assert_eq!(doc["name"], "members.csv");
    let doc = doc["id"].as_str().unwrap();

    // --follow --json: every event, as the API sent it, one per line.
    let follow = [
        "--json", "runs", "create", "--config", config, "--doc", doc, "--follow",
    ];
    let followed = run_ade(base, &follow).await;
    assert_eq!(followed.code, Some(0), "{followed:?}");
    let events = followed.ndjson();
    assert_gapless(&events);
    assert_eq!(events.last().unwrap()["type"], "run.completed");
    let id = events[0]["run_id"].as_str().unwrap();
    assert_eq!(events, app.all_events(id).await);
    let logs = run_ade(base, &["--json", "runs", "logs", id]).await;
    assert_eq!(logs.ndjson(), events);
    let logfile = app.get(&format!("/api/v1/runs/{id}/logfile")).await;
    assert_eq!(
        logs.stdout,
        logfile.text().await.unwrap(),
        "the log file as sent"
    );
    let human = run_ade(base, &["runs", "logs", id]).await;
    assert_eq!(printed_console(&human.stdout), logged_console(&events));

    let run = run_ade(base, &["--json", "runs", "get", id]).await.json();
    assert_eq!(run["status"], "succeeded");
    let runs = run_ade(
        base,
        &[
            "--json",
            "runs",
            "list",
            "--workspace",
            ws,
            "--status",
            "succeeded",
        ],
    )
    .await
    .json();
    assert_eq!(runs["items"][0]["id"], id);
    let outputs = run_ade(base, &["--json", "runs", "outputs", id])
        .await
        .json();
    let file = &outputs["files"][0];
    let name = file["name"].as_str().unwrap();

    let dir = app.data_dir.join("downloads");
    let saved = run_ade(
        base,
        &["runs", "outputs", id, "--download", dir.to_str().unwrap()],
    )
    .await;
    assert_eq!(saved.code, Some(0), "{saved:?}");
    let served = app.get(file["download_url"].as_str().unwrap()).await;
    let served = served.bytes().await.unwrap();
    assert_eq!(std::fs::read(dir.join(name)).unwrap(), served.to_vec());

    let build = run_ade(
        base,
        &[
            "--json",
            "builds",
            "create",
            "--workspace",
            ws,
            "--config",
            config,
        ],
    )
    .await
    .json();
    assert_eq!(build["status"], "ready");
    let build_args = [
        "--json",
        "builds",
        "create",
        "--workspace",
        ws,
        "--config",
        config,
        "--force",
        "--follow",
    ];
    let forced = run_ade(base, &build_args).await;
    assert_eq!(forced.code, Some(0), "{forced:?}");
    let build_events = forced.ndjson();
    assert_gapless(&build_events);
    assert_ne!(build_events[0]["build_id"], build["id"], "a new build");
    let done = build_events.last().unwrap();
    assert_eq!(done["type"], "build.completed");
    assert_eq!(done["payload"]["status"], "ready");
    let workers = run_ade(base, &["--json", "workers"]).await.json();
    assert_eq!(workers["items"].as_array().unwrap().len(), 1);
    let queue = run_ade(base, &["--json", "queue"]).await.json();
    assert_eq!(queue["queued_runs"], 0);
    let cancel = run_ade(base, &["runs", "cancel", id]).await;
    assert_eq!(cancel.code, Some(2));
    assert!(
        cancel.stderr.contains("(409 run_already_terminal)"),
        "{}",
        cancel.stderr
    );
    app.finish().await;
}

/// Runs each `(target, args)` and checks exit code 2 and the texts on stderr.
async fn assert_errors(cases: &[(&Target, &[&str], &[&str])]) {
    for (target, args, expected) in cases {
        let out = run_ade(target, args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        for text in *expected {
            assert!(
                out.stderr.contains(text),
                "{args:?}: {text:?} in {}",
                out.stderr
            );
        }
    }
}

#[tokio::test]
async fn errors_say_what_went_wrong_and_what_to_do() {
    let app = TestApp::with(Options {
        safe_mode: true,
        ..Default::default()
    })
    .await;
    let admin = Target::admin(&app);
    let down = Target::at("http://127.0.0.1:1", None);
    assert_errors(&[
        (
            &admin,
            &["runs", "get", NIL],
            &["(404 run_not_found)", "Check the id"],
        ),
        (
            &admin,
            &["runs", "create", "--config", NIL, "--doc", NIL],
            &["(422 safe_mode_enabled)", "ADE_SAFE_MODE=true"],
        ),
        (
            &down,
            &["queue"],
            &["cannot reach the API at http://127.0.0.1:1", "ADE_API_URL"],
        ),
        (
            &Target::at("https://127.0.0.1:1", None),
            &["queue"],
            &["is not an http:// URL"],
        ),
        (&down, &["runs", "get", "42"], &["invalid value '42'"]),
    ])
    .await;
    app.finish().await;
}

#[tokio::test]
async fn auth_errors_say_which_key_to_set() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let ws: uuid::Uuid = ws["id"].as_str().unwrap().parse().unwrap();
    let tenant = make_key(&app.db_url, Scope::Workspace(ws)).await;
    assert_errors(&[
        (
            &Target::at(&app.base, None),
            &["workspaces", "list"],
            &["(401 unauthorized)", "The API needs a key: set ADE_API_KEY"],
        ),
        (
            &Target::at(&app.base, Some("ade_not-a-key")),
            &["workspaces", "list"],
            &["(401 unauthorized)", "The key in ADE_API_KEY was refused"],
        ),
        (
            &Target::at(&app.base, Some(&tenant)),
            &["workers"],
            &["(403 admin_required)", "keys create --admin"],
        ),
    ])
    .await;
    // The tenant's key works for its own workspace.
    let listed = run_ade(
        &Target::at(&app.base, Some(&tenant)),
        &["--json", "workspaces", "list"],
    )
    .await
    .json();
    assert_eq!(listed["items"][0]["id"], ws.to_string());
    app.finish().await;
}

#[tokio::test]
async fn smoke_passes_with_a_workspace_key_relying_on_the_run() {
    let app = TestApp::spawn().await;
    let ws = app.create_workspace().await;
    let ws: uuid::Uuid = ws["id"].as_str().unwrap().parse().unwrap();
    let tenant = Target::at(
        &app.base,
        Some(&make_key(&app.db_url, Scope::Workspace(ws)).await),
    );
    let out = run_ade(&tenant, &["--json", "smoke"]).await.json();
    assert_eq!(out["ok"], true, "{out:#}");
    let step = |name: &str| {
        out["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {out:#}"))
            .clone()
    };
    assert_eq!(step("workers")["status"], "warning");
    assert!(
        step("workers")["detail"]
            .as_str()
            .unwrap()
            .contains("not an admin key")
    );
    assert_eq!(step("routes")["status"], "passed", "{out:#}");
    let workspace = step("workspace")["detail"].as_str().unwrap().to_owned();
    assert!(
        workspace.starts_with(&format!("{ws}, the key's own workspace")),
        "{workspace}"
    );
    let run = app.run(out["run_id"].as_str().unwrap()).await;
    assert_eq!(run["workspace_id"], ws.to_string());
    let _ = std::fs::remove_dir_all(
        PathBuf::from(out["logfile"].as_str().unwrap())
            .parent()
            .unwrap(),
    );
    app.finish().await;
}
