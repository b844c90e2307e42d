use ade_api::settings::{Cli, Command};
use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ade_common::telemetry::init(cli.settings.common.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => ade_api::migrate(&cli.settings).await,
        Command::Keys(command) => ade_api::keys::cli(&cli.settings, command).await,
        Command::Openapi => {
            println!("{}", ade_api::openapi::to_json(&cli.settings));
            Ok(())
        }
        Command::Serve => {
            let app = ade_api::Application::build(cli.settings).await?;
            app.run_until(ade_api::shutdown_signal()).await
        }
    }
}
