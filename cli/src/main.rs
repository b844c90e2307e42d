//! `ade`: parse the command line, run it on a small runtime, exit with its code.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    // Like other Unix tools, end quietly when a reader such as `head` closes the pipe.
    // SAFETY: restoring a default signal disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = ade_cli::args::Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let exit = runtime.block_on(ade_cli::run(cli));
    // A prompt left waiting on stdin after a second Ctrl-C must not hold the exit.
    runtime.shutdown_background();
    exit.into()
}
