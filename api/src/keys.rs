//! API keys: made, listed and revoked (by `ade-api keys …` and by admins
//! over `/api/v1/keys`), and looked up by hash.
//!
//! A key is `ade_` followed by 48 hex digits (192 random bits from the
//! operating system). Only its SHA-256 is stored, with its first characters
//! for people to recognize it in listings; the key itself is shown once.

use ade_common::db::Cached as _;
use ade_common::time_fmt::serde_ts;
use deadpool_postgres::GenericClient;
use serde::Serialize;
use sha2::Digest as _;
use time::OffsetDateTime;
use uuid::Uuid;

/// What a key may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "scope", content = "workspace_id", rename_all = "snake_case")]
pub enum Scope {
    /// Every workspace, and the operations endpoints.
    Admin,
    /// Exactly one workspace.
    Workspace(Uuid),
}

/// A key's record, as listed (never the key itself).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyRecord {
    /// The key's id (to revoke it).
    pub id: Uuid,
    /// Its first characters, e.g. `ade_3f9a0c1d`.
    pub prefix: String,
    /// What it may see.
    #[serde(flatten)]
    pub scope: Scope,
    /// A label for people.
    pub name: String,
    /// When it was made.
    #[serde(with = "serde_ts")]
    pub created_at: OffsetDateTime,
    /// When it was last used (updated at most once a minute).
    #[serde(with = "serde_ts::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// When it was revoked; a revoked key is refused.
    #[serde(with = "serde_ts::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A new key: the record and the secret, shown once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewKey {
    /// The stored record.
    #[serde(flatten)]
    pub record: KeyRecord,
    /// The key itself; it cannot be shown again.
    pub key: String,
}

const COLUMNS: &str = "id, prefix, workspace_id, name, created_at, last_used_at, revoked_at";

/// The SHA-256 of a presented key.
pub fn hash(key: &str) -> [u8; 32] {
    sha2::Sha256::digest(key.as_bytes()).into()
}

/// A fresh random key.
fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(format!("ade_{}", hex::encode(bytes)))
}

/// Makes a key with `scope`; the workspace must exist.
pub async fn create(db: &impl GenericClient, scope: Scope, name: &str) -> anyhow::Result<NewKey> {
    let key = generate()?;
    let (workspace, admin) = match scope {
        Scope::Admin => (None, true),
        Scope::Workspace(ws) => (Some(ws), false),
    };
    let row = db
        .cached_query_one(
            &format!(
                "INSERT INTO api_keys (id, hash, prefix, workspace_id, admin, name)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
            ),
            &[
                &ade_common::ids::new_id(),
                &hash(&key).as_slice(),
                &&key[..12],
                &workspace,
                &admin,
                &name,
            ],
        )
        .await?;
    Ok(NewKey {
        record: record(&row),
        key,
    })
}

/// Keys, newest first; only those of `workspace` if given.
pub async fn list(
    db: &impl GenericClient,
    workspace: Option<Uuid>,
) -> Result<Vec<KeyRecord>, tokio_postgres::Error> {
    let rows = db
        .cached_query(
            &format!(
                "SELECT {COLUMNS} FROM api_keys WHERE $1::uuid IS NULL OR workspace_id = $1
                 ORDER BY id DESC"
            ),
            &[&workspace],
        )
        .await?;
    Ok(rows.iter().map(record).collect())
}

/// Revokes a key; `None` if there is no such key.
pub async fn revoke(
    db: &impl GenericClient,
    id: Uuid,
) -> Result<Option<KeyRecord>, tokio_postgres::Error> {
    let row = db
        .cached_query_opt(
            &format!(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
                 RETURNING {COLUMNS}"
            ),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(record))
}

/// The live key with this hash: its id and scope.
pub async fn find(
    db: &impl GenericClient,
    hash: &[u8; 32],
) -> Result<Option<(Uuid, Scope)>, tokio_postgres::Error> {
    let row = db
        .cached_query_opt(
            "SELECT id, workspace_id FROM api_keys WHERE hash = $1 AND revoked_at IS NULL",
            &[&hash.as_slice()],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), scope(r.get(1)))))
}

/// Records that keys were used.
pub async fn touch(db: &impl GenericClient, ids: &[Uuid]) -> Result<(), tokio_postgres::Error> {
    db.cached_execute(
        "UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1)",
        &[&ids],
    )
    .await?;
    Ok(())
}

fn scope(workspace: Option<Uuid>) -> Scope {
    workspace.map_or(Scope::Admin, Scope::Workspace)
}

fn record(row: &tokio_postgres::Row) -> KeyRecord {
    KeyRecord {
        id: row.get("id"),
        prefix: row.get("prefix"),
        scope: scope(row.get("workspace_id")),
        name: row.get("name"),
        created_at: row.get("created_at"),
        last_used_at: row.get("last_used_at"),
        revoked_at: row.get("revoked_at"),
    }
}

/// `ade-api keys …`: runs one key command against the database.
pub async fn cli(
    settings: &crate::settings::ApiSettings,
    command: crate::settings::KeysCommand,
) -> anyhow::Result<()> {
    use crate::settings::KeysCommand;
    use anyhow::Context as _;
    crate::migrate(settings).await?;
    let pool = ade_common::db::pool(&settings.common.database_url, 1)?;
    let db = pool.get().await?;
    match command {
        KeysCommand::Create {
            admin,
            workspace,
            name,
            json,
        } => {
            let scope = match (admin, workspace) {
                (true, _) => Scope::Admin,
                (false, Some(ws)) => {
                    db.cached_query_opt("SELECT 1 FROM workspaces WHERE id = $1", &[&ws])
                        .await?
                        .with_context(|| format!("no workspace {ws}"))?;
                    Scope::Workspace(ws)
                }
                (false, None) => anyhow::bail!("say --admin or --workspace <id>"),
            };
            let new = create(&db, scope, &name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&new)?);
            } else {
                println!("{}", new.key);
                eprintln!(
                    "key {} ({}) made; it is shown only this once",
                    new.record.id, new.record.prefix
                );
            }
        }
        KeysCommand::List { workspace } => {
            for key in list(&db, workspace).await? {
                println!("{}", serde_json::to_string(&key)?);
            }
        }
        KeysCommand::Revoke { id } => match revoke(&db, id).await? {
            Some(key) => eprintln!("revoked key {} ({})", key.id, key.prefix),
            None => anyhow::bail!("no key {id}"),
        },
    }
    Ok(())
}
