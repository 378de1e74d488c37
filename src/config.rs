//! The JSON config file → a validated [`Config`].
//!
//! Two stages, as the CLI: serde reads a `RawConfig` that mirrors the file
//! (unknown keys and duplicate keys refused), then validation turns it into
//! [`Config`], expanding secrets and building the route table. Every error
//! is one line naming its key path (`models.gpt.url: ...`); none holds a
//! secret value or a header value. Does not own: the reference grammar
//! ([`crate::secrets`]), binding sockets ([`crate::server`]).
//!
//! # Keys
//!
//! | key | type | default | |
//! |---|---|---|---|
//! | `listen` | string | `":8080"` | `":PORT"` (every interface), `"HOST:PORT"`, `"[V6]:PORT"` |
//! | `maxBodyBytes` | integer | 104857600 | request body cap, > 0 |
//! | `authTokens` | array of strings | none (auth off) | client bearer tokens, secret templates, at least one when present |
//! | `models` | object | required, non-empty | model name → `{ "url": ..., "headers": { name: template } }` |
//! | `timeouts` | object | see [`Timeouts`] | llmhop's extension to SPEC §2: `headSeconds`, `idleSeconds`, `connectSeconds`, `shutdownSeconds` |

use std::fmt;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::auth::Tokens;
use crate::http::{is_safe_value, is_token, is_uri_char};
use crate::route::{self, Scheme, Target, Url};
use crate::secrets::{self, Lookup, Secret};

/// `listen` when the key is absent.
pub const DEFAULT_LISTEN: &str = ":8080";

/// `maxBodyBytes` when the key is absent: 100 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// `":PORT"`: every interface, IPv4 and IPv6 where the host has them.
    All(u16),
    /// `"HOST:PORT"` or `"[V6]:PORT"`, resolved when binding.
    Addr(String),
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::All(port) => write!(f, ":{port} (every interface)"),
            Listen::Addr(addr) => f.write_str(addr),
        }
    }
}

/// Timeouts; defaults per SPEC §3 and §6.
///
/// Set by the optional `timeouts` object, an llmhop extension to SPEC §2 so
/// that tests (and impatient deployments) can shorten them. Each key is a
/// number of seconds, fractions allowed, greater than 0:
/// `headSeconds` (10), `idleSeconds` (60), `connectSeconds` (10),
/// `shutdownSeconds` (30).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeouts {
    /// `headSeconds`: from a head's first byte to its end (408 after).
    pub head: Duration,
    /// `idleSeconds`: an idle keep-alive client connection is closed after
    /// this.
    pub idle: Duration,
    /// `connectSeconds`: connecting to an upstream, TLS handshake included
    /// (504 after).
    pub connect: Duration,
    /// `shutdownSeconds`: how long in-flight requests may run after SIGTERM.
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            head: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            connect: Duration::from_secs(10),
            shutdown: Duration::from_secs(30),
        }
    }
}

/// A validated config.
#[derive(Debug)]
pub struct Config {
    pub listen: Listen,
    /// Request body cap in bytes, always > 0.
    pub max_body_bytes: u64,
    pub tokens: Tokens,
    pub routes: route::Table,
    pub timeouts: Timeouts,
}

/// Whether secret references are resolved or only checked for syntax
/// (`--check --no-secrets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretMode {
    /// Expand every reference; an unresolvable one is an error.
    Resolve,
    /// Check reference syntax only; each template stands in for its value
    /// (so a literal CR/LF/NUL in a template is still caught).
    SyntaxOnly,
}

/// A config error: `<key path>: <reason>`, one line. Never holds a secret or
/// header value.
///
/// `path` is the key path of the fault (`models.gpt.headers.Authorization`,
/// `authTokens[0]`, `listen`); `line L column C` for a JSON syntax error;
/// empty when the fault is the file as a whole (unreadable, not an object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads, parses and validates the config at `path`, resolving secrets
/// through the real environment ([`secrets::System`]).
///
/// The error does not repeat `path`: the caller prints it in front
/// (`llmhop: config.json: listen: ...`).
pub fn load(path: &Path, mode: SecretMode) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigError::new("", format!("cannot read: {}", secrets::io_reason(&err)))
    })?;
    parse(&text, mode, &secrets::System)
}

