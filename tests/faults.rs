//! Response-side faults (issue 4, point 3): an upstream that closes or
//! resets, answers garbage, an oversized head, a broken chunked body, a
//! Content-Length that lies, interim 1xx responses, a 204/304 that carries a
//! body, or never accepts the connection.
//!
//! The rules checked (SPEC §3.11–13, §4): when no response byte reached the
//! client yet, it gets a router-made 502 (504 for a connect timeout);
//! otherwise its connection closes without a complete response. Nothing
//! malformed is ever relayed (each fault carries a marker that must never
//! reach the client), an upstream connection is never reused in a state
//! where its next bytes could be taken for the next response (desync), and
//! the router keeps serving other requests.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// Bytes every fault carries somewhere; they must never reach the client.
const MARKER: &str = "LEAKED";

/// A router with model `f` on `upstream` and model `probe` on a healthy
/// fake upstream.
fn router_for(upstream: &str, probe: &FakeUpstream, extra: serde_json::Value) -> Router {
    Router::start(config_for(
        &[("f", upstream), ("probe", &probe.url())],
        extra,
    ))
}

/// A normal request on a new connection still works.
fn assert_serves(router: &Router, why: &str) {
    let r = Client::connect(router.addr()).exchange(&chat("probe"));
    assert_eq!(r.status, 200, "after {why}: {}", lossy(&r.raw));
}

/// An upstream that reads the request, answers it with `reply` and closes
/// its side (FIN, never RST: it drains what the router still sends).
fn replying(reply: Vec<u8>) -> RawUpstream {
    RawUpstream::start(move |mut s, _| {
        if read_raw_request(&mut s).is_some() {
            let _ = s.write_all(&reply);
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = [0u8; 1024];
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    })
}

/// Faults where nothing was sent to the client yet: each must be a 502.
#[test]
fn faults_before_the_first_response_byte_are_502() {
    let big_head = format!(
        "HTTP/1.1 200 OK\r\nX-{MARKER}: {}\r\nContent-Length: 2\r\n\r\nok",
        "h".repeat(70 * 1024)
    );
    let rows: Vec<(&str, Vec<u8>)> = vec![
        ("closes_before_head", Vec::new()),
        (
            "closes_inside_head",
            format!("HTTP/1.1 200 OK\r\nX-{MARKER}: 1\r\nContent-Le").into_bytes(),
        ),
        (
            "not_http",
            format!("SSH-2.0-{MARKER}\r\n\r\n").into_bytes(),
        ),
        (
            "body_without_head",
            format!("{{\"ok\":\"{MARKER}\"}}\r\n\r\n").into_bytes(),
        ),
        (
            "status_code_four_digits",
            format!("HTTP/1.1 2000 OK\r\nContent-Length: 6\r\n\r\n{MARKER}").into_bytes(),
        ),
        (
            "status_code_600",
            format!("HTTP/1.1 600 X\r\nContent-Length: 6\r\n\r\n{MARKER}").into_bytes(),
        ),
        (
            "http2_status_line",
            format!("HTTP/2.0 200 OK\r\nContent-Length: 6\r\n\r\n{MARKER}").into_bytes(),
        ),
        (
            "bare_lf_head",
            format!("HTTP/1.1 200 OK\nContent-Length: 6\n\n{MARKER}").into_bytes(),
        ),
        (
            "obs_fold_head",
            format!("HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 6\r\n\r\n{MARKER}")
                .into_bytes(),
        ),
        (
            "nul_in_header",
            format!("HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 6\r\n\r\n{MARKER}")
                .into_bytes(),
        ),
        (
            "content_length_not_digits",
            format!("HTTP/1.1 200 OK\r\nContent-Length: 6x\r\n\r\n{MARKER}").into_bytes(),
        ),
        (
            "content_length_conflict",
            format!("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Length: 7\r\n\r\n{MARKER}")
                .into_bytes(),
        ),
        (
            "http10_transfer_encoding",
            format!(
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{MARKER}\r\n0\r\n\r\n"
            )
            .into_bytes(),
        ),
        ("oversized_head", big_head.into_bytes()),
        (
            "bad_chunk_size_with_head",
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{MARKER}\r\n0\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "chunk_size_overflow_with_head",
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}\r\n{MARKER}\r\n0\r\n\r\n",
                "f".repeat(17)
            )
            .into_bytes(),
        ),
        (
            "unsolicited_101",
            format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n{MARKER}")
                .into_bytes(),
        ),
    ];
    let probe = FakeUpstream::ok();
    for (name, reply) in rows {
        let upstream = replying(reply);
        let router = router_for(&upstream.url(), &probe, json!({}));
        let mut client = Client::connect(router.addr());
        client.send(&chat("f"));
        let response = client
            .try_read_response(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{name}: expected a 502: {e}"));
        let code = response.assert_error(502);
        assert!(
            find(&response.raw, MARKER.as_bytes()).is_none() && client.buffered().is_empty(),
            "{name}: upstream bytes reached the client: {}",
            lossy(&response.raw)
        );
        assert!(code.is_string(), "{name}: error code {code}");
        // The client connection is still usable after an upstream fault.
        let again = client.exchange(&chat("probe"));
        assert_eq!(again.status, 200, "{name}: same connection afterwards");
        assert_serves(&router, name);
    }
}

