//! The command line (SPEC §1), first stage: argv → [`Mode`]. No validation
//! and no I/O here.

use std::ffi::OsString;
use std::path::PathBuf;

/// What the process was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Run { config: PathBuf },
    Check { config: PathBuf, no_secrets: bool },
    Version,
    Help,
}

/// Parses arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Mode, lexopt::Error> {
    let _ = args.into_iter();
    todo!()
}
