//! The event envelope, and where an event is sequenced.
//!
//! A stream (a run's, or a build's own) has a `next_event_seq` counter. One
//! statement advances it for a whole batch and inserts the batch: the row
//! lock of the `UPDATE` serializes writers of one stream, and a failed
//! statement changes nothing, so sequences never collide and never skip.
//! The same statement checks the writer's [`Fence`] (a worker writes only
//! while its claim holds) and skips a batch whose first event is already
//! stored (a retry after an ambiguous COMMIT). Events are published only
//! after the statement (or its transaction) commits.

use crate::db::Cached as _;
use crate::lifecycle::fence::Fence;
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// The most events one page may return.
pub const MAX_PAGE: i64 = 1000;

/// Who wrote an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The HTTP API.
    Api,
    /// A worker.
    Worker,
    /// The engine subprocess (through `ADE_EVENTS_FD`).
    Engine,
}

/// Every event type (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventKind {
    /// A run was accepted.
    #[serde(rename = "run.queued")]
    RunQueued,
    /// A build record was created.
    #[serde(rename = "build.created")]
    BuildCreated,
    /// A host began making a venv.
    #[serde(rename = "build.started")]
    BuildStarted,
    /// A build phase began.
    #[serde(rename = "build.phase.started")]
    BuildPhaseStarted,
    /// A build ended.
    #[serde(rename = "build.completed")]
    BuildCompleted,
    /// A line of output.
    #[serde(rename = "console.line")]
    ConsoleLine,
    /// A worker started an attempt.
    #[serde(rename = "run.started")]
    RunStarted,
    /// Engine: a phase began.
    #[serde(rename = "run.phase.started")]
    RunPhaseStarted,
    /// Engine: one table's mapping.
    #[serde(rename = "run.table.summary")]
    RunTableSummary,
    /// Engine: validation totals.
    #[serde(rename = "run.validation.summary")]
    RunValidationSummary,
    /// Engine: one validation issue.
    #[serde(rename = "run.validation.issue")]
    RunValidationIssue,
    /// Engine: progress.
    #[serde(rename = "run.progress")]
    RunProgress,
    /// Engine: an error.
    #[serde(rename = "run.error")]
    RunError,
    /// The run goes back to the queue.
    #[serde(rename = "run.retry")]
    RunRetry,
    /// The run ended.
    #[serde(rename = "run.completed")]
    RunCompleted,
}

impl EventKind {
    /// The kinds the engine may emit on its events pipe.
    pub const ENGINE: &'static [Self] = &[
        Self::RunPhaseStarted,
        Self::RunTableSummary,
        Self::RunValidationSummary,
        Self::RunValidationIssue,
        Self::RunProgress,
        Self::RunError,
    ];

    /// The wire name, e.g. `console.line`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunQueued => "run.queued",
            Self::BuildCreated => "build.created",
            Self::BuildStarted => "build.started",
            Self::BuildPhaseStarted => "build.phase.started",
            Self::BuildCompleted => "build.completed",
            Self::ConsoleLine => "console.line",
            Self::RunStarted => "run.started",
            Self::RunPhaseStarted => "run.phase.started",
            Self::RunTableSummary => "run.table.summary",
            Self::RunValidationSummary => "run.validation.summary",
            Self::RunValidationIssue => "run.validation.issue",
            Self::RunProgress => "run.progress",
            Self::RunError => "run.error",
            Self::RunRetry => "run.retry",
            Self::RunCompleted => "run.completed",
        }
    }

    /// An engine event kind from its wire name.
    pub fn engine(name: &str) -> Option<Self> {
        Self::ENGINE.iter().copied().find(|k| k.as_str() == name)
    }
}

/// A stream of events, and the job that a message on the broker names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum StreamRef {
    /// A run's stream; it ends with `run.completed`.
    Run(Uuid),
    /// A build's own stream; it ends with `build.completed`.
    Build(Uuid),
}

impl StreamRef {
    /// The run or build id.
    pub fn id(self) -> Uuid {
        match self {
            Self::Run(id) | Self::Build(id) => id,
        }
    }

    /// The event that ends this stream.
    pub fn end_kind(self) -> EventKind {
        match self {
            Self::Run(_) => EventKind::RunCompleted,
            Self::Build(_) => EventKind::BuildCompleted,
        }
    }

