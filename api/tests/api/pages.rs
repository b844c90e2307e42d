//! The pages for people (`/` and `/runs/{id}`), driven in headless Chromium
//! through a TCP proxy that records the browser's requests and can cut its
//! connections.

use crate::chromium::{Browser, Page};
use crate::helpers::{DEADLINE, Options, TestApp, assert_problem};
use crate::proxy::Proxy;
use crate::streams::chatty_setup;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// The template configuration, printing at run time a line of markup (which
/// must show as text) and a line on stderr, and a line when the build checks
/// that it imports (so the run's stream holds build lines too).
fn markup_package() -> Vec<u8> {
    // At run time (in the configuration's on_run_start hook, per run even in
    // a warm engine), and once when the build imports the rules.
    let hooks = crate::fixtures::hooks_with(
        "print('<b>not bold</b> <img src=x onerror=\"window.injected=1\">', flush=True)\n\
         print('a line on stderr', file=sys.stderr, flush=True)",
    );
    let columns = crate::configurations::template_columns()
        + "\nimport os as _os\nif not _os.environ.get('ADE_EVENTS_FD'):\n    print('imported by the build check', flush=True)\n";
    crate::configurations::package_of(&[
        ("src/ade_config/hooks.py", &hooks),
        ("src/ade_config/columns.py", &columns),
    ])
}

/// The console lines the page shows: `[sequence, scope, tag, message]`.
async fn shown_lines(page: &Page<'_>) -> Vec<Value> {
    let lines = page
        .eval(
            "[...document.querySelectorAll('#console .line')].map(row => [Number(row.dataset.seq), \
             row.classList.contains('scope-build') ? 'build' : 'run', \
             row.querySelector('.tag').textContent, row.querySelector('.msg').textContent])",
        )
        .await;
    lines.as_array().unwrap().clone()
}

/// The console lines of the run's log, as the page should show them.
async fn logged_lines(app: &TestApp, id: &str) -> Vec<Value> {
    app.all_events(id)
        .await
        .into_iter()
        .filter(|e| e["type"] == "console.line")
        .map(|e| {
            let build = e["payload"]["scope"] == "build";
            json!([
                e["sequence"],
                if build { "build" } else { "run" },
                if build { "build" } else { "" },
                e["payload"]["message"]
            ])
        })
        .collect()
}

/// True once the page shows `status` and its stream has ended.
fn finished(status: &str) -> String {
    format!(
        "document.getElementById('status').textContent === '{status}' \
         && document.getElementById('connection').dataset.state === 'ended'"
    )
}

/// Asserts that every API call carried the key as a Bearer token and that no URL held it.
fn assert_key_sent_in_headers_only(proxy: &Proxy, key: &str) {
    let requests = proxy.requests();
    let api: Vec<_> = requests
        .iter()
        .filter(|r| r.target().starts_with("/api/v1/"))
        .collect();
    assert!(!api.is_empty(), "the page called no API: {requests:?}");
    for request in api {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {key}").as_str()),
            "{request:?}"
        );
    }
    for request in &requests {
        assert!(
            !request.line.contains(key),
            "a URL held the key: {request:?}"
        );
    }
}