/// An upstream that reads the request, writes `first`, waits for `gate`,
/// then ends the connection: `reset` leaves request bytes unread so that
/// the kernel answers the close with a RST.
fn after_head(first: Vec<u8>, then: Vec<u8>, gate: Gate, reset: bool) -> RawUpstream {
    RawUpstream::start(move |mut s, _| {
        if reset {
            // Wait for the request without consuming it: closing with
            // unread data makes Linux send RST instead of FIN.
            let mut probe = [0u8; 1];
            if s.peek(&mut probe).is_err() {
                return;
            }
        } else if read_raw_request(&mut s).is_none() {
            return;
        }
        let _ = s.write_all(&first);
        gate.wait(Duration::from_secs(10));
        let _ = s.write_all(&then);
        drop(s);
    })
}

/// Faults after the response started: the client sees the head and the
/// valid bytes, then its connection closes; the response never completes
/// and the bad bytes never arrive.
#[test]
fn faults_after_the_response_started_close_the_client_connection() {
    let chunked_head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    let length_head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"partial\":";
    // (name, first write, write after the client saw the first, reset)
    let rows: Vec<(&str, &str, String, bool)> = vec![
        ("reset_mid_body", length_head, String::new(), true),
        (
            "content_length_long_then_close",
            length_head,
            String::new(),
            false,
        ),
        ("chunked_reset_mid_body", chunked_head, String::new(), true),
        (
            "chunked_truncated_by_close",
            chunked_head,
            "6\r\nwor".into(),
            false,
        ),
        (
            "bad_chunk_size_after_head",
            chunked_head,
            format!("zz\r\n{MARKER}\r\n0\r\n\r\n"),
            false,
        ),
        (
            "chunk_data_without_crlf",
            chunked_head,
            format!("3\r\nabc{MARKER}\r\n0\r\n\r\n"),
            false,
        ),
        (
            "bare_lf_in_chunk_size",
            chunked_head,
            format!("6\n{MARKER}\r\n0\r\n\r\n"),
            false,
        ),
        (
            "trailer_obs_fold",
            chunked_head,
            format!("0\r\nX-T: a\r\n {MARKER}\r\n\r\n"),
            false,
        ),
    ];
    let probe = FakeUpstream::ok();
    for (name, first, then, reset) in rows {
        let gate = Gate::new();
        let upstream = after_head(first.into(), then.into_bytes(), gate.clone(), reset);
        let router = router_for(&upstream.url(), &probe, json!({}));
        let mut client = Client::connect(router.addr());
        client.send(&chat("f"));
        let saw_head = client.read_until_contains(b"\r\n\r\n", Duration::from_secs(5));
        assert!(saw_head.is_some(), "{name}: the head must be relayed");
        let status_line = lossy(&client.buffered()[..15]);
        assert!(
            status_line.starts_with("HTTP/1.1 200"),
            "{name}: the upstream's status is relayed, got {status_line:?}"
        );
        gate.open();
        let (bytes, closed) = client.read_to_close(Duration::from_secs(5));
        assert!(closed, "{name}: the client connection must close");
        assert!(
            find(&bytes, MARKER.as_bytes()).is_none(),
            "{name}: malformed bytes were relayed: {}",
            lossy(&bytes)
        );
        if let Ok(Some((r, _))) = parse_response(&bytes, true) {
            panic!(
                "{name}: a broken response must not look complete to the client: {}",
                lossy(&r.raw)
            );
        }
        assert_serves(&router, name);
    }
}

