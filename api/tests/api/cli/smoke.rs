//! `ade smoke`, the post-deploy check: with a worker, without one, with a
//! workspace key.

use super::*;

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
