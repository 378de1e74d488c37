//! SPEC §3 steps 1, 5 and 10: head limits (431), head timeout (408), idle
//! keep-alive close, the body cap (413) and memory bounded by where `model`
//! sits, never by the body size.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// Step 5: a declared Content-Length over the cap is refused at once,
/// before any body byte is sent, and the connection closes.
#[test]
fn step5_content_length_over_cap_is_413_without_body() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"maxBodyBytes": 1000}),
    ));
    let mut client = Client::connect(router.addr());
    client.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nContent-Length: 10000000\r\n\r\n"
        )
        .as_bytes(),
    );
    let response = client
        .try_read_response(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("413 must come before any body byte: {e}"));
    response.assert_error(413);
    client.assert_closed(Duration::from_secs(2), "after 413");
    upstream.assert_untouched();
}

/// Step 5: exactly maxBodyBytes passes.
#[test]
fn step5_body_of_exactly_the_cap_passes() {
    let upstream = FakeUpstream::ok();
    let body = format!(r#"{{"model":"m","pad":"{}"}}"#, "p".repeat(1000 - 22));
    assert_eq!(body.len(), 1000);
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"maxBodyBytes": 1000}),
    ));
    let response =
        Client::connect(router.addr()).exchange(&post_json("/v1/completions", &[], &body));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
}

/// Step 5: a chunked body that grows past the cap is 413 and closes; the
/// model sits at the end, so nothing was forwarded.
#[test]
fn step5_chunked_body_growing_past_cap_is_413() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"maxBodyBytes": 1000}),
    ));
    let mut client = Client::connect(router.addr());
    client.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    );
    let _ = client.send_lossy(&chunk_bytes(b"{\"pad\":\""));
    for _ in 0..20 {
        if client.send_lossy(&chunk_bytes(&[b'a'; 100])).is_err() {
            break;
        }
    }
    let _ = client.send_lossy(&chunk_bytes(b"\",\"model\":\"m\"}"));
    let _ = client.send_lossy(b"0\r\n\r\n");
    let response = client
        .try_read_response(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("expected 413 for a chunked body over the cap: {e}"));
    response.assert_error(413);
    client.assert_closed(Duration::from_secs(2), "after 413");
    upstream.assert_untouched();
}

fn head_with_fields(n_extra: usize) -> Vec<u8> {
    let body = r#"{"model":"m"}"#;
    let mut head = format!("POST /v1/completions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\n");
    for i in 0..n_extra {
        head.push_str(&format!("X-Field-{i}: v\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    head.into_bytes()
}

/// Step 1: 100 header fields are accepted; the 101st is 431.
#[test]
fn step1_more_than_100_header_fields_is_431() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    // Host + 98 + Content-Length = 100 fields.
    let ok = Client::connect(router.addr()).exchange(&head_with_fields(98));
    assert_eq!(ok.status, 200, "100 fields must pass: {}", lossy(&ok.raw));
    let mut client = Client::connect(router.addr());
    let _ = client.send_lossy(&head_with_fields(99));
    let response = client
        .try_read_response(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("expected 431 for 101 fields: {e}"));
    response.assert_error(431);
    assert_eq!(upstream.requests().len(), 1, "only the 100-field request");
}

/// Step 1: a head over 64 KiB is 431 and nothing is forwarded.
#[test]
fn step1_head_over_64kib_is_431() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let big = format!("X-Big: {}", "b".repeat(70 * 1024));
    let body = r#"{"model":"m"}"#;
    let request = post_json("/v1/completions", &[&big], body);
    let mut client = Client::connect(router.addr());
    let _ = client.send_lossy(&request);
    let response = client
        .try_read_response(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("expected 431 for a 70 KiB head: {e}"));
    response.assert_error(431);
    upstream.assert_untouched();
}

/// Step 1: a head whose first byte arrived but which is not complete within
/// headSeconds gets 408 and a close.
#[test]
fn step1_incomplete_head_times_out_with_408() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"timeouts": {"headSeconds": 0.5}}),
    ));
    let mut client = Client::connect(router.addr());
    let sent = Instant::now();
    client.send(format!("POST /v1/completions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\n").as_bytes());
    let response = client
        .try_read_response(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("expected 408 after headSeconds=0.5: {e}"));
    let waited = sent.elapsed();
    response.assert_error(408);
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "408 after {waited:?}, expected about 0.5 s"
    );
    client.assert_closed(Duration::from_secs(2), "after 408");
    upstream.assert_untouched();
}

