//! `ade runs create --follow`: console lines live, resuming after a cut
//! connection, exit codes, Ctrl-C.

use super::*;

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