/// Parses and validates config text; [`load`] without the file, and with the
/// [`Lookup`] given, for tests.
pub fn parse(text: &str, mode: SecretMode, lookup: &dyn Lookup) -> Result<Config, ConfigError> {
    let Obj(raw): Obj<RawConfig> =
        serde_json::from_str(text).map_err(|err| serde_error(text, &err))?;
    raw.validate(mode, lookup)
}

impl Config {
    /// The `--check` summary: listen address, body cap, auth (token count
    /// only), timeouts, then one line per model with its upstream origin,
    /// path prefix and configured header names. Never a header value or
    /// token.
    pub fn summary(&self) -> String {
        let t = &self.timeouts;
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "listen: {}", self.listen);
        let _ = writeln!(out, "maxBodyBytes: {}", self.max_body_bytes);
        let _ = match self.tokens.len() {
            0 => writeln!(out, "auth: off"),
            1 => writeln!(out, "auth: on (1 token)"),
            n => writeln!(out, "auth: on ({n} tokens)"),
        };
        let _ = writeln!(
            out,
            "timeouts: head {:?}, idle {:?}, connect {:?}, shutdown {:?}",
            t.head, t.idle, t.connect, t.shutdown
        );
        let _ = writeln!(out, "models: {}", self.routes.names().len());
        for up in self.routes.upstreams() {
            let _ = write!(out, "  {} -> {}{}", up.model, up.origin, up.url.prefix);
            if !up.header_names.is_empty() {
                let names: Vec<_> = up
                    .header_names
                    .iter()
                    .map(|n| String::from_utf8_lossy(n))
                    .collect();
                let _ = write!(out, " (headers: {})", names.join(", "));
            }
            out.push('\n');
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Stage one: the file as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
struct RawConfig {
    listen: Option<String>,
    max_body_bytes: Option<u64>,
    auth_tokens: Option<Vec<String>>,
    models: Option<Entries<Obj<RawModel>>>,
    timeouts: Option<Obj<RawTimeouts>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
struct RawModel {
    url: String,
    headers: Option<Entries<String>>,
    /// Routable, but left out of `/v1/models` and the `/health` count.
    #[serde(default)]
    unlisted: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
struct RawTimeouts {
    head_seconds: Option<f64>,
    idle_seconds: Option<f64>,
    connect_seconds: Option<f64>,
    shutdown_seconds: Option<f64>,
}

/// A struct that only a JSON object may fill. serde's derive also accepts
/// an array of the fields in declaration order (`["http://h"]` would be a
/// model); that is not a config anyone means to write.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Obj)
            }
        }

        de.deserialize_map(ObjVisitor(PhantomData))
    }
}

/// A JSON object's members in file order. Unlike a map type, a repeated key
/// is an error: serde_json would otherwise keep the last one silently, and a
/// model or header defined twice is a typo to report.
struct Entries<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format_args!(
                            "duplicate key {key:?}"
                        )));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(Entries(entries))
            }
        }

        de.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// A serde_json error as a [`ConfigError`]: a data error (unknown key, wrong
/// type, duplicate) gets the key path of its position, a syntax error its
/// line and column. The reason is serde_json's message without the position.
fn serde_error(text: &str, err: &serde_json::Error) -> ConfigError {
    let (line, column) = (err.line(), err.column());
    let message = err.to_string();
    let suffix = format!(" at line {line} column {column}");
    let reason = message.strip_suffix(&suffix).unwrap_or(&message);
    let path = match err.classify() {
        serde_json::error::Category::Data => key_path_at(text, line, column),
        _ => format!("line {line} column {column}"),
    };
    // Keys in the path and in serde's messages (`unknown field `...``) are
    // the file's, unescaped: a `\n` in a key must not split the line.
    ConfigError::new(
        escape_controls(&path),
        escape_controls(&without_value(reason)),
    )
}

