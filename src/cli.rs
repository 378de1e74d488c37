//! The command line (SPEC §1): argv → [`Mode`].
//!
//! Two stages, as ripgrep's `LowArgs` → `HiArgs`: the lexopt loop only
//! records what was written into [`Flags`], then [`Flags::into_mode`] decides
//! what it means and rejects combinations that make no sense. Does not own:
//! reading or validating the config ([`crate::config`]), printing, exit codes
//! (`main.rs`).

use std::ffi::OsString;
use std::path::PathBuf;

/// The config file read when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "config.json";

/// The `--help` text.
pub const HELP: &str = "\
llmhop: one port, many models. Routes each OpenAI-compatible request to the
backend configured for its `model`.

Usage: llmhop [--config PATH] [--check [--no-secrets]] [--version] [--help]

Options:
  -c, --config PATH   the JSON config file [default: config.json]
      --check         load and validate the config, expand every secret,
                      print a summary (never a secret) and exit; binds nothing
      --no-secrets    with --check: check secret references for syntax only,
                      without resolving them (for build-time validation)
  -V, --version       print the version and exit
  -h, --help          print this help and exit

Exit status: 0 on success, 1 when the config is invalid or the router fails,
2 for a command-line error.
";

/// What the process was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Load the config and run the router.
    Run { config: PathBuf },
    /// `--check`: load and validate the config, print its summary, exit.
    /// `no_secrets`: secret references are checked for syntax only.
    Check { config: PathBuf, no_secrets: bool },
    /// `--version`.
    Version,
    /// `--help`.
    Help,
}

/// The flags as written, before any meaning is given to them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// The last `--config` given, if any.
    pub config: Option<PathBuf>,
    pub check: bool,
    pub no_secrets: bool,
    pub version: bool,
    pub help: bool,
}

/// Parses arguments (without the program name) into a [`Mode`].
///
/// `--help` wins over everything else, then `--version`, so both work even
/// next to flags that would be rejected together. A repeated `--config`
/// keeps the last one. `--no-secrets` without `--check` is an error, since a
/// router that runs without its secrets cannot serve.
///
/// ```
/// use llmhop::cli::{parse, Mode};
/// let mode = parse(["--check", "-c", "/etc/llmhop.json"].map(Into::into)).unwrap();
/// assert_eq!(mode, Mode::Check { config: "/etc/llmhop.json".into(), no_secrets: false });
/// assert!(parse(["--no-secrets"].map(Into::into)).is_err());
/// ```
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Mode, lexopt::Error> {
    Flags::parse(args)?.into_mode()
}

impl Flags {
    /// Stage one: the lexopt loop. Only unknown options, stray values and a
    /// missing `PATH` fail here.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Flags, lexopt::Error> {
        use lexopt::prelude::*;

        let mut flags = Flags::default();
        let mut parser = lexopt::Parser::from_args(args);
        while let Some(arg) = parser.next()? {
            match arg {
                Short('c') | Long("config") => flags.config = Some(parser.value()?.into()),
                Long("check") => flags.check = true,
                Long("no-secrets") => flags.no_secrets = true,
                Short('V') | Long("version") => flags.version = true,
                Short('h') | Long("help") => flags.help = true,
                _ => return Err(arg.unexpected()),
            }
        }
        Ok(flags)
    }

    /// Stage two: what the flags ask for.
    pub fn into_mode(self) -> Result<Mode, lexopt::Error> {
        if self.help {
            return Ok(Mode::Help);
        }
        if self.version {
            return Ok(Mode::Version);
        }
        let config = self.config.unwrap_or_else(|| DEFAULT_CONFIG.into());
        if self.check {
            return Ok(Mode::Check {
                config,
                no_secrets: self.no_secrets,
            });
        }
        if self.no_secrets {
            return Err("--no-secrets is only valid with --check".into());
        }
        Ok(Mode::Run { config })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: &str) -> Result<Mode, String> {
        Ok(Mode::Run {
            config: config.into(),
        })
    }

    fn check(config: &str, no_secrets: bool) -> Result<Mode, String> {
        Ok(Mode::Check {
            config: config.into(),
            no_secrets,
        })
    }

    #[test]
    fn table() {
        #[rustfmt::skip]
        let cases: &[(&[&str], Result<Mode, String>)] = &[
            (&[], run("config.json")),
            (&["--config", "a.json"], run("a.json")),
            (&["--config=a.json"], run("a.json")),
            (&["-c", "a.json"], run("a.json")),
            (&["-ca.json"], run("a.json")),
            (&["-c", "a.json", "-c", "b.json"], run("b.json")),
            (&["--check"], check("config.json", false)),
            (&["--check", "--no-secrets"], check("config.json", true)),
            (&["--no-secrets", "--check", "-c", "x"], check("x", true)),
            (&["--version"], Ok(Mode::Version)),
            (&["-V"], Ok(Mode::Version)),
            (&["--help"], Ok(Mode::Help)),
            (&["-h"], Ok(Mode::Help)),
            (&["--version", "--help"], Ok(Mode::Help)),
            (&["--no-secrets", "--help"], Ok(Mode::Help)),
            (&["--no-secrets", "-V"], Ok(Mode::Version)),
            (&["--no-secrets"], Err("--no-secrets is only valid with --check".into())),
            (&["--no-secrets", "-c", "a.json"], Err("--no-secrets is only valid with --check".into())),
            (&["--bogus"], Err("invalid option '--bogus'".into())),
            (&["-x"], Err("invalid option '-x'".into())),
            (&["serve"], Err("unexpected argument \"serve\"".into())),
            (&["--config"], Err("missing argument for option '--config'".into())),
            (&["-c"], Err("missing argument for option '-c'".into())),
            (&["--check=yes"], Err("unexpected argument for option '--check': \"yes\"".into())),
        ];
        for (args, want) in cases {
            let got = parse(args.iter().map(OsString::from)).map_err(|e| e.to_string());
            assert_eq!(&got, want, "args: {args:?}");
        }
    }
}
