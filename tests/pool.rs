//! SPEC §3 step 13 (upstream side) and §4's 502 row: pooled upstream
//! connections are reused; a pooled connection the upstream already closed
//! never costs a request; no retry once response bytes arrived.

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use serde_json::json;
use support::*;

/// Step 13: sequential requests on one client connection reuse one
/// upstream connection.
#[test]
fn step13_sequential_requests_reuse_one_upstream_connection() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    for _ in 0..5 {
        assert_eq!(client.exchange(&chat("m")).status, 200);
    }
    let got = upstream.wait_requests(5, Duration::from_secs(5));
    assert_eq!(
        upstream.accepted(),
        1,
        "5 sequential requests must share one pooled upstream connection; requests came on connections {:?}",
        got.iter().map(|r| r.conn).collect::<Vec<_>>()
    );
}

/// Step 13: chunked and SSE responses that ended cleanly also leave the
/// connection reusable.
#[test]
fn step13_reuse_after_chunked_and_sse_responses() {
    let upstream = FakeUpstream::start(|req| match req.json()["kind"].as_str() {
        Some("chunked") => Reply::Chunked(vec![b"{\"a\":".to_vec(), b"1}".to_vec()]),
        Some("sse") => Reply::sse(vec!["data: x\n\n".into()], Duration::ZERO),
        _ => Reply::json("{}"),
    });
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    for kind in ["chunked", "sse", "json", "chunked"] {
        let body = format!(r#"{{"model":"m","kind":"{kind}"}}"#);
        let response = client.exchange(&post_json("/v1/completions", &[], &body));
        assert_eq!(response.status, 200);
    }
    assert_eq!(upstream.accepted(), 1);
}

/// Step 13: the upstream closes idle keep-alive connections after 150 ms
/// (uvicorn does after 5 s); 20 requests 250 ms apart each find their
/// pooled connection dead. Not one may fail.
#[test]
fn step13_stale_pooled_connection_never_costs_a_request() {
    let upstream = FakeUpstream::start_with(
        Options {
            idle_close: Some(Duration::from_millis(150)),
            ..Options::default()
        },
        |_| Reply::json(r#"{"ok":true}"#),
    );
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    let mut failures = Vec::new();
    for i in 0..20 {
        if i > 0 {
            // The pause is the behaviour under test: longer than the
            // upstream's idle close, so the pooled connection is stale.
            thread::sleep(Duration::from_millis(250));
        }
        let response = client.exchange(&chat("m"));
        if response.status != 200 {
            failures.push((i, response.status));
        }
    }
    assert!(
        failures.is_empty(),
        "requests failed on stale pooled connections (index, status): {failures:?}"
    );
    assert_eq!(upstream.requests().len(), 20);
}

/// Step 13: the upstream's idle close races the next request (gaps
/// straddle the idle timeout); retries on a fresh connection keep every
/// request whole.
#[test]
fn step13_idle_close_racing_the_next_request_is_retried() {
    let upstream = FakeUpstream::start_with(
        Options {
            idle_close: Some(Duration::from_millis(100)),
            ..Options::default()
        },
        |_| Reply::json(r#"{"ok":true}"#),
    );
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    let mut failures = Vec::new();
    for i in 0..20u64 {
        thread::sleep(Duration::from_millis(90 + (i % 5) * 5));
        let response = client.exchange(&chat("m"));
        if response.status != 200 {
            failures.push((i, response.status));
        }
    }
    assert!(failures.is_empty(), "failed (index, status): {failures:?}");
}

/// Step 13: a pooled connection the upstream resets as the next request
/// arrives (closing it with that request unread, as a server that timed it
/// out does) is retried like one it closed: the client never sees it.
#[test]
fn step13_reset_before_any_response_byte_is_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
    let server = thread::spawn(move || {
        let (mut first, _) = listener.accept().unwrap();
        read_raw_request(&mut first).expect("the first request");
        first.write_all(ok).unwrap();
        // The second request arrives on the pooled connection: close it
        // unread, which resets it.
        first.peek(&mut [0u8; 1]).unwrap();
        drop(first);
        let (mut retry, _) = listener.accept().unwrap();
        let request = read_raw_request(&mut retry).expect("the retried request");
        retry.write_all(ok).unwrap();
        request
    });
    let router = Router::start(config_for(&[("m", &format!("http://{addr}"))], json!({})));
    let mut client = Client::connect(router.addr());
    assert_eq!(client.exchange(&chat("m")).status, 200);
    let second = client.exchange(&chat("m"));
    assert_eq!(second.status, 200, "{}", lossy(&second.raw));
    let retried = server.join().unwrap();
    assert!(
        find(&retried, b"\"model\":\"m\"").is_some(),
        "{}",
        lossy(&retried)
    );
}

/// Step 13: the upstream closes after sending part of the response; the
/// request is not retried (bytes already reached the client) and the
/// client connection closes.
#[test]
fn step13_no_retry_after_response_bytes() {
    let upstream = FakeUpstream::start(|_| Reply::CloseMidBody);
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    client.send(&chat("m"));
    let (bytes, closed) = client.read_to_close(Duration::from_secs(5));
    assert!(
        closed,
        "client connection must close after a truncated upstream response"
    );
    assert!(
        bytes.starts_with(b"HTTP/1.1 200"),
        "the head already relayed: {}",
        lossy(&bytes)
    );
    assert!(
        parse_response(&bytes, true).is_err(),
        "the body must end short, not be completed or replaced: {}",
        lossy(&bytes)
    );
    assert_eq!(upstream.accepted(), 1, "no retry after response bytes");
    assert_eq!(upstream.requests().len(), 1);
}

/// §4: an upstream that closes without a response byte, every time, is a 502
/// after at most one retry.
#[test]
fn upstream_closing_before_head_is_502() {
    let upstream = FakeUpstream::start(|_| Reply::CloseBeforeHead);
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let response = Client::connect(router.addr()).exchange(&chat("m"));
    response.assert_error(502);
    assert!(
        upstream.accepted() <= 2,
        "at most one retry, got {} connections",
        upstream.accepted()
    );
}

/// §4: nothing listening on the upstream port is a 502.
#[test]
fn upstream_refused_is_502() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let router = Router::start(config_for(
        &[("m", &format!("http://127.0.0.1:{port}"))],
        json!({}),
    ));
    let mut client = Client::connect(router.addr());
    let response = client.exchange(&chat("m"));
    response.assert_error(502);
    assert!(
        response
            .text()
            .contains("could not connect to the upstream"),
        "{}",
        response.text()
    );
    // The router stays usable on the same connection.
    client.exchange(&get("/health", &[]));
}

/// §4: garbage instead of an HTTP response is a 502.
#[test]
fn upstream_garbage_is_502() {
    let upstream = FakeUpstream::start(|_| Reply::Raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()));
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    Client::connect(router.addr())
        .exchange(&chat("m"))
        .assert_error(502);
}