/// Waits until `path` exists (a finished download; Chromium writes `.crdownload` first).
async fn wait_for_file(path: &Path) -> Vec<u8> {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < DEADLINE,
            "{} was never downloaded",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn the_run_page_shows_a_run_live_until_it_succeeds() {
    let mut app = TestApp::with(Options::default()).await;
    let proxy = Proxy::start(&app.base).await;
    let browser = Browser::launch().await;
    let (config, doc) = app.package_setup(markup_package()).await;
    let key = app.workspace_key(&config).await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap();

    let page = browser.page().await;
    page.navigate(&format!("{}/runs/{id}#key={key}", proxy.base))
        .await;
    page.wait_for(
        "the queued run, following live",
        "document.getElementById('status').textContent === 'queued' \
         && document.getElementById('connection').dataset.state === 'live'",
    )
    .await;
    // Only now does a worker take the run: everything after arrives live.
    app.start_worker("late", None).await;
    page.wait_for("the run succeeded", &finished("succeeded"))
        .await;

    let shown = shown_lines(&page).await;
    assert_eq!(
        shown,
        logged_lines(&app, id).await,
        "every console line, once, in order"
    );
    assert!(
        shown.iter().any(|l| l[1] == "build"),
        "the build's lines are shown, marked"
    );
    assert!(shown.iter().any(|l| l[3] == "a line on stderr"));
    let markup = r#"<b>not bold</b> <img src=x onerror="window.injected=1">"#;
    assert!(
        shown.iter().any(|l| l[3] == markup),
        "markup is shown as text"
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#console b, #console img').length")
            .await,
        0
    );
    assert_eq!(page.eval("window.injected === undefined").await, true);

    // The key left the address bar for this tab's sessionStorage.
    assert_eq!(page.eval("location.hash").await, "");
    assert_eq!(page.eval("sessionStorage.getItem('ade.key')").await, key);
    assert_key_sent_in_headers_only(&proxy, &key);

    // Validation summary, the table, and progress at the end.
    let validation = page
        .eval("document.getElementById('validation-summary').textContent")
        .await;
    assert_eq!(validation, "0 errors, 0 warnings");
    let events = app.all_events(id).await;
    let table = &events
        .iter()
        .find(|e| e["type"] == "run.table.summary")
        .unwrap()["payload"];
    let tables = page
        .eval("document.getElementById('tables').textContent")
        .await;
    let expected = format!(
        "{} — header on row {}, {} rows",
        table["input"].as_str().unwrap(),
        table["header_row"],
        table["rows"]
    );
    assert!(
        tables.as_str().unwrap().starts_with(&expected),
        "{tables} vs {expected}"
    );
    assert_eq!(
        page.eval("document.getElementById('progress').value").await,
        1
    );
    page.assert_no_script_errors();
    browser.close().await;
    app.finish().await;
}

#[tokio::test]
async fn the_run_page_downloads_outputs_and_the_log_with_the_key() {
    let app = TestApp::spawn().await;
    let proxy = Proxy::start(&app.base).await;
    let browser = Browser::launch().await;
    let downloads = browser.profile.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    browser.allow_downloads(&downloads).await;
    let (config, doc) = app.sample_setup().await;
    let key = app.workspace_key(&config).await;
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    let id = run["id"].as_str().unwrap();
    let outputs = app.get(&format!("/api/v1/runs/{id}/outputs")).await;
    let outputs: Value = outputs.json().await.unwrap();
    let count = outputs["files"].as_array().unwrap().len();
    assert!(count >= 1, "{outputs}");
    let name = outputs["files"][0]["name"].as_str().unwrap().to_owned();

    let page = browser.page().await;
    page.navigate(&format!("{}/runs/{id}#key={key}", proxy.base))
        .await;
    page.wait_for("the run succeeded", &finished("succeeded"))
        .await;
    page.wait_for(
        "the outputs",
        &format!("document.querySelectorAll('#outputs button').length === {count}"),
    )
    .await;
    assert_eq!(
        page.eval("document.querySelector('#outputs code').textContent")
            .await,
        name
    );

    page.eval("document.querySelector('#outputs button').click()")
        .await;
    let expected = app.get(&format!("/api/v1/runs/{id}/outputs/{name}")).await;
    let expected = expected.bytes().await.unwrap();
    assert_eq!(wait_for_file(&downloads.join(&name)).await, expected);

    page.eval("document.getElementById('logfile').click()")
        .await;
    let log = wait_for_file(&downloads.join(format!("run-{id}-events.ndjson"))).await;
    let lines = String::from_utf8(log).unwrap().lines().count();
    assert_eq!(lines, app.all_events(id).await.len());
    assert_key_sent_in_headers_only(&proxy, &key);
    page.assert_no_script_errors();
    browser.close().await;
    app.finish().await;
}

/// True once the page shows the console line `text`.
fn shows_line(text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#console .line .msg')].some(m => m.textContent === '{text}')"
    )
}

