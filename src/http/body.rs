//! Message body framing, sans-IO: finds where a Content-Length or chunked
//! body ends and which bytes are payload, enforcing the body cap.
//!
//! Owns: chunked grammar (RFC 9112 §7.1), the cap. Does not own: the
//! framing decision (made by [`super::head`]), what the payload means.

use std::ops::Range;

use super::head::Framing;

/// What one call to [`Decoder::decode`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Wire bytes of the input that belong to this body and were used.
    pub consumed: usize,
    /// Payload bytes within `input[..consumed]` (one contiguous run).
    pub payload: Range<usize>,
    /// The body ended within `input[..consumed]`.
    pub done: bool,
}

/// Why a body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Payload grew past the cap (413).
    TooLarge,
    /// Chunk-size line, extension, CRLF or trailer not per RFC 9112 §7.1 (400).
    Chunked,
    /// The connection closed before the body ended.
    Incomplete,
}

/// Push-style body decoder.
#[derive(Clone, Debug)]
pub struct Decoder {
    _private: (),
}

impl Decoder {
    /// A decoder for `framing`; `cap` bounds the total payload.
    pub fn new(framing: Framing, cap: Option<u64>) -> Decoder {
        let _ = (framing, cap);
        todo!()
    }

    /// Consumes a prefix of `input`. Call again with the rest until
    /// `done` or the input is used up.
    pub fn decode(&mut self, input: &[u8]) -> Result<Progress, BodyError> {
        let _ = input;
        todo!()
    }

    /// The peer closed: fine for `UntilClose`, an error otherwise unless done.
    pub fn eof(&self) -> Result<(), BodyError> {
        todo!()
    }

    pub fn is_done(&self) -> bool {
        todo!()
    }
}
