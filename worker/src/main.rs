use ade_worker::settings::WorkerSettings;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = WorkerSettings::parse();
    ade_common::telemetry::init(settings.common.log_format);
    let worker = ade_worker::Worker::build(settings).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            ade_api_free_shutdown_signal().await;
            shutdown.cancel();
        }
    });
    worker.run(shutdown).await
}

/// Resolves on SIGINT or SIGTERM.
async fn ade_api_free_shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
