//! Health probes and live workers.

use super::report::{Checked, Note};
use crate::Ctx;
use crate::problem::ApiError;
use reqwest::Method;
use serde_json::Value;

/// `GET /health/live` answers 200.
pub async fn live(ctx: &Ctx) -> Checked<()> {
    let reply = ctx.client.get("/health/live").await?;
    Ok(((), Note::Ok(crate::output::cell(&reply.value["status"]))))
}

/// `GET /health/ready` answers 200 (`degraded`, broker down, is a warning).
pub async fn ready(ctx: &Ctx) -> Checked<()> {
    let response = ctx
        .client
        .request(Method::GET, "/health/ready")
        .send()
        .await
        .map_err(|e| ctx.client.unreachable(&e))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let deps = dependencies(&body["dependencies"]);
    match body["status"].as_str() {
        Some("ready") if status.is_success() => Ok(((), Note::Ok(deps))),
        Some("degraded") if status.is_success() => Ok((
            (),
            Note::Warn(format!(
                "degraded ({deps}): runs are accepted but wait for the broker"
            )),
        )),
        _ => anyhow::bail!("not ready: HTTP {status} ({deps})"),
    }
}

fn dependencies(deps: &Value) -> String {
    match deps.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", "),
        None => "no dependency report".into(),
    }
}

/// How many live workers `GET /api/v1/workers` lists; `None` without an admin key.
pub async fn count_workers(ctx: &Ctx) -> Result<Option<usize>, ApiError> {
    match ctx.client.get("/api/v1/workers").await {
        Ok(reply) => Ok(Some(reply.value["items"].as_array().map_or(0, Vec::len))),
        Err(e) if e.code() == Some("admin_required") => Ok(None),
        Err(e) => Err(e),
    }
}

/// At least one live worker; without an admin key the dry run has to tell.
pub async fn workers(ctx: &Ctx) -> Checked<Option<usize>> {
    let reply = match ctx.client.get("/api/v1/workers").await {
        Ok(reply) => reply,
        Err(e) if e.code() == Some("admin_required") => {
            let note = "not an admin key, so the workers cannot be listed; the dry run will tell";
            return Ok((None, Note::Warn(note.into())));
        }
        Err(e) => return Err(e.into()),
    };
    let items = reply.value["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        let note = "none live: GET /api/v1/workers lists none (start ade-worker); \
                    the dry run will tell whether one turns up";
        return Ok((Some(0), Note::Warn(note.into())));
    }
    let slots: i64 = items.iter().filter_map(|w| w["concurrency"].as_i64()).sum();
    let busy: i64 = items.iter().filter_map(|w| w["in_flight"].as_i64()).sum();
    let names: Vec<&str> = items.iter().filter_map(|w| w["id"].as_str()).collect();
    let note = format!(
        "{} live ({}), {busy} of {slots} slots busy",
        items.len(),
        names.join(", ")
    );
    Ok((Some(items.len()), Note::Ok(note)))
}
