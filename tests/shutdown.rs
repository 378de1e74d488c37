//! SPEC §6: on SIGTERM the router stops accepting (new connections are
//! refused), closes idle connections, lets in-flight requests finish within
//! the grace period and exits 0.

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn events(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("data: {{\"event\":{i}}}\n\n"))
        .collect()
}

/// True once a TCP connect to `addr` is refused.
fn refused(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
}

/// A stream in flight when SIGTERM arrives completes; new connections are
/// refused meanwhile; the process then exits 0.
#[test]
fn sigterm_finishes_in_flight_stream_refuses_new_and_exits_0() {
    let upstream = FakeUpstream::start(|_| Reply::sse(events(6), Duration::from_millis(200)));
    let mut router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"timeouts": {"shutdownSeconds": 10}}),
    ));
    let addr = router.addr();
    let mut client = Client::connect(addr);
    client.send(&post_json(
        "/v1/chat/completions",
        &[],
        r#"{"model":"m","stream":true}"#,
    ));
    assert!(
        client
            .read_until_contains(b"\"event\":1", Duration::from_secs(5))
            .is_some(),
        "stream did not start: {}",
        lossy(client.buffered())
    );
    router.terminate();
    let signalled = Instant::now();
    assert!(
        poll_until(Duration::from_secs(1), || refused(addr)),
        "new connections must be refused within 1 s of SIGTERM"
    );
    assert!(
        router.wait_exit(Duration::ZERO).is_none(),
        "router exited with a request still in flight"
    );
    let response = client
        .try_read_response(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the in-flight stream must complete after SIGTERM: {e}"));
    assert_eq!(response.status, 200);
    for i in 1..=6 {
        assert!(
            response.text().contains(&format!("\"event\":{i}")),
            "event {i} missing: {}",
            response.text()
        );
    }
    let status = router
        .wait_exit(Duration::from_secs(5))
        .expect("router must exit once the in-flight request finished");
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "exit took {:?}",
        signalled.elapsed()
    );
}

/// Idle keep-alive connections are closed on SIGTERM and the router exits
/// promptly instead of waiting for the grace period.
#[test]
fn sigterm_closes_idle_connections_and_exits_promptly() {
    let upstream = FakeUpstream::ok();
    let mut router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"timeouts": {"shutdownSeconds": 20, "idleSeconds": 60}}),
    ));
    let mut idle = Client::connect(router.addr());
    // Several requests: from the second wait between requests on, the
    // connection skips re-polling its shutdown registration.
    for _ in 0..3 {
        assert_eq!(idle.exchange(&chat("m")).status, 200);
    }
    router.terminate();
    idle.assert_closed(Duration::from_secs(2), "idle connection on SIGTERM");
    let status = router
        .wait_exit(Duration::from_secs(3))
        .expect("router with only idle connections must exit at once on SIGTERM");
    assert!(status.success(), "exit status: {status:?}");
}

/// A router with `shutdownSeconds` and a stream in flight that would go on
/// for a minute (its first event already read by the returned client).
fn stuck_stream(shutdown_seconds: u64) -> (FakeUpstream, Router, Client) {
    let upstream = FakeUpstream::start(|_| Reply::sse(events(3), Duration::from_secs(30)));
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"timeouts": {"shutdownSeconds": shutdown_seconds}}),
    ));
    let mut client = Client::connect(router.addr());
    client.send(&post_json(
        "/v1/chat/completions",
        &[],
        r#"{"model":"m","stream":true}"#,
    ));
    assert!(client
        .read_until_contains(b"\"event\":1", Duration::from_secs(5))
        .is_some());
    (upstream, router, client)
}

/// The one access line of the stream cut off, once the exited process's log
/// has been read to its end.
fn assert_cut_stream_logged(router: &Router) {
    poll_until(Duration::from_secs(3), || !router.access_lines().is_empty());
    let lines = router.access_lines();
    assert!(
        lines.len() == 1 && lines[0].contains("status=200") && lines[0].contains("model=m"),
        "the stream cut off must have its access line:\n{}",
        router.logs()
    );
}

/// The grace period bounds a request that never finishes: exit after
/// shutdownSeconds even though the stream is still going. The request cut
/// off still gets its access line (SPEC §6: one per request).
#[test]
fn sigterm_grace_period_bounds_a_stuck_request() {
    let (_upstream, mut router, _client) = stuck_stream(1);
    router.terminate();
    let signalled = Instant::now();
    let status = router
        .wait_exit(Duration::from_secs(5))
        .expect("router must exit after shutdownSeconds=1 even with a stuck stream");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "router exited after {took:?}, before the 1 s grace period"
    );
    assert!(status.success(), "exit status: {status:?}");
    assert_cut_stream_logged(&router);
}

/// A second SIGTERM (or Ctrl-C) during the drain ends it at once; the request
/// cut off still gets its access line.
#[test]
fn second_signal_ends_the_drain_at_once() {
    let (_upstream, mut router, _client) = stuck_stream(30);
    router.terminate();
    assert!(
        poll_until(Duration::from_secs(5), || router
            .logs()
            .contains("msg=\"shutting down\"")),
        "no drain started: {}",
        router.logs()
    );
    router.terminate();
    let status = router
        .wait_exit(Duration::from_secs(5))
        .expect("a second SIGTERM must end the 30 s drain at once");
    assert!(status.success(), "exit status: {status:?}");
    assert_cut_stream_logged(&router);
}

/// SPEC §4: a request that reaches the router during the drain is answered
/// 503 (and the connection closed), never forwarded. Here it is pipelined
/// behind a stream that is in flight when SIGTERM arrives.
#[test]
fn request_arriving_during_drain_is_503() {
    let upstream = FakeUpstream::start(|_| Reply::sse(events(4), Duration::from_millis(150)));
    let mut router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"timeouts": {"shutdownSeconds": 5}}),
    ));
    let mut client = Client::connect(router.addr());
    let mut two = post_json(
        "/v1/chat/completions",
        &[],
        r#"{"model":"m","stream":true}"#,
    );
    two.extend_from_slice(&post_json("/v1/chat/completions", &[], r#"{"model":"m"}"#));
    client.send(&two);
    assert!(
        client
            .read_until_contains(b"\"event\":1", Duration::from_secs(5))
            .is_some(),
        "stream did not start"
    );
    router.terminate();
    let first = client
        .try_read_response(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the in-flight stream must complete: {e}"));
    assert_eq!(first.status, 200);
    let second = client
        .try_read_response(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("no answer for the request that came during the drain: {e}"));
    assert_eq!(second.status, 503);
    assert_eq!(second.json()["error"]["code"], "shutting_down");
    client.assert_closed(Duration::from_secs(2), "503 closes the connection");
    assert_eq!(
        upstream.requests().len(),
        1,
        "the second request must not be forwarded"
    );
    assert_eq!(
        router
            .wait_exit(Duration::from_secs(5))
            .map(|s| s.success()),
        Some(true)
    );
}
