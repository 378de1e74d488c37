//! The expectation type of both scanners' table tests.

use super::{Scan, ScanError};

/// What a table case expects.
#[derive(Clone, Copy, Debug)]
pub(super) enum Want {
    Found(&'static str),
    /// Found, then this error at a later call.
    FoundThen(&'static str, ScanError),
    Invalid(ScanError),
}

impl Want {
    pub(super) fn answers(self) -> Vec<Scan> {
        match self {
            Want::Found(model) => vec![Scan::Found(model.into())],
            Want::FoundThen(model, error) => {
                vec![Scan::Found(model.into()), Scan::Invalid(error)]
            }
            Want::Invalid(error) => vec![Scan::Invalid(error)],
        }
    }
}
