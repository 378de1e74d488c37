//! The two heads llmhop writes on someone else's behalf: the request head
//! sent upstream and the response head relayed to the client.
//!
//! Owns: hop-by-hop removal (RFC 9110 §7.6.1), `Host`, `X-Forwarded-For`,
//! the `Authorization` strip, configured headers, `X-Accel-Buffering`.
//! Does not own: framing (bodies keep the sender's framing, decided in
//! [`super::head`]) or validation of configured values (done at config load;
//! re-asserted here).

use super::head::{HeaderIdx, RequestHead, ResponseHead};
use super::name::Name;
use super::{is_safe_value, Version};
use crate::route::Upstream;

/// Fields that describe one connection, never the message (RFC 9110
/// §7.6.1), plus the ones llmhop consumes itself: `Proxy-Authorization` is
/// for this hop, `Expect` is answered by llmhop (RFC 9110 §10.1.1). The
/// rewrites ask [`Name::is_hop_by_hop`]; this list is its specification
/// (tests, fuzz oracles).
pub const HOP_BY_HOP: &[&[u8]] = &[
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
    b"proxy-authorization",
    b"expect",
];

/// Fields a `Connection` option may never remove: dropping them would
/// change how the body is framed or where the request goes.
fn never_dropped(name: Name) -> bool {
    matches!(
        name,
        Name::ContentLength | Name::TransferEncoding | Name::Host
    )
}

/// What the router decided about one forwarded request.
#[derive(Clone, Copy, Debug)]
pub struct Forward<'a> {
    /// The path to forward (the client's, or the rest of a `/route/{model}`
    /// path), appended to the upstream's prefix.
    pub path: &'a [u8],
    /// The client's address as text, appended to `X-Forwarded-For`.
    pub client: &'a [u8],
    /// Auth is on: the client's `Authorization` and `x-api-key` are
    /// llmhop's, not the upstream's.
    pub strip_auth: bool,
}

/// Writes the upstream request head into `out`:
/// `METHOD <prefix><path>[?query] HTTP/1.1`, the client's fields in order
/// and spelling minus hop-by-hop ones, `Host` set to the upstream's
/// authority in place, `Authorization` and `x-api-key` dropped when auth is
/// on, `X-Forwarded-For` extended with the client, then the upstream's
/// configured fields, each replacing any client field of the same name. An
/// upgrade request keeps its `Upgrade` field and says `Connection: upgrade`.
pub fn request_head(
    buf: &[u8],
    head: &RequestHead,
    upstream: &Upstream,
    fwd: &Forward<'_>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&buf[head.method.clone()]);
    out.push(b' ');
    out.extend_from_slice(upstream.url.prefix.as_bytes());
    out.extend_from_slice(fwd.path);
    if let Some(q) = &head.query {
        out.push(b'?');
        out.extend_from_slice(&buf[q.clone()]);
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let named = connection_options(buf, &head.headers);
    // The client's X-Forwarded-For is extended in place, unless it is not
    // forwarded at all: named in `Connection` (a known trick to hide the
    // client address from the upstream) or configured for this model.
    // Then llmhop writes its own, or the configured one stands alone.
    let xff: &[u8] = b"x-forwarded-for";
    let configured_xff = upstream.header_names.iter().any(|n| n == xff);
    let client_xff_dropped = configured_xff || named.iter().any(|n| n.eq_ignore_ascii_case(xff));
    let last_xff = head
        .headers
        .iter()
        .rposition(|h| h.known == Name::XForwardedFor)
        .filter(|_| !client_xff_dropped);
    let mut wrote_host = false;
    let mut lines = Lines::new(buf);
    for (i, h) in head.headers.iter().enumerate() {
        let name = &buf[h.name.clone()];
        if h.known == Name::Host {
            if !wrote_host {
                lines.flush(out);
                host_line(out, upstream);
                wrote_host = true;
            }
            continue;
        }
        let auth = matches!(h.known, Name::Authorization | Name::XApiKey);
        if is_hop_by_hop(name, h.known, &named, head.upgrade)
            || (fwd.strip_auth && auth)
            || upstream
                .header_names
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        if Some(i) != last_xff && lines.keep(out, h) {
            continue;
        }
        lines.flush(out);
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&buf[h.value.clone()]);
        if Some(i) == last_xff {
            out.extend_from_slice(b", ");
            out.extend_from_slice(fwd.client);
        }
        out.extend_from_slice(b"\r\n");
    }
    lines.flush(out);
    if !wrote_host {
        host_line(out, upstream);
    }
    if head.upgrade {
        // RFC 9110 §7.8: `Upgrade` is hop-by-hop; a proxy that tunnels it
        // passes it on under its own `Connection: upgrade`.
        out.extend_from_slice(b"Connection: upgrade\r\n");
    }
    if last_xff.is_none() && !configured_xff {
        out.extend_from_slice(b"X-Forwarded-For: ");
        out.extend_from_slice(fwd.client);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&upstream.header_block);
    out.extend_from_slice(b"\r\n");
    debug_assert!(
        lines_are_clean(&out[start..]),
        "request head has a bare CR or LF"
    );
}

