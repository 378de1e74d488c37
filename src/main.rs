//! The `llmhop` binary: parse the command line, load the config, then print
//! its summary (`--check`) or run the router.
//!
//! Every failure is one line on stderr starting `llmhop: `. Exit status:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success (`--check` passed, `--help`, `--version`, clean shutdown) |
//! | 1 | the config is invalid or unreadable, or the router failed |
//! | 2 | the command line is wrong (usage error, as most Unix tools) |
//!
//! Keeping 1 and 2 apart lets a deployment script tell "the config is
//! wrong" from "the unit file is wrong".

use std::path::Path;
use std::process::ExitCode;

use llmhop::cli::{self, Mode};
use llmhop::config::{self, Config, SecretMode};

/// Exit status for a command-line error.
const EXIT_USAGE: u8 = 2;

/// Exit status for a config error.
const EXIT_CONFIG: u8 = 1;

fn main() -> ExitCode {
    let mode = match cli::parse(std::env::args_os().skip(1)) {
        Ok(mode) => mode,
        Err(err) => {
            eprintln!("llmhop: {err} (see llmhop --help)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match mode {
        Mode::Help => {
            print!("{}", cli::HELP);
            ExitCode::SUCCESS
        }
        Mode::Version => {
            println!("llmhop {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Mode::Check { config, no_secrets } => {
            let secrets = if no_secrets {
                SecretMode::SyntaxOnly
            } else {
                SecretMode::Resolve
            };
            match load(&config, secrets) {
                Ok(loaded) => {
                    // What the run would also refuse (not at build time:
                    // the runtime environment may not exist yet).
                    if !no_secrets {
                        if let Err(e) = llmhop::server::preflight(&loaded) {
                            eprintln!("llmhop: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                    print!("{}", loaded.summary());
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        Mode::Run { config } => match load(&config, SecretMode::Resolve) {
            Ok(loaded) => llmhop::server::main(loaded),
            Err(code) => code,
        },
    }
}

/// Loads the config, or prints the one error line
/// (`llmhop: config.json: models.gpt.url: empty host`) and returns the exit
/// status. The error never holds a secret value, so printing it is safe.
fn load(path: &Path, secrets: SecretMode) -> Result<Config, ExitCode> {
    config::load(path, secrets).map_err(|err| {
        // The path is the user's: control characters in it are escaped so
        // that the error stays one line.
        let shown: String = path
            .display()
            .to_string()
            .chars()
            .map(|c| match c.is_control() {
                true => c.escape_debug().to_string(),
                false => c.to_string(),
            })
            .collect();
        eprintln!("llmhop: {shown}: {err}");
        ExitCode::from(EXIT_CONFIG)
    })
}
