//! Limits on what clients send: slow or idle connections, archive bombs,
//! unknown fields, and how much of a bad input an error repeats.

use crate::helpers::{DEADLINE, Options, TestApp, assert_problem};
use reqwest::StatusCode;
use serde_json::json;
use std::io::Write as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Waits until the server closes `conn` (a read ends or fails).
async fn closed_by_server(conn: &mut tokio::net::TcpStream) {
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(DEADLINE, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.expect("the server closed the connection");
}

#[tokio::test]
async fn connections_that_trickle_their_headers_are_cut_off() {
    let app = TestApp::with(Options {
        tune_api: Some(|s| s.http_header_timeout_seconds = 1),
        ..Default::default()
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        conn.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(conn);
    }
    // The server still answers others meanwhile.
    assert_eq!(
        reqwest::get(app.url("/health/live"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    for conn in &mut slow {
        closed_by_server(conn).await;
    }
    app.finish().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let app = TestApp::with(Options {
        tune_api: Some(|s| s.http_idle_timeout_seconds = 1),
        ..Default::default()
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Kept alive, then left idle: the server hangs up.
    closed_by_server(&mut conn).await;
    app.finish().await;
}

/// The peak resident size of this process (the API runs inside it), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test]
async fn a_small_upload_with_a_huge_pax_header_is_refused_in_bounded_memory() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    // 128 MiB of PAX header, compressed as it is written.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut header = tar::Header::new_ustar();
    header.set_path("PaxHeaders/x").unwrap();
    header.set_size(128 << 20);
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_cksum();
    gz.write_all(header.as_bytes()).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..128 {
        gz.write_all(&chunk).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "a small upload: {} bytes", bomb.len());
    // Reset the peak (writing 5 to clear_refs), then upload.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = peak_rss();
    let res = app.upload_configuration(ws, bomb).await;
    let grown = peak_rss().saturating_sub(before);
    let body = res.text().await.unwrap();
    assert!(
        body.len() < 2000,
        "the problem is small: {} bytes",
        body.len()
    );
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "payload_too_large", "{problem}");
    println!("peak resident size grew by {} KiB", grown >> 10);
    assert!(
        grown < 64 << 20,
        "the API's peak grew by {} MiB",
        grown >> 20
    );
    app.finish().await;
}

#[tokio::test]
async fn unknown_fields_are_refused_everywhere_and_options_must_be_an_object() {
    let app = TestApp::with(Options::default()).await;
    let (config, doc) = app.sample_setup().await;
    let ws = app.create_workspace().await;
    let with_url =
        json!({"name": "x", "source": {"type": "template", "url": "http://example.com/evil.zip"}});
    let res = app
        .post_json(
            &format!(
                "/api/v1/workspaces/{}/configurations",
                ws["id"].as_str().unwrap()
            ),
            &with_url,
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    for options in [
        json!([]),
        json!(null),
        json!("dry_run"),
        json!({"document_ids": [doc], "colour": 1}),
    ] {
        let res = app.create_run(&config, &json!({"options": options})).await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    }
    let res = app
        .post_json("/api/v1/workspaces", &json!({"name": "x", "owner": "me"}))
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    app.finish().await;
}

#[tokio::test]
async fn problems_repeat_at_most_a_few_hundred_characters_of_the_input() {
    let app = TestApp::with(Options::default()).await;
    let (config, _) = app.sample_setup().await;
    let long = "x".repeat(100_000);
    let res = app
        .create_run(&config, &json!({"options": {long.clone(): 1}}))
        .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    let text = problem.to_string();
    assert!(text.len() < 1000, "{} bytes of problem", text.len());
    let res = app
        .post_json("/api/v1/workspaces", &json!({"name": long}))
        .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    assert!(problem.to_string().len() < 1000);
    app.finish().await;
}
