//! logfmt lines on stderr: one startup line, one access line per request,
//! and rare operational notes.
//!
//! Owns: formatting, escaping and batching. Access lines are written in
//! batches, at most [`FLUSH_AFTER`] after the request ended (sooner when
//! [`BATCH_BYTES`] are waiting): one `write` per request was a tenth of the
//! router's CPU on small requests. Any other line writes the batch before
//! it, at once, so the order of lines is kept; the server runs the
//! [`flusher`] task and writes what is left before it exits. Without that
//! task (before the server runs), every line is written at once.
//!
//! Does not own: deciding what is safe to log — callers pass only method,
//! path, model, status and counts; there is deliberately no way to pass a
//! header value or a body.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest an access line waits before it is written.
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// Waiting access lines are written at once past this many bytes.
pub const BATCH_BYTES: usize = 32 * 1024;

/// Access lines not yet written.
static BATCH: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Wakes the [`flusher`] when a line lands in an empty batch.
static WAITING: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// Whether the [`flusher`] runs: access lines may wait.
static BATCHING: AtomicBool = AtomicBool::new(false);

/// One finished (or abandoned) request.
#[derive(Debug)]
pub struct Access<'a> {
    /// When the request ended: the line's time.
    pub at: Instant,
    /// The client's IP address as text (formatted once per connection).
    pub client: &'a str,
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
    let mut batch = batch();
    let was_empty = batch.is_empty();
    access_line(a, &mut batch);
    if batch.len() >= BATCH_BYTES || !BATCHING.load(Ordering::Relaxed) {
        write_out(&mut batch);
    } else if was_empty {
        WAITING.notify_one();
    }
}

/// Appends the access line for `a` to `line`. Lines are put together as
/// bytes: what is known to be ASCII is copied, and only a client's bytes
/// beyond ASCII are decoded (replacing what is not UTF-8).
fn access_line(a: &Access<'_>, line: &mut Vec<u8>) {
    // Numbers are written digit by digit rather than through `fmt`, which
    // was a third of the cost of a line.
    timestamp(line, a.at);
    line.extend_from_slice(b" client=");
    line.extend_from_slice(a.client.as_bytes());
    field(line, "method", a.method);
    field(line, "path", a.path);
    field(line, "model", a.model.unwrap_or("").as_bytes());
    line.extend_from_slice(b" status=");
    number(line, u64::from(a.status), 1);
    field(line, "upstream", a.upstream.unwrap_or("").as_bytes());
    // Milliseconds with three decimals, from integer microseconds.
    let micros = u64::try_from(a.duration.as_micros()).unwrap_or(u64::MAX);
    line.extend_from_slice(b" duration_ms=");
    number(line, micros / 1000, 1);
    line.push(b'.');
    number(line, micros % 1000, 3);
    line.extend_from_slice(b" bytes_in=");
    number(line, a.bytes_in, 1);
    line.extend_from_slice(b" bytes_out=");
    number(line, a.bytes_out, 1);
    line.push(b'\n');
}

/// Writes the waiting access lines now.
pub fn flush() {
    write_out(&mut batch());
}

/// Writes the waiting access lines, and every later one at once; the server
/// calls it when the [`flusher`] stops, before it exits.
pub fn unbatch() {
    let mut batch = batch();
    BATCHING.store(false, Ordering::Relaxed);
    write_out(&mut batch);
}

/// Writes `msg=<msg>` plus the given key/value pairs (values escaped).
pub fn info(msg: &str, pairs: &[(&str, &str)]) {
    let mut line = Vec::with_capacity(120);
    timestamp(&mut line, Instant::now());
    field(&mut line, "msg", msg.as_bytes());
    for (k, v) in pairs {
        field(&mut line, k, v.as_bytes());
    }
    emit(line);
}

