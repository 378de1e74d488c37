//! Fuzzing entry points: the harness logic behind every target in `fuzz/`,
//! kept in the crate so that `cargo test` compiles it and runs it over the
//! committed seed corpora (rustls's `internal::fuzzing` does the same).
//!
//! Each function takes the fuzzer's bytes, drives one sans-IO part of the
//! request path and asserts its documented guarantees: bounds of every
//! returned range, split-invariance of the push parsers, a differential
//! against an obvious oracle (httparse, serde_json, a reference de-chunker)
//! where one exists, and the secret and injection invariants of SPEC §2 and
//! §3.9. A failed assertion is the finding; a panic inside llmhop is one too.
//!
//! Not part of the API: hidden from the docs, no stability promised. Does
//! not own: the fuzz targets themselves (one line each, in `fuzz/`) or the
//! heap probe of [`multipart`] (a counting allocator lives in `fuzz/`).

use std::fmt::Write as _;
use std::io;
use std::ops::Range;
use std::sync::OnceLock;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::config::{self, SecretMode};
use crate::http::body::{BodyError, Decoder, MAX_CHUNK_EXT_BYTES};
use crate::http::head::{
    self, ContentKind, Framing, RequestHead, Status, MAX_HEADERS, MAX_HEAD_BYTES,
};
use crate::http::rewrite::{self, ClientSide, HOP_BY_HOP};
use crate::http::{is_safe_value, is_token, Version};
use crate::route::{self, Scheme, Target, Upstream, Url};
use crate::scan::multipart::{MultipartScanner, MAX_BOUNDARY_BYTES, MAX_PART_HEAD_BYTES};
use crate::scan::{json::JsonScanner, Scan, ScanError, MAX_MODEL_BYTES};
use crate::secrets::{self, Lookup, Secret};

// ---------------------------------------------------------------------------
// Shared helpers.

/// Cut points for split-invariance checks: a tiny xorshift seeded by the
/// input, so a crash reproduces from its bytes alone.
struct Cuts(u64);

impl Cuts {
    fn new(seed: &[u8]) -> Cuts {
        let s = seed.iter().fold(0x9e37_79b9_7f4a_7c15u64, |s, &b| {
            (s ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Cuts(s | 1)
    }

    /// The next piece length in `1..=max` (`max >= 1`).
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // Mostly short pieces, now and then a long one.
        let max = if self.0 % 4 == 0 { max } else { max.min(8) };
        1 + (self.0 >> 8) as usize % max
    }

    /// `input` cut into pieces.
    fn split<'a>(&mut self, input: &'a [u8]) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let n = self.next(rest.len());
            pieces.push(&rest[..n]);
            rest = &rest[n..];
        }
        pieces
    }
}

fn in_bounds(r: &Range<usize>, len: usize) -> bool {
    r.start <= r.end && r.end <= len
}

/// Every CR is followed by LF and every LF preceded by CR: no bare line end
/// that an upstream could read as the end of a field (SPEC §3.4).
fn crlf_only(head: &[u8]) -> bool {
    head.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => head.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && head[i - 1] == b'\r',
        _ => true,
    })
}

/// The field lines of a head (between the start line and the empty line),
/// split on CRLF; `None` when the head does not end in CRLF CRLF.
fn field_lines(head: &[u8]) -> Option<Vec<&[u8]>> {
    let body = head.strip_suffix(b"\r\n\r\n")?;
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut rest = body;
    while let Some(i) = memchr::memmem::find(rest, b"\r\n") {
        lines.push(&rest[..i]);
        rest = &rest[i + 2..];
    }
    lines.push(rest);
    // Drop the start line and any empty lines httparse skipped before it.
    let start = lines.iter().position(|l| !l.is_empty())?;
    Some(lines.split_off(start + 1))
}

/// Lower-cased `(name, value)` of every field line, value OWS-trimmed.
fn fields(head: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    field_lines(head)
        .unwrap_or_default()
        .into_iter()
        .map(|line| {
            let colon = memchr::memchr(b':', line).unwrap_or(line.len());
            let value = line.get(colon + 1..).unwrap_or_default();
            (
                line[..colon].to_ascii_lowercase(),
                crate::http::trim_ows(value).to_vec(),
            )
        })
        .collect()
}

fn count(fields: &[(Vec<u8>, Vec<u8>)], name: &[u8]) -> usize {
    fields.iter().filter(|(n, _)| n == name).count()
}

// ---------------------------------------------------------------------------
// Heads.

/// Checks what every complete head shares: the buffer bounds, CRLF-only
/// line ends, the final empty line, no obs-fold, token names, safe values.
fn check_head_common(buf: &[u8], len: usize, headers: &[head::HeaderIdx]) {
    assert!(
        len > 0 && len <= buf.len(),
        "head.len {len} outside 1..={}",
        buf.len()
    );
    assert!(
        len <= MAX_HEAD_BYTES,
        "complete head longer than MAX_HEAD_BYTES"
    );
    let h = &buf[..len];
    assert!(
        h.ends_with(b"\r\n\r\n"),
        "complete head does not end in CRLF CRLF"
    );
    assert!(crlf_only(h), "complete head has a bare CR or LF");
    assert!(headers.len() <= MAX_HEADERS);
    for f in headers {
        assert!(
            in_bounds(&f.name, len) && in_bounds(&f.value, len),
            "field outside the head"
        );
        assert!(is_token(f.name_bytes(buf)), "field name is not a token");
        assert!(
            is_safe_value(f.value_bytes(buf)),
            "field value holds CR, LF or NUL"
        );
        // obs-fold: a field line may not start with whitespace.
        assert!(f.name.start >= 2 && &buf[f.name.start - 2..f.name.start] == b"\r\n");
    }
}

