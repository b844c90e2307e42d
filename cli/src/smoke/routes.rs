//! Is every route group mounted? (The runbook's router-registration check.)
//!
//! Each group is probed with a request that only a mounted route answers
//! the way it does: a lookup of the nil UUID gets the group's own
//! `<resource>_not_found`, while a missing group falls through to the
//! router's generic 404 `resource_not_found`.

use super::report::{Checked, Note};
use crate::Ctx;
use crate::problem::{ApiError, Problem};
use reqwest::Method;

const NIL: &str = "00000000-0000-0000-0000-000000000000";

/// The answer that shows a group is mounted.
enum Expect {
    /// 404 with one of these codes.
    NotFound(&'static [&'static str]),
    /// 2xx, or 403 `admin_required` (the route is there; the key is not an admin's).
    Served,
    /// 2xx, 401 or 403: `/metrics`, outside `/api/v1`, may refuse a key that
    /// is not an admin's either way (the `/api/v1` probes before it already
    /// proved the key itself valid).
    Guarded,
    /// 200 with an HTML page.
    Html,
}

struct Probe {
    group: &'static str,
    path: String,
    expect: Expect,
}

fn probes() -> Vec<Probe> {
    let probe = |group, path: String, expect| Probe {
        group,
        path,
        expect,
    };
    vec![
        probe(
            "workspaces",
            format!("/api/v1/workspaces/{NIL}"),
            Expect::NotFound(&["workspace_not_found"]),
        ),
        probe(
            "configurations",
            format!("/api/v1/workspaces/{NIL}/configurations/{NIL}"),
            Expect::NotFound(&["configuration_not_found", "workspace_not_found"]),
        ),
        probe(
            "documents",
            format!("/api/v1/workspaces/{NIL}/documents/{NIL}"),
            Expect::NotFound(&["document_not_found", "workspace_not_found"]),
        ),
        probe(
            "runs",
            format!("/api/v1/runs/{NIL}"),
            Expect::NotFound(&["run_not_found"]),
        ),
        probe(
            "builds",
            format!("/api/v1/builds/{NIL}"),
            Expect::NotFound(&["build_not_found"]),
        ),
        probe("operations", "/api/v1/queue".into(), Expect::Served),
        probe("openapi", "/api/v1/openapi.json".into(), Expect::Served),
        probe("metrics", "/metrics".into(), Expect::Guarded),
        probe("pages", "/".into(), Expect::Html),
    ]
}

/// Probes every group; fails naming each one that is missing.
pub async fn check(ctx: &Ctx) -> Checked<()> {
    let mut mounted = Vec::new();
    let mut missing = Vec::new();
    for probe in probes() {
        match answer(ctx, &probe).await? {
            None => mounted.push(probe.group),
            Some(why) => missing.push(format!("{} (GET {} {why})", probe.group, probe.path)),
        }
    }
    anyhow::ensure!(
        missing.is_empty(),
        "not mounted: {}; mounted: {}",
        missing.join("; "),
        mounted.join(", ")
    );
    let note = format!("{} groups answer: {}", mounted.len(), mounted.join(", "));
    Ok(((), Note::Ok(note)))
}

/// `None` when the probe got the answer of a mounted group, else what it got.
async fn answer(ctx: &Ctx, probe: &Probe) -> anyhow::Result<Option<String>> {
    let response = ctx
        .client
        .request(Method::GET, &probe.path)
        .send()
        .await
        .map_err(|e| ctx.client.unreachable(&e))?;
    let status = response.status();
    let html = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if status.is_success() {
        let ok = matches!(probe.expect, Expect::Served | Expect::Guarded) || html;
        return Ok((!ok).then(|| format!("answered {status} but not with a page")));
    }
    let ApiError::Problem(problem) = ctx.client.error_of(response).await else {
        return Ok(Some(format!("answered {status}, not problem+json")));
    };
    if matches!(probe.expect, Expect::Guarded) && matches!(problem.status, 401 | 403) {
        return Ok(None);
    }
    if problem.code == "unauthorized" {
        // Every route answers 401 without a valid key: nothing is proved.
        return Err(ApiError::Problem(problem).into());
    }
    Ok((!expected(&probe.expect, &problem)).then(|| format!("→ {} {}", status, problem.code)))
}

fn expected(expect: &Expect, problem: &Problem) -> bool {
    match expect {
        Expect::NotFound(codes) => problem.status == 404 && codes.contains(&problem.code.as_str()),
        Expect::Served => problem.code == "admin_required",
        Expect::Html | Expect::Guarded => false,
    }
}