/// Writes `line` at once, after the access lines waiting before it.
fn emit(mut line: Vec<u8>) {
    line.push(b'\n');
    let mut batch = batch();
    batch.extend_from_slice(&line);
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

/// The task that writes a batch [`FLUSH_AFTER`] after its first line; the
/// server spawns it. It waits while nothing is pending, so an idle router
/// never wakes up. A task rather than a thread: no stack and no allocator
/// arena of its own (a thread cost 0.5 MiB of peak RSS with 500 open
/// streams), and no switch away from the runtime's thread to write.
pub async fn flusher() {
    BATCHING.store(true, Ordering::Relaxed);
    loop {
        // A wake-up sent while this task was writing is kept as a permit.
        WAITING.notified().await;
        tokio::time::sleep(FLUSH_AFTER).await;
        flush();
    }
}

/// ` key=value`, quoting the value when it holds a space, `"`, `=` or a
/// control character, as logfmt does. A value that is not UTF-8 is logged
/// with U+FFFD in place of its invalid bytes.
fn field(line: &mut Vec<u8>, key: &str, value: &[u8]) {
    line.push(b' ');
    line.extend_from_slice(key.as_bytes());
    line.push(b'=');
    if !value.is_empty() && all_plain(value) {
        line.extend_from_slice(value);
        return;
    }
    // Beyond ASCII, or to be quoted: character by character.
    let text = String::from_utf8_lossy(value);
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c > ' ' && c != '"' && c != '=' && c != '\\' && !c.is_control());
    if plain {
        line.extend_from_slice(text.as_bytes());
        return;
    }
    line.push(b'"');
    let mut utf8 = [0u8; 4];
    for c in text.chars() {
        match c {
            '"' => line.extend_from_slice(b"\\\""),
            '\\' => line.extend_from_slice(b"\\\\"),
            '\n' => line.extend_from_slice(b"\\n"),
            c if c.is_control() => {
                let _ = write!(line, "\\u{{{:x}}}", c as u32);
            }
            c => line.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    line.push(b'"');
}

/// Whether a byte may stand unquoted in a logfmt value: visible ASCII
/// other than `"`, `=` and `\`.
fn plain_byte(b: u8) -> bool {
    b > b' ' && b < 0x7f && !matches!(b, b'"' | b'=' | b'\\')
}

/// Whether every byte of `value` is a [`plain_byte`], eight bytes at a
/// time in a `u64` (a byte at a time was most of an access line's cost).
fn all_plain(value: &[u8]) -> bool {
    use crate::words::{below, equal, HIGH};
    let mut rest = value;
    while let Some(word) = rest.first_chunk::<8>() {
        let x = u64::from_le_bytes(*word);
        let bad = below(x, b'!')
            | x & HIGH
            | equal(x, 0x7f)
            | equal(x, b'"')
            | equal(x, b'=')
            | equal(x, b'\\');
        if bad != 0 {
            return false;
        }
        rest = &rest[8..];
    }
    rest.iter().all(|&b| plain_byte(b))
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
fn number(line: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 || digits.len() - start < width {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    line.extend_from_slice(&digits[start..]);
}

/// What [`timestamp`] keeps per thread: a reading of the wall clock and the
/// monotonic instant it was taken at, and the text of the current second.
struct Clock {
    base: Option<(Instant, Duration)>,
    second: u64,
    text: String,
}

/// `time=2026-11-24T01:16:18.123Z` (UTC, RFC 3339) for the instant `at`.
/// The wall clock is read at most once a second per thread, and instants
/// in between are placed from that reading (one clock read less per
/// request); the part up to the second is formatted once a second.
fn timestamp(line: &mut Vec<u8>, at: Instant) {
    thread_local! {
        static CLOCK: std::cell::RefCell<Clock> = const {
            std::cell::RefCell::new(Clock { base: None, second: u64::MAX, text: String::new() })
        };
    }
    CLOCK.with(|cache| {
        let mut cache = cache.borrow_mut();
        let now = match cache.base {
            Some((base, wall)) if at >= base && at - base < Duration::from_secs(1) => {
                wall + (at - base)
            }
            _ => {
                let wall = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                cache.base = Some((at, wall));
                wall
            }
        };
        let secs = now.as_secs();
        if cache.second != secs {
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            let s = secs % 86_400;
            cache.text.clear();
            let _ = write!(
                cache.text,
                "time={y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                s / 3600,
                s / 60 % 60,
                s % 60
            );
            cache.second = secs;
        }
        line.extend_from_slice(cache.text.as_bytes());
        line.push(b'.');
        number(line, u64::from(now.subsec_millis()), 3);
        line.push(b'Z');
    });
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

    /// `f` applied to an empty line, as text.
    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut line = Vec::new();
        f(&mut line);
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn numbers_and_the_access_line() {
        let s = text(|s| {
            for (n, width) in [(0, 1), (7, 3), (42, 3), (1234, 3), (u64::MAX, 1)] {
                number(s, n, width);
                s.push(b' ');
            }
        });
        assert_eq!(s, "0 007 042 1234 18446744073709551615 ");
        let a = Access {
            at: Instant::now(),
            client: "10.0.255.1",
            method: b"POST",
            path: b"/v1/chat/completions",
            model: Some("m"),
            status: 200,
            upstream: Some("http://127.0.0.1:8000"),
            duration: Duration::from_micros(12_034),
            bytes_in: 0,
            bytes_out: 1_048_576,
        };
        let mut bytes = Vec::new();
        access_line(&a, &mut bytes);
        let line = String::from_utf8(bytes.clone()).unwrap();
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(
            time.starts_with("time=20") && time.ends_with('Z') && time.len() == 29,
            "{time}"
        );
        assert_eq!(
            rest,
            "client=10.0.255.1 method=POST path=/v1/chat/completions model=m status=200 \
             upstream=http://127.0.0.1:8000 duration_ms=12.034 bytes_in=0 bytes_out=1048576\n"
        );
        // Appended: what was there stays.
        access_line(&a, &mut bytes);
        let line = String::from_utf8(bytes).unwrap();
        assert_eq!(line.matches(" client=10.0.255.1 method=POST ").count(), 2);
    }

    #[test]
    fn timestamps_place_instants_from_one_reading() {
        // Milliseconds of the day in `time=YYYY-MM-DDTHH:MM:SS.mmmZ`.
        let ms = |at: Instant| {
            let s = text(|s| timestamp(s, at));
            let t = &s["time=YYYY-MM-DDT".len()..s.len() - 1];
            let n = |r: std::ops::Range<usize>| t[r].parse::<u64>().unwrap();
            ((n(0..2) * 60 + n(3..5)) * 60 + n(6..8)) * 1000 + n(9..12)
        };
        let t0 = Instant::now();
        let (a, b) = (ms(t0), ms(t0 + Duration::from_millis(250)));
        assert_eq!((b + 86_400_000 - a) % 86_400_000, 250);
    }

    /// Every byte value at every place of values up to 17 bytes long, word
    /// and tail, against the byte-by-byte definition.
    #[test]
    fn plain_words_agree_with_bytes() {
        for len in 1..=17 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut value = vec![b'a'; len];
                    value[at] = b;
                    let expected = value.iter().all(|&b| plain_byte(b));
                    assert_eq!(all_plain(&value), expected, "{value:?}");
                }
            }
        }
        // Two marks in one word: a borrow from the first must not hide,
        // nor invent, the answer.
        assert!(!all_plain(b"a\x00\xffbcdefg"));
        assert!(all_plain(b"~!~!~!~!~!"));
    }

    #[test]
    fn logfmt_quoting() {
        let s = text(|s| field(s, "path", b"/v1/chat completions\n\"x\""));
        assert_eq!(s, r#" path="/v1/chat completions\n\"x\"""#);
        assert_eq!(text(|s| field(s, "model", b"")), r#" model="""#);
        // Each byte the plain check looks at, and text beyond ASCII.
        for (value, logged) in [
            ("a=b", r#""a=b""#),
            ("a\\b", r#""a\\b""#),
            ("a\u{7f}", r#""a\u{7f}""#),
            ("a\u{85}b", r#""a\u{85}b""#),
            ("a\tb", r#""a\u{9}b""#),
            ("modèle-🦙", "modèle-🦙"),
            ("/v1/chat/completions", "/v1/chat/completions"),
        ] {
            let s = text(|s| field(s, "k", value.as_bytes()));
            assert_eq!(s, format!(" k={logged}"), "{value:?}");
        }
        // Not UTF-8: replaced, and quoted only if it must be.
        assert_eq!(
            text(|s| field(s, "path", b"/v1/\xff")),
            " path=/v1/\u{fffd}"
        );
        assert_eq!(
            text(|s| field(s, "path", b"/a b\xff")),
            " path=\"/a b\u{fffd}\""
        );
    }
}
