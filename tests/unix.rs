//! Unix-socket upstreams (issue 3 point 3): `"url": "unix:///path.sock"`,
//! as vLLM's `--uds` serves. Requests are routed to the socket with
//! `Host: localhost`, and the connection is pooled like a TCP one.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn request_is_routed_over_the_socket_with_host_localhost() {
    let up = UnixUpstream::start(|_| Reply::json(r#"{"via":"unix"}"#));
    let router = Router::start(config_for(&[("qwen", &up.url())], json!({})));
    let body = r#"{"model":"qwen","messages":[{"role":"user","content":"hi"}]}"#;
    let request = post_json("/v1/chat/completions?trace=1", &[], body);

    let response = Client::connect(router.addr()).exchange(&request);
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    assert_eq!(response.text(), r#"{"via":"unix"}"#);

    let seen = up.upstream().wait_requests(1, WAIT);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.target, "/v1/chat/completions?trace=1");
    assert_eq!(req.version, "HTTP/1.1");
    assert_eq!(
        req.header("host"),
        Some("localhost"),
        "a unix upstream gets `Host: localhost`; head sent: {}",
        lossy(&req.head)
    );
    assert_eq!(req.header_count("host"), 1);
    assert_eq!(req.body, body.as_bytes(), "body bytes unchanged");
    assert_eq!(up.accepted(), 1);
}

#[test]
fn two_sequential_requests_share_one_unix_connection() {
    let up = UnixUpstream::start(|r| Reply::json(format!(r#"{{"n":{}}}"#, r.conn)));
    let router = Router::start(config_for(&[("qwen", &up.url())], json!({})));

    let mut client = Client::connect(router.addr());
    for _ in 0..2 {
        let response = client.exchange(&chat("qwen"));
        assert_eq!(response.status, 200, "{}", lossy(&response.raw));
        assert_eq!(
            response.text(),
            r#"{"n":0}"#,
            "served on the first connection"
        );
    }
    let seen = up.upstream().wait_requests(2, WAIT);
    assert_eq!(
        up.accepted(),
        1,
        "the second request must reuse the pooled unix connection"
    );
    assert!(seen.iter().all(|r| r.conn == 0));
    assert_eq!(up.upstream().conns()[0].requests, 2);
}

#[test]
fn a_closed_pooled_unix_connection_does_not_cost_a_request() {
    // The backend closes idle connections quickly (uvicorn: after 5 s).
    let inner = FakeUpstream::start_with(
        Options {
            idle_close: Some(Duration::from_millis(200)),
            ..Options::default()
        },
        |_| Reply::json(r#"{"ok":true}"#),
    );
    let up = UnixUpstream::wrap(inner);
    let router = Router::start(config_for(&[("qwen", &up.url())], json!({})));

    let first = Client::connect(router.addr()).exchange(&chat("qwen"));
    assert_eq!(first.status, 200);
    assert!(
        poll_until(WAIT, || up
            .upstream()
            .conns()
            .first()
            .is_some_and(|c| c.idle_closed)),
        "the fake backend closes the idle connection"
    );
    let second = Client::connect(router.addr()).exchange(&chat("qwen"));
    assert_eq!(
        second.status,
        200,
        "a stale pooled unix connection must not cost a request: {}",
        lossy(&second.raw)
    );
    assert_eq!(up.upstream().wait_requests(2, WAIT).len(), 2);
    assert_eq!(
        up.accepted(),
        2,
        "a fresh connection for the second request"
    );
}

#[test]
fn a_missing_socket_is_a_502_whose_log_names_the_socket() {
    let dir = fresh_temp_dir("unix-missing");
    let url = format!("unix://{}", dir.join("absent.sock").display());
    let router = Router::start(config_for(&[("qwen", &url)], json!({})));

    let response = Client::connect(router.addr()).exchange(&chat("qwen"));
    response.assert_error(502);
    assert!(
        poll_until(WAIT, || router.logs().lines().any(|l| l
            .contains("upstream connect failed")
            && l.contains("absent.sock"))),
        "the log says which socket failed: {}",
        router.logs()
    );
    let _ = std::fs::remove_dir_all(dir);
}
