//! Request and response heads: httparse plus the decisions RFC 9112 asks
//! for, made once here and carried forward in [`RequestHead`] and
//! [`ResponseHead`] so that no later step re-scans the header fields.
//!
//! Owns: head limits, target reduction, the framing decision (RFC 9112
//! §6.3), keep-alive, `Expect`, content kind. Does not own: bodies
//! ([`super::body`]), rewriting ([`super::rewrite`]), sockets.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::name::Name;
use super::{eq_ignore_case, has_token, is_tchar, is_uri_char, list_elements, trim_ows, Version};

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
    /// What the name is, recognised when the head was indexed.
    pub known: Name,
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
    /// Never empty: an absolute-form target with an empty path gets a
    /// one-byte range over the last `/` of its `://` (RFC 9112 §3.2.1).
    pub path: Range<usize>,
    /// Query of the target, without the `?`, when there is one.
    pub query: Option<Range<usize>>,
    pub version: Version,
    /// Every field, in order.
    pub headers: Vec<HeaderIdx>,
    /// How the body ends, or why that cannot be told ([`HeadError::ContentLength`],
    /// [`HeadError::FramingConflict`], [`HeadError::UnsupportedCoding`]).
    /// Kept apart from the head's other faults, which refuse the head
    /// outright: SPEC §3.3 has auth answered before anything about the body.
    pub framing: Result<Framing, HeadError>,
    /// Whether the client wants the connection kept after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    pub content: ContentKind,
    /// Index into `headers` of the `Authorization` field, if any (a head
    /// with two is refused as [`HeadError::Malformed`]).
    pub authorization: Option<usize>,
    /// Index of the `x-api-key` field (Anthropic's SDK sends its key there),
    /// if any; two are refused as [`HeadError::Malformed`].
    pub api_key: Option<usize>,
    /// The client asks to switch to WebSocket: `Upgrade: websocket` and
    /// `Connection: upgrade` (RFC 9110 §7.8). Any other offer (curl's
    /// `h2c`) is ignored, as §7.8 lets a server: the request is an ordinary
    /// one and its `Upgrade` is dropped as hop-by-hop.
    pub upgrade: bool,
}

impl HeaderIdx {
    /// The field name, as sent (case preserved), from the parsed buffer.
    pub fn name_bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.name.clone()]
    }

    /// The field value without surrounding OWS, from the parsed buffer.
    pub fn value_bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.value.clone()]
    }
}