/// Whether a field stops at this hop: the fixed hop-by-hop set and what
/// `Connection` names (never a framing field), except `Upgrade` when the
/// connection is being upgraded.
///
/// `known` is what `name` was recognised as when the head was indexed;
/// `Connection` options are compared ignoring ASCII case (RFC 9110 §5.1).
fn is_hop_by_hop(name: &[u8], known: Name, named: &[&[u8]], upgrade: bool) -> bool {
    if upgrade && known == Name::Upgrade {
        return false;
    }
    known.is_hop_by_hop()
        || (!never_dropped(known) && named.iter().any(|n| name.eq_ignore_ascii_case(n)))
}

fn host_line(out: &mut Vec<u8>, upstream: &Upstream) {
    out.extend_from_slice(b"Host: ");
    out.extend_from_slice(upstream.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// How the client connection continues after a relayed response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSide {
    pub version: Version,
    /// llmhop closes the client connection after this response.
    pub close: bool,
    /// The body is relayed de-chunked (HTTP/1.0 client, chunked response):
    /// `Transfer-Encoding` is dropped and the end is the close.
    pub dechunk: bool,
    /// A `101 Switching Protocols` for an upgrade request: `Upgrade` is
    /// kept and the connection becomes a tunnel.
    pub upgrade: bool,
}

/// Writes the response head relayed to the client: the upstream's status
/// line as HTTP/1.1, its fields minus hop-by-hop ones (and minus
/// `Transfer-Encoding` when de-chunking), `X-Accel-Buffering: no` for event
/// streams that lack it, and `Connection: close` / `keep-alive` as `client`
/// says.
pub fn response_head(buf: &[u8], head: &ResponseHead, client: ClientSide, out: &mut Vec<u8>) {
    let start = out.len();
    // Status line: our own version, the upstream's code and reason. The
    // parser skips empty lines before it (RFC 9112 §2.2), so must this.
    let head_bytes = &buf[..head.len];
    let line_start = head_bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let line_end =
        memchr::memchr(b'\r', &head_bytes[line_start..]).map_or(line_start, |i| line_start + i);
    let line = &head_bytes[line_start..line_end];
    let rest = line
        .iter()
        .position(|&b| b == b' ')
        .map_or(&b""[..], |sp| &line[sp..]);
    out.extend_from_slice(b"HTTP/1.1");
    out.extend_from_slice(rest);
    out.extend_from_slice(b"\r\n");

    let named = connection_options(buf, &head.headers);
    // RFC 9112 §6.3 rule 3: Transfer-Encoding overrides Content-Length, and
    // an intermediary forwarding such a message MUST remove the
    // Content-Length first (also when de-chunking, where neither is true).
    let chunked_or_coded = head
        .headers
        .iter()
        .any(|h| h.known == Name::TransferEncoding);
    // RFC 9112 §6.1: no Transfer-Encoding to an HTTP/1.0 client, be the
    // body de-chunked or absent (a HEAD's).
    let no_coding = client.dechunk || client.version == Version::Http10;
    let mut has_accel = false;
    let mut lines = Lines::new(buf);
    for h in &head.headers {
        let name = &buf[h.name.clone()];
        if is_hop_by_hop(name, h.known, &named, client.upgrade)
            || (no_coding && h.known == Name::TransferEncoding)
            || (chunked_or_coded && h.known == Name::ContentLength)
        {
            continue;
        }
        has_accel |= h.known == Name::XAccelBuffering;
        if lines.keep(out, h) {
            continue;
        }
        lines.flush(out);
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&buf[h.value.clone()]);
        out.extend_from_slice(b"\r\n");
    }
    lines.flush(out);
    if head.event_stream && !has_accel {
        // An nginx in front would otherwise buffer the stream.
        out.extend_from_slice(b"X-Accel-Buffering: no\r\n");
    }
    if client.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else if client.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client.version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    debug_assert!(
        lines_are_clean(&out[start..]),
        "response head has a bare CR or LF"
    );
}

