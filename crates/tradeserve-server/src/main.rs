//! The `tradeserve` binary: parse the command line and hand over to [`tradeserve_server::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = tradeserve_server::cli::Cli::parse();
    match tradeserve_server::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "tradeserve failed");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