impl RequestHead {
    /// The value of `headers[idx]` in `buf` (the buffer given to
    /// [`parse_request`]), or `None` when `idx` is `None`; shaped for
    /// `head.header(&buf, head.authorization)`.
    pub fn header<'b>(&self, buf: &'b [u8], idx: Option<usize>) -> Option<&'b [u8]> {
        idx.and_then(|i| self.headers.get(i))
            .map(|h| h.value_bytes(buf))
    }
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(Status::Partial)` while `buf` can still grow into a valid
/// head, and `Ok(Status::Complete(head))` once it holds one; `head.len` is
/// where the head ends, and nothing after it (body, pipelined requests) is
/// looked at. Incomplete input is never an error, but an error is returned
/// as soon as the bytes seen prove the head bad: httparse's grammar errors
/// and bare CR/LF are reported on a partial buffer too, while the decisions
/// that need every field (`Host`, framing, target, duplicates) are made once
/// the head is complete.
///
/// On top of httparse (which already rejects control bytes in names and
/// values, whitespace before the colon, obs-fold and versions other than
/// HTTP/1.0 and HTTP/1.1), this enforces:
///
/// - CRLF line ends only: a bare LF or bare CR anywhere in the head is
///   [`HeadError::Malformed`] (RFC 9112 §2.2 lets a recipient accept a bare
///   LF; a proxy must not, as the upstream may frame the head differently).
/// - A head complete within [`MAX_HEAD_BYTES`], else [`HeadError::TooLarge`];
///   a partial buffer of `MAX_HEAD_BYTES` or more is `TooLarge` at once, as
///   it can never complete within the limit.
/// - Origin-form or absolute-form (`http`/`https`) target, reduced to path
///   and query; `*`, authority-form, `CONNECT`, a fragment or a non-ASCII
///   byte is [`HeadError::Target`].
/// - Exactly one valid `Host` in HTTP/1.1, at most one in HTTP/1.0, else
///   [`HeadError::Host`].
/// - The framing of RFC 9112 §6.3 (see [`Framing`]), strictly: `Content-Length`
///   digits only and in one field, `Transfer-Encoding` exactly `chunked`,
///   never both, never in HTTP/1.0. A head that breaks only these rules is
///   still complete, with the error in `framing`: the caller refuses it
///   after auth.
/// - At most one `Authorization` and one `Content-Type` field, else
///   [`HeadError::Malformed`]: the router and the upstream must not be able
///   to read different credentials or body kinds from the same head.
///
/// `Framing::Length(0)` is returned as is (not turned into `Empty`): the
/// caller sees exactly what the client declared.
pub fn parse_request(buf: &[u8]) -> Result<Status<RequestHead>, HeadError> {
    parse_request_into(buf, Vec::new())
}

/// [`parse_request`], with the field index built in `index`'s allocation
/// (a connection passes the one of its previous head).
pub fn parse_request_into(
    buf: &[u8],
    index: Vec<HeaderIdx>,
) -> Result<Status<RequestHead>, HeadError> {
    // Uninitialised: filling 100 empty fields (3.2 KiB) cost more than
    // parsing a small head.
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req
        .parse_with_uninit_headers(window(buf), &mut fields)
        .map_err(from_httparse)?
    {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return partial(buf),
    };
    check_line_ends(&buf[..len])?;
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        // httparse fills all three before it reports a complete head.
        return Err(HeadError::Malformed);
    };
    let version = version(minor)?;
    // CONNECT asks for a tunnel to an authority-form target; a model router
    // has nothing to tunnel to (RFC 9110 §9.3.6 makes its target special).
    if method == "CONNECT" {
        return Err(HeadError::Target);
    }
    let (path, query) = split_target(buf, range_of(buf, target.as_bytes()))?;
    let headers = index_fields(buf, req.headers, index);
    let seen = Summary::new(buf, &headers, Role::Request);

    if seen.authorization_fields > 1 || seen.content_type_fields > 1 || seen.api_key_fields > 1 {
        return Err(HeadError::Malformed);
    }
    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, for any
    // request with more than one Host, and for an invalid Host value.
    let host_required = version == Version::Http11;
    if seen.host_fields > 1 || (host_required && seen.host_fields == 0) || !seen.host_valid {
        return Err(HeadError::Host);
    }
    let framing = request_framing(version, &seen);
    let keep_alive = keep_alive(version, &seen);
    // RFC 9110 §10.1.1: a server MUST ignore 100-continue in an HTTP/1.0
    // request (a 1.0 client may not understand the interim response).
    let expect_continue = seen.expect_continue && version == Version::Http11;
    let content = seen.content_type.map_or(ContentKind::Json, |i| {
        content_kind(headers[i].value_bytes(buf))
    });

    Ok(Status::Complete(RequestHead {
        len,
        method: range_of(buf, method.as_bytes()),
        path,
        query,
        version,
        framing,
        keep_alive,
        expect_continue,
        content,
        authorization: seen.authorization,
        api_key: seen.api_key,
        upgrade: seen.upgrade_websocket && seen.connection_upgrade,
        headers,
    }))
}

/// The request framing decision of RFC 9112 §6.3, made strictly: whatever
/// a lenient server might guess from a doubtful head, we refuse, since the
/// upstream behind us might guess differently (request smuggling).
fn request_framing(version: Version, seen: &Summary) -> Result<Framing, HeadError> {
    let codings = &seen.codings;
    if codings.present {
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means the
        // framing is faulty, even with a Content-Length.
        if version == Version::Http10 {
            return Err(HeadError::FramingConflict);
        }
        // RFC 9112 §6.1 / §6.3 rule 3: both present "ought to be handled as
        // an error"; a server MAY reject it, and a proxy must, since
        // forwarding it is the classic smuggling vector.
        if seen.length != Length::Absent {
            return Err(HeadError::FramingConflict);
        }
        // RFC 9112 §6.3 rule 4 and §7: chunked is applied once, and last;
        // otherwise the request length cannot be determined: 400.
        if codings.chunked > 1 || (codings.chunked == 1 && !codings.last_chunked) {
            return Err(HeadError::FramingConflict);
        }
        // RFC 9112 §6.1: a server that receives a transfer coding it does
        // not understand SHOULD respond 501. Empty list elements count as
        // unknown codings here (strict on purpose: `chunked,` is refused).
        if codings.other {
            return Err(HeadError::UnsupportedCoding);
        }
        return Ok(Framing::Chunked);
    }
    match seen.length {
        // RFC 9112 §6.3 rule 7: no framing fields, no body.
        Length::Absent => Ok(Framing::Empty),
        Length::Valid { value, fields: 1 } => Ok(Framing::Length(value)),
        // RFC 9112 §6.3 rule 5: invalid or repeated Content-Length is
        // unrecoverable. Even two equal fields are refused (RFC 9110 §8.6
        // allows accepting them; a proxy gains nothing by doing so).
        Length::Valid { .. } | Length::Invalid => Err(HeadError::ContentLength),
    }
}

/// Whether the sender keeps the connection open after this message
/// (RFC 9112 §9.3): HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
/// `Connection: keep-alive` (RFC 9112 Appendix C.2.2) and no `close`.
fn keep_alive(version: Version, seen: &Summary) -> bool {
    match version {
        Version::Http11 => !seen.close,
        Version::Http10 => seen.keep_alive && !seen.close,
    }
}

/// Splits a request target (RFC 9112 §3.2) into path and query ranges.
///
/// - origin-form `absolute-path [ "?" query ]`: path up to the first `?`.
/// - absolute-form `http[s]://authority[/path][?query]` (scheme
///   case-insensitive, authority non-empty without userinfo, RFC 9110
///   §4.2.1 and §4.2.4): reduced to its path and query (RFC 9112 §3.2.2).
///   An empty path becomes `/`: the returned range then covers the last
///   `/` of `://`, which is a literal `/` byte inside the target.
/// - anything else (`*`, authority-form, other schemes) is
///   [`HeadError::Target`].
///
/// httparse already refused CTLs and spaces; this also refuses non-ASCII
/// bytes and `#` (a fragment is never sent on the wire, RFC 9112 §3.2), so
/// the forwarded target is plain ASCII.
fn split_target(
    buf: &[u8],
    target: Range<usize>,
) -> Result<(Range<usize>, Option<Range<usize>>), HeadError> {
    let t = &buf[target.clone()];
    if t.iter().any(|&b| b == b'#' || !b.is_ascii()) {
        return Err(HeadError::Target);
    }
    let split = |from: usize| -> (Range<usize>, Option<Range<usize>>) {
        // `from` is the offset in `t` where the path starts.
        match memchr::memchr(b'?', &t[from..]) {
            Some(q) => {
                let q = target.start + from + q;
                (target.start + from..q, Some(q + 1..target.end))
            }
            None => (target.start + from..target.end, None),
        }
    };
    if t.first() == Some(&b'/') {
        return Ok(split(0));
    }
    let scheme_len = if starts_with_ignore_case(t, b"http://") {
        7
    } else if starts_with_ignore_case(t, b"https://") {
        8
    } else {
        return Err(HeadError::Target);
    };
    let rest = &t[scheme_len..];
    let authority_len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    if authority.is_empty() || authority.contains(&b'@') {
        return Err(HeadError::Target);
    }
    let path_start = scheme_len + authority_len;
    if t.get(path_start) == Some(&b'/') {
        return Ok(split(path_start));
    }
    // Empty path: `/` is the last byte of `://` (RFC 9112 §3.2.1: an empty
    // path is sent as `/`).
    let slash = target.start + scheme_len - 1;
    let query = (path_start < t.len()).then(|| target.start + path_start + 1..target.end);
    Ok((slash..slash + 1, query))
}