/// A few strict prefixes of a complete head of `len` bytes: every one near
/// the end and a spread over the rest, all of them for short heads.
fn prefixes(len: usize) -> Vec<usize> {
    if len <= 256 {
        return (0..len).collect();
    }
    let mut ks: Vec<usize> = (len - 8..len).collect();
    ks.extend((0..32).map(|i| i * len / 32));
    ks
}

/// Field-by-field equality of two request heads (`RequestHead` has no
/// `PartialEq`: the crate never needs one).
fn same_request(a: &RequestHead, b: &RequestHead) -> bool {
    a.len == b.len
        && a.method == b.method
        && a.path == b.path
        && a.query == b.query
        && a.version == b.version
        && a.headers == b.headers
        && a.framing == b.framing
        && a.keep_alive == b.keep_alive
        && a.expect_continue == b.expect_continue
        && a.content == b.content
        && a.authorization == b.authorization
}

/// `parse_request` on arbitrary bytes: no panic; every range within the
/// head; a complete head is CRLF-only, token-named, with exactly one `Host`
/// in HTTP/1.1; the framing decision agrees with the fields it came from
/// (SPEC §3.4: never both, never a doubtful length); the verdict does not
/// depend on bytes after the head; no strict prefix is complete.
pub fn request_head(data: &[u8]) {
    let head = match head::parse_request(data) {
        Ok(Status::Complete(head)) => head,
        Ok(Status::Partial) => {
            assert!(
                data.len() < MAX_HEAD_BYTES,
                "Partial at or past MAX_HEAD_BYTES"
            );
            return;
        }
        Err(_) => return,
    };
    let len = head.len;
    check_head_common(data, len, &head.headers);
    for r in [&head.method, &head.path] {
        assert!(
            in_bounds(r, len) && !r.is_empty(),
            "method or path empty or outside the head"
        );
    }
    if let Some(q) = &head.query {
        assert!(in_bounds(q, len));
        assert_eq!(data[q.start - 1], b'?');
    }
    assert!(is_token(&data[head.method.clone()]));
    assert_eq!(data[head.path.start], b'/', "path does not start with /");
    let target = data[head.path.clone()]
        .iter()
        .chain(head.query.iter().flat_map(|q| &data[q.clone()]));
    for &b in target {
        assert!(
            b.is_ascii_graphic() && b != b'#',
            "target byte {b:#x} forwarded"
        );
    }
    assert!(!head.expect_continue || head.version == Version::Http11);
    if let Some(i) = head.authorization {
        assert!(head.headers[i]
            .name_bytes(data)
            .eq_ignore_ascii_case(b"authorization"));
    }
    if let ContentKind::Multipart { boundary } = &head.content {
        assert!(!boundary.is_empty());
    }

    let f = fields(&data[..len]);
    assert_eq!(
        f.len(),
        head.headers.len(),
        "field lines and parsed fields differ"
    );
    let hosts = count(&f, b"host");
    match head.version {
        Version::Http11 => assert_eq!(hosts, 1, "HTTP/1.1 request without exactly one Host"),
        Version::Http10 => assert!(hosts <= 1),
    }
    let lengths: Vec<&Vec<u8>> = f
        .iter()
        .filter(|(n, _)| n == b"content-length")
        .map(|(_, v)| v)
        .collect();
    let codings = count(&f, b"transfer-encoding");
    match head.framing {
        Err(_) => assert!(
            !lengths.is_empty() || codings > 0,
            "framing refused without a framing field"
        ),
        Ok(Framing::Empty) => assert!(lengths.is_empty() && codings == 0),
        Ok(Framing::Length(n)) => {
            assert_eq!(codings, 0, "Content-Length framing with Transfer-Encoding");
            assert_eq!(
                lengths.len(),
                1,
                "Content-Length framing without exactly one field"
            );
            assert!(lengths[0].iter().all(u8::is_ascii_digit));
            let digits = std::str::from_utf8(lengths[0]).unwrap_or("");
            assert_eq!(digits.parse::<u64>().ok(), Some(n));
        }
        Ok(Framing::Chunked) => {
            assert!(
                lengths.is_empty() && codings >= 1,
                "chunked with Content-Length"
            );
            assert_eq!(head.version, Version::Http11, "chunked in HTTP/1.0");
            let te: Vec<u8> = f
                .iter()
                .filter(|(n, _)| n == b"transfer-encoding")
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
                .join(&b","[..]);
            let te = te.to_ascii_lowercase();
            let codings: Vec<&[u8]> = crate::http::list_elements(&te).collect();
            assert_eq!(codings, [b"chunked"], "chunked framing from {te:?}");
        }
        Ok(Framing::UntilClose) => panic!("a request framed until close"),
    }

    // Bytes after the head never change the verdict.
    match head::parse_request(&data[..len]) {
        Ok(Status::Complete(alone)) => assert!(
            same_request(&head, &alone),
            "trailing bytes changed the head"
        ),
        other => panic!("head alone parsed as {other:?}"),
    }
    // Never complete before its end.
    for k in prefixes(len) {
        if let Ok(Status::Complete(h)) = head::parse_request(&data[..k]) {
            panic!(
                "prefix of {k} bytes complete with len {} (full head {len})",
                h.len
            );
        }
    }
    // httparse agrees on where the head ends.
    let mut fields_buf = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields_buf);
    assert_eq!(
        req.parse(&data[..len]).ok(),
        Some(httparse::Status::Complete(len))
    );
}