/// One upstream connection per test: answers its first request with
/// `first_reply`, every later one on the same connection with a body naming
/// the connection and the request (`c0-r1`), so that a desync, a reused
/// connection answering with leftover bytes, shows in the body.
fn desync_upstream(first_reply: Vec<u8>) -> (RawUpstream, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let upstream = RawUpstream::start(move |mut s, conn| {
        let mut n = 0;
        while let Some(request) = read_raw_request(&mut s) {
            let line = lossy(&request)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            log.lock().unwrap().push(format!("c{conn}-r{n}: {line}"));
            let reply = if n == 0 && conn == 0 {
                first_reply.clone()
            } else {
                let body = format!("c{conn}-r{n}");
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            };
            if s.write_all(&reply).is_err() {
                return;
            }
            n += 1;
        }
    });
    (upstream, seen)
}

/// A second, complete response hidden where the first one's body (or its
/// lack of one) ends.
fn smuggled_response() -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n{MARKER}")
}

/// Content-Length shorter than what follows, and 204/304 with a body: the
/// extra bytes are never relayed, and the next request on the same client
/// connection gets its own response, not the leftover bytes.
#[test]
fn extra_bytes_after_a_response_never_desync_the_next_one() {
    let rows: Vec<(&str, String, u16, &str)> = vec![
        (
            "content_length_short",
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello{}",
                smuggled_response()
            ),
            200,
            "hello",
        ),
        (
            "no_content_with_body",
            format!(
                "HTTP/1.1 204 No Content\r\nContent-Length: {}\r\n\r\n{}",
                smuggled_response().len(),
                smuggled_response()
            ),
            204,
            "",
        ),
        (
            "no_content_with_chunked_body",
            format!(
                "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                smuggled_response()
            ),
            204,
            "",
        ),
        (
            "not_modified_with_body",
            format!(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: {}\r\n\r\n{}",
                smuggled_response().len(),
                smuggled_response()
            ),
            304,
            "",
        ),
    ];
    let probe = FakeUpstream::ok();
    for (name, reply, status, body) in rows {
        let (upstream, seen) = desync_upstream(reply.into_bytes());
        let router = router_for(&upstream.url(), &probe, json!({}));
        let mut client = Client::connect(router.addr());
        let first = client.exchange(&chat("f"));
        assert_eq!(first.status, status, "{name}: {}", lossy(&first.raw));
        assert_eq!(lossy(&first.body), body, "{name}: first body");
        for round in 0..3 {
            let next = client.exchange(&chat("f"));
            let text = next.text();
            assert!(
                next.status == 200 && text.starts_with('c') && text.contains("-r"),
                "{name}: request {round} after the fault got {:?} (desync); upstream saw {:?}",
                lossy(&next.raw),
                seen.lock().unwrap()
            );
            // Reused or not, the connection the answer came on served
            // exactly the requests it says it served.
            assert_ne!(
                text, "c0-r1",
                "{name}: the faulty connection was reused after leftover bytes"
            );
        }
        assert!(
            find(client.buffered(), MARKER.as_bytes()).is_none(),
            "{name}: leftover bytes reached the client"
        );
        assert_serves(&router, name);
        drop(upstream);
    }
}

/// Interim 1xx responses before the final one (RFC 9110 §15.2): the final
/// response reaches the client intact, and any 1xx relayed is well formed.
#[test]
fn interim_responses_before_the_final_one() {
    let probe = FakeUpstream::ok();
    let reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}".to_vec();
    let (upstream, _) = desync_upstream(reply);
    let router = router_for(&upstream.url(), &probe, json!({}));
    let mut client = Client::connect(router.addr());
    client.send(&chat("f"));
    let mut interim = 0;
    let last = loop {
        let r = client.read_response();
        if (100..200).contains(&r.status) {
            interim += 1;
            assert!(interim <= 2, "more interim responses than were sent");
            continue;
        }
        break r;
    };
    println!("1xx: {interim} interim response(s) relayed");
    assert_eq!(last.status, 200, "{}", lossy(&last.raw));
    assert_eq!(last.text(), r#"{"ok":true}"#);
    // The connection is in step: the next request gets its own answer.
    let next = client.exchange(&chat("f"));
    assert_eq!(next.status, 200);
    assert!(next.text().starts_with('c'), "{}", lossy(&next.raw));
}