fn starts_with_ignore_case(v: &[u8], prefix: &[u8]) -> bool {
    v.len() >= prefix.len() && eq_ignore_case(&v[..prefix.len()], prefix)
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2): a bracketed IP-literal,
/// or a reg-name or IPv4 address (RFC 3986 §3.2.2), then an optional port
/// of digits (§3.2.3). An empty value is allowed (RFC 9112 §3.2: a target
/// without authority).
fn is_valid_host(v: &[u8]) -> bool {
    let rest = match v.strip_prefix(b"[") {
        // Host values are a few bytes: a plain search beats memchr's setup.
        Some(literal) => match literal.iter().position(|&b| b == b']') {
            Some(end) if end > 0 => {
                if !literal[..end].iter().all(|&b| is_uri_char(b) || b == b':') {
                    return false;
                }
                &literal[end + 1..]
            }
            _ => return false,
        },
        None => {
            let end = v.iter().position(|&b| b == b':').unwrap_or(v.len());
            if !v[..end].iter().all(|&b| is_uri_char(b)) {
                return false;
            }
            &v[end..]
        }
    };
    match rest.split_first() {
        None => true,
        Some((b':', port)) => port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
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
///
/// Same contract as [`parse_request`] for `Partial`, limits, bare CR/LF and
/// grammar. The status code must be 100..=599 (RFC 9110 §15), else
/// [`HeadError::Malformed`].
///
/// Framing (RFC 9112 §6.3, response side):
/// 1. `101` → [`Framing::UntilClose`]: the connection leaves HTTP.
/// 2. other `1xx`, `204`, `304`, or `head_request` → [`Framing::Empty`].
///    A `1xx` is an interim response: the caller skips `len` bytes and
///    parses the next head.
/// 3. `Transfer-Encoding` (HTTP/1.1 only; in HTTP/1.0 it is
///    [`HeadError::FramingConflict`], RFC 9112 §6.1): `chunked` as final
///    coding → [`Framing::Chunked`], else [`Framing::UntilClose`]. It wins
///    over a `Content-Length`, but then `keep_alive` is false.
/// 4. `Content-Length`: one value, possibly repeated identically (as a list
///    or in several fields, RFC 9110 §8.6) → [`Framing::Length`]; anything
///    else → [`HeadError::ContentLength`].
/// 5. none → [`Framing::UntilClose`].
///
/// `keep_alive` is the version default adjusted by `Connection`, and false
/// whenever the body ends with the connection or the framing was doubtful.
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Status<ResponseHead>, HeadError> {
    parse_response_into(buf, head_request, Vec::new())
}

/// [`parse_response`], with the field index built in `index`'s allocation.
pub fn parse_response_into(
    buf: &[u8],
    head_request: bool,
    index: Vec<HeaderIdx>,
) -> Result<Status<ResponseHead>, HeadError> {
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, window(buf), &mut fields)
        .map_err(from_httparse)?
    {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return partial(buf),
    };
    check_line_ends(&buf[..len])?;
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return Err(HeadError::Malformed);
    };
    let version = version(minor)?;
    // httparse takes any three digits; RFC 9110 §15 defines 100..=599.
    if !(100..=599).contains(&status) {
        return Err(HeadError::Malformed);
    }
    let headers = index_fields(buf, res.headers, index);
    let seen = Summary::new(buf, &headers, Role::Response);
    let (framing, reusable) = response_framing(status, head_request, version, &seen)?;
    let keep_alive = reusable && framing != Framing::UntilClose && keep_alive(version, &seen);
    let event_stream = seen.content_type.is_some_and(|i| {
        eq_ignore_case(
            media_type(headers[i].value_bytes(buf)),
            b"text/event-stream",
        )
    });
    Ok(Status::Complete(ResponseHead {
        len,
        version,
        status,
        headers,
        framing,
        keep_alive,
        event_stream,
    }))
}