/// `s` with every control character written as its Rust escape (`\n`,
/// `\u{1b}`), so that an error stays one line (SPEC §1).
fn escape_controls(s: &str) -> String {
    s.chars()
        .map(|c| match c.is_control() {
            true => c.escape_debug().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// serde's `invalid type` / `invalid value` messages quote the value they
/// did not expect (`invalid type: string "sk-...", expected a sequence`). In
/// a config that value may be a secret written in the wrong place, so only
/// its kind is kept: `invalid type: string, expected a sequence`.
fn without_value(reason: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = reason.strip_prefix(prefix) {
            if let Some(i) = rest.find(", expected") {
                let unexpected = &rest[..i];
                let kind = unexpected[..unexpected.find(['`', '"']).unwrap_or(i)].trim_end();
                return format!("{prefix}{kind}{}", &rest[i..]);
            }
        }
    }
    reason.to_owned()
}

/// One open container while walking JSON text.
enum Frame {
    /// `key`: the key of the member being read, cleared once its value is
    /// complete.
    /// `want_key`: a string read now is a key, not a value.
    Object {
        key: Option<String>,
        want_key: bool,
    },
    Array {
        index: usize,
    },
}

/// The key path (`models.gpt.url`, `authTokens[1]`) at serde_json's error
/// position `line`/`column` in `text`, which is valid JSON up to there.
///
/// serde_json reports the position of the last byte it consumed, so the
/// walk stops just before that byte: an error on a value (`"url": 5`) is
/// inside the member whose key was read, an unknown or duplicate key (its
/// closing quote not yet walked) belongs to the enclosing object, and a
/// missing field (reported at the closing `}`) to the object it is missing
/// from. Objects and arrays are walked with an explicit stack, so deep
/// nesting cannot overflow.
fn key_path_at(text: &str, line: usize, column: usize) -> String {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let end = (line_start + column.saturating_sub(1)).min(text.len());
    let bytes = &text.as_bytes()[..end];

    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => stack.push(Frame::Object {
                key: None,
                want_key: true,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
                value_done(&mut stack);
            }
            b':' => {
                if let Some(Frame::Object { want_key, .. }) = stack.last_mut() {
                    *want_key = false;
                }
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { key, want_key }) => {
                    *key = None;
                    *want_key = true;
                }
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i >= bytes.len() {
                    break; // the error is inside this string
                }
                match stack.last_mut() {
                    Some(Frame::Object {
                        key,
                        want_key: true,
                    }) => {
                        let raw = &text[start..=i];
                        *key = Some(serde_json::from_str(raw).unwrap_or_else(|_| raw.to_owned()));
                    }
                    _ => value_done(&mut stack),
                }
            }
            // The last byte of a number, `true`, `false` or `null`.
            b if is_scalar_byte(b)
                && !text
                    .as_bytes()
                    .get(i + 1)
                    .is_some_and(|&n| is_scalar_byte(n)) =>
            {
                value_done(&mut stack)
            }
            _ => {}
        }
        i += 1;
    }

    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(key), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object { key: None, .. } => break,
            Frame::Array { index } => {
                let _ = write!(path, "[{index}]");
            }
        }
    }
    path
}

/// A member's value is complete: the path no longer points into it (an error
/// now, such as a missing field at `}`, is about the enclosing object).
fn value_done(stack: &mut [Frame]) {
    if let Some(Frame::Object { key, .. }) = stack.last_mut() {
        *key = None;
    }
}

/// Bytes of JSON numbers and literals.
fn is_scalar_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')
}

// ---------------------------------------------------------------------------
// Stage two: meaning.

