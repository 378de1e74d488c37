//! The hand-written grammars of `listen` and `models.*.url` (SPEC §2).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Listen;
use crate::http::is_uri_char;
use crate::route::{Scheme, Url};

/// `":PORT"` → [`Listen::All`]; `"HOST:PORT"` or `"[V6]:PORT"` →
/// [`Listen::Addr`] as written. PORT is decimal digits, 0-65535 (0: the OS
/// picks one).
pub(super) fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.contains("://") {
        return Err("expected \":PORT\", \"HOST:PORT\" or \"[V6]:PORT\", not a url".into());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, port) = rest.split_once("]:").ok_or("expected \"[V6]:PORT\"")?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| format!("{v6:?} is not an IPv6 address"))?;
        (v6, port)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or("expected \":PORT\", \"HOST:PORT\" or \"[V6]:PORT\"")?;
        if host.contains(':') {
            return Err("IPv6 addresses need brackets: \"[::1]:8080\"".into());
        }
        (host, port)
    };
    let port = parse_port(port).ok_or_else(|| format!("invalid port {port:?}"))?;
    if s.starts_with(':') {
        Ok(Listen::All(port))
    } else if host.is_empty() || host.chars().any(|c| c.is_control() || c == ' ') {
        Err("invalid host".into())
    } else {
        Ok(Listen::Addr(s.to_owned()))
    }
}

/// Decimal digits only: `u16::from_str` would also take a `+` sign.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An upstream url, parsed by hand to exactly what SPEC §2 allows:
///
/// ```text
/// url    = scheme "://" host [ ":" port ] [ path ]
/// scheme = "http" / "https"                  ; case-insensitive
/// host   = reg-name / IPv4address / "[" IPv6address "]"
/// port   = 1*5DIGIT                          ; 1-65535, default 80 / 443
/// path   = *( "/" *pchar )                   ; trailing "/" dropped
/// ```
///
/// No query, fragment or user-info. reg-name is restricted to letters,
/// digits, `-`, `.`, `_` and `~` (no percent-encoding: a DNS name never
/// needs it).
pub fn parse_url(s: &str) -> Result<Url, String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or("expected http://HOST[:PORT][/PREFIX]")?;
    let scheme = if scheme.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else if scheme.eq_ignore_ascii_case("https") {
        if !cfg!(feature = "tls") {
            return Err("https upstreams need the tls feature; point the url at an \
                        http:// TLS-terminating sidecar instead"
                .into());
        }
        Scheme::Https
    } else if scheme.eq_ignore_ascii_case("unix") {
        return parse_unix(rest);
    } else {
        return Err(format!(
            "unsupported scheme {scheme:?}; use http:// or https://"
        ));
    };
    if rest.contains('?') {
        return Err("a query (`?`) is not allowed".into());
    }
    if rest.contains('#') {
        return Err("a fragment (`#`) is not allowed".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err("user-info (`user@`) is not allowed; set credentials in headers".into());
    }

    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (v6, after) = inner.split_once(']').ok_or("unclosed `[` in host")?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| format!("{v6:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("unexpected text after `]`")?),
        };
        (v6, port)
    } else {
        match authority.split_once(':') {
            Some(_) if authority.matches(':').count() > 1 => {
                return Err("IPv6 addresses need brackets: \"http://[::1]:8000\"".into());
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    let reg_name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if !authority.starts_with('[') && !host.bytes().all(reg_name) {
        return Err(format!("invalid host {host:?}"));
    }
    // Four dotted numbers must be a real IPv4 address, not a name.
    if host.split('.').count() == 4
        && host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && host.parse::<Ipv4Addr>().is_err()
    {
        return Err(format!("{host:?} is not an IPv4 address"));
    }
    let port = match port {
        None => match scheme {
            Scheme::Http | Scheme::Unix => 80,
            Scheme::Https => 443,
        },
        Some(p) => match parse_port(p) {
            Some(n) if n > 0 => n,
            _ => return Err(format!("invalid port {p:?} (1-65535)")),
        },
    };

    // The prefix is written verbatim into the upstream request line, so
    // only pchar and `/` may pass (RFC 3986 §3.3).
    let pchar = |b: u8| is_uri_char(b) || matches!(b, b'/' | b':' | b'@');
    if !path.bytes().all(pchar) {
        return Err("the path contains a character not allowed in a URL".into());
    }
    let escapes_ok = path.match_indices('%').all(|(i, _)| {
        path.as_bytes()
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return Err("the path has a `%` not followed by two hex digits".into());
    }
    let prefix = path.trim_end_matches('/');

    Ok(Url {
        scheme,
        host: host.to_owned(),
        port,
        prefix: prefix.to_owned(),
    })
}

/// `unix:///absolute/path.sock` (vLLM's `--uds`): the socket path is the
/// whole rest of the url; requests go to it with `Host: localhost` and no
/// path prefix.
fn parse_unix(rest: &str) -> Result<Url, String> {
    if !rest.starts_with('/') || rest.len() < 2 {
        return Err("expected unix:///ABSOLUTE/PATH.sock".into());
    }
    if rest.contains(['?', '#']) || rest.bytes().any(|b| b.is_ascii_control()) {
        return Err("a unix socket path may not hold `?`, `#` or control characters".into());
    }
    Ok(Url {
        scheme: Scheme::Unix,
        host: rest.to_owned(),
        port: 0,
        prefix: String::new(),
    })
}
