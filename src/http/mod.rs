//! The HTTP/1.1 wire format, sans-IO: every function here takes bytes and
//! returns a decision. Nothing in `http/` reads or writes a socket.

pub mod body;
pub mod head;
pub mod name;
pub mod respond;
pub mod rewrite;

/// `tchar` of RFC 9110 §5.6.2:
///
/// ```text
/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
///         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
/// ```
pub fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'^' | b'_' | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// `unreserved / sub-delims` of RFC 3986 §2.2–2.3, plus the `%` of a
/// pct-encoded triplet (its two hex digits are unreserved themselves):
///
/// ```text
/// unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
/// sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="
/// ```
pub fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// True when `s` is a non-empty `token` (RFC 9110 §5.6.2), the grammar of
/// header names and methods.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// True when `v` can sit inside a header value without ending the line or
/// the string: no CR, LF or NUL (RFC 9110 §5.5).
pub fn is_safe_value(v: &[u8]) -> bool {
    !v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// ASCII case-insensitive equality, for header names and codings.
pub fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The HTTP version of a message; llmhop speaks nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// `OWS` of RFC 9110 §5.6.3: `*( SP / HTAB )`. Returns `v` without its
/// leading and trailing optional whitespace (and nothing else trimmed).
pub fn trim_ows(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

/// The elements of a comma-separated list field value (RFC 9110 §5.6.1,
/// `#element`), each with its OWS trimmed, empty elements included.
///
/// Guarantee: yields exactly one more element than `v` has commas, so
/// `""` yields one empty element and `"a,,b"` yields `a`, `""`, `b`. Callers
/// decide whether an empty element is tolerated. Quoted strings are not
/// understood: only use this for lists of tokens (`Connection`,
/// `Transfer-Encoding`, `Expect`, `Content-Length` lists).
pub fn list_elements(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim_ows)
}

/// True when the token list `v` (RFC 9110 §5.6.1) holds `token`, compared
/// ASCII case-insensitively, as for `Connection: close`.
pub fn has_token(v: &[u8], token: &[u8]) -> bool {
    list_elements(v).any(|e| eq_ignore_case(e, token))
}