/// Header names llmhop writes itself or that decide framing and connection
/// handling (RFC 9112 §6, RFC 9110 §7.6.1). Configuring one would let a
/// config line break request framing upstream, so they are refused.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "expect",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl RawConfig {
    fn validate(self, mode: SecretMode, lookup: &dyn Lookup) -> Result<Config, ConfigError> {
        let listen = parse_listen(self.listen.as_deref().unwrap_or(DEFAULT_LISTEN))
            .map_err(|reason| ConfigError::new("listen", reason))?;

        let max_body_bytes = self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(ConfigError::new("maxBodyBytes", "must be greater than 0"));
        }

        let mut tokens = Vec::new();
        if let Some(templates) = self.auth_tokens {
            // An empty list would silently mean "no auth": refuse it, so
            // turning auth off is always an explicit omission.
            if templates.is_empty() {
                return Err(ConfigError::new(
                    "authTokens",
                    "empty list; remove the key to turn auth off",
                ));
            }
            for (i, template) in templates.iter().enumerate() {
                let path = format!("authTokens[{i}]");
                let token = value(template, &path, mode, lookup)?;
                if token.expose().is_empty() {
                    return Err(ConfigError::new(path, "token is empty"));
                }
                // `auth` trims the client's value, so such a token never matches.
                if token.expose().starts_with([' ', '\t']) || token.expose().ends_with([' ', '\t'])
                {
                    return Err(ConfigError::new(
                        path,
                        "token starts or ends with whitespace",
                    ));
                }
                tokens.push(token);
            }
        }

        let models = self.models.map(|m| m.0).unwrap_or_default();
        if models.is_empty() {
            return Err(ConfigError::new("models", "at least one model is required"));
        }
        let mut targets = Vec::with_capacity(models.len());
        for (name, Obj(model)) in models {
            targets.push(model.validate(name, mode, lookup)?);
        }

        let timeouts = self
            .timeouts
            .map_or(Ok(Timeouts::default()), |Obj(t)| t.validate())?;

        Ok(Config {
            listen,
            max_body_bytes,
            tokens: Tokens::new(tokens),
            routes: route::Table::new(targets),
            timeouts,
        })
    }
}

impl RawModel {
    fn validate(
        self,
        name: String,
        mode: SecretMode,
        lookup: &dyn Lookup,
    ) -> Result<Target, ConfigError> {
        if name.is_empty() {
            return Err(ConfigError::new("models", "a model name is empty"));
        }
        // Names go into log lines and error lines; a control character would
        // split or forge them. No OpenAI-compatible server uses one.
        if name.chars().any(char::is_control) {
            return Err(ConfigError::new(
                "models",
                format!("model name {name:?} contains a control character"),
            ));
        }
        let base = format!("models.{name}");
        let url = parse_url(&self.url)
            .map_err(|reason| ConfigError::new(format!("{base}.url"), reason))?;

        let mut headers: Vec<(String, Secret)> = Vec::new();
        for (header, template) in self.headers.map(|h| h.0).unwrap_or_default() {
            if !is_token(header.as_bytes()) {
                return Err(ConfigError::new(
                    format!("{base}.headers"),
                    format!("{header:?} is not a valid header name"),
                ));
            }
            let path = format!("{base}.headers.{header}");
            let lower = header.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(ConfigError::new(
                    path,
                    "this header is managed by llmhop and cannot be configured",
                ));
            }
            if headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(&header)) {
                return Err(ConfigError::new(
                    path,
                    "set twice (header names are case-insensitive)",
                ));
            }
            let value = value(&template, &path, mode, lookup)?;
            headers.push((header, value));
        }

        Ok(Target {
            model: name,
            url,
            headers,
            listed: !self.unlisted,
        })
    }
}

impl RawTimeouts {
    fn validate(self) -> Result<Timeouts, ConfigError> {
        let d = Timeouts::default();
        let secs = |v: Option<f64>, key: &str, default: Duration| match v {
            None => Ok(default),
            Some(s) if s > 0.0 => Duration::try_from_secs_f64(s)
                .map_err(|_| ConfigError::new(format!("timeouts.{key}"), "too large")),
            Some(_) => Err(ConfigError::new(
                format!("timeouts.{key}"),
                "must be greater than 0",
            )),
        };
        Ok(Timeouts {
            head: secs(self.head_seconds, "headSeconds", d.head)?,
            idle: secs(self.idle_seconds, "idleSeconds", d.idle)?,
            connect: secs(self.connect_seconds, "connectSeconds", d.connect)?,
            shutdown: secs(self.shutdown_seconds, "shutdownSeconds", d.shutdown)?,
        })
    }
}

/// A secret template at `path` → its value, which is then guaranteed free of
/// CR, LF and NUL. In [`SecretMode::SyntaxOnly`] the template itself stands
/// in for the value.
fn value(
    template: &str,
    path: &str,
    mode: SecretMode,
    lookup: &dyn Lookup,
) -> Result<Secret, ConfigError> {
    let value = match mode {
        SecretMode::Resolve => secrets::expand(template, lookup),
        SecretMode::SyntaxOnly => {
            secrets::check_syntax(template).map(|()| Secret::new(template.to_owned()))
        }
    }
    .map_err(|err| ConfigError::new(path, err.to_string()))?;
    // The value would be written between `Name: ` and CRLF: a line break in
    // it is header injection (SPEC §2).
    if !is_safe_value(value.expose().as_bytes()) {
        return Err(ConfigError::new(path, "value contains CR, LF or NUL"));
    }
    Ok(value)
}