/// Step 1: a slow head that trickles in under the limit is not cut off
/// before headSeconds passed since its first byte.
#[test]
fn step1_head_timeout_counts_from_first_byte_not_connect() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"timeouts": {"headSeconds": 0.6, "idleSeconds": 5}}),
    ));
    let mut client = Client::connect(router.addr());
    // Idle (no byte yet) longer than headSeconds: the idle timeout applies.
    thread::sleep(Duration::from_millis(800));
    let response = client.exchange(&chat("m"));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
}

/// Step 1: an idle keep-alive connection is closed after idleSeconds.
#[test]
fn step1_idle_keepalive_connection_closed_after_idle_seconds() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"timeouts": {"idleSeconds": 1}}),
    ));
    let mut client = Client::connect(router.addr());
    assert_eq!(client.exchange(&chat("m")).status, 200);
    let idle_from = Instant::now();
    client.assert_closed(
        Duration::from_secs(4),
        "idle keep-alive after idleSeconds=1",
    );
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(800),
        "closed after only {idle:?}, idleSeconds is 1"
    );
}

/// Step 10: a 200 MiB body with the model first streams through; the
/// router's peak RSS grows by less than 16 MiB and the upstream gets every
/// byte.
#[test]
fn step10_200mib_body_streams_with_bounded_memory() {
    const TOTAL: u64 = 200 << 20;
    let upstream = FakeUpstream::start_with(
        Options {
            store_bodies: false,
            ..Options::default()
        },
        |_| Reply::json(r#"{"ok":true}"#),
    );
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"maxBodyBytes": 1u64 << 30}),
    ));
    // Warm up so one-time allocations are in the baseline.
    assert_eq!(
        Client::connect(router.addr()).exchange(&chat("m")).status,
        200
    );
    let baseline = router.proc_status_kib("VmHWM");

    let prefix = br#"{"model":"m","input":""#;
    let suffix = br#""}"#;
    let filler_len = TOTAL - prefix.len() as u64 - suffix.len() as u64;
    let mut client = Client::connect(router.addr());
    client.send(
        format!(
            "POST /v1/embeddings HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nContent-Type: application/json\r\nContent-Length: {TOTAL}\r\n\r\n"
        )
        .as_bytes(),
    );
    let mut hash = Fnv::new();
    client.send(prefix);
    hash.write(prefix);
    let block: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let mut left = filler_len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        client.send(&block[..n]);
        hash.write(&block[..n]);
        left -= n as u64;
    }
    client.send(suffix);
    hash.write(suffix);
    let response = client
        .try_read_response(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("200 MiB request: {e}"));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));

    let got = upstream.wait_requests(2, Duration::from_secs(5));
    assert_eq!(got[1].body_len, TOTAL);
    assert_eq!(got[1].body_hash, hash.finish(), "body bytes altered");
    let peak = router.proc_status_kib("VmHWM");
    let rss = router.proc_status_kib("VmRSS");
    eprintln!("router VmHWM {baseline} KiB -> {peak} KiB (VmRSS now {rss} KiB) for a 200 MiB body");
    assert!(
        peak.saturating_sub(baseline) < 16 * 1024,
        "router peak RSS grew by {} KiB (baseline {baseline} KiB, peak {peak} KiB, now {rss} KiB) for a 200 MiB body",
        peak - baseline
    );
}
