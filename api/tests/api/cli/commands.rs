//! The other commands: packing configurations, every command's `--json`,
//! and errors that say what to do.

use super::*;

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
