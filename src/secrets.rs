//! Secret references (`${env:NAME}`, `${file:PATH}`, `$NAME`, `${NAME}`,
//! `$$`) and the [`Secret`] type that keeps their values out of every log,
//! error and panic message.
//!
//! Owns: the reference grammar (SPEC §2 "Secret references") and its
//! expansion. Does not own: which config values are templates, or what a
//! value may contain once expanded (CR/LF/NUL checks are in
//! [`crate::config`]). Pure apart from the [`Lookup`] it is handed, so tests
//! use a fake environment and file system.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A value that came from a secret reference, or could have. Its `Debug` and
/// `Display` print `<redacted>`; the value is reached only via
/// [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value itself, for the one place that must write it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where references are resolved: the process environment and file system
/// ([`System`]), or a fake in tests.
pub trait Lookup {
    /// The environment variable `name` (`VarError::NotUnicode` holds the
    /// value: it is dropped, never shown).
    fn env(&self, name: &str) -> Result<String, std::env::VarError>;
    /// The whole content of the file at `path`, as written in the reference
    /// (relative paths are the implementation's to resolve).
    fn file(&self, path: &str) -> io::Result<String>;
}

/// The real environment. Relative `${file:PATH}` resolves against
/// `$CREDENTIALS_DIRECTORY` when it is set (systemd `LoadCredential=`),
/// otherwise against the working directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct System;

impl Lookup for System {
    fn env(&self, name: &str) -> Result<String, std::env::VarError> {
        std::env::var(name)
    }

    fn file(&self, path: &str) -> io::Result<String> {
        let path = Path::new(path);
        let full: PathBuf = match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) if path.is_relative() => Path::new(&dir).join(path),
            _ => path.to_owned(),
        };
        std::fs::read_to_string(full)
    }
}

/// Why a template could not be expanded. Its message names the reference
/// (variable name, file path as written, kind) or a byte offset into the
/// template, never a resolved value and never the template's literal text,
/// which may itself be a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretError {
    /// `${env:NAME}`, `${NAME}` or `$NAME` with NAME unset.
    EnvUnset { name: String },
    /// The same, set to a value that is not UTF-8.
    EnvNotUtf8 { name: String },
    /// `${file:PATH}` whose file cannot be read (or is not UTF-8).
    FileUnreadable { path: String, reason: String },
    /// `${kind:...}` with a kind other than `env` or `file`.
    UnknownKind { kind: String },
    /// `${` without a closing `}`; `at` is the byte offset of the `$`.
    Unterminated { at: usize },
    /// A reference whose name is not `[A-Za-z_][A-Za-z0-9_]*` (or an empty
    /// `${file:}` path); `at` is the byte offset of the `$`.
    BadName { at: usize },
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::EnvUnset { name } => write!(f, "env var {name} is not set"),
            SecretError::EnvNotUtf8 { name } => write!(f, "env var {name} is not valid UTF-8"),
            // The path is the template's, free-form: control characters
            // are escaped so that the error stays one line (SPEC §1).
            SecretError::FileUnreadable { path, reason } => {
                f.write_str("cannot read file ")?;
                for c in path.chars() {
                    match c.is_control() {
                        true => write!(f, "{}", c.escape_debug())?,
                        false => write!(f, "{c}")?,
                    }
                }
                write!(f, ": {reason}")
            }
            SecretError::UnknownKind { kind } => write!(
                f,
                "unknown secret reference kind `{kind}` (use ${{env:NAME}} or ${{file:PATH}})"
            ),
            SecretError::Unterminated { at } => {
                write!(f, "unterminated `${{` at byte {at}")
            }
            SecretError::BadName { at } => write!(
                f,
                "invalid reference at byte {at}: names are [A-Za-z_][A-Za-z0-9_]*, \
                 paths non-empty; write `$$` for a literal `$`"
            ),
        }
    }
}

impl std::error::Error for SecretError {}

/// An I/O error's message without the `(os error N)` suffix std appends.
pub fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    }
}