/// The response framing decision of RFC 9112 §6.3, and whether that
/// framing leaves the connection reusable.
fn response_framing(
    status: u16,
    head_request: bool,
    version: Version,
    seen: &Summary,
) -> Result<(Framing, bool), HeadError> {
    if status == 101 {
        return Ok((Framing::UntilClose, false));
    }
    // RFC 9112 §6.3 rule 1: no body, whatever the fields say.
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok((Framing::Empty, true));
    }
    let codings = &seen.codings;
    if codings.present {
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
        if version == Version::Http10 {
            return Err(HeadError::FramingConflict);
        }
        // RFC 9112 §6.3 rule 3: Transfer-Encoding overrides Content-Length,
        // and the connection must be closed after such a message.
        let reusable = seen.length == Length::Absent;
        // RFC 9112 §6.3 rule 4: for a response, a final coding other than
        // chunked means the body is delimited by the close.
        if codings.last_chunked {
            return Ok((Framing::Chunked, reusable));
        }
        return Ok((Framing::UntilClose, false));
    }
    match seen.length {
        // RFC 9112 §6.3 rule 5: invalid or differing values are
        // unrecoverable; the caller closes (502).
        Length::Invalid => Err(HeadError::ContentLength),
        // RFC 9112 §6.3 rule 6.
        Length::Valid { value, .. } => Ok((Framing::Length(value), true)),
        // RFC 9112 §6.3 rule 8.
        Length::Absent => Ok((Framing::UntilClose, false)),
    }
}

