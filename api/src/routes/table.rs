//! Every route the API serves, with who may call it: the one list that the
//! startup log, the OpenAPI test and the cross-workspace matrix test read,
//! so a new route is covered without anyone remembering to add it there.
//! A test checks that every `warp::path!` in `routes/` has its line here.

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, the OpenAPI document, the pages and their assets).
    Open,
    /// Any valid key; a workspace key only within its workspace.
    Key,
    /// An admin key.
    Admin,
    /// An admin key, unless `ADE_METRICS_PUBLIC=true`.
    AdminUnlessPublic,
}

/// One route: method, path (with `{names}` for parameters), access, and the
/// group it is logged under at start.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Full path, e.g. `/api/v1/runs/{run_id}`.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Its group, e.g. `runs`.
    pub group: &'static str,
}

const fn r(method: &'static str, path: &'static str, access: Access, group: &'static str) -> Route {
    Route {
        method,
        path,
        access,
        group,
    }
}

use Access::{Admin, AdminUnlessPublic, Key, Open};

/// Every route.
pub const ROUTES: &[Route] = &[
    r("GET", "/health/live", Open, "health"),
    r("GET", "/health/ready", Open, "health"),
    r("GET", "/metrics", AdminUnlessPublic, "metrics"),
    r("GET", "/", Open, "pages"),
    r("GET", "/runs/{run_id}", Open, "pages"),
    r("GET", "/assets/{name}", Open, "pages"),
    r("GET", "/api/v1/openapi.json", Open, "openapi"),
    r("POST", "/api/v1/workspaces", Admin, "workspaces"),
    r("GET", "/api/v1/workspaces", Key, "workspaces"),
    r(
        "GET",
        "/api/v1/workspaces/{workspace_id}",
        Key,
        "workspaces",
    ),
    r(
        "POST",
        "/api/v1/workspaces/{workspace_id}/configurations",
        Key,
        "configurations",
    ),
    r(
        "GET",
        "/api/v1/workspaces/{workspace_id}/configurations",
        Key,
        "configurations",
    ),
    r(
        "GET",
        "/api/v1/workspaces/{workspace_id}/configurations/{configuration_id}",
        Key,
        "configurations",
    ),
    r(
        "PUT",
        "/api/v1/workspaces/{workspace_id}/configurations/{configuration_id}/package",
        Key,
        "configurations",
    ),
    r(
        "POST",
        "/api/v1/workspaces/{workspace_id}/documents",
        Key,
        "documents",
    ),
    r(
        "GET",
        "/api/v1/workspaces/{workspace_id}/documents",
        Key,
        "documents",
    ),
    r(
        "GET",
        "/api/v1/workspaces/{workspace_id}/documents/{document_id}",
        Key,
        "documents",
    ),
    r(
        "DELETE",
        "/api/v1/workspaces/{workspace_id}/documents/{document_id}",
        Key,
        "documents",
    ),
    r(
        "GET",
        "/api/v1/workspaces/{workspace_id}/documents/{document_id}/download",
        Key,
        "documents",
    ),
    r(
        "POST",
        "/api/v1/configs/{configuration_id}/runs",
        Key,
        "runs",
    ),
    r(
        "POST",
        "/api/v1/configurations/{configuration_id}/runs",
        Key,
        "runs",
    ),
    r("GET", "/api/v1/workspaces/{workspace_id}/runs", Key, "runs"),
    r("GET", "/api/v1/runs/{run_id}", Key, "runs"),
    r("DELETE", "/api/v1/runs/{run_id}", Key, "runs"),
    r("POST", "/api/v1/runs/{run_id}/cancel", Key, "runs"),
    r("GET", "/api/v1/runs/{run_id}/events", Key, "runs"),
    r("GET", "/api/v1/runs/{run_id}/logfile", Key, "runs"),
    r("GET", "/api/v1/runs/{run_id}/outputs", Key, "runs"),
    r("GET", "/api/v1/runs/{run_id}/outputs/{name}", Key, "runs"),
    r(
        "POST",
        "/api/v1/workspaces/{workspace_id}/configurations/{configuration_id}/builds",
        Key,
        "builds",
    ),
    r("GET", "/api/v1/builds/{build_id}", Key, "builds"),
    r("GET", "/api/v1/builds/{build_id}/events", Key, "builds"),
    r("GET", "/api/v1/workers", Admin, "operations"),
    r("GET", "/api/v1/queue", Admin, "operations"),
    r("POST", "/api/v1/keys", Admin, "keys"),
    r("GET", "/api/v1/keys", Admin, "keys"),
    r("DELETE", "/api/v1/keys/{key_id}", Admin, "keys"),
];

/// The methods served at a request path, e.g. `["GET", "DELETE"]` for
/// `/api/v1/runs/<id>` (for the `Allow` header of a 405).
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut methods: Vec<&'static str> = ROUTES
        .iter()
        .filter(|route| {
            let pattern: Vec<&str> = route.path.trim_end_matches('/').split('/').collect();
            pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p == s || (p.starts_with('{') && !s.is_empty()))
        })
        .map(|route| route.method)
        .collect();
    methods.sort_unstable();
    methods.dedup();
    methods
}

/// Logs each mounted route group with its routes (the runbook's
/// router-registration check).
pub fn log_mounted() {
    let mut groups: Vec<&str> = ROUTES.iter().map(|r| r.group).collect();
    groups.dedup();
    for group in groups {
        let routes: Vec<String> = ROUTES
            .iter()
            .filter(|r| r.group == group)
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        tracing::info!(
            group,
            routes = routes.len(),
            "mounted {}",
            routes.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::allowed_methods;

    #[test]
    fn allowed_methods_match_paths_by_shape() {
        assert_eq!(allowed_methods("/api/v1/runs/0193a2b4"), ["DELETE", "GET"]);
        assert_eq!(allowed_methods("/api/v1/workspaces"), ["GET", "POST"]);
        assert_eq!(allowed_methods("/runs/0193a2b4"), ["GET"]);
        assert_eq!(allowed_methods("/health/live"), ["GET"]);
        assert!(allowed_methods("/api/v1/nothing").is_empty());
    }
}
