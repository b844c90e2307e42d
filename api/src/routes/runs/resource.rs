//! `RunResource`: a run as the API shows it.

use ade_common::runs::{Failure, RunOptions};
use ade_common::time_fmt::serde_ts;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

/// The columns [`RunResource::from`] reads.
pub const COLUMNS: &str = "id, workspace_id, configuration_id, build_id, status, attempt, options, \
     exit_code, failure, created_at, started_at, completed_at, worker_id";

/// A run, with links to its events, log file and outputs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunResource {
    id: Uuid,
    workspace_id: Uuid,
    configuration_id: Uuid,
    build_id: Option<Uuid>,
    #[schema(value_type = ade_common::status::RunStatus)]
    status: String,
    /// From 1; a run whose worker was lost is retried with the next attempt.
    #[schema(minimum = 1)]
    attempt: i32,
    options: RunOptions,
    /// 0 success, 1 engine failure, 2 environment precondition, 124 timeout;
    /// `null` before the end, when cancelled, or for `worker_lost`.
    exit_code: Option<i32>,
    failure: Option<Failure>,
    #[serde(with = "serde_ts")]
    created_at: OffsetDateTime,
    #[serde(with = "serde_ts::option")]
    started_at: Option<OffsetDateTime>,
    #[serde(with = "serde_ts::option")]
    completed_at: Option<OffsetDateTime>,
    duration_ms: Option<i64>,
    worker_id: Option<String>,
    #[schema(inline)]
    links: Links,
}

/// URLs of the run and its sub-resources.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Links {
    #[serde(rename = "self")]
    this: String,
    events: String,
    logfile: String,
    outputs: String,
}

impl RunResource {
    /// The run's id.
    pub fn id(&self) -> Uuid {
        self.id
    }
}

impl From<&Row> for RunResource {
    fn from(row: &Row) -> Self {
        let id: Uuid = row.get("id");
        let started_at: Option<OffsetDateTime> = row.get("started_at");
        let completed_at: Option<OffsetDateTime> = row.get("completed_at");
        let this = format!("/api/v1/runs/{id}");
        Self {
            id,
            workspace_id: row.get("workspace_id"),
            configuration_id: row.get("configuration_id"),
            build_id: row.get("build_id"),
            status: row.get("status"),
            attempt: row.get("attempt"),
            options: serde_json::from_value(row.get("options")).unwrap_or_default(),
            exit_code: row.get("exit_code"),
            failure: row
                .get::<_, Option<serde_json::Value>>("failure")
                .and_then(|f| serde_json::from_value(f).ok()),
            created_at: row.get("created_at"),
            started_at,
            completed_at,
            duration_ms: started_at
                .zip(completed_at)
                .map(|(s, c)| (c - s).whole_milliseconds() as i64),
            worker_id: row.get("worker_id"),
            links: Links {
                events: format!("{this}/events"),
                logfile: format!("{this}/logfile"),
                outputs: format!("{this}/outputs"),
                this,
            },
        }
    }
}
