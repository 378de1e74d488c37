//! Turning serde_json's errors into one-line config errors that name the
//! key path (`models.gpt.url: ...`), never a value.

use std::fmt::Write as _;

use super::ConfigError;

/// A serde_json error as a [`ConfigError`]: a data error (unknown key, wrong
/// type, duplicate) gets the key path of its position, a syntax error its
/// line and column. The reason is serde_json's message without the position.
pub(super) fn serde_error(text: &str, err: &serde_json::Error) -> ConfigError {
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
pub(super) fn escape_controls(s: &str) -> String {
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
