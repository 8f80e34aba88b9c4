//! The `tradeserve` binary: parse the command line and hand over to [`tradeserve_server::cli`].

use clap::Parser;

// mimalloc: the request path allocates many small, short-lived buffers (tract tensors, JSON);
// glibc malloc showed up as ~6% of server CPU under load (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = tradeserve_server::cli::Cli::parse();
    match tradeserve_server::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<tradeserve_server::cli::Reported>() => std::process::ExitCode::FAILURE,
        Err(e) => {
            let e = tradeserve_server::cli::describe(&e);
            // Once, on stderr: as a log line when logging is set up (text or JSON), else plain.
            if tracing::dispatcher::has_been_set() {
                tracing::error!(error = %e, "tradeserve failed");
            } else {
                eprintln!("error: {e}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
