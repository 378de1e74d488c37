//! SPEC §3 steps 11 and 12: SSE events are relayed one by one as they
//! arrive, never coalesced; a `text/event-stream` response gains
//! `X-Accel-Buffering: no`; a client that goes away closes the upstream
//! connection at once.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn events(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("data: {{\"event\":{i},\"delta\":\"tok{i}\"}}\n\n"))
        .collect()
}

fn stream_request() -> Vec<u8> {
    post_json(
        "/v1/chat/completions",
        &["Accept: text/event-stream"],
        r#"{"model":"m","stream":true,"messages":[]}"#,
    )
}

/// Step 11: the client reads event N before the upstream has even written
/// event N+1; the chunked body bytes arrive unchanged.
#[test]
fn step11_sse_events_flushed_one_by_one() {
    let upstream = FakeUpstream::start(|_| Reply::sse(events(4), Duration::from_millis(200)));
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    client.send(&stream_request());
    let mut read_at = Vec::new();
    for i in 1..=4 {
        let marker = format!("\"event\":{i}");
        let found = client.read_until_contains(marker.as_bytes(), Duration::from_secs(5));
        assert!(
            found.is_some(),
            "event {i} never arrived; got: {}",
            lossy(client.buffered())
        );
        read_at.push(Instant::now());
    }
    let response = client.read_response();
    assert_eq!(response.status, 200);
    let expected_body: Vec<u8> = events(4)
        .iter()
        .flat_map(|e| chunk_bytes(e.as_bytes()))
        .chain(b"0\r\n\r\n".iter().copied())
        .collect();
    let head_len = find(&response.raw, b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        lossy(&response.raw[head_len..]),
        lossy(&expected_body),
        "SSE body bytes (chunk framing included) must be relayed unchanged"
    );
    let written_at = upstream.sse_writes();
    assert_eq!(written_at.len(), 4);
    for i in 0..3 {
        assert!(
            read_at[i] < written_at[i + 1],
            "event {} reached the client only after the upstream wrote event {} ({:?} later): events are buffered",
            i + 1,
            i + 2,
            read_at[i] - written_at[i + 1]
        );
    }
}

/// Step 11: `X-Accel-Buffering: no` is added to an event stream.
#[test]
fn step11_event_stream_gains_x_accel_buffering_no() {
    let upstream = FakeUpstream::start(|_| Reply::sse(events(2), Duration::from_millis(10)));
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let response = Client::connect(router.addr()).exchange(&stream_request());
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/event-stream"),
        "{}",
        lossy(&response.raw)
    );
    assert_eq!(response.header_count("x-accel-buffering"), 1);
    assert_eq!(response.header("x-accel-buffering"), Some("no"));
}

/// Step 11: an upstream's own `X-Accel-Buffering` is kept, not doubled.
#[test]
fn step11_existing_x_accel_buffering_kept() {
    let upstream = FakeUpstream::start(|_| Reply::Sse {
        events: events(1),
        gap: Duration::ZERO,
        extra_headers: vec!["X-Accel-Buffering: yes".into()],
    });
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let response = Client::connect(router.addr()).exchange(&stream_request());
    assert_eq!(
        response.header_count("x-accel-buffering"),
        1,
        "{}",
        lossy(&response.raw)
    );
    assert_eq!(response.header("x-accel-buffering"), Some("yes"));
}

/// Step 11: a non-SSE response gets no X-Accel-Buffering.
#[test]
fn step11_json_response_has_no_x_accel_buffering() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let response = Client::connect(router.addr()).exchange(&chat("m"));
    assert_eq!(response.header("x-accel-buffering"), None);
}

/// Step 12: the client goes away mid-stream while the upstream is quiet;
/// the router closes the upstream connection within 100 ms (so vLLM stops
/// generating), without waiting for the next event to fail.
#[test]
fn step12_client_gone_closes_upstream_within_100ms() {
    let upstream = FakeUpstream::start(|_| Reply::sse(events(3), Duration::from_secs(3)));
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    client.send(&stream_request());
    assert!(
        client
            .read_until_contains(b"\"event\":1", Duration::from_secs(5))
            .is_some(),
        "first event never arrived: {}",
        lossy(client.buffered())
    );
    drop(client);
    let gone_at = Instant::now();
    let closed = poll_until(Duration::from_millis(1500), || {
        upstream
            .conns()
            .first()
            .is_some_and(|c| c.closed_at.is_some())
    });
    assert!(
        closed,
        "upstream connection still open 1.5 s after the client went away"
    );
    let closed_at = upstream.conns()[0].closed_at.unwrap();
    let delay = closed_at.saturating_duration_since(gone_at);
    assert!(
        delay < Duration::from_millis(100),
        "upstream closed {delay:?} after the client went away; must be at once (< 100 ms)"
    );
    assert_eq!(
        upstream.sse_writes().len(),
        1,
        "upstream must not be made to write more events"
    );
}

/// Step 12: the upstream connection of a cancelled stream is not pooled:
/// the next request opens a new one.
#[test]
fn step12_cancelled_upstream_connection_not_reused() {
    let upstream = FakeUpstream::start(|req| {
        if req.json()["stream"] == json!(true) {
            Reply::sse(events(3), Duration::from_secs(3))
        } else {
            Reply::json(r#"{"ok":true}"#)
        }
    });
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    client.send(&stream_request());
    assert!(client
        .read_until_contains(b"\"event\":1", Duration::from_secs(5))
        .is_some());
    drop(client);
    assert!(poll_until(Duration::from_millis(1500), || upstream
        .conns()
        .first()
        .is_some_and(|c| c.closed_at.is_some())));
    let response = Client::connect(router.addr()).exchange(&chat("m"));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    let got = upstream.wait_requests(2, Duration::from_secs(5));
    assert_eq!(got[1].conn, 1, "cancelled connection must not be pooled");
}
