//! Reading event streams (SSE or NDJSON) in tests.

use crate::helpers::DEADLINE;
use reqwest::StatusCode;
use serde_json::Value;

/// Reads a whole event stream at `url` and parses SSE or NDJSON into events.
pub async fn follow_url(url: &str, sse: bool, last_event_id: Option<i64>) -> Vec<Value> {
    let mut req = crate::helpers::client().get(url);
    if sse {
        req = req.header("accept", "text/event-stream");
    }
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let res = tokio::time::timeout(DEADLINE, req.send())
        .await
        .expect("the stream starts")
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let body = tokio::time::timeout(DEADLINE, res.text())
        .await
        .expect("the stream ends")
        .unwrap();
    if sse {
        assert_eq!(content_type, "text/event-stream");
        parse_sse(&body)
    } else {
        assert_eq!(content_type, "application/x-ndjson");
        body.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// SSE frames to events, checking that `id` and `event` match the data.
fn parse_sse(body: &str) -> Vec<Value> {
    let mut events = Vec::new();
    for frame in body.split("\n\n").filter(|f| !f.trim().is_empty()) {
        let (mut id, mut kind, mut data) = (None, None, None);
        for line in frame.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_owned())
            }
            if let Some(v) = line.strip_prefix("event: ") {
                kind = Some(v.to_owned())
            }
            if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str::<Value>(v).unwrap())
            }
        }
        if let Some(event) = data {
            assert_eq!(id.unwrap(), event["sequence"].to_string());
            assert_eq!(kind.as_deref(), event["type"].as_str());
            events.push(event);
        } else {
            assert!(
                frame.starts_with("retry: ") || frame.starts_with(':'),
                "unexpected frame {frame:?}"
            );
        }
    }
    events
}

/// A follower that reads an NDJSON stream as it arrives.
pub struct LiveFollower {
    /// The highest sequence received so far.
    pub last: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// Every event, once the stream has ended.
    pub events: tokio::task::JoinHandle<Vec<Value>>,
}

/// Follows the NDJSON stream at `url`, exposing progress while it runs.
pub fn follow_live(url: String) -> LiveFollower {
    use futures_util::StreamExt as _;
    let last = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let seen = last.clone();
    let events = tokio::spawn(async move {
        let res = crate::helpers::client().get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let mut body = res.bytes_stream();
        let (mut buf, mut events) = (Vec::new(), Vec::new());
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk.unwrap());
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let event: Value = serde_json::from_slice(&line).unwrap();
                seen.store(
                    event["sequence"].as_i64().unwrap(),
                    std::sync::atomic::Ordering::SeqCst,
                );
                events.push(event);
            }
        }
        events
    });
    LiveFollower { last, events }
}
