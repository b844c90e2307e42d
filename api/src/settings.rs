//! `ade-api` settings: the shared ones plus the HTTP side.

use ade_common::settings::CommonSettings;
use std::net::SocketAddr;

/// Command line of `ade-api`.
#[derive(Debug, clap::Parser)]
#[command(name = "ade-api", version, about = "ADE Runs HTTP API")]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings, from flags or `ADE_*` environment variables.
    #[command(flatten)]
    pub settings: ApiSettings,
}

/// Subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Migrate the database, then serve the API.
    Serve,
    /// Create the database if missing, apply migrations and exit.
    Migrate,
    /// Make, list and revoke API keys (migrates first).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the OpenAPI document (as served at `/api/v1/openapi.json`) and exit.
    Openapi,
}

/// `ade-api keys …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Make a key and print it once (only its hash is stored).
    Create {
        /// An admin key: every workspace, and the operations endpoints.
        #[arg(
            long,
            conflicts_with = "workspace",
            required_unless_present = "workspace"
        )]
        admin: bool,
        /// A key that sees exactly this workspace.
        #[arg(long)]
        workspace: Option<uuid::Uuid>,
        /// A label for people.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Print the record as JSON (with the key) instead of the key alone.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never the keys themselves).
    List {
        /// Only this workspace's keys.
        #[arg(long)]
        workspace: Option<uuid::Uuid>,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key's id (from `keys list`).
        id: uuid::Uuid,
    },
}

/// Every setting of the API.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiSettings {
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonSettings,
    /// Address to listen on.
    #[arg(long, env = "ADE_API_ADDR", default_value = "127.0.0.1:8000")]
    pub api_addr: SocketAddr,
    /// Refuse new runs with 422 `safe_mode_enabled`.
    #[arg(long, env = "ADE_SAFE_MODE", default_value_t = false, action = clap::ArgAction::Set)]
    pub safe_mode: bool,
    /// Queued runs beyond which creation answers 429 `run_queue_full`.
    #[arg(long, env = "ADE_MAX_QUEUED_RUNS", default_value_t = 10_000)]
    pub max_queued_runs: i64,
    /// Largest accepted document upload, in bytes.
    #[arg(long, env = "ADE_MAX_UPLOAD_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_upload_bytes: u64,
    /// Requests per second each API key may make on average (bursts of
    /// twice that); 0 turns the limit off.
    #[arg(long, env = "ADE_RATE_LIMIT_PER_SECOND", default_value_t = 200)]
    pub rate_limit_per_second: u32,
    /// Longest a client may take to send a request's headers, in seconds.
    #[arg(long, env = "ADE_HTTP_HEADER_TIMEOUT_SECONDS", default_value_t = 10)]
    pub http_header_timeout_seconds: u64,
    /// A connection with nothing read or written for this long is closed, in seconds.
    #[arg(long, env = "ADE_HTTP_IDLE_TIMEOUT_SECONDS", default_value_t = 60)]
    pub http_idle_timeout_seconds: u64,
    /// Serve `/metrics` without a key.
    #[arg(long, env = "ADE_METRICS_PUBLIC", default_value_t = false, action = clap::ArgAction::Set)]
    pub metrics_public: bool,
    /// A follower with no live event for this long reads the database anyway
    /// (the last resort against a lost broker message), in seconds.
    #[arg(long, env = "ADE_STREAM_QUIET_CHECK_SECONDS", default_value_t = 10)]
    pub stream_quiet_check_seconds: u64,
    /// Terminal runs finished longer ago than this many days are deleted
    /// with their events and files; 0 keeps everything.
    #[arg(long, env = "ADE_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u32,
}

impl ApiSettings {
    /// Defaults around the given shared settings, listening on an ephemeral port.
    pub fn for_tests(common: CommonSettings) -> Self {
        Self {
            common,
            api_addr: "127.0.0.1:0".parse().expect("valid address"),
            safe_mode: false,
            max_queued_runs: 10_000,
            max_upload_bytes: 100 * 1024 * 1024,
            stream_quiet_check_seconds: 10,
            rate_limit_per_second: 200,
            metrics_public: false,
            http_header_timeout_seconds: 10,
            http_idle_timeout_seconds: 60,
            retention_days: 30,
        }
    }
}