/// Kept field lines copied from the sender's head as they are, a run of
/// adjacent ones in one copy: a head is written in a few copies instead of
/// four per field. Only lines that read exactly as llmhop would write them
/// (`name: value` CRLF) are taken, so the output is the same either way.
struct Lines<'b> {
    buf: &'b [u8],
    /// Bytes of `buf` taken and not yet written.
    run: std::ops::Range<usize>,
}

impl<'b> Lines<'b> {
    fn new(buf: &'b [u8]) -> Lines<'b> {
        Lines { buf, run: 0..0 }
    }

    /// Takes the line of `field` when it is plain; `false` (and nothing
    /// taken) when the caller must write it piece by piece, after a
    /// [`flush`](Self::flush).
    fn keep(&mut self, out: &mut Vec<u8>, field: &HeaderIdx) -> bool {
        let line = field.name.start..field.value.end + 2;
        let plain = self.buf.get(field.name.end..field.value.start) == Some(b": ")
            && self.buf.get(field.value.end..line.end) == Some(b"\r\n");
        if !plain {
            return false;
        }
        if self.run.end != line.start {
            // Not adjacent (a field between was dropped).
            self.flush(out);
            self.run.start = line.start;
        }
        self.run.end = line.end;
        true
    }

    /// Writes the lines taken so far.
    fn flush(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf[std::mem::take(&mut self.run)]);
    }
}

/// Field names listed in `Connection` options, as sent (RFC 9110 §7.6.1:
/// the sender wants them removed at the next hop).
fn connection_options<'b>(buf: &'b [u8], headers: &[HeaderIdx]) -> Vec<&'b [u8]> {
    let mut named = Vec::new();
    for h in headers {
        if h.known == Name::Connection {
            for opt in buf[h.value.clone()].split(|&b| b == b',') {
                let opt = opt.trim_ascii();
                if !opt.is_empty() {
                    named.push(opt);
                }
            }
        }
    }
    named
}

