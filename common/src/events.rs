//! The event envelope and its gapless, transactional append.
//!
//! A run's (or build's) `next_event_seq` counter is advanced for a whole batch
//! in the same transaction that inserts the batch. The row lock that the
//! `UPDATE` takes serializes writers of one stream, and a rolled-back batch
//! rolls back its counter too, so sequences never collide and never skip.
//! Events are published only after that transaction commits.

use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// The most events one page may return.
pub const MAX_PAGE: i64 = 1000;

/// Who wrote an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The HTTP API.
    Api,
    /// A worker.
    Worker,
    /// The engine subprocess (through `ADE_EVENTS_FD`).
    Engine,
}

/// One persisted event, as stored, published and streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// `evt_` + UUIDv7.
    pub event_id: String,
    /// The event type, e.g. `console.line`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Position in its stream, from 1, gapless.
    pub sequence: i64,
    /// When it was written (RFC 3339, ms, UTC).
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
    /// The run's attempt when written.
    pub attempt: Option<i32>,
    /// Type-specific data.
    pub payload: Value,
}

/// An event before it has a sequence.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event type.
    pub kind: String,
    /// Who writes it.
    pub source: Source,
    /// Type-specific data.
    pub payload: Value,
    /// Overrides the stream's own build id (build events shown in a run's stream).
    pub build_id: Option<Uuid>,
}

impl NewEvent {
    /// An event of `kind` from `source`.
    pub fn new(kind: impl Into<String>, source: Source, payload: Value) -> Self {
        Self {
            kind: kind.into(),
            source,
            payload,
            build_id: None,
        }
    }
}

/// Appends `events` to a run's stream; call inside a transaction.
pub async fn append_run_events(
    db: &impl GenericClient,
    run_id: Uuid,
    events: &[NewEvent],
) -> Result<Vec<Envelope>, tokio_postgres::Error> {
    let row = db
        .query_one(
            "UPDATE runs SET next_event_seq = next_event_seq + $2 WHERE id = $1
             RETURNING next_event_seq, workspace_id, configuration_id, build_id, attempt",
            &[&run_id, &(events.len() as i64)],
        )
        .await?;
    let stream = Stream {
        last: row.get(0),
        workspace_id: row.get(1),
        configuration_id: row.get(2),
        run_id: Some(run_id),
        build_id: row.get(3),
        attempt: Some(row.get(4)),
    };
    let envelopes = stream.envelopes(events);
    insert(db, "INSERT INTO run_events (run_id, sequence, event) SELECT $1, * FROM UNNEST($2::bigint[], $3::jsonb[])", run_id, &envelopes).await?;
    Ok(envelopes)
}

/// Appends `events` to a build's own stream; call inside a transaction.
pub async fn append_build_events(
    db: &impl GenericClient,
    build_id: Uuid,
    events: &[NewEvent],
) -> Result<Vec<Envelope>, tokio_postgres::Error> {
    let row = db
        .query_one(
            "UPDATE builds SET next_event_seq = next_event_seq + $2 WHERE id = $1
             RETURNING next_event_seq, workspace_id, configuration_id",
            &[&build_id, &(events.len() as i64)],
        )
        .await?;
    let stream = Stream {
        last: row.get(0),
        workspace_id: row.get(1),
        configuration_id: row.get(2),
        run_id: None,
        build_id: Some(build_id),
        attempt: None,
    };
    let envelopes = stream.envelopes(events);
    insert(db, "INSERT INTO build_events (build_id, sequence, event) SELECT $1, * FROM UNNEST($2::bigint[], $3::jsonb[])", build_id, &envelopes).await?;
    Ok(envelopes)
}

/// Reads up to `limit` events of a run after `after_sequence`, in order.
pub async fn run_events_page(
    db: &impl GenericClient,
    run_id: Uuid,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<Envelope>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT event FROM run_events WHERE run_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
            &[&run_id, &after_sequence, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| decode(r.get(0))).collect())
}

/// Reads up to `limit` events of a build after `after_sequence`, in order.
pub async fn build_events_page(
    db: &impl GenericClient,
    build_id: Uuid,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<Envelope>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT event FROM build_events WHERE build_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
            &[&build_id, &after_sequence, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| decode(r.get(0))).collect())
}

fn decode(value: Value) -> Envelope {
    serde_json::from_value(value).expect("stored events are envelopes")
}

/// The identity of one stream at the moment a batch is appended.
struct Stream {
    last: i64,
    workspace_id: Uuid,
    configuration_id: Uuid,
    run_id: Option<Uuid>,
    build_id: Option<Uuid>,
    attempt: Option<i32>,
}

impl Stream {
    fn envelopes(&self, events: &[NewEvent]) -> Vec<Envelope> {
        let created_at = crate::time_fmt::format(OffsetDateTime::now_utc());
        let first = self.last - events.len() as i64 + 1;
        events
            .iter()
            .zip(first..)
            .map(|(e, sequence)| Envelope {
                event_id: crate::ids::new_event_id(),
                kind: e.kind.clone(),
                sequence,
                created_at: created_at.clone(),
                source: e.source,
                workspace_id: self.workspace_id,
                configuration_id: self.configuration_id,
                run_id: self.run_id,
                build_id: e.build_id.or(self.build_id),
                attempt: self.attempt,
                payload: e.payload.clone(),
            })
            .collect()
    }
}

async fn insert(
    db: &impl GenericClient,
    sql: &str,
    owner: Uuid,
    envelopes: &[Envelope],
) -> Result<(), tokio_postgres::Error> {
    let sequences: Vec<i64> = envelopes.iter().map(|e| e.sequence).collect();
    let bodies: Vec<Value> = envelopes
        .iter()
        .map(|e| serde_json::to_value(e).expect("an envelope always serializes"))
        .collect();
    db.execute(sql, &[&owner, &sequences, &bodies]).await?;
    Ok(())
}