/// `":PORT"` → [`Listen::All`]; `"HOST:PORT"` or `"[V6]:PORT"` →
/// [`Listen::Addr`] as written. PORT is decimal digits, 0-65535 (0: the OS
/// picks one).
fn parse_listen(s: &str) -> Result<Listen, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io;

    struct Fake(HashMap<&'static str, &'static str>);

    impl Lookup for Fake {
        fn env(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
        fn file(&self, path: &str) -> io::Result<String> {
            match self.0.get(format!("file:{path}").as_str()) {
                Some(v) => Ok(v.to_string()),
                None => Err(io::Error::from_raw_os_error(2)),
            }
        }
    }

    fn fake() -> Fake {
        Fake(HashMap::from([
            ("KEY", "sk-SECRET"),
            ("file:tok", "tok-SECRET\n"),
            ("file:bad", "bad\n-SECRET\n"),
            ("BLANK", " "),
        ]))
    }

    fn load_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, SecretMode::Resolve, &fake())
    }

    const MIN: &str = r#"{"models":{"m":{"url":"http://localhost:30000"}}}"#;

    #[test]
    fn minimal_gets_defaults() {
        let c = load_str(MIN).unwrap();
        assert_eq!(c.listen, Listen::All(8080));
        assert_eq!(c.max_body_bytes, 104_857_600);
        assert!(!c.tokens.enabled());
        assert_eq!(c.timeouts, Timeouts::default());
        assert_eq!(c.routes.names(), ["m"]);
    }

    #[test]
    fn full_config() {
        let text = r#"{
            "listen": "127.0.0.1:9000",
            "maxBodyBytes": 10,
            "authTokens": ["${file:tok}", "lit$$"],
            "models": {
                "b": {"url": "HTTP://api.example.com:8080/v1/", "headers": {"Authorization": "Bearer $KEY", "X-A": ""}},
                "a": {"url": "http://[::1]:8000"}
            },
            "timeouts": {"headSeconds": 0.25, "shutdownSeconds": 1}
        }"#;
        let c = load_str(text).unwrap();
        assert_eq!(c.listen, Listen::Addr("127.0.0.1:9000".into()));
        assert_eq!(c.max_body_bytes, 10);
        assert!(c.tokens.check(Some(b"Bearer tok-SECRET"), None));
        assert!(c.tokens.check(Some(b"Bearer lit$"), None));
        assert_eq!(c.timeouts.head, Duration::from_millis(250));
        assert_eq!(c.timeouts.shutdown, Duration::from_secs(1));
        assert_eq!(c.timeouts.idle, Duration::from_secs(60));
        let b = c.routes.get("b").unwrap();
        assert_eq!(b.origin, "http://api.example.com:8080");
        assert_eq!(b.url.prefix, "/v1");
        assert_eq!(
            b.header_block,
            b"Authorization: Bearer sk-SECRET\r\nX-A: \r\n"
        );
        assert_eq!(c.routes.get("a").unwrap().authority, "[::1]:8000");

        let summary = c.summary();
        assert!(summary.contains("listen: 127.0.0.1:9000\n"), "{summary}");
        assert!(summary.contains("auth: on (2 tokens)\n"), "{summary}");
        assert!(summary.contains("  a -> http://[::1]:8000\n"), "{summary}");
        assert!(
            summary
                .contains("  b -> http://api.example.com:8080/v1 (headers: authorization, x-a)\n"),
            "{summary}"
        );
        assert!(
            !summary.contains("SECRET") && !summary.contains("lit"),
            "{summary}"
        );
    }

    #[test]
    fn syntax_only_mode() {
        let text = r#"{"authTokens": ["${env:UNSET}"],
            "models": {"m": {"url": "http://h", "headers": {"A": "${file:/nope}"}}}}"#;
        assert!(load_str(text).is_err());
        let c = parse(text, SecretMode::SyntaxOnly, &fake()).unwrap();
        assert!(c.tokens.enabled());
        let bad = r#"{"models": {"m": {"url": "http://h", "headers": {"A": "${vault:x}"}}}}"#;
        let err = parse(bad, SecretMode::SyntaxOnly, &fake()).unwrap_err();
        assert_eq!(err.path, "models.m.headers.A");
        let bad = "{\"models\": {\"m\": {\"url\": \"http://h\", \"headers\": {\"A\": \"x\\ny\"}}}}";
        let err = parse(bad, SecretMode::SyntaxOnly, &fake()).unwrap_err();
        assert_eq!(err.reason, "value contains CR, LF or NUL");
    }

    /// Bad configs: (text, error path, start of the reason).
    #[test]
    fn errors_name_their_path() {
        let m = |model: &str| format!(r#"{{"models":{{"m":{model}}}}}"#);
        let h = |headers: &str| m(&format!(r#"{{"url":"http://h","headers":{headers}}}"#));
        let u = |url: &str| m(&format!(r#"{{"url":{url:?}}}"#));
        let top = |extra: &str| format!(r#"{{{extra},"models":{{"m":{{"url":"http://h"}}}}}}"#);
        #[rustfmt::skip]
        let cases: Vec<(String, &str, &str)> = vec![
            // serde stage
            ("".into(), "line 1 column 0", "EOF while parsing"),
            ("{".into(), "line 1 column 1", "EOF while parsing"),
            ("{\"models\": {,}}".into(), "line 1 column 13", "key must be a string"),
            ("[]".into(), "", "invalid type: sequence, expected an object"),
            ("\"x\"".into(), "", "invalid type: string, expected an object"),
            (m(r#"["http://h"]"#), "models.m", "invalid type: sequence, expected an object"),
            (top(r#""timeouts":[1]"#), "timeouts", "invalid type: sequence"),
            (top(r#""lisen":":1""#), "", "unknown field `lisen`, expected one of"),
            (top(r#""listen":80"#), "listen", "invalid type: integer, expected a string"),
            (top(r#""maxBodyBytes":-1"#), "maxBodyBytes", "invalid value: integer, expected"),
            (top(r#""maxBodyBytes":1.5"#), "maxBodyBytes", "invalid type: floating point"),
            (top(r#""authTokens":"x""#), "authTokens", "invalid type: string"),
            (top(r#""authTokens":["a",3]"#), "authTokens[1]", "invalid type: integer, expected"),
            (top(r#""timeouts":{"headSecs":1}"#), "timeouts", "unknown field `headSecs`"),
            (top(r#""timeouts":{"idleSeconds":"1"}"#), "timeouts.idleSeconds", "invalid type: string"),
            (m(r#"{"url":"http://h","header":{}}"#), "models.m", "unknown field `header`"),
            (m(r#"{"headers":{}}"#), "models.m", "missing field `url`"),
            (m(r#"{"headers":null}"#), "models.m", "missing field `url`"),
            ("{\n  \"models\": {\n    \"m\": {\"url\": 5}\n  }\n}".into(), "models.m.url", "invalid type"),
            ("{\r\n\"models\":{\"é€\":{\"url\":\"http://h\"},\r\n \"m\":{\"url\":[]}}}".into(), "models.m.url", "invalid type: sequence"),
            (r#"{"models":{"\u00e9":{"url":"http://h","x":1}}}"#.into(), "models.é", "unknown field `x`"),
            (r#"{"models":{"m":{"url":"http://h"}},"authTokens":["a" , 7]}"#.into(), "authTokens[1]", "invalid type: integer"),
            (m(r#"{"headers":{"a":"b"} }"#), "models.m", "missing field `url`"),
            (m(r#"{"url":5}"#), "models.m.url", "invalid type: integer, expected"),
            (m(r#"{"url":{"a":1}}"#), "models.m.url", "invalid type: map"),
            (m(r#""http://h""#), "models.m", "invalid type: string"),
            (h(r#"{"A":1}"#), "models.m.headers.A", "invalid type: integer, expected"),
            (h(r#"{"A":"1","B":"2","A":"3"}"#), "models.m.headers", "duplicate key \"A\""),
            (r#"{"models":{"m":{"url":"http://h"},"m":{"url":"http://h"}}}"#.into(), "models", "duplicate key \"m\""),
            (r#"{"models":{"m":{"url":"http://h"}},"models":{}}"#.into(), "", "duplicate field `models`"),
            // validation stage
            (top(r#""listen":"8080""#), "listen", "expected \":PORT\""),
            (top(r#""listen":":""#), "listen", "invalid port"),
            (top(r#""listen":":+80""#), "listen", "invalid port"),
            (top(r#""listen":":65536""#), "listen", "invalid port"),
            (top(r#""listen":"::1:80""#), "listen", "IPv6 addresses need brackets"),
            (top(r#""listen":"[zz]:80""#), "listen", "\"zz\" is not an IPv6 address"),
            (top(r#""maxBodyBytes":0"#), "maxBodyBytes", "must be greater than 0"),
            (top(r#""authTokens":[]"#), "authTokens", "empty list"),
            (top(r#""authTokens":["ok",""]"#), "authTokens[1]", "token is empty"),
            (top(r#""authTokens":["$BLANK"]"#), "authTokens[0]", "token starts or ends"),
            (top(r#""authTokens":["${env:NOPE}"]"#), "authTokens[0]", "env var NOPE is not set"),
            (top(r#""authTokens":["${file:bad}"]"#), "authTokens[0]", "value contains CR, LF or NUL"),
            (top(r#""timeouts":{"idleSeconds":0}"#), "timeouts.idleSeconds", "must be greater than 0"),
            (top(r#""timeouts":{"headSeconds":-1}"#), "timeouts.headSeconds", "must be greater than 0"),
            (top(r#""timeouts":{"connectSeconds":1e300}"#), "timeouts.connectSeconds", "too large"),
            (r#"{"models":{}}"#.into(), "models", "at least one model"),
            ("{}".into(), "models", "at least one model"),
            (r#"{"models":{"":{"url":"http://h"}}}"#.into(), "models", "a model name is empty"),
            (r#"{"models":{"a\nb":{"url":"http://h"}}}"#.into(), "models", "model name \"a\\nb\" contains"),
            (u("localhost:8000"), "models.m.url", "expected http://"),
            (u("ftp://h"), "models.m.url", "unsupported scheme \"ftp\""),
            (u("unix://run/x.sock"), "models.m.url", "expected unix:///ABSOLUTE/PATH.sock"),
            (u("http://"), "models.m.url", "empty host"),
            (u("http:///x"), "models.m.url", "empty host"),
            (u("http://h?a=1"), "models.m.url", "a query"),
            (u("http://h/#x"), "models.m.url", "a fragment"),
            (u("http://u:p@h"), "models.m.url", "user-info"),
            (u("http://h:0"), "models.m.url", "invalid port \"0\""),
            (u("http://h:"), "models.m.url", "invalid port \"\""),
            (u("http://h:99999"), "models.m.url", "invalid port"),
            (u("http://h:8a"), "models.m.url", "invalid port"),
            (u("http://[::1"), "models.m.url", "unclosed `[`"),
            (u("http://[xyz]"), "models.m.url", "\"xyz\" is not an IPv6"),
            (u("http://[::1]x"), "models.m.url", "unexpected text after `]`"),
            (u("http://h h"), "models.m.url", "invalid host"),
            (u("http://1.2.3.400"), "models.m.url", "\"1.2.3.400\" is not an IPv4"),
            (u("http://h/a b"), "models.m.url", "the path contains"),
            (u("http://h/a\r\nX: y"), "models.m.url", "the path contains"),
            (h(r#"{"Bad Name":"x"}"#), "models.m.headers", "\"Bad Name\" is not a valid header name"),
            (h(r#"{"":"x"}"#), "models.m.headers", "\"\" is not a valid header name"),
            (h(r#"{"Host":"x"}"#), "models.m.headers.Host", "this header is managed by llmhop"),
            (h(r#"{"transfer-encoding":"x"}"#), "models.m.headers.transfer-encoding", "this header is managed"),
            (h(r#"{"X-A":"1","x-a":"2"}"#), "models.m.headers.x-a", "set twice"),
            (h(r#"{"Authorization":"Bearer ${env:OPENAI_KEY}"}"#), "models.m.headers.Authorization", "env var OPENAI_KEY is not set"),
            (h(r#"{"A":"${file:tok}${file:missing}"}"#), "models.m.headers.A", "cannot read file missing: No such file or directory"),
            (h(r#"{"A":"${file:bad}"}"#), "models.m.headers.A", "value contains CR, LF or NUL"),
            (h(r#"{"A":"x\u0000"}"#), "models.m.headers.A", "value contains CR, LF or NUL"),
            (h(r#"{"A":"${oops"}"#), "models.m.headers.A", "unterminated `${`"),
        ];
        for (text, path, reason) in &cases {
            let err = match load_str(text) {
                Ok(_) => panic!("accepted: {text}"),
                Err(err) => err,
            };
            assert_eq!(err.path, *path, "{text} → {err}");
            assert!(err.reason.starts_with(reason), "{text} → {err}");
            let line = err.to_string();
            assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
            assert!(!line.contains("SECRET"), "{line}");
        }
    }

    #[test]
    fn urls() {
        let url = |scheme, host: &str, port, prefix: &str| Url {
            scheme,
            host: host.into(),
            port,
            prefix: prefix.into(),
        };
        #[rustfmt::skip]
        let cases = [
            ("http://localhost", url(Scheme::Http, "localhost", 80, "")),
            ("http://localhost/", url(Scheme::Http, "localhost", 80, "")),
            ("HTTP://Localhost:30000//", url(Scheme::Http, "Localhost", 30000, "")),
            ("http://10.0.0.1:8000/v1", url(Scheme::Http, "10.0.0.1", 8000, "/v1")),
            ("http://[::1]", url(Scheme::Http, "::1", 80, "")),
            ("http://[fe80::1]:65535/a/b/", url(Scheme::Http, "fe80::1", 65535, "/a/b")),
            ("https://openrouter.ai/api", url(Scheme::Https, "openrouter.ai", 443, "/api")),
            ("https://h:8443/%7Euser", url(Scheme::Https, "h", 8443, "/%7Euser")),
        ];
        for (text, want) in cases {
            if want.scheme == Scheme::Https && !cfg!(feature = "tls") {
                assert!(parse_url(text)
                    .unwrap_err()
                    .contains("TLS-terminating sidecar"));
                continue;
            }
            assert_eq!(parse_url(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn listen() {
        assert_eq!(parse_listen(":0"), Ok(Listen::All(0)));
        assert_eq!(parse_listen(":8080"), Ok(Listen::All(8080)));
        assert_eq!(
            parse_listen("[::1]:80"),
            Ok(Listen::Addr("[::1]:80".into()))
        );
        assert_eq!(parse_listen("[::]:80"), Ok(Listen::Addr("[::]:80".into())));
        assert_eq!(
            parse_listen("localhost:1"),
            Ok(Listen::Addr("localhost:1".into()))
        );
        assert!(parse_listen("").is_err());
        assert!(parse_listen(" :80").is_err());
        assert!(parse_listen("[::1]").is_err());
    }

    #[test]
    fn unreadable_file_is_one_line() {
        let err = load(Path::new("/nonexistent/llmhop.json"), SecretMode::Resolve).unwrap_err();
        assert_eq!(err.to_string(), "cannot read: No such file or directory");
    }

    #[test]
    fn keys_with_control_characters_stay_on_one_line() {
        // Fuzz finding (config target, seeds newline_in_key,
        // unknown_key_newline): a key written with a JSON escape put a raw
        // newline into the key path or serde's message, splitting the
        // one-line startup error.
        let cases = [
            (
                r#"{"models":{"a\nb":{"url":5}}}"#,
                "models.a\\nb.url: invalid type: integer, expected a string",
            ),
            (
                r#"{"bogus\r\nkey\u001b[31m":1}"#,
                "unknown field `bogus\\r\\nkey\\u{1b}[31m`, expected one of \
                 `listen`, `maxBodyBytes`, `authTokens`, `models`, `timeouts`",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(load_str(text).unwrap_err().to_string(), want, "{text}");
        }
    }
}