/// The anti-injection invariant: every CR is followed by LF and every LF
/// preceded by CR, so no value can have started a new field.
fn lines_are_clean(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n').all(|line| {
        let body = line.strip_suffix(b"\r").unwrap_or(line);
        is_safe_value(body)
    }) && head.windows(1).filter(|w| w[0] == b'\n').count()
        == head.windows(2).filter(|w| w == b"\r\n").count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, Status};
    use crate::route::{Scheme, Table, Target, Url};
    use crate::secrets::Secret;

    /// The head written upstream for `request`, to a model on
    /// `http://up:8000` with `configured` headers.
    fn upstream_head(request: &[u8], configured: &[(&str, &str)]) -> String {
        let Ok(Status::Complete(head)) = parse_request(request) else {
            panic!("test request does not parse");
        };
        let target = Target {
            model: "m".into(),
            url: Url {
                scheme: Scheme::Http,
                host: "up".into(),
                port: 8000,
                prefix: String::new(),
            },
            headers: configured
                .iter()
                .map(|(n, v)| (n.to_string(), Secret::new(v.to_string())))
                .collect(),
            listed: true,
        };
        let table = Table::new(vec![target]);
        let fwd = Forward {
            path: &request[head.path.clone()],
            client: b"192.0.2.1",
            strip_auth: false,
        };
        let mut out = Vec::new();
        request_head(request, &head, table.get("m").unwrap(), &fwd, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn xff_is_added_when_connection_names_it() {
        // Fuzz finding (rewrite target): `Connection: X-Forwarded-For`
        // dropped the client's field and llmhop then wrote none, so the
        // upstream never learnt the client address.
        let head = upstream_head(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-For\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
            &[],
        );
        assert_eq!(
            head,
            "GET / HTTP/1.1\r\nHost: up:8000\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n"
        );
    }

    #[test]
    fn configured_xff_replaces_the_one_llmhop_would_write() {
        // Fuzz finding (rewrite target): a configured X-Forwarded-For was
        // sent next to llmhop's own, two fields where SPEC §3.9 says the
        // configured one replaces any other.
        for request in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
        ] {
            let head = upstream_head(request, &[("X-Forwarded-For", "203.0.113.9")]);
            assert_eq!(
                head,
                "GET / HTTP/1.1\r\nHost: up:8000\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"
            );
        }
    }

    /// Fields copied a run of lines at a time come out exactly as when
    /// written one by one: runs broken by dropped fields, by `Host` and by
    /// `X-Forwarded-For`, and lines spaced otherwise than `name: value`
    /// (rewritten so), in both directions.
    #[test]
    fn runs_of_lines_read_as_field_by_field() {
        let head = upstream_head(
            b"POST /v1 HTTP/1.1\r\nA: 1\r\nB: 2\r\nConnection: x-drop\r\nX-Drop: y\r\nC: 3\r\nD:  4 \r\n\
              E: 5\r\nHost: a\r\nF: 6\r\nX-Forwarded-For: 6.6.6.6\r\nG: \r\nH:\t8\r\n\r\n",
            &[],
        );
        assert_eq!(
            head,
            "POST /v1 HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nHost: up:8000\r\n\
             F: 6\r\nX-Forwarded-For: 6.6.6.6, 192.0.2.1\r\nG: \r\nH: 8\r\n\r\n"
        );
        let keep = KEEP_ALIVE;
        assert_eq!(
            client_head(
                b"HTTP/1.1 200 OK\r\nA: 1\r\nKeep-Alive: x\r\nB: 2\r\nC:3\r\nD: 4\r\n\r\n",
                keep
            ),
            "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"
        );
    }

    /// An HTTP/1.1 client whose connection stays open.
    const KEEP_ALIVE: ClientSide = ClientSide {
        version: Version::Http11,
        close: false,
        dechunk: false,
        upgrade: false,
    };

    /// The head relayed to the client for `response`.
    fn client_head(response: &[u8], client: ClientSide) -> String {
        let Ok(Status::Complete(head)) = crate::http::head::parse_response(response, false) else {
            panic!("test response does not parse");
        };
        let mut out = Vec::new();
        response_head(response, &head, client, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn content_length_is_dropped_beside_transfer_encoding() {
        // Fuzz finding (rewrite target, seeds res_*_te_and_cl): a response
        // with both framing fields was relayed with both, so the client
        // could frame it by the wrong one; an HTTP/1.0 client, de-chunked,
        // got the upstream's Content-Length over a body of another length.
        let response =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n";
        let keep = KEEP_ALIVE;
        assert_eq!(
            client_head(response, keep),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let dechunk = ClientSide {
            version: Version::Http10,
            close: true,
            dechunk: true,
            upgrade: false,
        };
        assert_eq!(
            client_head(response, dechunk),
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn status_line_after_leading_empty_lines() {
        // Fuzz finding (rewrite target, crash-response_leading_crlf): the
        // parser skips empty lines before a status line (RFC 9112 §2.2),
        // the rewrite took the first (empty) line as the status line and
        // relayed `HTTP/1.1` with no status code.
        let keep = KEEP_ALIVE;
        assert_eq!(
            client_head(b"\r\nHTTP/1.1 200 OK\r\nX: y\r\n\r\n", keep),
            "HTTP/1.1 200 OK\r\nX: y\r\n\r\n"
        );
    }

    #[test]
    fn client_xff_is_extended() {
        let head = upstream_head(
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nHost: a\r\n\r\n",
            &[],
        );
        assert_eq!(
            head,
            "GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1, 192.0.2.1\r\nHost: up:8000\r\n\r\n"
        );
    }
}