    fn tables(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Run(_) => ("runs", "run_events", "run_id"),
            Self::Build(_) => ("builds", "build_events", "build_id"),
        }
    }
}

/// One persisted event, as stored, published and streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Envelope {
    /// `evt_` + UUIDv7, given when the event is emitted.
    pub event_id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// Position in its stream, from 1, gapless.
    pub sequence: i64,
    /// When it was written (RFC 3339, ms, UTC).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// Who wrote it.
    pub source: Source,
    /// Workspace of the run or build.
    pub workspace_id: Uuid,
    /// Configuration of the run or build.
    pub configuration_id: Uuid,
    /// The run whose stream holds it (absent in a build's own stream).
    pub run_id: Option<Uuid>,
    /// The build involved, if any.
    pub build_id: Option<Uuid>,
    /// The attempt that wrote it (runs only).
    pub attempt: Option<i32>,
    /// Type-specific data (SPEC §5).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Value,
}

/// An event before it has a sequence; its id is fixed when it is made.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its id (stored unique; a retried batch is recognized by it).
    pub id: Uuid,
    /// The event type.
    pub kind: EventKind,
    /// Who writes it.
    pub source: Source,
    /// Type-specific data (sanitized for PostgreSQL).
    pub payload: Value,
    /// Overrides the stream's own build id (build events shown in a run's stream).
    pub build_id: Option<Uuid>,
}

impl NewEvent {
    /// An event of `kind` from `source`, with a new id.
    pub fn new(kind: EventKind, source: Source, mut payload: Value) -> Self {
        sanitize(&mut payload);
        Self {
            id: crate::ids::new_id(),
            kind,
            source,
            payload,
            build_id: None,
        }
    }

    /// The same event, shown as concerning `build_id`.
    pub fn with_build(mut self, build_id: Uuid) -> Self {
        self.build_id = Some(build_id);
        self
    }
}

/// Who a stream belongs to: stamped on every envelope of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The stream written.
    pub stream: StreamRef,
    /// Its workspace.
    pub workspace_id: Uuid,
    /// Its configuration.
    pub configuration_id: Uuid,
    /// The build the stream concerns (the run's build, or the build itself).
    pub build_id: Option<Uuid>,
    /// The attempt writing (runs only).
    pub attempt: Option<i32>,
}

/// What [`append`] did.
#[derive(Debug)]
pub enum Appended {
    /// The batch was stored with these sequences.
    Written(Vec<Envelope>),
    /// The batch was stored before (a retry after an ambiguous COMMIT).
    AlreadyStored,
    /// The writer's fence no longer holds; nothing was written.
    Fenced,
}

impl Appended {
    /// The envelopes written (none when skipped or fenced).
    pub fn written(self) -> Vec<Envelope> {
        match self {
            Self::Written(envelopes) => envelopes,
            Self::AlreadyStored | Self::Fenced => vec![],
        }
    }
}

/// Appends `events` to `origin.stream` if `fence` holds, in one statement.
pub async fn append(
    db: &impl GenericClient,
    origin: &Origin,
    fence: &Fence,
    events: &[NewEvent],
) -> Result<Appended, tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(Appended::Written(vec![]));
    }
    let (owners, table, key) = origin.stream.tables();
    let (condition, fence_params) = fence.condition(4);
    let sql = format!(
        "WITH bump AS (
           UPDATE {owners} SET next_event_seq = next_event_seq + cardinality($2::uuid[])
           WHERE id = $1 {condition}
             AND NOT EXISTS (SELECT 1 FROM {table} WHERE event_uuid = ($2::uuid[])[1])
           RETURNING next_event_seq - cardinality($2::uuid[]) AS base)
         INSERT INTO {table} ({key}, sequence, event_uuid, event)
         SELECT $1, bump.base + u.n, u.id, jsonb_set(u.event, '{{sequence}}', to_jsonb(bump.base + u.n))
         FROM bump, UNNEST($2::uuid[], $3::jsonb[]) WITH ORDINALITY AS u(id, event, n)
         RETURNING sequence"
    );
    let mut envelopes = origin.envelopes(events);
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let bodies: Vec<Value> = envelopes
        .iter()
        .map(|e| serde_json::to_value(e).expect("an envelope always serializes"))
        .collect();
    let id = origin.stream.id();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&id, &ids, &bodies];
    params.extend(fence_params);
    let rows = db.cached_query(sql.as_str(), &params).await?;
    let Some(first) = rows.iter().map(|r| r.get::<_, i64>(0)).min() else {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE event_uuid = $1)");
        let stored: bool = db.cached_query_one(sql.as_str(), &[&ids[0]]).await?.get(0);
        return Ok(if stored {
            Appended::AlreadyStored
        } else {
            Appended::Fenced
        });
    };
    for (envelope, sequence) in envelopes.iter_mut().zip(first..) {
        envelope.sequence = sequence;
    }
    Ok(Appended::Written(envelopes))
}

