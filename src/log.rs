//! logfmt lines on stderr: one startup line, one access line per request,
//! and rare operational notes.
//!
//! Owns: formatting and escaping. Does not own: deciding what is safe to
//! log — callers pass only method, path, model, status and counts; there is
//! deliberately no way to pass a header value or a body.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One finished (or abandoned) request.
#[derive(Debug)]
pub struct Access<'a> {
    pub client: SocketAddr,
    pub method: &'a [u8],
    pub path: &'a [u8],
    pub model: Option<&'a str>,
    /// 0 when no response was sent (client gone, connection closed).
    pub status: u16,
    /// `scheme://authority` of the upstream, when one was chosen.
    pub upstream: Option<&'a str>,
    pub duration: Duration,
    /// Request bytes read from the client, head included.
    pub bytes_in: u64,
    /// Response bytes written to the client, head included.
    pub bytes_out: u64,
}

/// Writes the access line for `a`.
pub fn access(a: &Access<'_>) {
    let mut line = String::with_capacity(200);
    timestamp(&mut line);
    let _ = write!(line, " client={}", a.client.ip());
    field(&mut line, "method", &String::from_utf8_lossy(a.method));
    field(&mut line, "path", &String::from_utf8_lossy(a.path));
    field(&mut line, "model", a.model.unwrap_or(""));
    let _ = write!(line, " status={}", a.status);
    field(&mut line, "upstream", a.upstream.unwrap_or(""));
    // Milliseconds with three decimals, from integer microseconds (no float
    // formatting on every request).
    let micros = a.duration.as_micros();
    let _ = write!(
        line,
        " duration_ms={}.{:03} bytes_in={} bytes_out={}",
        micros / 1000,
        micros % 1000,
        a.bytes_in,
        a.bytes_out
    );
    emit(line);
}

/// Writes `msg=<msg>` plus the given key/value pairs (values escaped).
pub fn info(msg: &str, pairs: &[(&str, &str)]) {
    let mut line = String::with_capacity(120);
    timestamp(&mut line);
    field(&mut line, "msg", msg);
    for (k, v) in pairs {
        field(&mut line, k, v);
    }
    emit(line);
}

fn emit(mut line: String) {
    line.push('\n');
    // One write per line, so lines from concurrent tasks never interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// ` key=value`, quoting the value when it holds a space, `"`, `=` or a
/// control character, as logfmt does.
fn field(line: &mut String, key: &str, value: &str) {
    line.push(' ');
    line.push_str(key);
    line.push('=');
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c > ' ' && c != '"' && c != '=' && c != '\\' && !c.is_control());
    if plain {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(line, "\\u{{{:x}}}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// `time=2026-11-24T01:16:18.123Z` (UTC, RFC 3339). The part up to the
/// second is formatted once a second per thread.
fn timestamp(line: &mut String) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            let s = secs % 86_400;
            cache.1.clear();
            let _ = write!(
                cache.1,
                "time={y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                s / 3600,
                s / 60 % 60,
                s % 60
            );
            cache.0 = secs;
        }
        line.push_str(&cache.1);
    });
    let _ = write!(line, ".{:03}Z", now.subsec_millis());
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days` algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn logfmt_quoting() {
        let mut s = String::new();
        field(&mut s, "path", "/v1/chat completions\n\"x\"");
        assert_eq!(s, r#" path="/v1/chat completions\n\"x\"""#);
        let mut s = String::new();
        field(&mut s, "model", "");
        assert_eq!(s, r#" model="""#);
    }
}
