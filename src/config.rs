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
use std::path::Path;
use std::time::Duration;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::auth::Tokens;
use crate::http::{is_safe_value, is_token};
use crate::route::{self, Target};
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
            // A configured Host became the authority rather than a field.
            let host = (up.authority != up.url.authority()).then_some("host".into());
            if !up.header_names.is_empty() || host.is_some() {
                let names: Vec<_> = host
                    .into_iter()
                    .chain(up.header_names.iter().map(|n| String::from_utf8_lossy(n)))
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
    #[serde(default, deserialize_with = "present")]
    listen: Option<String>,
    #[serde(default, deserialize_with = "present")]
    max_body_bytes: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    auth_tokens: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    models: Option<Entries<Obj<RawModel>>>,
    #[serde(default, deserialize_with = "present")]
    timeouts: Option<Obj<RawTimeouts>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
struct RawModel {
    url: String,
    #[serde(default, deserialize_with = "present")]
    headers: Option<Entries<String>>,
    /// Routable, but left out of `/v1/models` and the `/health` count.
    #[serde(default)]
    unlisted: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
struct RawTimeouts {
    #[serde(default, deserialize_with = "present")]
    head_seconds: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    idle_seconds: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    connect_seconds: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    shutdown_seconds: Option<f64>,
}

/// An optional key that, when written, holds a value: `null` is refused
/// rather than read as the default (`"authTokens": null` from a template
/// must not turn auth off quietly). A missing key is `None` (`default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(de: D) -> Result<Option<T>, D::Error> {
    T::deserialize(de).map(Some)
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

/// Header names that decide framing and connection handling (RFC 9112 §6,
/// RFC 9110 §7.6.1). Configuring one would let a config line break request
/// framing upstream, so they are refused. (`Host` may be configured: it
/// replaces the upstream's authority.)
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "expect",
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

mod errors;
mod url;

use errors::serde_error;
use url::parse_listen;
pub use url::parse_url;

#[cfg(test)]
mod tests;
