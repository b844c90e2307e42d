//! Settings both binaries share, read from `ADE_*` environment variables.

use std::path::PathBuf;

/// Connection and storage settings common to the API and the worker.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonSettings {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "ADE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ade",
        hide_env_values = true
    )]
    pub database_url: String,
    /// RabbitMQ connection URL.
    #[arg(
        long,
        env = "ADE_AMQP_URL",
        default_value = DEFAULT_AMQP_URL,
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// Prefix of every exchange and queue name.
    #[arg(long, env = "ADE_AMQP_PREFIX", default_value = "ade")]
    pub amqp_prefix: String,
    /// Shared storage for documents, config packages and run outputs.
    #[arg(long, env = "ADE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Source folder of the `ade-engine` package (its version is part of build fingerprints).
    #[arg(long, env = "ADE_ENGINE_DIR", default_value = "./engine")]
    pub engine_dir: PathBuf,
    /// Interpreter venvs are made from (its identity is part of build fingerprints).
    #[arg(long, env = "ADE_PYTHON", default_value = "python3")]
    pub python: String,
    /// Attempts after worker loss before a run fails.
    #[arg(long, env = "ADE_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// Log output: `text` or `json`.
    #[arg(long, env = "ADE_LOG_FORMAT", default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,
}

/// The broker a local install and the tests use unless `ADE_AMQP_URL` says otherwise.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// `ADE_AMQP_URL`, or [`DEFAULT_AMQP_URL`] (for tests and tools that read no settings).
pub fn amqp_url_from_env() -> String {
    std::env::var("ADE_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.into())
}

impl CommonSettings {
    /// Settings for tests and tools: defaults, with the given database, prefix and data dir.
    pub fn for_tests(database_url: String, amqp_prefix: String, data_dir: PathBuf) -> Self {
        Self {
            database_url,
            amqp_url: amqp_url_from_env(),
            amqp_prefix,
            data_dir,
            engine_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../engine"),
            python: "python3".into(),
            max_attempts: 3,
            log_format: crate::telemetry::LogFormat::Text,
        }
    }
}
