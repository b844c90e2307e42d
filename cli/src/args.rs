//! The command line: global settings and one subcommand per API resource.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// `ade`: drive ADE Runs from a terminal or a script.
#[derive(Debug, Parser)]
#[command(name = "ade", version, about, long_about = None)]
pub struct Cli {
    /// Settings shared by every command.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the API is, how to authenticate, and how to print.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Base URL of the API (http only).
    #[arg(
        long,
        env = "ADE_API_URL",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    pub api_url: String,
    /// API key, sent as `Authorization: Bearer <key>`.
    #[arg(long, env = "ADE_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Print the API's JSON (one document, or one event per line) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Workspaces: create and list.
    #[command(subcommand)]
    Workspaces(WorkspacesCommand),
    /// Configurations: create from a folder or the template, list, get.
    #[command(subcommand)]
    Configs(ConfigsCommand),
    /// Documents: upload.
    #[command(subcommand)]
    Docs(DocsCommand),
    /// Runs: create, follow, list, get, cancel, logs, outputs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Builds: request (and follow) a build, get one.
    #[command(subcommand)]
    Builds(BuildsCommand),
    /// Live workers (admin key).
    Workers,
    /// Queue depth, the autoscaling signal (admin key).
    Queue,
    /// Post-deploy check: health, routes, workers, a dry run followed live, read back.
    Smoke(SmokeArgs),
}

/// `ade workspaces …`
#[derive(Debug, Subcommand)]
pub enum WorkspacesCommand {
    /// Create a workspace (admin key).
    Create {
        /// Its name (1 to 200 printable characters).
        name: String,
    },
    /// List workspaces, newest first.
    List(PageArgs),
}

/// `--limit` and `--cursor` of list commands.
#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    /// Page size (1 to 200).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub limit: u32,
    /// The `next_cursor` of the previous page.
    #[arg(long)]
    pub cursor: Option<Uuid>,
}

impl PageArgs {
    /// Adds `limit` and `cursor` to a list request.
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = request.query(&[("limit", self.limit)]);
        match self.cursor {
            Some(cursor) => request.query(&[("cursor", cursor.to_string())]),
            None => request,
        }
    }
}

/// `ade configs …`
#[derive(Debug, Subcommand)]
pub enum ConfigsCommand {
    /// Create a configuration from a package folder or from the starter template.
    Create(ConfigsCreate),
    /// List a workspace's configurations.
    List {
        /// The workspace.
        #[arg(long, value_name = "ID")]
        workspace: Uuid,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one configuration.
    Get {
        /// The workspace.
        #[arg(long, value_name = "ID")]
        workspace: Uuid,
        /// The configuration.
        id: Uuid,
    },
}

/// `ade configs create`
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true))]
pub struct ConfigsCreate {
    /// The workspace.
    #[arg(long, value_name = "ID")]
    pub workspace: Uuid,
    /// A configuration package folder (holding `pyproject.toml`), packed as .tar.gz.
    #[arg(long, group = "source", value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// Start from the API's built-in starter template.
    #[arg(long, group = "source")]
    pub template: bool,
    /// Its name (default: the folder's name, or `starter` for the template).
    #[arg(long)]
    pub name: Option<String>,
}

/// `ade docs …`
#[derive(Debug, Subcommand)]
pub enum DocsCommand {
    /// Upload documents (CSV, TSV, TXT, XLSX), one request per file.
    Upload {
        /// The workspace.
        #[arg(long, value_name = "ID")]
        workspace: Uuid,
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `ade runs …`
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Create a run (and follow it with `--follow`).
    Create(RunsCreate),
    /// List a workspace's runs, newest first.
    List {
        /// The workspace.
        #[arg(long, value_name = "ID")]
        workspace: Uuid,
        /// Only runs with this status.
        #[arg(long, value_enum)]
        status: Option<RunStatus>,
        /// Only runs of this configuration.
        #[arg(long, value_name = "ID")]
        config: Option<Uuid>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one run.
    Get {
        /// The run.
        id: Uuid,
    },
    /// Cancel a run.
    Cancel {
        /// The run.
        id: Uuid,
    },
    /// Print a run's events (console lines for people); `--follow` waits for its end.
    Logs {
        /// The run.
        id: Uuid,
        /// Keep following the live stream until the run ends; exit with its result.
        #[arg(long)]
        follow: bool,
    },
    /// List a run's outputs, or download them.
    Outputs {
        /// The run.
        id: Uuid,
        /// Download every output file into this folder.
        #[arg(long, value_name = "DIR")]
        download: Option<PathBuf>,
    },
}

/// A run's status, spelled as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for a worker.
    Queued,
    /// Claimed, waiting for its build.
    WaitingForBuild,
    /// The engine is running.
    Running,
    /// Ended with exit code 0.
    Succeeded,
    /// Ended otherwise.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl RunStatus {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::WaitingForBuild => "waiting_for_build",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// `ade runs create`
#[derive(Debug, Args)]
pub struct RunsCreate {
    /// The configuration.
    #[arg(long, value_name = "ID")]
    pub config: Uuid,
    /// A document to run over (repeat for several).
    #[arg(long = "doc", value_name = "ID", required = true)]
    pub docs: Vec<Uuid>,
    /// Do everything except write outputs.
    #[arg(long)]
    pub dry_run: bool,
    /// Validate only.
    #[arg(long)]
    pub validate_only: bool,
    /// Build a new environment first (the way past `environment_not_ready`).
    #[arg(long)]
    pub force_rebuild: bool,
    /// An input sheet name for spreadsheets (repeat for several).
    #[arg(long = "sheet", value_name = "NAME")]
    pub sheets: Vec<String>,
    /// Metadata kept with the run, `KEY=VALUE` (repeat for several).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub metadata: Vec<(String, String)>,
    /// Makes a retried create safe: the same key and options give the same run.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Follow the run live and exit with its result (0 succeeded, 1 otherwise, 130 on Ctrl-C).
    #[arg(long)]
    pub follow: bool,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

/// `ade builds …`
#[derive(Debug, Subcommand)]
pub enum BuildsCommand {
    /// Request a build of a configuration's current content.
    Create {
        /// The workspace.
        #[arg(long, value_name = "ID")]
        workspace: Uuid,
        /// The configuration.
        #[arg(long, value_name = "ID")]
        config: Uuid,
        /// A new build even when an equal one is ready.
        #[arg(long)]
        force: bool,
        /// Follow the build live and exit with its result (0 ready, 1 otherwise).
        #[arg(long)]
        follow: bool,
    },
    /// Show one build.
    Get {
        /// The build.
        id: Uuid,
    },
}

/// `ade smoke`
#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// How long the dry run may take, from creation to `run.completed` (seconds).
    #[arg(long, default_value = "120", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Where the run's log file is saved (default: a new temporary folder).
    #[arg(long, value_name = "DIR")]
    pub save_dir: Option<PathBuf>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "expected a positive number of seconds, got {text:?}"
        )),
    }
}
