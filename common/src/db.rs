//! PostgreSQL: the connection pool and schema migrations.
//!
//! Migrations are embedded from `migrations/` and applied under a session-level
//! advisory lock: refinery takes no lock of its own, so without it two API
//! instances starting at once could both try to apply the same migration.

use anyhow::Context as _;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::future::BoxFuture;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

refinery::embed_migrations!("../migrations");

/// Arbitrary, fixed key of the advisory lock that serializes migrations.
const MIGRATION_LOCK_KEY: i64 = 0x0ADE_0001;

/// Longest any pooled statement may run before PostgreSQL cancels it.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A pool over `url` whose checkouts fail after a few seconds rather than
/// hang. Its connections have a statement timeout and TCP keepalives, so a
/// silently dead socket (or a stuck statement) cannot hold a claim open.
pub fn pool(url: &str, max_size: usize) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = url.parse().context("invalid ADE_DATABASE_URL")?;
    let options = format!(
        "{} -c statement_timeout={}",
        config.get_options().unwrap_or_default(),
        STATEMENT_TIMEOUT.as_millis()
    );
    config
        .options(options.trim())
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5));
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .context("building the database pool")
}

/// Applies pending migrations while holding the migration advisory lock.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    let mut client = connect(url).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("taking the migration lock")?;
    let result = apply(&mut client).await;
    // The lock is released with the session too; unlocking keeps it short.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    result
}

async fn apply(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    let runner = migrations::runner();
    if let Some(ahead) = schema_ahead(client, &runner).await? {
        tracing::warn!(
            newest_applied = ahead.newest_applied,
            newest_known = ahead.newest_known,
            "the schema is newer than this binary (a rollback?): every migration it knows \
             is applied, so it runs on the newer schema without migrating"
        );
        return Ok(());
    }
    let report = runner
        .run_async(client)
        .await
        .context("applying migrations")?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "applied migration");
    }
    Ok(())
}

/// A schema migrated by a newer release than this binary.
#[derive(Debug)]
struct SchemaAhead {
    newest_applied: i32,
    newest_known: i32,
}

/// Detects a rollback: every migration this binary embeds is applied and the
/// only others are newer ones. Migrations are additive (a new release adds
/// tables, columns with defaults and indexes; it never drops or renames what
/// the previous release uses), so the previous binary runs on that schema.
/// refinery itself would refuse ("missing" migrations), which would make a
/// rollback after a migration impossible. Anything else, such as an
/// unapplied older migration or gaps, is left for refinery to judge.
async fn schema_ahead(
    client: &mut tokio_postgres::Client,
    runner: &refinery::Runner,
) -> anyhow::Result<Option<SchemaAhead>> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let applied: Vec<i32> = client
        .query("SELECT version FROM refinery_schema_history", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known: Vec<i32> = runner
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    let newest_known = known.iter().copied().max().unwrap_or(0);
    let newest_applied = applied.iter().copied().max().unwrap_or(0);
    let all_known_applied = known.iter().all(|v| applied.contains(v));
    let unknown_are_newer = applied
        .iter()
        .all(|v| known.contains(v) || *v > newest_known);
    Ok(
        (newest_applied > newest_known && all_known_applied && unknown_are_newer).then_some(
            SchemaAhead {
                newest_applied,
                newest_known,
            },
        ),
    )
}

/// Creates the database named in `url` if it does not exist yet.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = url.parse().context("invalid ADE_DATABASE_URL")?;
    let name = config
        .get_dbname()
        .context("ADE_DATABASE_URL names no database")?
        .to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect_with(&admin).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let sql = format!("CREATE DATABASE {}", quote_ident(&name));
        match client.execute(sql.as_str(), &[]).await {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another process created it between our check and our create.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e).context("creating the database"),
        }
    }
    Ok(())
}

/// `url` with its password hidden, for logs.
pub fn redacted(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) => format!(
            "postgres://{}@{}/{}",
            config.get_user().unwrap_or(""),
            config
                .get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            config.get_dbname().unwrap_or("")
        ),
        Err(_) => "(unparseable)".into(),
    }
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One connection outside the pool, driven on a background task.
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    connect_with(&url.parse().context("invalid ADE_DATABASE_URL")?).await
}

async fn connect_with(config: &tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}

/// True when an error means the database is not reachable right now (retry
/// later), rather than that the statement is wrong: no SQLSTATE (I/O),
/// connection exceptions (08), insufficient resources (53) and operator
/// intervention (57: shutdown, terminated backends, statement timeouts).
pub fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_none_or(|c| {
            ["08", "53", "57"]
                .iter()
                .any(|class| c.code().starts_with(class))
        })
}

/// True when the same statement may succeed if simply tried again: the
/// database was unavailable, or a transaction lost a serialization race or
/// a deadlock (40). Anything else (bad data, constraint violations) is
/// permanent and must not be retried.
pub fn is_retryable(e: &tokio_postgres::Error) -> bool {
    is_unavailable(e) || e.code().is_some_and(|c| c.code().starts_with("40"))
}

/// [`is_retryable`] for any error chain; pool errors always count.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .is_some_and(is_retryable)
            || cause
                .downcast_ref::<deadpool_postgres::PoolError>()
                .is_some()
    })
}

/// Runs `op` again while it fails with transient database errors, for up to
/// `patience`; other errors, and the last transient one, are returned.
pub async fn retry_transient<T, F, Fut>(patience: Duration, mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = Duration::from_millis(100);
    loop {
        match op().await {
            Err(e) if is_transient(&e) && tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database unavailable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            result => return result,
        }
    }
}

/// Statements through each connection's prepared-statement cache: after a
/// connection's first use of a statement, a query is one round trip
/// (bind + execute) instead of two (parse + describe, then bind + execute),
/// and PostgreSQL no longer parses it again. Keyed by the SQL text, so
/// statements built with `format!` are cached per variant.
pub trait Cached: GenericClient {
    /// [`GenericClient::query`] through the cache.
    fn cached_query<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> BoxFuture<'a, Result<Vec<Row>, tokio_postgres::Error>> {
        Box::pin(async move { self.query(&self.prepare_cached(sql).await?, params).await })
    }

    /// [`GenericClient::query_one`] through the cache.
    fn cached_query_one<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> BoxFuture<'a, Result<Row, tokio_postgres::Error>> {
        Box::pin(async move {
            self.query_one(&self.prepare_cached(sql).await?, params)
                .await
        })
    }

    /// [`GenericClient::query_opt`] through the cache.
    fn cached_query_opt<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> BoxFuture<'a, Result<Option<Row>, tokio_postgres::Error>> {
        Box::pin(async move {
            self.query_opt(&self.prepare_cached(sql).await?, params)
                .await
        })
    }

    /// [`GenericClient::execute`] through the cache.
    fn cached_execute<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> BoxFuture<'a, Result<u64, tokio_postgres::Error>> {
        Box::pin(async move { self.execute(&self.prepare_cached(sql).await?, params).await })
    }
}

impl<T: GenericClient> Cached for T {}
