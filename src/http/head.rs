//! Request and response heads: httparse plus the decisions RFC 9112 asks
//! for, made once here and carried forward in [`RequestHead`] and
//! [`ResponseHead`] so that no later step re-scans the header fields.
//!
//! Owns: head limits, target reduction, the framing decision (RFC 9112
//! §6.3), keep-alive, `Expect`, content kind. Does not own: bodies
//! ([`super::body`]), rewriting ([`super::rewrite`]), sockets.

use std::ops::Range;

use super::Version;

/// Largest request or response head accepted, in bytes (SPEC §3.1). A head
/// that is not complete within this many bytes is answered with 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most header fields accepted in one head (SPEC §3.1); more is 431.
pub const MAX_HEADERS: usize = 100;

/// Result of feeding a possibly incomplete head: incomplete input is not an
/// error, it is [`Status::Partial`].
#[derive(Debug, PartialEq, Eq)]
pub enum Status<T> {
    Complete(T),
    Partial,
}

/// Why a head was refused. Small and `Copy`, as httparse's error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// More than [`MAX_HEAD_BYTES`] without a complete head (431).
    TooLarge,
    /// More than [`MAX_HEADERS`] fields (431).
    TooManyHeaders,
    /// Not HTTP/1.x grammar: bad token, bare CR or LF, obs-fold, NUL... (400).
    Malformed,
    /// A version other than HTTP/1.0 or HTTP/1.1 (400 / 505 upstream side).
    Version,
    /// Request target neither origin-form nor absolute-form (400).
    Target,
    /// HTTP/1.1 request without exactly one `Host` (400).
    Host,
    /// `Content-Length` not digits, repeated, or too large for u64 (400).
    ContentLength,
    /// `Content-Length` and `Transfer-Encoding` both present, or chunked not
    /// last (400).
    FramingConflict,
    /// A transfer coding other than `chunked` (501).
    UnsupportedCoding,
}

/// Where one header field sits in the head buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderIdx {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// How the end of a message body is found (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// What kind of body a request carries, for the model scanner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentKind {
    /// Anything that is not multipart: scanned as JSON.
    Json,
    /// `multipart/form-data` with this boundary (already unquoted).
    Multipart { boundary: Vec<u8> },
}

/// A parsed request head. Ranges index the buffer given to
/// [`parse_request`].
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// Length of the head in bytes, final CRLF CRLF included.
    pub len: usize,
    pub method: Range<usize>,
    /// Path of the target (origin-form, or reduced from absolute-form).
    pub path: Range<usize>,
    /// Query of the target, without the `?`, when there is one.
    pub query: Option<Range<usize>>,
    pub version: Version,
    /// Every field, in order.
    pub headers: Vec<HeaderIdx>,
    pub framing: Framing,
    /// Whether the client wants the connection kept after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    pub content: ContentKind,
    /// Index into `headers` of the `Authorization` field, if any.
    pub authorization: Option<usize>,
}

/// Parses a request head from the start of `buf`.
pub fn parse_request(buf: &[u8]) -> Result<Status<RequestHead>, HeadError> {
    let _ = buf;
    todo!()
}

/// A parsed response head. Ranges index the buffer given to
/// [`parse_response`].
#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub len: usize,
    pub version: Version,
    pub status: u16,
    pub headers: Vec<HeaderIdx>,
    pub framing: Framing,
    /// The upstream allows reusing the connection after this response.
    pub keep_alive: bool,
    /// `Content-Type: text/event-stream`.
    pub event_stream: bool,
}

/// Parses a response head; `head_request` is whether the request was
/// `HEAD` (whose response never has a body, RFC 9112 §6.3 rule 1).
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Status<ResponseHead>, HeadError> {
    let _ = (buf, head_request);
    todo!()
}
