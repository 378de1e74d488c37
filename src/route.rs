//! Model name → upstream.
//!
//! Owns: the route table and what each upstream needs on the request path,
//! computed once at startup (authority, path prefix, the configured header
//! block, the pool shared by every model on the same origin). Does not own:
//! connecting ([`crate::upstream`]) or parsing urls ([`crate::config`]).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::http::respond;
use crate::pool::Pool;
use crate::secrets::Secret;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    /// `unix:///path/to.sock`: `Url::host` holds the socket path.
    Unix,
}

/// A parsed upstream url: `scheme://host[:port][/prefix]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Host as written, IPv6 literals without brackets.
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing `/`, `""` when none.
    pub prefix: String,
}

impl Url {
    /// The `Host` value: host, plus `:port` unless it is the scheme's default.
    pub fn authority(&self) -> String {
        if self.scheme == Scheme::Unix {
            // vLLM's `--uds` and friends expect a plain host name.
            return "localhost".into();
        }
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = match self.scheme {
            Scheme::Http | Scheme::Unix => 80,
            Scheme::Https => 443,
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `scheme://authority`, for logs and summaries.
    pub fn origin(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Unix => return format!("unix://{}", self.host),
        };
        format!("{scheme}://{}", self.authority())
    }
}

/// One configured model, as the config hands it over.
#[derive(Clone, Debug)]
pub struct Target {
    pub model: String,
    pub url: Url,
    /// Configured headers, set last on every forwarded request.
    pub headers: Vec<(String, Secret)>,
    /// Shown by `/v1/models` (`"unlisted": true` in the config hides it).
    pub listed: bool,
}

/// Everything the request path needs to forward to one model's upstream.
pub struct Upstream {
    pub model: String,
    pub url: Url,
    /// `Host` value sent upstream: the url's authority, or a configured
    /// `Host` header.
    pub authority: String,
    /// `scheme://authority`, for logs.
    pub origin: String,
    /// Lower-cased names of the configured headers: client fields with
    /// these names are dropped.
    pub header_names: Vec<Vec<u8>>,
    /// The configured headers rendered as `Name: value\r\n` lines. Holds
    /// secrets: never logged, never shown by `Debug`.
    pub header_block: Vec<u8>,
    /// Idle connections to this upstream's origin, shared by every model
    /// with the same scheme, host and port.
    pub pool: Arc<Pool>,
    /// `/v1/models/{id}` body for this model, rendered once.
    pub model_json: Vec<u8>,
    /// Shown by `/v1/models` and `/v1/models/{id}`.
    pub listed: bool,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("model", &self.model)
            .field("origin", &self.origin)
            .field("prefix", &self.url.prefix)
            .field("headers", &self.header_names.len())
            .finish()
    }
}

/// The route table, built once at startup.
#[derive(Debug)]
pub struct Table {
    routes: HashMap<String, Arc<Upstream>, BuildHasherDefault<NameHasher>>,
    /// Model names, sorted, listed and unlisted.
    names: Vec<String>,
    /// `/v1/models` body, rendered once.
    pub models_json: Vec<u8>,
    /// `/health` body, rendered once.
    pub health_json: Vec<u8>,
}

impl Table {
    /// Builds the table; header names and values must already be valid
    /// (config validation checks them).
    pub fn new(targets: Vec<Target>) -> Table {
        let mut pools: HashMap<(Scheme, String, u16), Arc<Pool>> = HashMap::new();
        let mut routes = HashMap::default();
        let mut listed: Vec<String> = targets
            .iter()
            .filter(|t| t.listed)
            .map(|t| t.model.clone())
            .collect();
        listed.sort();
        for t in targets {
            let pool = pools
                .entry((t.url.scheme, t.url.host.clone(), t.url.port))
                .or_insert_with(|| Arc::new(Pool::new()))
                .clone();
            let mut header_block = Vec::new();
            let mut header_names = Vec::new();
            let mut authority = t.url.authority();
            for (name, value) in &t.headers {
                assert!(
                    crate::http::is_token(name.as_bytes())
                        && crate::http::is_safe_value(value.expose().as_bytes())
                );
                if name.eq_ignore_ascii_case("host") {
                    // Written where the client's Host was, as the url's
                    // authority would be.
                    value.expose().clone_into(&mut authority);
                    continue;
                }
                header_names.push(name.to_ascii_lowercase().into_bytes());
                header_block.extend_from_slice(name.as_bytes());
                header_block.extend_from_slice(b": ");
                header_block.extend_from_slice(value.expose().as_bytes());
                header_block.extend_from_slice(b"\r\n");
            }
            let upstream = Upstream {
                authority,
                origin: t.url.origin(),
                model_json: respond::model_object(&t.model),
                model: t.model.clone(),
                listed: t.listed,
                url: t.url,
                header_names,
                header_block,
                pool,
            };
            routes.insert(t.model, Arc::new(upstream));
        }
        let mut names: Vec<String> = routes.keys().cloned().collect();
        names.sort();
        Table {
            models_json: respond::model_list(&listed),
            health_json: respond::health(listed.len()),
            routes,
            names,
        }
    }

    /// Exact, case-sensitive lookup (SPEC §3.8).
    pub fn get(&self, model: &str) -> Option<&Arc<Upstream>> {
        self.routes.get(model)
    }

    /// Model names, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Every upstream, in model-name order.
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.names.iter().map(|n| &self.routes[n])
    }
}

/// Hashes model names for the route table, eight bytes at a time with one
/// multiply each. The table is fixed at startup and clients only look names
/// up in it, so no input can make its probe sequences longer than they
/// are: SipHash's defence against flooding buys nothing here, and a
/// lookup with it cost about 210 instructions (callgrind), with this 70.
#[derive(Default)]
pub struct NameHasher(u64);

impl NameHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(word) = rest.first_chunk::<8>() {
            self.mix(u64::from_le_bytes(*word));
            rest = &rest[8..];
        }
        let mut last = [0; 8];
        last[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(last) ^ bytes.len() as u64);
    }

    fn write_u8(&mut self, byte: u8) {
        self.mix(u64::from(byte));
    }

    /// The multiply carries low bits only upward; the table indexes by the
    /// low bits, so the high ones are rotated down.
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

/// Decodes `%XX` escapes (RFC 3986 §2.1) in a path segment, so that
/// `/v1/models/org%2Fname` finds `org/name`. `None` for a bad escape or a
/// result that is not UTF-8.
pub fn percent_decode(s: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        let cases: &[(&str, Option<&str>)] = &[
            ("org%2Fname", Some("org/name")),
            ("org%2fname", Some("org/name")),
            ("plain", Some("plain")),
            ("a%20b", Some("a b")),
            ("bad%2", None),
            ("bad%zz", None),
            ("%ff", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                percent_decode(input.as_bytes()).as_deref(),
                *want,
                "{input}"
            );
        }
    }

    #[test]
    fn authority_omits_default_port() {
        let url = |scheme, host: &str, port| Url {
            scheme,
            host: host.into(),
            port,
            prefix: String::new(),
        };
        assert_eq!(url(Scheme::Http, "localhost", 80).authority(), "localhost");
        assert_eq!(
            url(Scheme::Http, "localhost", 30000).authority(),
            "localhost:30000"
        );
        assert_eq!(
            url(Scheme::Https, "api.openai.com", 443).authority(),
            "api.openai.com"
        );
        assert_eq!(url(Scheme::Http, "::1", 8000).authority(), "[::1]:8000");
    }
}
