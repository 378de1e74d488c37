//! Listeners and the accept loop.
use std::process::ExitCode;

use crate::config::Config;

/// Runs the router until SIGTERM/SIGINT; builds its own runtime.
pub fn main(config: Config) -> ExitCode {
    let _ = config;
    ExitCode::SUCCESS
}
