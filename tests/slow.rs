//! Slow clients (issue 4, point 4).
//!
//! - Slowloris: 500 connections trickling a head one byte a second cost a
//!   normal client no noticeable latency, and each is answered 408 and
//!   closed when the head timeout (here `headSeconds: 2`) runs out, however
//!   steadily it keeps sending.
//! - A client that stops reading a streamed response: the router's memory
//!   stays flat (its own buffers are bounded; the rest waits in socket
//!   buffers) and the backpressure reaches the upstream, whose writes
//!   block.
//!
//! The one-second pauses between trickled bytes are the behaviour under
//! test, not readiness waits. Latencies are printed; the bounds asserted
//! are generous because the test machine is a noisy 2-core box.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// Trickling connections held open at once.
const SLOW_CLIENTS: usize = 500;
/// The head timeout of the router under test, in seconds.
const HEAD_SECONDS: f64 = 2.0;
/// Most extra latency a normal request may see while they trickle.
const LATENCY_BOUND: Duration = Duration::from_millis(200);

/// The head the slow clients send, never completed within the test.
const SLOW_HEAD: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16\r\n";

/// One normal request on a new connection, timed end to end.
fn timed_request(router: &Router) -> Duration {
    let start = Instant::now();
    let r = Client::connect(router.addr()).exchange(&chat("m"));
    assert_eq!(r.status, 200, "{}", lossy(&r.raw));
    start.elapsed()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn slowloris_does_not_delay_others_and_gets_408_at_the_head_timeout() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({ "timeouts": { "headSeconds": HEAD_SECONDS } }),
    ));
    // Warm up, then the baseline.
    for _ in 0..5 {
        timed_request(&router);
    }
    let mut before: Vec<Duration> = (0..20).map(|_| timed_request(&router)).collect();

    let mut slow: Vec<TcpStream> = (0..SLOW_CLIENTS)
        .map(|_| {
            let s = TcpStream::connect(router.addr()).expect("connect a slow client");
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();
    // One byte a second to every connection, from a thread of its own,
    // until the head timeout (the last byte goes out just before it).
    let trickle_start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
    let halt = Arc::clone(&stop);
    let trickler = thread::spawn(move || {
        let mut sent = 0;
        while !halt.load(Ordering::SeqCst) && sent < SLOW_HEAD.len() {
            let due = trickle_start + Duration::from_secs(sent as u64);
            if Instant::now() < due {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            if due.duration_since(trickle_start).as_secs_f64() >= HEAD_SECONDS {
                break;
            }
            for w in &mut writers {
                let _ = w.write_all(&SLOW_HEAD[sent..sent + 1]);
            }
            sent += 1;
        }
        sent
    });

    // Normal requests while the slow heads trickle in.
    let mut during = Vec::new();
    while trickle_start.elapsed() < Duration::from_secs_f64(HEAD_SECONDS - 0.3) {
        during.push(timed_request(&router));
        thread::sleep(Duration::from_millis(50));
    }
    let base = median(&mut before);
    let worst = *during.iter().max().unwrap();
    let typical = median(&mut during.clone());
    println!(
        "normal request latency: before {base:?} (median of {}), during {SLOW_CLIENTS} trickling connections median {typical:?}, max {worst:?} ({} requests)",
        before.len(),
        during.len()
    );
    assert!(
        worst < base + LATENCY_BOUND,
        "a normal request took {worst:?} while {SLOW_CLIENTS} clients trickled (baseline {base:?})"
    );

    // Every slow client gets a 408 and a close, near the head timeout.
    let mut answered = 0;
    let mut late = Vec::new();
    let deadline = trickle_start + Duration::from_secs_f64(HEAD_SECONDS + 4.0);
    for s in &mut slow {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s.set_read_timeout(Some(left)).unwrap();
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if got.starts_with(b"HTTP/1.1 408") {
            answered += 1;
        } else {
            late.push(lossy(&got));
        }
    }
    let all_done = trickle_start.elapsed();
    stop.store(true, Ordering::SeqCst);
    let bytes_sent = trickler.join().unwrap();
    println!(
        "{answered}/{SLOW_CLIENTS} slow clients got 408, all read {all_done:?} after the first byte ({bytes_sent} bytes each)"
    );
    assert_eq!(
        answered,
        SLOW_CLIENTS,
        "every trickling connection must get a 408; {} did not, e.g. {:?}",
        late.len(),
        late.first()
    );
    assert!(
        all_done < Duration::from_secs_f64(HEAD_SECONDS + 2.5),
        "408s came {all_done:?} after the first byte; head timeout {HEAD_SECONDS} s"
    );
    // Only the normal requests reached the upstream.
    let normal = during.len() + before.len() + 5;
    assert_eq!(upstream.requests().len(), normal);
    assert!(timed_request(&router) < Duration::from_secs(1));
}

/// What the never-ending upstream has written so far, in bytes.
struct Firehose {
    upstream: RawUpstream,
    written: Arc<AtomicU64>,
    /// Set when a write failed (the router closed the connection).
    cut: Arc<AtomicBool>,
}

/// An upstream that answers with an endless chunked SSE stream, writing as
/// fast as the socket takes it.
fn firehose() -> Firehose {
    let written = Arc::new(AtomicU64::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    let (count, broken) = (Arc::clone(&written), Arc::clone(&cut));
    let upstream = RawUpstream::start(move |mut s, _| {
        if read_raw_request(&mut s).is_none() {
            return;
        }
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        if s.write_all(head).is_err() {
            return;
        }
        let event = format!("data: {}\n\n", "x".repeat(16 * 1024 - 8));
        let chunk = chunk_bytes(event.as_bytes());
        loop {
            if s.write_all(&chunk).is_err() {
                broken.store(true, Ordering::SeqCst);
                return;
            }
            count.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    });
    Firehose {
        upstream,
        written,
        cut,
    }
}

#[test]
fn a_client_that_stops_reading_pushes_back_to_the_upstream() {
    let hose = firehose();
    let probe = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("stream", &hose.upstream.url()), ("m", &probe.url())],
        json!({}),
    ));
    for _ in 0..5 {
        timed_request(&router);
    }
    let rss_before = router.proc_status_kib("VmRSS");

    let mut client = Client::connect(router.addr());
    client.send(&chat("stream"));
    assert!(
        client
            .read_until_contains(b"\r\n\r\n", Duration::from_secs(5))
            .is_some(),
        "the streamed response head"
    );
    // From here on the client reads nothing. The upstream must stall.
    let start = Instant::now();
    let mut last = hose.written.load(Ordering::SeqCst);
    let mut still_since = Instant::now();
    let stalled = loop {
        thread::sleep(Duration::from_millis(100));
        let now = hose.written.load(Ordering::SeqCst);
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= Duration::from_secs(1) {
            break true;
        }
        if start.elapsed() > Duration::from_secs(8) {
            break false;
        }
    };
    let rss_stalled = router.proc_status_kib("VmRSS");
    println!(
        "upstream wrote {:.1} MiB before its writes blocked ({:?}); router VmRSS {} KiB before, {} KiB while stalled (+{} KiB)",
        last as f64 / 1048576.0,
        start.elapsed(),
        rss_before,
        rss_stalled,
        rss_stalled.saturating_sub(rss_before)
    );
    assert!(
        stalled,
        "the upstream kept writing ({last} bytes) although the client reads nothing"
    );
    // Kernel socket buffers on loopback hold a few MiB; the router itself
    // holds one read buffer.
    assert!(
        last < 64 * 1024 * 1024,
        "{last} bytes went out before the upstream blocked"
    );
    assert!(
        rss_stalled.saturating_sub(rss_before) < 8 * 1024,
        "router RSS grew by {} KiB while holding a stalled stream",
        rss_stalled.saturating_sub(rss_before)
    );
    // Still responsive while that stream is stuck.
    assert!(timed_request(&router) < Duration::from_secs(1));

    // The client goes away: the router must drop the upstream connection.
    drop(client);
    assert!(
        poll_until(Duration::from_secs(5), || hose.cut.load(Ordering::SeqCst)),
        "the upstream connection must be closed once the client is gone"
    );
}