/// The part of `buf` handed to httparse: a head must end within
/// [`MAX_HEAD_BYTES`], so looking further is wasted work.
fn window(buf: &[u8]) -> &[u8] {
    &buf[..buf.len().min(MAX_HEAD_BYTES)]
}

/// The verdict on a buffer whose [`window`] holds no complete head: every
/// byte seen belongs to the head, so a bare CR or LF in it already proves
/// the head malformed; otherwise it is partial unless it can no longer end
/// within the limit.
fn partial<T>(buf: &[u8]) -> Result<Status<T>, HeadError> {
    check_line_ends(window(buf))?;
    if buf.len() >= MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    Ok(Status::Partial)
}

/// Refuses a bare LF (a `\n` not preceded by `\r`) or a bare CR (a `\r`
/// followed by anything but `\n`) in `head`. RFC 9112 §2.2 allows a
/// recipient to accept a bare LF as a line end and httparse does; we must
/// not, since the upstream may split lines differently (smuggling). A `\r`
/// as the last byte of `head` is left for the next read to decide.
///
/// Eight bytes at a time in a `u64`: with the high bit of each CR byte and
/// of each LF byte as masks, the line ends are all CRLF exactly when the LF
/// mask is the CR mask moved up one byte (a CR in a word's last byte is
/// carried to the next word's first). A search per line end cost more than
/// the rest of the head's checks together.
fn check_line_ends(head: &[u8]) -> Result<(), HeadError> {
    use crate::words::each_equal;
    // Whether this word's LFs sit exactly one byte after its CRs; `carry`:
    // a CR ended the last word.
    let pairs = |word: [u8; 8], carry: &mut u64, valid: u64| {
        let x = u64::from_le_bytes(word);
        let (cr, lf) = (each_equal(x, b'\r'), each_equal(x, b'\n'));
        let paired = lf == ((cr << 8) | *carry) & valid;
        *carry = cr >> 56;
        paired
    };
    let mut carry = 0;
    let mut rest = head;
    while let Some(word) = rest.first_chunk::<8>() {
        // Most words of a head hold no byte below 0x0e, so neither CR nor
        // LF: nothing to pair, unless a CR ended the word before.
        let quiet = carry == 0 && crate::words::below(u64::from_le_bytes(*word), b'\r' + 1) == 0;
        if !quiet && !pairs(*word, &mut carry, u64::MAX) {
            return Err(HeadError::Malformed);
        }
        rest = &rest[8..];
    }
    if !rest.is_empty() {
        // Zero bytes past the end are neither CR nor LF; a CR in the last
        // byte points past the valid ones, and is left for the next read.
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        let valid = u64::MAX >> (64 - 8 * rest.len());
        if !pairs(word, &mut carry, valid) {
            return Err(HeadError::Malformed);
        }
    }
    Ok(())
}

/// Maps httparse's grammar errors onto ours (exhaustive on purpose: a new
/// httparse error must be placed here by hand).
fn from_httparse(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::HeaderName
        | httparse::Error::HeaderValue
        | httparse::Error::NewLine
        | httparse::Error::Status
        | httparse::Error::Token => HeadError::Malformed,
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::Version => HeadError::Version,
    }
}

/// httparse's minor version for `HTTP/1.x`; it accepts only 0 and 1.
fn version(minor: u8) -> Result<Version, HeadError> {
    match minor {
        0 => Ok(Version::Http10),
        1 => Ok(Version::Http11),
        _ => Err(HeadError::Version),
    }
}

/// Where `part`, a subslice of `buf`, sits in `buf`. Computed from the
/// pointers because httparse hands out subslices, not offsets.
fn range_of(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    debug_assert!(start + part.len() <= buf.len(), "not a subslice of buf");
    start..start + part.len()
}