/// One piece of a parsed template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    Env(&'a str),
    File(&'a str),
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_name(s: &str) -> bool {
    match s.as_bytes() {
        [first, rest @ ..] => is_name_start(*first) && rest.iter().all(|&b| is_name_char(b)),
        [] => false,
    }
}

/// Splits a template into literal text and references (SPEC §2):
///
/// ```text
/// "$$"                 → literal "$"
/// "${env:NAME}"        → Env(NAME)
/// "${file:PATH}"       → File(PATH), PATH non-empty, runs to the first "}"
/// "${NAME}" | "$NAME"  → Env(NAME), NAME = [A-Za-z_][A-Za-z0-9_]*, "$NAME" greedy
/// "$" + anything else  → literal "$" (including "$" at the end)
/// ```
fn parse(template: &str) -> Result<Vec<Piece<'_>>, SecretError> {
    let bytes = template.as_bytes();
    let mut pieces = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'$', &bytes[i..]) {
        let at = i + off;
        // Indexing at `at + 1` is on a char boundary: `$` is one byte.
        let (piece, end) = match bytes.get(at + 1) {
            Some(b'$') => (Some(Piece::Literal("$")), at + 2),
            Some(b'{') => {
                let body_start = at + 2;
                let Some(len) = memchr::memchr(b'}', &bytes[body_start..]) else {
                    return Err(SecretError::Unterminated { at });
                };
                let body = &template[body_start..body_start + len];
                (Some(braced(body, at)?), body_start + len + 1)
            }
            Some(&b) if is_name_char(b) => {
                let len = bytes[at + 1..]
                    .iter()
                    .position(|&b| !is_name_char(b))
                    .unwrap_or(bytes.len() - at - 1);
                let name = &template[at + 1..at + 1 + len];
                // `$1abc` is not a name; refusing it beats guessing whether
                // the `$` was meant literally (`$$1abc` says so).
                if !is_name(name) {
                    return Err(SecretError::BadName { at });
                }
                (Some(Piece::Env(name)), at + 1 + len)
            }
            // A `$` before anything else stands for itself.
            _ => (None, at + 1),
        };
        if let Some(piece) = piece {
            if literal_start < at {
                pieces.push(Piece::Literal(&template[literal_start..at]));
            }
            pieces.push(piece);
            literal_start = end;
        }
        i = end;
    }
    if literal_start < template.len() {
        pieces.push(Piece::Literal(&template[literal_start..]));
    }
    Ok(pieces)
}

/// The inside of `${...}`; `at` is the offset of its `$`, for errors.
fn braced(body: &str, at: usize) -> Result<Piece<'_>, SecretError> {
    match body.split_once(':') {
        Some(("env", name)) if is_name(name) => Ok(Piece::Env(name)),
        Some(("file", path)) if !path.is_empty() => Ok(Piece::File(path)),
        Some(("env" | "file", _)) => Err(SecretError::BadName { at }),
        Some((kind, _)) if is_name(kind) => Err(SecretError::UnknownKind {
            kind: kind.to_owned(),
        }),
        None if is_name(body) => Ok(Piece::Env(body)),
        _ => Err(SecretError::BadName { at }),
    }
}

/// Checks a template's reference syntax without resolving anything, for
/// `--check --no-secrets`. Succeeds exactly when [`expand`] would, given an
/// environment where every variable is set and every file readable.
pub fn check_syntax(template: &str) -> Result<(), SecretError> {
    parse(template).map(|_| ())
}

/// Expands every reference in `template` (SPEC §2), reading through
/// `lookup`.
///
/// A file's content loses exactly one trailing `\n` or `\r\n`, nothing
/// else: a value with another newline inside stays as it is, for the config
/// to refuse. The first reference that cannot be resolved fails the whole
/// template; the error never contains a resolved value.
///
/// ```
/// use llmhop::secrets::{expand, System};
/// std::env::set_var("LLMHOP_DOC_KEY", "sk-123");
/// let value = expand("Bearer ${env:LLMHOP_DOC_KEY} costs $$5", &System).unwrap();
/// assert_eq!(value.expose(), "Bearer sk-123 costs $5");
/// assert_eq!(format!("{value}"), "<redacted>");
/// ```
pub fn expand(template: &str, lookup: &dyn Lookup) -> Result<Secret, SecretError> {
    let mut out = String::with_capacity(template.len());
    for piece in parse(template)? {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Env(name) => match lookup.env(name) {
                Ok(value) => out.push_str(&value),
                Err(std::env::VarError::NotPresent) => {
                    return Err(SecretError::EnvUnset {
                        name: name.to_owned(),
                    })
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(SecretError::EnvNotUtf8 {
                        name: name.to_owned(),
                    })
                }
            },
            Piece::File(path) => match lookup.file(path) {
                Ok(content) => out.push_str(trim_one_newline(&content)),
                Err(err) => {
                    return Err(SecretError::FileUnreadable {
                        path: path.to_owned(),
                        reason: io_reason(&err),
                    })
                }
            },
        }
    }
    Ok(Secret::new(out))
}

/// `s` without one trailing `\r\n` or `\n`: editors and `echo` add one, and
/// it is never part of a token.
fn trim_one_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests;
