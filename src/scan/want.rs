//! What both scanners' table tests share: the expectation type, and how
//! the answers of a sequence of calls are recorded.

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

/// Records one answer of a feed/finish sequence: `NeedMore` is dropped, a
/// repeated sticky `Invalid` is checked and recorded once, and `Found` may
/// come only once.
pub(super) fn record(answers: &mut Vec<Scan>, scan: Scan) {
    match (answers.last(), scan) {
        (Some(Scan::Invalid(before)), now) => assert_eq!(now, Scan::Invalid(*before), "sticky"),
        (_, Scan::NeedMore) => {}
        (_, Scan::Found(model)) => {
            assert!(
                !answers.iter().any(|a| matches!(a, Scan::Found(_))),
                "found twice"
            );
            answers.push(Scan::Found(model));
        }
        (_, invalid) => answers.push(invalid),
    }
}