fn index_fields(
    buf: &[u8],
    fields: &[httparse::Header<'_>],
    mut index: Vec<HeaderIdx>,
) -> Vec<HeaderIdx> {
    index.clear();
    index.extend(fields.iter().map(|f| HeaderIdx {
        name: range_of(buf, f.name.as_bytes()),
        value: range_of(buf, f.value),
        known: Name::of(f.name.as_bytes()),
    }));
    index
}

/// Which side of the exchange a head belongs to: requests are read
/// strictly, responses (from a configured upstream) as RFC 9110 allows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Request,
    Response,
}

/// What the `Content-Length` fields said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Length {
    #[default]
    Absent,
    /// Every field agreed on `value`; `fields` is how many there were.
    Valid { value: u64, fields: usize },
    /// A field was not a valid length, or two fields differed.
    Invalid,
}

impl Length {
    /// Folds in one field, parsed (`None` when invalid).
    fn add(self, parsed: Option<u64>) -> Length {
        match (self, parsed) {
            (Length::Invalid, _) | (_, None) => Length::Invalid,
            (Length::Absent, Some(value)) => Length::Valid { value, fields: 1 },
            (Length::Valid { value, fields }, Some(v)) if v == value => Length::Valid {
                value,
                fields: fields + 1,
            },
            (Length::Valid { .. }, Some(_)) => Length::Invalid,
        }
    }
}

/// What the `Transfer-Encoding` fields said, read as one list across all
/// fields (RFC 9110 §5.3).
#[derive(Clone, Copy, Debug, Default)]
struct Codings {
    present: bool,
    /// How many elements are `chunked`.
    chunked: usize,
    /// The final element is `chunked`.
    last_chunked: bool,
    /// An element other than `chunked` was seen (for requests, an empty
    /// element counts as one).
    other: bool,
}

/// Everything later decisions need from the fields, found in one pass.
#[derive(Debug, Default)]
struct Summary {
    host_fields: usize,
    /// Every `Host` value is valid (vacuously true without one).
    host_valid: bool,
    length: Length,
    codings: Codings,
    /// `Connection` lists `close`.
    close: bool,
    /// `Connection` lists `keep-alive`.
    keep_alive: bool,
    /// `Expect` lists `100-continue`.
    expect_continue: bool,
    content_type_fields: usize,
    /// Index of the first `Content-Type` field.
    content_type: Option<usize>,
    authorization_fields: usize,
    /// Index of the first `Authorization` field.
    authorization: Option<usize>,
    api_key_fields: usize,
    /// Index of the first `x-api-key` field.
    api_key: Option<usize>,
    /// An `Upgrade` field offers `websocket`.
    upgrade_websocket: bool,
    /// `Connection` lists `upgrade`.
    connection_upgrade: bool,
}

impl Summary {
    fn new(buf: &[u8], headers: &[HeaderIdx], role: Role) -> Summary {
        let mut seen = Summary {
            host_valid: true,
            ..Summary::default()
        };
        for (i, field) in headers.iter().enumerate() {
            let value = field.value_bytes(buf);
            match field.known {
                Name::Host => {
                    seen.host_fields += 1;
                    seen.host_valid &= is_valid_host(value);
                }
                Name::ContentLength => {
                    let parsed = match role {
                        Role::Request => parse_digits(value),
                        Role::Response => parse_length_list(value),
                    };
                    seen.length = seen.length.add(parsed);
                }
                Name::TransferEncoding => seen.codings.add(value, role),
                Name::Connection => {
                    seen.close |= has_token(value, b"close");
                    seen.keep_alive |= has_token(value, b"keep-alive");
                    seen.connection_upgrade |= has_token(value, b"upgrade");
                }
                Name::Expect => seen.expect_continue |= has_token(value, b"100-continue"),
                Name::ContentType => {
                    seen.content_type_fields += 1;
                    seen.content_type.get_or_insert(i);
                }
                Name::Authorization => {
                    seen.authorization_fields += 1;
                    seen.authorization.get_or_insert(i);
                }
                Name::XApiKey => {
                    seen.api_key_fields += 1;
                    seen.api_key.get_or_insert(i);
                }
                Name::Upgrade => seen.upgrade_websocket |= has_token(value, b"websocket"),
                _ => {}
            }
        }
        seen
    }
}