#[tokio::test]
async fn the_run_page_resumes_after_its_connections_are_cut() {
    let app = TestApp::spawn().await;
    let proxy = Proxy::start(&app.base).await;
    let browser = Browser::launch().await;
    let (config, doc) = chatty_setup(&app, 400, 0.02).await;
    let key = app.workspace_key(&config).await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap();

    let page = browser.page().await;
    page.navigate(&format!("{}/runs/{id}#key={key}", proxy.base))
        .await;
    for line in ["line 20", "line 200"] {
        page.wait_for(line, &shows_line(line)).await;
        assert!(proxy.cut() > 0, "the stream's connection was open");
        assert!(
            !proxy.delivered("event: run.completed"),
            "the cut came after the run's end: the test proves nothing"
        );
    }
    page.wait_for("the run succeeded", &finished("succeeded"))
        .await;

    let shown = shown_lines(&page).await;
    let logged = logged_lines(&app, id).await;
    assert!(logged.len() > 400, "{} lines", logged.len());
    assert_eq!(shown, logged, "every console line exactly once, in order");
    let sequences = page
        .eval(
            "[...document.querySelectorAll('#console > div')].map(row => Number(row.dataset.seq))",
        )
        .await;
    let sequences: Vec<i64> = serde_json::from_value(sequences).unwrap();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "rows in sequence order, none twice"
    );

    // The page resumed after each cut, sending how far it had read.
    let resumed: Vec<i64> = proxy
        .requests()
        .iter()
        .filter(|r| r.target().contains("/events?stream=true"))
        .filter_map(|r| r.header("last-event-id").map(|v| v.parse().unwrap()))
        .collect();
    assert!(resumed.len() >= 2, "{resumed:?}");
    assert!(resumed.iter().all(|&n| n > 0), "{resumed:?}");
    assert_key_sent_in_headers_only(&proxy, &key);
    page.assert_no_script_errors();
    browser.close().await;
    app.finish().await;
}

#[tokio::test]
async fn the_follower_drops_duplicates_and_fills_gaps_in_order() {
    let app = TestApp::spawn().await;
    let browser = Browser::launch().await;
    let (config, doc) = app.sample_setup().await;
    let key = app.workspace_key(&config).await;
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    let id = run["id"].as_str().unwrap();
    let total = app.all_events(id).await.len();
    assert!(total > 12, "{total} events");

    let page = browser.page().await;
    page.navigate(&format!("{}/runs/{id}#key={key}", app.base))
        .await;
    page.wait_for("the run succeeded", &finished("succeeded"))
        .await;
    // The page's own follower, fed by hand: events 1-3, 2-5 again, then 9 on
    // (6-8 missing, so it must read them from the paged endpoint).
    let handed_on = page
        .eval(&format!(
            "(async () => {{
               const {{ RunFollower }} = await import('/assets/stream.js');
               const res = await fetch('/api/v1/runs/{id}/events?limit=1000',
                 {{ headers: {{ Authorization: 'Bearer {key}' }} }});
               const all = (await res.json()).items;
               const seen = [];
               const follower = new RunFollower('{id}', {{
                 onEvents: events => seen.push(...events.map(e => e.sequence)), onState: () => {{}} }});
               await follower.accept(all.slice(0, 3));
               await follower.accept(all.slice(1, 5));
               await follower.accept(all.slice(8));
               return [seen, follower.ended];
             }})()"
        ))
        .await;
    let expected: Vec<usize> = (1..=total).collect();
    assert_eq!(handed_on, json!([expected, true]));
    page.assert_no_script_errors();
    browser.close().await;
    app.finish().await;
}

