//! Finding the `model` of a request while its body streams in.
//!
//! Both scanners are push-style and sans-IO: feed payload bytes as they
//! arrive, in any split, and get the same answer. Neither builds a DOM or
//! recurses, and their memory does not grow with the body.

pub mod json;
pub mod multipart;
#[cfg(test)]
mod want;

/// Longest model name accepted, in bytes after unescaping. A longer value
/// cannot name a configured model and is refused as malformed.
pub const MAX_MODEL_BYTES: usize = 4096;

/// What a scanner knows after the bytes fed so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scan {
    /// Keep feeding. Also the answer after `Found` was given once, while the
    /// scanner keeps checking the rest of the body.
    NeedMore,
    /// The model, given exactly once, as soon as its value is complete.
    Found(String),
    /// The body cannot be routed.
    Invalid(ScanError),
}

/// Why a body cannot be routed (all 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanError {
    /// Not JSON, or the top level is not an object.
    Syntax,
    /// No top-level `model` key (or no part named `model`).
    Missing,
    /// `model` is not a string, not UTF-8, or longer than [`MAX_MODEL_BYTES`].
    NotString,
    /// `model` appears twice at the top level.
    Duplicate,
    /// Multipart framing broken, or a part head too large.
    Multipart,
}

/// The scanner chosen by the request's content kind.
#[derive(Debug)]
pub enum Scanner {
    Json(json::JsonScanner),
    Multipart(multipart::MultipartScanner),
}

impl Scanner {
    pub fn feed(&mut self, payload: &[u8]) -> Scan {
        match self {
            Scanner::Json(s) => s.feed(payload),
            Scanner::Multipart(s) => s.feed(payload),
        }
    }

    /// The body ended: `Invalid(Missing)` if no model was found, `Invalid`
    /// if the document is incomplete, else `NeedMore` (or `Found` if the
    /// model became known only now).
    pub fn finish(&mut self) -> Scan {
        match self {
            Scanner::Json(s) => s.finish(),
            Scanner::Multipart(s) => s.finish(),
        }
    }
}