impl Codings {
    /// Folds in one `Transfer-Encoding` field.
    fn add(&mut self, value: &[u8], role: Role) {
        self.present = true;
        for coding in list_elements(value) {
            // RFC 9110 §5.6.1: a recipient ignores empty list elements; we
            // do so for responses only (requests are read strictly, see
            // `request_framing`).
            if coding.is_empty() && role == Role::Response {
                continue;
            }
            let chunked = eq_ignore_case(coding, b"chunked");
            self.chunked += usize::from(chunked);
            self.last_chunked = chunked;
            self.other |= !chunked;
        }
    }
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6) as a u64, with checked
/// arithmetic: no sign, no whitespace, no list, no overflow. (`u64::from_str`
/// would accept `+5`.)
fn parse_digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// A response `Content-Length` that may be a list of identical values
/// (`5, 5`), which RFC 9110 §8.6 lets a recipient accept as `5`.
fn parse_length_list(v: &[u8]) -> Option<u64> {
    let mut agreed = None;
    for element in list_elements(v) {
        let n = parse_digits(element)?;
        if agreed.is_some_and(|a| a != n) {
            return None;
        }
        agreed = Some(n);
    }
    agreed
}

/// What the model scanner should read, from a `Content-Type` value.
///
/// `multipart/form-data` (case-insensitive) with a non-empty `boundary`
/// parameter → [`ContentKind::Multipart`] with the boundary unquoted.
/// Everything else is [`ContentKind::Json`], including multipart with a
/// missing, empty, repeated or unparsable boundary: the JSON scanner then
/// refuses the body (400), the right answer for a body we cannot split.
fn content_kind(value: &[u8]) -> ContentKind {
    if !eq_ignore_case(media_type(value), b"multipart/form-data") {
        return ContentKind::Json;
    }
    match media_param(value, b"boundary") {
        Some(boundary) if !boundary.is_empty() => ContentKind::Multipart { boundary },
        _ => ContentKind::Json,
    }
}

/// The `type "/" subtype` of a media type (RFC 9110 §8.3.1), parameters
/// dropped, OWS trimmed.
fn media_type(value: &[u8]) -> &[u8] {
    let end = memchr::memchr(b';', value).unwrap_or(value.len());
    trim_ows(&value[..end])
}

/// The value of the media-type parameter `wanted` (name case-insensitive),
/// unquoted, per RFC 9110 §5.6.6 and §5.6.4:
///
/// ```text
/// parameters    = *( OWS ";" OWS [ parameter ] )
/// parameter     = parameter-name "=" parameter-value
/// parameter-value = ( token / quoted-string )
/// quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
/// ```
///
/// `None` when the parameter is absent, appears twice (the upstream might
/// pick the other one), or the list is malformed.
fn media_param(value: &[u8], wanted: &[u8]) -> Option<Vec<u8>> {
    let skip_ows = |mut i: usize| {
        while matches!(value.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        i
    };
    let token_end = |mut i: usize| {
        while value.get(i).is_some_and(|&b| is_tchar(b)) {
            i += 1;
        }
        i
    };
    let mut found = None;
    let mut i = memchr::memchr(b';', value)?;
    // Invariant at the top of the loop: `value[i]` is a `;`.
    while i < value.len() {
        i = skip_ows(i + 1);
        let name_end = token_end(i);
        let name = &value[i..name_end];
        i = name_end;
        if !name.is_empty() {
            if value.get(i) != Some(&b'=') {
                return None;
            }
            i += 1;
            let mut param = Vec::new();
            if value.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    match *value.get(i)? {
                        b'"' => break,
                        b'\\' => {
                            param.push(*value.get(i + 1)?);
                            i += 2;
                        }
                        b => {
                            param.push(b);
                            i += 1;
                        }
                    }
                }
                i += 1;
            } else {
                let end = token_end(i);
                param.extend_from_slice(&value[i..end]);
                i = end;
            }
            if eq_ignore_case(name, wanted) {
                if found.is_some() {
                    return None;
                }
                found = Some(param);
            }
        }
        i = skip_ows(i);
        if i < value.len() && value[i] != b';' {
            return None;
        }
    }
    found
}

#[cfg(test)]
mod tests;
