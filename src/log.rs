//! logfmt lines on stderr: one startup line, one access line per request,
//! and rare operational notes.
//!
//! Owns: formatting, escaping and batching. Access lines are written in
//! batches, at most [`FLUSH_AFTER`] after the request ended (sooner when
//! [`BATCH_BYTES`] are waiting): one `write` per request was a tenth of the
//! router's CPU on small requests. Any other line writes the batch before
//! it, at once, so the order of lines is kept; the server writes what is
//! left before it exits. Does not own: deciding what is safe to log —
//! callers pass only method, path, model, status and counts; there is
//! deliberately no way to pass a header value or a body.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest an access line waits before it is written.
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// Waiting access lines are written at once past this many bytes.
pub const BATCH_BYTES: usize = 32 * 1024;

/// Access lines not yet written.
static BATCH: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Wakes the flusher thread when a line lands in an empty batch.
static WAITING: Condvar = Condvar::new();
static FLUSHER: Once = Once::new();
/// Set when the flusher thread could not be started.
static UNBATCHED: AtomicBool = AtomicBool::new(false);

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
    line.push('\n');
    FLUSHER.call_once(start_flusher);
    let mut batch = batch();
    let was_empty = batch.is_empty();
    batch.extend_from_slice(line.as_bytes());
    if batch.len() >= BATCH_BYTES || UNBATCHED.load(Ordering::Relaxed) {
        write_out(&mut batch);
    } else if was_empty {
        WAITING.notify_one();
    }
}

/// Writes the waiting access lines now; the server calls it before exiting.
pub fn flush() {
    write_out(&mut batch());
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

/// Writes `line` at once, after the access lines waiting before it.
fn emit(mut line: String) {
    line.push('\n');
    let mut batch = batch();
    batch.extend_from_slice(line.as_bytes());
    write_out(&mut batch);
}

fn batch() -> MutexGuard<'static, Vec<u8>> {
    BATCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// One write for everything waiting, under the batch lock, so lines from
/// concurrent tasks never interleave.
fn write_out(batch: &mut Vec<u8>) {
    if !batch.is_empty() {
        let _ = std::io::stderr().lock().write_all(batch);
        batch.clear();
    }
}

/// The thread that writes a batch [`FLUSH_AFTER`] after its first line.
/// It sleeps while nothing waits, so an idle router never wakes up. When
/// no thread can be started, every access line is written at once instead.
fn start_flusher() {
    let spawned = std::thread::Builder::new()
        .name("llmhop-log".into())
        .spawn(|| loop {
            let mut batch = batch();
            while batch.is_empty() {
                batch = WAITING.wait(batch).unwrap_or_else(|e| e.into_inner());
            }
            drop(batch);
            std::thread::sleep(FLUSH_AFTER);
            flush();
        });
    if spawned.is_err() {
        UNBATCHED.store(true, Ordering::Relaxed);
    }
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