/// Fills the accept queue of a listener on 127.0.0.1 until a further
/// connect hangs; returns the listener's address and everything that must
/// stay alive to keep it full.
///
/// How: std's `TcpListener::bind` listens with a backlog of 128. Nobody
/// calls `accept`, so each completed handshake waits in the accept queue;
/// once it holds backlog + 1 connections, Linux drops further SYNs
/// (`tcp_abort_on_overflow` = 0, the default) and the client keeps
/// retransmitting: its connect hangs. The loop connects (each with a short
/// timeout) until one times out, which proves the queue full. No helper
/// process, no new dependency.
fn hanging_listener() -> (SocketAddr, std::net::TcpListener, Vec<TcpStream>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..10_000 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => return (addr, listener, held),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

/// SPEC §4: an upstream whose connect does not complete gives 504 after
/// the connect timeout, and the router keeps serving meanwhile.
#[test]
fn connect_that_hangs_is_504_after_the_connect_timeout() {
    let (addr, _listener, held) = hanging_listener();
    println!("accept queue full after {} connections", held.len());
    let probe = FakeUpstream::ok();
    let router = router_for(
        &format!("http://{addr}"),
        &probe,
        json!({ "timeouts": { "connectSeconds": 1 } }),
    );
    let waiting = thread::spawn({
        let addr = router.addr();
        move || {
            let mut client = Client::connect(addr);
            let start = Instant::now();
            let response = client.exchange(&chat("f"));
            (response, start.elapsed())
        }
    });
    // While that connect hangs, other requests are served.
    assert_serves(&router, "a hanging connect, meanwhile");
    let (response, elapsed) = waiting.join().unwrap();
    println!("504 after {elapsed:?}");
    response.assert_error(504);
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "504 must come after connectSeconds (1 s), came after {elapsed:?}"
    );
    assert_serves(&router, "a 504");
}

/// A reset before any response byte, and a refused connection, are 502s.
#[test]
fn reset_before_the_head_and_refused_connect_are_502() {
    let probe = FakeUpstream::ok();
    // Reads nothing: the close with the request unread is a RST.
    let resetting = RawUpstream::start(|s, _| {
        let mut byte = [0u8; 1];
        let _ = s.peek(&mut byte);
        drop(s);
    });
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
        // Dropped here: nothing listens on that port any more.
    };
    for (name, url) in [
        ("reset_before_head", resetting.url()),
        ("connection_refused", format!("http://{refused}")),
    ] {
        let router = router_for(&url, &probe, json!({}));
        let mut client = Client::connect(router.addr());
        let response = client.exchange(&chat("f"));
        response.assert_error(502);
        assert!(
            poll_until(Duration::from_secs(2), || router
                .logs()
                .contains("status=502")),
            "{name}: the 502 is logged"
        );
        assert_serves(&router, name);
    }
}

/// An upstream that answers before it has read the whole body (a 413 for
/// a body it will not take) and then closes: its answer reaches the client
/// (not a 502), and the client connection closes after it, since the rest
/// of the request body was never read.
#[test]
fn early_answer_of_an_upstream_that_stops_reading_is_relayed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let refusal = r#"{"error":"request too large"}"#;
    let answer = format!(
        "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{refusal}",
        refusal.len()
    );
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        conn.write_all(answer.as_bytes()).unwrap();
        // Closed with the body unread: the kernel resets the connection.
    });
    let router = Router::start(config_for(&[("m", &format!("http://{addr}"))], json!({})));
    let body = format!(r#"{{"model":"m","pad":"{}"}}"#, "p".repeat(32 << 20));
    let mut client = TcpStream::connect(router.addr()).unwrap();
    let mut writer = client.try_clone().unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let sending = thread::spawn(move || {
        let _ = writer.write_all(request.as_bytes());
    });
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = client.read(&mut chunk) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    server.join().unwrap();
    drop(client);
    sending.join().unwrap();
    let text = lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(text.ends_with(refusal), "the upstream's own answer: {text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
}