/// `parse_response` on arbitrary bytes (first byte: whether the request
/// was `HEAD`): the common head checks, status 100..=599, the framing
/// rules of RFC 9112 §6.3 for responses, keep-alive never with a
/// close-delimited body, no strict prefix complete.
pub fn response_head(data: &[u8]) {
    let Some((&flags, buf)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let head = match head::parse_response(buf, head_request) {
        Ok(Status::Complete(head)) => head,
        Ok(Status::Partial) => {
            assert!(buf.len() < MAX_HEAD_BYTES);
            return;
        }
        Err(_) => return,
    };
    let len = head.len;
    check_head_common(buf, len, &head.headers);
    assert!((100..=599).contains(&head.status));
    let no_body = head_request
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304;
    let f = fields(&buf[..len]);
    assert_eq!(f.len(), head.headers.len());
    let codings = count(&f, b"transfer-encoding");
    match head.framing {
        Framing::Empty => assert!(no_body && head.status != 101),
        Framing::UntilClose => assert!(!head.keep_alive, "keep-alive with a close-delimited body"),
        Framing::Chunked => {
            assert!(!no_body && codings >= 1 && head.version == Version::Http11);
            if count(&f, b"content-length") > 0 {
                assert!(!head.keep_alive, "TE and CL but connection reusable");
            }
        }
        Framing::Length(_) => assert!(!no_body && codings == 0),
    }
    if head.status == 101 {
        assert_eq!(head.framing, Framing::UntilClose);
    }
    match head::parse_response(&buf[..len], head_request) {
        Ok(Status::Complete(alone)) => {
            assert_eq!(
                (
                    alone.len,
                    alone.status,
                    alone.framing,
                    alone.keep_alive,
                    alone.event_stream,
                    &alone.headers
                ),
                (
                    head.len,
                    head.status,
                    head.framing,
                    head.keep_alive,
                    head.event_stream,
                    &head.headers
                )
            );
        }
        other => panic!("head alone parsed as {other:?}"),
    }
    for k in prefixes(len) {
        if let Ok(Status::Complete(h)) = head::parse_response(&buf[..k], head_request) {
            panic!(
                "prefix of {k} bytes complete with len {} (full head {len})",
                h.len
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Body decoder.

/// What feeding a whole body did.
#[derive(Debug, PartialEq, Eq)]
struct BodyOutcome {
    payload: Vec<u8>,
    consumed: usize,
    done: bool,
    error: Option<BodyError>,
}

/// Feeds `pieces` in order the way `conn` does (loop on each piece until
/// it is used up, the body is done or an error), checking the per-call
/// guarantees of [`Decoder::decode`].
fn decode_pieces(framing: Framing, cap: Option<u64>, pieces: &[&[u8]]) -> BodyOutcome {
    let mut decoder = Decoder::new(framing, cap);
    let mut out = BodyOutcome {
        payload: Vec::new(),
        consumed: 0,
        done: decoder.is_done(),
        error: None,
    };
    'pieces: for piece in pieces {
        let mut rest = *piece;
        while !rest.is_empty() && !out.done {
            match decoder.decode(rest) {
                Ok(p) => {
                    assert!(p.consumed <= rest.len(), "consumed past the input");
                    assert!(
                        in_bounds(&p.payload, p.consumed),
                        "payload outside consumed"
                    );
                    assert!(p.consumed > 0 || p.done, "no progress on non-empty input");
                    assert_eq!(p.done, decoder.is_done());
                    out.payload.extend_from_slice(&rest[p.payload.clone()]);
                    out.consumed += p.consumed;
                    out.done = p.done;
                    rest = &rest[p.consumed..];
                }
                Err(e) => {
                    assert_eq!(decoder.decode(b"x"), Err(e), "error not sticky");
                    assert_eq!(decoder.eof(), Err(e));
                    out.error = Some(e);
                    break 'pieces;
                }
            }
        }
    }
    if out.done {
        let again = decoder.decode(b"more").expect("decode after done failed");
        assert_eq!(
            (again.consumed, again.done),
            (0, true),
            "consumed after done"
        );
        assert!(decoder.eof().is_ok());
    }
    if let Some(cap) = cap {
        assert!(out.payload.len() as u64 <= cap, "payload over the cap");
    }
    out
}

/// A strict reference de-chunker for the RFC 9112 §7.1 grammar as llmhop
/// reads it (sizes of at most 16 hex digits, optional BWS before `;`
/// extensions, token-named trailer fields), written the obvious
/// non-streaming way: `Some((payload, consumed))` for a complete body at
/// the start of `input`, `None` otherwise.
fn reference_dechunk(input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let vchar = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80;
    let mut i = 0;
    let mut payload = Vec::new();
    loop {
        let digits = input[i..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits == 0 || digits > 16 {
            return None;
        }
        let size =
            u64::from_str_radix(std::str::from_utf8(&input[i..i + digits]).ok()?, 16).ok()?;
        i += digits;
        let ws = input[i..]
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        if input.get(i + ws) == Some(&b';') {
            i += ws;
            i += input[i..].iter().take_while(|&&b| vchar(b)).count();
        }
        if input.get(i..i + 2)? != b"\r\n" {
            return None;
        }
        i += 2;
        if size == 0 {
            break;
        }
        let end = i.checked_add(usize::try_from(size).ok()?)?;
        payload.extend_from_slice(input.get(i..end)?);
        i = end;
        if input.get(i..i + 2)? != b"\r\n" {
            return None;
        }
        i += 2;
    }
    loop {
        if input.get(i..i + 2)? == b"\r\n" {
            return Some((payload, i + 2));
        }
        let name = input[i..]
            .iter()
            .take_while(|&&b| crate::http::is_tchar(b))
            .count();
        if name == 0 || input.get(i + name) != Some(&b':') {
            return None;
        }
        i += name + 1;
        i += input[i..].iter().take_while(|&&b| vchar(b)).count();
        if input.get(i..i + 2)? != b"\r\n" {
            return None;
        }
        i += 2;
    }
}

/// `Decoder` on arbitrary bytes. The first byte picks the framing, the
/// next ones a length and a cap, the rest is the wire. The same wire is fed
/// whole, in random pieces and byte by byte: payload, consumed, done and
/// error must agree; the payload stays within the cap; and the result
/// matches the obvious oracle (a prefix for Content-Length, the reference
/// de-chunker for chunked).
pub fn body_decoder(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let (ctl, wire) = data.split_at(4);
    let n = u64::from(u16::from_le_bytes([ctl[1], ctl[2]]));
    let framing = match ctl[0] % 5 {
        0 => Framing::Length(n),
        1 | 2 => Framing::Chunked,
        3 => Framing::UntilClose,
        _ => Framing::Empty,
    };
    let cap = match ctl[3] {
        0..=63 => None,
        64..=127 => Some(u64::from(ctl[3]) * 8),
        128..=191 => Some(u64::MAX),
        c => Some(u64::from(c - 192)),
    };
    let whole = decode_pieces(framing, cap, &[wire]);
    let pieces = Cuts::new(data).split(wire);
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    for (how, split) in [("split", pieces), ("byte-wise", bytes)] {
        let other = decode_pieces(framing, cap, &split);
        match whole.error {
            None => assert_eq!(other, whole, "{how} feed changed the outcome"),
            // Wire bytes before the failing one are consumed by some splits
            // and not others; the payload and the error are the same. (A
            // capped close-delimited body, which llmhop never builds, hands
            // out what arrived before the cap was passed.)
            Some(e) => {
                assert_eq!(other.error, Some(e), "{how} feed changed the error");
                if framing != Framing::UntilClose {
                    assert_eq!(
                        other.payload, whole.payload,
                        "{how} feed changed the payload"
                    );
                }
            }
        }
    }

    let within_cap = |len: u64| cap.is_none_or(|c| len <= c);
    match framing {
        Framing::Empty => assert!(whole.done && whole.consumed == 0),
        _ if wire.is_empty() => assert_eq!(whole.payload.len(), 0),
        Framing::Length(n) if !within_cap(n) => assert_eq!(whole.error, Some(BodyError::TooLarge)),
        Framing::Length(n) => {
            let take = wire.len().min(n as usize);
            assert_eq!(whole.payload, &wire[..take]);
            assert_eq!(whole.done, take as u64 == n);
        }
        Framing::UntilClose if within_cap(wire.len() as u64) => {
            assert_eq!((whole.payload.as_slice(), whole.done), (wire, false));
        }
        Framing::UntilClose => assert_eq!(whole.error, Some(BodyError::TooLarge)),
        Framing::Chunked => {
            let reference = reference_dechunk(wire);
            if whole.done {
                assert_eq!(
                    reference,
                    Some((whole.payload.clone(), whole.consumed)),
                    "decoder accepted what the reference refuses"
                );
            } else if let Some((payload, _)) = reference {
                // The reference ignores the extension bound; the input is
                // too short to reach it unless it is this long.
                if within_cap(payload.len() as u64) && wire.len() < MAX_CHUNK_EXT_BYTES {
                    panic!("decoder refused a valid chunked body: {whole:?}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Model scanners.

/// The answers a scanner gave, `NeedMore` left out, up to and including the
/// first `Invalid` (which is sticky), `finish` included.
fn json_events(pieces: &[&[u8]]) -> Vec<Scan> {
    let mut scanner = JsonScanner::new();
    let mut events = Vec::new();
    for piece in pieces {
        match scanner.feed(piece) {
            Scan::NeedMore => {}
            Scan::Invalid(e) => {
                events.push(Scan::Invalid(e));
                assert_eq!(scanner.feed(b"{"), Scan::Invalid(e), "Invalid not sticky");
                assert_eq!(scanner.finish(), Scan::Invalid(e), "Invalid not sticky");
                return events;
            }
            found => events.push(found),
        }
    }
    match scanner.finish() {
        Scan::NeedMore => {}
        other => events.push(other),
    }
    events
}

/// How many top-level keys of a JSON object equal `model` after
/// unescaping (serde_json's `Value` keeps only the last of a repeated key).
struct ModelKeys(usize);

impl<'de> Deserialize<'de> for ModelKeys {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Count;
        impl<'de> Visitor<'de> for Count {
            type Value = ModelKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ModelKeys, A::Error> {
                let mut n = 0;
                while let Some(key) = map.next_key::<String>()? {
                    n += usize::from(key == "model");
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(ModelKeys(n))
            }
        }
        de.deserialize_map(Count)
    }
}

/// What SPEC §3.7 says the scanner must answer for a document serde_json
/// parses as `value` with `model_keys` top-level `model` keys.
fn expected_json_events(value: &serde_json::Value, model_keys: usize) -> Option<Vec<Scan>> {
    let Some(object) = value.as_object() else {
        return Some(vec![Scan::Invalid(ScanError::Syntax)]);
    };
    if model_keys > 1 {
        return None; // checked separately: it must end Invalid
    }
    Some(match object.get("model") {
        None => vec![Scan::Invalid(ScanError::Missing)],
        Some(serde_json::Value::String(s)) if s.len() <= MAX_MODEL_BYTES => {
            vec![Scan::Found(s.clone())]
        }
        Some(_) => vec![Scan::Invalid(ScanError::NotString)],
    })
}

/// `JsonScanner` on arbitrary bytes (the first byte seeds the cut points),
/// differential against `serde_json::from_slice::<Value>`:
///
/// - the answers are the same for the whole body, random pieces and single
///   bytes;
/// - where serde_json parses the body and it has at most one top-level
///   `model`, the answer is what SPEC §3.7 derives from `value["model"]`;
///   with two or more, the scanner refuses the body;
/// - where serde_json refuses the body, the scanner may accept it only for
///   the documented reasons (invalid UTF-8 outside the model, nesting deeper
///   than serde_json's 128, a number outside `f64`).
pub fn model_json(data: &[u8]) {
    let Some((_, body)) = data.split_first() else {
        return;
    };
    let whole = json_events(&[body]);
    let pieces = Cuts::new(data).split(body);
    assert_eq!(json_events(&pieces), whole, "split changed the answers");
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(
        json_events(&bytes),
        whole,
        "byte-wise feed changed the answers"
    );
    let found = whole.iter().filter(|e| matches!(e, Scan::Found(_))).count();
    assert!(found <= 1, "Found more than once: {whole:?}");

    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => {
            let keys = serde_json::from_slice::<ModelKeys>(body).map_or(0, |k| k.0);
            match expected_json_events(&value, keys) {
                Some(want) => assert_eq!(whole, want, "scanner and serde_json disagree"),
                None => assert!(
                    matches!(whole.last(), Some(Scan::Invalid(_))),
                    "duplicate top-level model accepted: {whole:?}"
                ),
            }
        }
        Err(err) => {
            // A document accepted whole: a model found and finish clean, or
            // a complete object without one.
            let accepted = matches!(
                whole.as_slice(),
                [Scan::Found(_)] | [Scan::Invalid(ScanError::Missing)]
            );
            if accepted
                && !matches!(whole.as_slice(), [Scan::Invalid(ScanError::Missing)] if body.iter().all(u8::is_ascii_whitespace))
            {
                let msg = err.to_string();
                let allowed = std::str::from_utf8(body).is_err()
                    || msg.contains("recursion limit exceeded")
                    || msg.contains("number out of range");
                assert!(
                    allowed,
                    "scanner accepted what serde_json refuses ({msg}): {whole:?}"
                );
            }
        }
    }
}

/// Most heap the multipart scanner may hold at any time, in bytes,
/// whatever the body's size: its head or model buffer (bounded by
/// [`MAX_PART_HEAD_BYTES`] and [`MAX_MODEL_BYTES`] plus a delimiter, and up
/// to twice that in `Vec` capacity), the returned model, the delimiter and
/// its finder, plus a fixed 4 KiB for the harness's own bookkeeping.
pub const MULTIPART_HEAP_BOUND: usize =
    2 * (MAX_PART_HEAD_BYTES + MAX_MODEL_BYTES + 2 * MAX_BOUNDARY_BYTES) + 4096;

/// Longest body the multipart harness builds by repeating its input, in bytes.
const MULTIPART_MAX_BODY: usize = 1 << 20;

/// Boundaries real clients send (the OpenAI SDK, curl, browsers) and a few
/// edge cases; the first byte of the input picks one, or takes the boundary
/// from the input.
const BOUNDARIES: &[&[u8]] = &[
    b"xyz",
    b"------------------------d74496d66958873e",
    b"----WebKitFormBoundary7MA4YWxkTrZu0gW",
    b"a",
    b"boundary with spaces",
    b"0123456789012345678901234567890123456789012345678901234567890123456789",
];

/// The scanner's answers, as [`json_events`]; `heap` is polled after every
/// feed and must stay within [`MULTIPART_HEAP_BOUND`] of `baseline`.
fn multipart_events(boundary: &[u8], pieces: &[&[u8]], heap: &dyn Fn() -> usize) -> Vec<Scan> {
    let baseline = heap();
    let check = || {
        let used = heap().saturating_sub(baseline);
        assert!(
            used <= MULTIPART_HEAP_BOUND,
            "scanner holds {used} bytes > {MULTIPART_HEAP_BOUND}"
        );
    };
    let mut events = Vec::with_capacity(4);
    let mut scanner = MultipartScanner::new(boundary);
    for piece in pieces {
        let answer = scanner.feed(piece);
        check();
        match answer {
            Scan::NeedMore => {}
            Scan::Invalid(e) => {
                events.push(Scan::Invalid(e));
                assert_eq!(scanner.finish(), Scan::Invalid(e), "Invalid not sticky");
                return events;
            }
            found => events.push(found),
        }
    }
    match scanner.finish() {
        Scan::NeedMore => {}
        other => events.push(other),
    }
    check();
    events
}

/// `MultipartScanner` on arbitrary bytes: byte 0 picks the boundary, byte
/// 1 how many times the rest is repeated to make the body (up to 1 MiB, so
/// that a short input exercises a long audio part). No panic; the same
/// answers for the whole body, random pieces and (for short bodies) single
/// bytes; `Found` at most once, and only with a value of at most
/// [`MAX_MODEL_BYTES`]; the scanner's heap, as `heap` reports the process's
/// live allocated bytes, never above [`MULTIPART_HEAP_BOUND`] (`heap` may
/// return a constant where no counting allocator is installed).
pub fn multipart(data: &[u8], heap: &dyn Fn() -> usize) {
    let Some((&[pick, reps], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (boundary, part) = match BOUNDARIES.get(usize::from(pick) % 16) {
        Some(b) => (b.to_vec(), rest),
        None => {
            let len = (usize::from(pick) % (MAX_BOUNDARY_BYTES + 2)).min(rest.len());
            (rest[..len].to_vec(), &rest[len..])
        }
    };
    let reps = 1usize << (reps % 12);
    let body = part.repeat(reps.min(MULTIPART_MAX_BODY / part.len().max(1)).max(1));

    let whole = multipart_events(&boundary, &[&body], heap);
    let pieces = Cuts::new(data).split(&body);
    assert_eq!(
        multipart_events(&boundary, &pieces, heap),
        whole,
        "split changed the answers"
    );
    if body.len() <= 16 * 1024 {
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(
            multipart_events(&boundary, &bytes, heap),
            whole,
            "byte-wise feed changed the answers"
        );
    }
    let found: Vec<&String> = whole
        .iter()
        .filter_map(|e| match e {
            Scan::Found(m) => Some(m),
            _ => None,
        })
        .collect();
    assert!(found.len() <= 1, "Found more than once: {whole:?}");
    for m in found {
        assert!(m.len() <= MAX_MODEL_BYTES);
    }
}

// ---------------------------------------------------------------------------
// Rewrite.

/// A configured header value the rewrite harness sets; must come out once,
/// unchanged.
const REWRITE_SECRET: &str = "Bearer sk-fuzz-configured-0123456789";

/// The fixed upstreams the rewrite harness forwards to, built the way the
/// config builds them (through [`route::Table::new`]).
fn upstreams() -> &'static [std::sync::Arc<Upstream>] {
    static TABLE: OnceLock<Vec<std::sync::Arc<Upstream>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let url = |scheme, host: &str, port, prefix: &str| Url {
            scheme,
            host: host.into(),
            port,
            prefix: prefix.into(),
        };
        let targets = vec![
            Target {
                model: "plain".into(),
                url: url(Scheme::Http, "localhost", 30000, ""),
                headers: vec![],
                listed: true,
            },
            Target {
                model: "keyed".into(),
                url: url(Scheme::Https, "api.openai.com", 443, "/api"),
                headers: vec![
                    ("Authorization".into(), Secret::new(REWRITE_SECRET.into())),
                    ("X-Api-Key".into(), Secret::new("k-0".into())),
                ],
                listed: false,
            },
            Target {
                model: "v6".into(),
                url: url(Scheme::Http, "::1", 8000, "/v1/prefix"),
                headers: vec![],
                listed: true,
            },
            Target {
                model: "xff".into(),
                url: url(Scheme::Http, "10.0.0.7", 80, ""),
                headers: vec![("X-Forwarded-For".into(), Secret::new("203.0.113.9".into()))],
                listed: true,
            },
        ];
        let table = route::Table::new(targets);
        table.upstreams().cloned().collect()
    })
}

/// Lower-cased options named by the `Connection` fields among `f`.
fn connection_options(f: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    f.iter()
        .filter(|(n, _)| n == b"connection")
        .flat_map(|(_, v)| crate::http::list_elements(v).map(|e| e.to_ascii_lowercase()))
        .filter(|e| !e.is_empty())
        .collect()
}

/// Checks the no-injection invariant of an output head: it re-parses with
/// httparse as one complete message ending exactly at its end, lines are
/// CRLF-only, and no field value holds CR, LF or NUL.
fn check_written_head(out: &[u8], request: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    assert!(crlf_only(out), "written head has a bare CR or LF");
    let mut buf = vec![httparse::EMPTY_HEADER; MAX_HEADERS * 2];
    let parsed = if request {
        httparse::Request::new(&mut buf).parse(out)
    } else {
        httparse::Response::new(&mut buf).parse(out)
    };
    assert_eq!(
        parsed,
        Ok(httparse::Status::Complete(out.len())),
        "written head does not re-parse: {:?}",
        String::from_utf8_lossy(out)
    );
    let f = fields(out);
    for (name, value) in &f {
        assert!(
            is_token(name) && is_safe_value(value),
            "bad field {name:?}: {value:?}"
        );
    }
    f
}

/// `rewrite::request_head` / `rewrite::response_head` on a parsed head.
/// Byte 0 picks request or response side, the upstream, `strip_auth`, the
/// client address and, for responses, the client side; the rest is the
/// head. The written head re-parses with httparse and with llmhop's own
/// parser to the same framing; it carries no hop-by-hop field, no field a
/// `Connection` option named, exactly one `Host` equal to the upstream's
/// authority, every configured header once, and `X-Forwarded-For` ending in
/// the client address.
pub fn rewrite(data: &[u8]) {
    let Some((&ctl, buf)) = data.split_first() else {
        return;
    };
    if ctl & 1 == 0 {
        rewrite_request(ctl, buf);
    } else {
        rewrite_response(ctl, buf);
    }
}

fn rewrite_request(ctl: u8, buf: &[u8]) {
    // A head whose framing is refused is never forwarded.
    let Ok(Status::Complete(head)) = head::parse_request(buf) else {
        return;
    };
    if head.framing.is_err() {
        return;
    }
    let ups = upstreams();
    let up = &ups[usize::from(ctl >> 1) % ups.len()];
    let strip_auth = ctl & 0x10 != 0;
    let client = if ctl & 0x20 != 0 {
        "2001:db8::42"
    } else {
        "192.0.2.1"
    };
    let fwd = rewrite::Forward {
        path: &buf[head.path.clone()],
        client: client.as_bytes(),
        strip_auth,
    };
    let mut out = b"leftover".to_vec();
    rewrite::request_head(buf, &head, up, &fwd, &mut out);
    let out = out
        .strip_prefix(b"leftover")
        .expect("request_head touched bytes before its own");
    let f = check_written_head(out, true);
    let client_fields = fields(&buf[..head.len]);

    // Request line: METHOD <prefix><path>[?query] HTTP/1.1.
    let mut line = buf[head.method.clone()].to_vec();
    line.push(b' ');
    line.extend_from_slice(up.url.prefix.as_bytes());
    line.extend_from_slice(&buf[head.path.clone()]);
    if let Some(q) = &head.query {
        line.push(b'?');
        line.extend_from_slice(&buf[q.clone()]);
    }
    line.extend_from_slice(b" HTTP/1.1\r\n");
    assert!(
        out.starts_with(&line),
        "request line {:?}",
        String::from_utf8_lossy(out)
    );

    // Hop-by-hop and Connection-named fields are gone (RFC 9110 §7.6.1).
    let named = connection_options(&client_fields);
    let framing_fields: &[&[u8]] = &[b"content-length", b"transfer-encoding", b"host"];
    for (name, value) in &f {
        // An upgrade request is tunnelled: its `Upgrade` goes on, under
        // llmhop's own `Connection: upgrade` (RFC 9110 §7.8).
        if head.upgrade && name == b"upgrade" {
            continue;
        }
        if head.upgrade && name == b"connection" {
            assert_eq!(
                value, b"upgrade",
                "upgrade forwarded with Connection {value:?}"
            );
            continue;
        }
        assert!(
            !HOP_BY_HOP.contains(&name.as_slice()),
            "hop-by-hop {name:?} forwarded"
        );
        let configured = up.header_names.contains(name) || name == b"x-forwarded-for";
        assert!(
            !named.contains(name) || framing_fields.contains(&name.as_slice()) || configured,
            "Connection-named {name:?} forwarded"
        );
        if strip_auth && (name == b"authorization" || name == b"x-api-key") {
            assert!(
                up.header_names.contains(name),
                "client {name:?} forwarded with auth on"
            );
        }
    }
    // Host: exactly one, the upstream's authority.
    let hosts: Vec<&Vec<u8>> = f
        .iter()
        .filter(|(n, _)| n == b"host")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        hosts,
        [up.authority.as_bytes()],
        "Host is not the upstream authority"
    );
    // Configured headers: each exactly once, with its value.
    for (name, line) in up
        .header_names
        .iter()
        .zip(up.header_block.split(|&b| b == b'\n'))
    {
        let values: Vec<&Vec<u8>> = f
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = memchr::memchr(b':', line).unwrap_or(line.len());
        let want = crate::http::trim_ows(line.get(colon + 1..).unwrap_or_default());
        assert_eq!(values, [want], "configured {name:?} not set exactly once");
    }
    // X-Forwarded-For ends with the client address (SPEC §3.9), unless the
    // model configures its own.
    if !up.header_names.iter().any(|n| n == b"x-forwarded-for") {
        let xff: Vec<&Vec<u8>> = f
            .iter()
            .filter(|(n, _)| n == b"x-forwarded-for")
            .map(|(_, v)| v)
            .collect();
        let last = xff.last().map(|v| v.as_slice()).unwrap_or_default();
        assert!(
            last.ends_with(client.as_bytes()),
            "X-Forwarded-For does not end with the client address: {xff:?}"
        );
    }
    // The upstream frames the body exactly as llmhop did (no smuggling).
    if out.len() < MAX_HEAD_BYTES && f.len() <= MAX_HEADERS {
        match head::parse_request(out) {
            Ok(Status::Complete(again)) => {
                assert_eq!(again.len, out.len());
                assert_eq!(
                    again.framing, head.framing,
                    "upstream would frame the body differently"
                );
                assert_eq!(
                    again.content, head.content,
                    "upstream would read another body kind"
                );
                assert_eq!(again.version, Version::Http11);
            }
            other => panic!("written head refused by parse_request: {other:?}"),
        }
    }
}

fn rewrite_response(ctl: u8, buf: &[u8]) {
    let head_request = ctl & 2 != 0;
    let Ok(Status::Complete(head)) = head::parse_response(buf, head_request) else {
        return;
    };
    let version = if ctl & 4 != 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    // As `conn` decides it: de-chunk for HTTP/1.0 clients, then close.
    let dechunk = version == Version::Http10 && head.framing == Framing::Chunked;
    let close = ctl & 8 != 0 || head.framing == Framing::UntilClose || dechunk;
    // A 101 is relayed only to a client that asked to upgrade.
    let upgrade = head.status == 101;
    let client = ClientSide {
        version,
        close,
        dechunk,
        upgrade,
    };
    let mut out = Vec::new();
    rewrite::response_head(buf, &head, client, &mut out);
    let f = check_written_head(&out, false);
    let upstream_fields = fields(&buf[..head.len]);
    let named = connection_options(&upstream_fields);

    assert!(out.starts_with(format!("HTTP/1.1 {:03}", head.status).as_bytes()));
    for (name, value) in &f {
        if upgrade && name == b"upgrade" {
            continue;
        }
        if name == b"connection" {
            let want: &[u8] = match (upgrade, close) {
                (true, _) => b"upgrade",
                (false, true) => b"close",
                (false, false) => b"keep-alive",
            };
            assert_eq!(value, want, "Connection written as {value:?}");
            continue;
        }
        assert!(
            !HOP_BY_HOP.contains(&name.as_slice()),
            "hop-by-hop {name:?} relayed"
        );
        // As on the request side, a `Connection` option never removes a
        // framing field or `Host` (meaningless in a response, harmless).
        let never_dropped: &[&[u8]] = &[b"content-length", b"transfer-encoding", b"host"];
        assert!(
            !named.contains(name) || never_dropped.contains(&name.as_slice()),
            "Connection-named {name:?} relayed"
        );
    }
    assert!(count(&f, b"connection") <= 1);
    if head.event_stream {
        assert!(
            count(&f, b"x-accel-buffering") >= 1,
            "event stream without X-Accel-Buffering"
        );
    }
    // RFC 9112 §6.2 / §6.3 rule 3: never both framing fields downstream.
    assert!(
        count(&f, b"content-length") == 0 || count(&f, b"transfer-encoding") == 0,
        "relayed head has both Content-Length and Transfer-Encoding"
    );
    // The client frames the relayed body as llmhop will send it.
    if out.len() < MAX_HEAD_BYTES && f.len() <= MAX_HEADERS {
        match head::parse_response(&out, head_request) {
            Ok(Status::Complete(again)) => {
                let want = match head.framing {
                    Framing::Chunked if dechunk => Framing::UntilClose,
                    other => other,
                };
                assert_eq!(
                    again.framing, want,
                    "client would frame the relayed body differently"
                );
                assert_eq!(again.status, head.status);
            }
            other => panic!("relayed head refused by parse_response: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Secrets and config.

/// A fake environment and file system. Which names resolve depends only on
/// the name (so two fakes agree on it); the values depend on `fill`, so two
/// fakes with different fills give values of the same shape but different
/// bytes: an error message that changes between them has leaked a value.
struct FakeLookup {
    fill: char,
    /// Every reference resolves (for the `check_syntax` equivalence).
    all: bool,
}

impl FakeLookup {
    /// The value of reference `key`: 24 bytes of `fill` behind a marker,
    /// with a CR/LF or a leading space for some names so that the config's
    /// value checks fire too.
    fn value(&self, key: &str) -> String {
        let body: String = std::iter::repeat_n(self.fill, 24).collect();
        match key.len() % 7 {
            0 => format!("sk-{body}\n"),
            1 => format!("sk-{body}\ninside"),
            2 => format!(" sk-{body}"),
            3 => String::new(),
            _ => format!("sk-{body}"),
        }
    }

    fn resolves(&self, key: &str) -> bool {
        self.all || key.len() % 5 != 0
    }

    /// The marker every value this fake can return contains.
    fn marker(&self) -> String {
        std::iter::repeat_n(self.fill, 24).collect()
    }
}

impl Lookup for FakeLookup {
    fn env(&self, name: &str) -> Result<String, std::env::VarError> {
        match self.resolves(name) {
            true => Ok(self.value(name)),
            false => Err(std::env::VarError::NotPresent),
        }
    }

    fn file(&self, path: &str) -> io::Result<String> {
        match self.resolves(path) {
            true => Ok(self.value(path)),
            false => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "No such file or directory",
            )),
        }
    }
}

const FAKE_A: FakeLookup = FakeLookup {
    fill: 'Q',
    all: false,
};
const FAKE_B: FakeLookup = FakeLookup {
    fill: 'Z',
    all: false,
};

/// `secrets::expand` and `check_syntax` on an arbitrary template: no
/// panic; the error's message is the same whatever the values (it cannot
/// contain one); `check_syntax` succeeds exactly when expansion would with
/// every reference resolvable; a template without `$` expands to itself.
pub fn secrets(data: &[u8]) {
    let template = String::from_utf8_lossy(data);
    let a = secrets::expand(&template, &FAKE_A);
    let b = secrets::expand(&template, &FAKE_B);
    match (&a, &b) {
        (Ok(va), Ok(vb)) => {
            assert_eq!(va.expose().len(), vb.expose().len());
            assert_eq!(format!("{va} {va:?}"), "<redacted> <redacted>");
        }
        (Err(ea), Err(eb)) => {
            let (ma, mb) = (ea.to_string(), eb.to_string());
            assert_eq!(ma, mb, "error message depends on the secret values");
            assert!(!ma.contains(&FAKE_A.marker()) || template.contains(&FAKE_A.marker()));
            assert!(
                !ma.contains('\n') && !ma.contains('\r'),
                "multi-line error {ma:?}"
            );
        }
        _ => panic!("resolution depends on the values: {a:?} vs {b:?}"),
    }
    let all = secrets::expand(
        &template,
        &FakeLookup {
            fill: 'Q',
            all: true,
        },
    );
    assert_eq!(
        secrets::check_syntax(&template).is_ok(),
        all.is_ok(),
        "check_syntax disagrees with expand"
    );
    if !template.contains('$') {
        assert_eq!(
            a.map(|s| s.expose().to_owned()).ok().as_deref(),
            Some(&*template)
        );
    }
}

/// `config::parse` on arbitrary text, both secret modes: no panic; errors
/// are one line and identical whatever the secret values (so they cannot
/// hold one); a config that loads does so whatever the values, and its
/// `--check` summary holds no value either.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let a = config::parse(&text, SecretMode::Resolve, &FAKE_A);
    let b = config::parse(&text, SecretMode::Resolve, &FAKE_B);
    match (&a, &b) {
        (Ok(ca), Ok(cb)) => {
            let (sa, sb) = (ca.summary(), cb.summary());
            assert_eq!(sa, sb, "summary depends on the secret values");
            assert!(!sa.contains(&FAKE_A.marker()) || text.contains(&FAKE_A.marker()));
            check_config(ca, &text);
        }
        (Err(ea), Err(eb)) => {
            let (ma, mb) = (ea.to_string(), eb.to_string());
            assert_eq!(ma, mb, "error message depends on the secret values");
            check_error_line(&ma);
        }
        _ => panic!("loading depends on the secret values: {a:?} vs {b:?}"),
    }
    match config::parse(&text, SecretMode::SyntaxOnly, &FAKE_A) {
        Ok(c) => check_config(&c, &text),
        Err(e) => check_error_line(&e.to_string()),
    }
}

fn check_error_line(msg: &str) {
    assert!(
        !msg.contains(char::is_control),
        "config error is not one line: {msg:?}"
    );
}

/// `text` is the config itself: a marker-shaped literal in it (a unix path
/// of `Q`s) may show up in the summary without being a secret.
fn check_config(c: &config::Config, text: &str) {
    assert!(c.max_body_bytes > 0);
    assert!(!c.routes.names().is_empty());
    for up in c.routes.upstreams() {
        assert!(!up.header_block.contains(&0), "NUL in a configured header");
        assert!(up.header_block.is_empty() || up.header_block.ends_with(b"\r\n"));
        assert!(
            crlf_only(&up.header_block),
            "configured header block has a bare line end"
        );
        let mut summary = String::new();
        let _ = write!(summary, "{up:?}");
        assert!(
            !summary.contains(&FAKE_A.marker()) || text.contains(&FAKE_A.marker()),
            "Upstream Debug shows a value"
        );
    }
}

#[cfg(test)]
mod tests;