/// Reads up to `limit` events of a stream after `after_sequence`, in order.
pub async fn page(
    db: &impl GenericClient,
    stream: StreamRef,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<Envelope>, tokio_postgres::Error> {
    let (_, table, key) = stream.tables();
    let sql = format!(
        "SELECT event FROM {table} WHERE {key} = $1 AND sequence > $2 ORDER BY sequence LIMIT $3"
    );
    let rows = db
        .cached_query(sql.as_str(), &[&stream.id(), &after_sequence, &limit])
        .await?;
    Ok(rows.iter().map(|r| decode(r.get(0))).collect())
}

/// The sequence of the stream's ending event, once it exists.
pub async fn end_sequence(
    db: &impl GenericClient,
    stream: StreamRef,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let (_, table, key) = stream.tables();
    let sql = format!("SELECT sequence FROM {table} WHERE {key} = $1 AND event->>'type' = $2");
    let row = db
        .cached_query_opt(sql.as_str(), &[&stream.id(), &stream.end_kind().as_str()])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

fn decode(value: Value) -> Envelope {
    serde_json::from_value(value).expect("stored events are envelopes")
}

impl Origin {
    /// Envelopes for `events` (sequences are filled in by [`append`]).
    fn envelopes(&self, events: &[NewEvent]) -> Vec<Envelope> {
        let created_at = crate::time_fmt::format(OffsetDateTime::now_utc());
        let run_id = match self.stream {
            StreamRef::Run(id) => Some(id),
            StreamRef::Build(_) => None,
        };
        events
            .iter()
            .map(|e| Envelope {
                event_id: crate::ids::event_id(e.id),
                kind: e.kind,
                sequence: 0,
                created_at: created_at.clone(),
                source: e.source,
                workspace_id: self.workspace_id,
                configuration_id: self.configuration_id,
                run_id,
                build_id: e.build_id.or(self.build_id),
                attempt: self.attempt,
                payload: e.payload.clone(),
            })
            .collect()
    }
}

/// Replaces characters PostgreSQL cannot store (NUL, in `jsonb` and `text`)
/// with U+FFFD, in every string and key of `value`.
pub fn sanitize(value: &mut Value) {
    match value {
        Value::String(s) => sanitize_text(s),
        Value::Array(items) => items.iter_mut().for_each(sanitize),
        Value::Object(map) if map.keys().any(|k| k.contains('\0')) => {
            let entries = std::mem::take(map);
            for (mut k, mut v) in entries {
                sanitize_text(&mut k);
                sanitize(&mut v);
                map.insert(k, v);
            }
        }
        Value::Object(map) => map.values_mut().for_each(sanitize),
        _ => {}
    }
}

/// [`sanitize`] for one string.
pub fn sanitize_text(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_characters_are_replaced_everywhere() {
        let mut v = json!({"a\u{0}": ["x\u{0}y", {"k": "\u{0}"}], "n": 1});
        sanitize(&mut v);
        assert_eq!(
            v,
            json!({"a\u{FFFD}": ["x\u{FFFD}y", {"k": "\u{FFFD}"}], "n": 1})
        );
    }

    #[test]
    fn kinds_and_stream_refs_have_their_wire_names() {
        for kind in EventKind::ENGINE {
            assert_eq!(EventKind::engine(kind.as_str()), Some(*kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(EventKind::engine("run.completed"), None);
        let job = StreamRef::Run(Uuid::nil());
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"run","id":"00000000-0000-0000-0000-000000000000"}"#
        );
        assert_eq!(serde_json::from_str::<StreamRef>(&text).unwrap(), job);
    }
}