#[tokio::test]
async fn the_sse_parser_reads_frames_split_anywhere() {
    let browser = Browser::launch().await;
    let app = TestApp::with(Options::default()).await;
    let page = browser.page().await;
    page.navigate(&format!("{}/runs/{}", app.base, uuid::Uuid::now_v7()))
        .await;
    // Every split point, with LF, CRLF and CR line ends, comments and multi-line data.
    let frames = page
        .eval(
            r#"(async () => {
                 const { SseParser } = await import('/assets/stream.js');
                 const body = 'retry: 2000\n\n: keep-alive\n\nid: 1\nevent: a\ndata: {"n":1}\n\n'
                   + 'id: 2\r\nevent: b\r\ndata: x\r\ndata: y\r\n\r\n' + 'id: 3\revent: c\rdata:z\r\r' + 'id: 4\ndata: w\n\n';
                 const results = new Set();
                 for (let cut = 0; cut <= body.length; cut++) {
                   const parser = new SseParser();
                   const frames = [...parser.push(body.slice(0, cut)), ...parser.push(body.slice(cut))];
                   results.add(JSON.stringify(frames));
                 }
                 return [...results].map(r => JSON.parse(r));
               })()"#,
        )
        .await;
    let expected = json!([[
        {"id": "1", "event": "a", "data": "{\"n\":1}"},
        {"id": "2", "event": "b", "data": "x\ny"},
        {"id": "3", "event": "c", "data": "z"},
        {"id": "4", "event": "message", "data": "w"}
    ]]);
    assert_eq!(frames, expected);
    browser.close().await;
    app.finish().await;
}

#[tokio::test]
async fn the_list_page_asks_for_a_key_and_shows_runs_as_they_change() {
    let mut app = TestApp::with(Options::default()).await;
    let proxy = Proxy::start(&app.base).await;
    let browser = Browser::launch().await;
    let (config, doc) = app.sample_setup().await;
    let key = app.workspace_key(&config).await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap();

    let page = browser.page().await;
    page.navigate(&format!("{}/", proxy.base)).await;
    page.wait_for(
        "the key form",
        "!document.getElementById('key-form').hidden",
    )
    .await;
    page.eval(&format!(
        "document.querySelector('#key-form input').value = '{key}'; \
         document.getElementById('key-form').requestSubmit()"
    ))
    .await;
    let status = format!("document.querySelector('tr[data-run-id=\"{id}\"] .status')?.textContent");
    page.wait_for("the queued run", &format!("{status} === 'queued'"))
        .await;

    // No worker yet: start one, and the same page shows the run finish.
    app.start_worker("late", None).await;
    page.wait_for("the run succeeded", &format!("{status} === 'succeeded'"))
        .await;

    // Its link opens the run page, which finds the key in this tab's sessionStorage.
    page.eval(&format!(
        "document.querySelector('tr[data-run-id=\"{id}\"] a').click()"
    ))
    .await;
    page.wait_for(
        "the run page",
        &format!("location.pathname === '/runs/{id}'"),
    )
    .await;
    page.wait_for("the run succeeded", &finished("succeeded"))
        .await;
    assert_key_sent_in_headers_only(&proxy, &key);
    page.assert_no_script_errors();
    browser.close().await;
    app.finish().await;
}

#[tokio::test]
async fn pages_and_assets_are_served_with_a_strict_policy() {
    let app = TestApp::with(Options::default()).await;
    let run_page = format!("/runs/{}", uuid::Uuid::now_v7());
    let cases = [
        ("/", "text/html; charset=utf-8"),
        (run_page.as_str(), "text/html; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/run.js", "text/javascript; charset=utf-8"),
        ("/assets/stream.js", "text/javascript; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
    ];
    for (path, content_type) in cases {
        let res = app.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let headers = res.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        let body = res.text().await.unwrap();
        if content_type.starts_with("text/html") {
            // No inline code: every script is a module from /assets/.
            assert_eq!(body.matches("<script").count(), 1, "{path}");
            assert!(
                body.contains(r#"<script type="module" src="/assets/"#),
                "{path}"
            );
            assert!(!body.contains("style="), "{path}");
        }
    }
    for missing in [
        "/assets/nope.js",
        "/assets/../Cargo.toml",
        "/runs/not-a-uuid",
    ] {
        assert_problem(
            app.get(missing).await,
            StatusCode::NOT_FOUND,
            "resource_not_found",
        )
        .await;
    }
    let res = app.post_json("/", &json!({})).await;
    assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    app.finish().await;
}
