//! SPEC §3 steps 3 and 6: bearer-token auth before anything about the body
//! or the model, `Authorization` stripped upstream, `Expect: 100-continue`
//! answered by the router only after auth, framing and cap passed.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const TOKEN: &str = "tok-secret-6f1c2a";
const TOKEN_2: &str = "second-token-9d8e";

fn setup() -> (FakeUpstream, Router) {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"authTokens": [TOKEN, TOKEN_2]}),
    ));
    (upstream, router)
}

fn chat_with(auth: &[&str]) -> Vec<u8> {
    post_json(
        "/v1/chat/completions",
        auth,
        r#"{"model":"m","messages":[]}"#,
    )
}

fn assert_401(response: &Response) {
    response.assert_error(401);
    assert!(
        response
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "401 must carry WWW-Authenticate: Bearer: {}",
        lossy(&response.raw)
    );
}

/// `requests`: how many were answered, all of whose lines are checked.
fn assert_no_secrets(router: &Router, requests: usize) {
    let logs = router.logs_after_access(requests);
    for secret in [TOKEN, TOKEN_2] {
        assert!(
            !logs.contains(secret),
            "a token leaked into the logs:\n{logs}"
        );
    }
}

#[test]
fn step3_missing_token_is_401() {
    let (upstream, router) = setup();
    assert_401(&Client::connect(router.addr()).exchange(&chat_with(&[])));
    upstream.assert_untouched();
}

#[test]
fn step3_wrong_token_is_401() {
    let (upstream, router) = setup();
    for header in [
        "Authorization: Bearer wrong".to_owned(),
        format!("Authorization: Bearer {TOKEN}x"),
        format!("Authorization: Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Authorization: Basic {TOKEN}"),
        format!("Authorization: {TOKEN}"),
        "Authorization: Bearer ".to_owned(),
    ] {
        assert_401(&Client::connect(router.addr()).exchange(&chat_with(&[&header])));
    }
    upstream.assert_untouched();
    assert_no_secrets(&router, 6);
}

#[test]
fn step3_right_token_forwarded_without_authorization() {
    let (upstream, router) = setup();
    let mut client = Client::connect(router.addr());
    for token in [TOKEN, TOKEN_2] {
        let response = client.exchange(&chat_with(&[&format!("Authorization: Bearer {token}")]));
        assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    }
    for got in upstream.wait_requests(2, Duration::from_secs(5)) {
        assert_eq!(
            got.header("authorization"),
            None,
            "client token must not reach the upstream: {}",
            lossy(&got.head)
        );
        assert!(!lossy(&got.raw()).contains(TOKEN) && !lossy(&got.raw()).contains(TOKEN_2));
    }
    assert_no_secrets(&router, 2);
}

/// Step 3: the configured upstream Authorization replaces the client's.
#[test]
fn step3_client_token_replaced_by_configured_upstream_key() {
    let upstream = FakeUpstream::ok();
    let router = Router::start_with_env(
        json!({
            "authTokens": ["${env:LLMHOP_TEST_CLIENT_TOKEN}"],
            "models": { "m": {
                "url": upstream.url(),
                "headers": { "Authorization": "Bearer ${env:LLMHOP_TEST_UPSTREAM_KEY}" }
            } }
        }),
        &[
            ("LLMHOP_TEST_CLIENT_TOKEN", TOKEN),
            ("LLMHOP_TEST_UPSTREAM_KEY", "sk-upstream-4b5c"),
        ],
    );
    let response = Client::connect(router.addr())
        .exchange(&chat_with(&[&format!("Authorization: Bearer {TOKEN}")]));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    let got = &upstream.wait_requests(1, Duration::from_secs(5))[0];
    assert_eq!(got.header_count("authorization"), 1);
    assert_eq!(got.header("authorization"), Some("Bearer sk-upstream-4b5c"));
    let logs = router.logs_after_access(1);
    assert!(
        !logs.contains(TOKEN) && !logs.contains("sk-upstream-4b5c"),
        "secrets leaked into the logs:\n{logs}"
    );
}

/// Step 3: auth runs before the body: a wrong token with a huge declared
/// body is refused without the client sending a byte of it.
#[test]
fn step3_auth_before_body() {
    let (upstream, router) = setup();
    let mut client = Client::connect(router.addr());
    client.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nAuthorization: Bearer wrong\r\nContent-Length: 50000000\r\n\r\n"
        )
        .as_bytes(),
    );
    let response = client
        .try_read_response(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("401 must come before the body is sent: {e}"));
    assert_401(&response);
    upstream.assert_untouched();
}

/// Step 3: auth runs before the model: an unknown model with no token is
/// 401, not 404.
#[test]
fn step3_auth_before_model_lookup() {
    let (upstream, router) = setup();
    let response = Client::connect(router.addr()).exchange(&post_json(
        "/v1/chat/completions",
        &[],
        r#"{"model":"unknown"}"#,
    ));
    assert_401(&response);
    upstream.assert_untouched();
}

/// Step 6: with a valid token the router answers `100 Continue`, the client
/// then sends a 2 MiB body, and the upstream sees no `Expect`.
#[test]
fn step6_expect_100_continue_answered_after_auth() {
    let (upstream, router) = setup();
    let body = format!(r#"{{"model":"m","input":"{}"}}"#, "e".repeat(2 << 20));
    let mut client = Client::connect(router.addr());
    client.send(
        format!(
            "POST /v1/embeddings HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let interim = client
        .try_read_response(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("expected HTTP/1.1 100 Continue before sending the body: {e}"));
    assert_eq!(interim.status, 100, "{}", lossy(&interim.raw));
    client.send(body.as_bytes());
    let response = client.read_response();
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    let got = &upstream.wait_requests(1, Duration::from_secs(5))[0];
    assert_eq!(got.header("expect"), None, "{}", lossy(&got.head));
    assert!(got.body == body.as_bytes(), "2 MiB body altered");
}

/// Step 3 before step 4: a head whose body cannot be framed gets 401 when
/// it carries no valid token, its framing status only with one; either way
/// the connection closes and nothing reaches the upstream.
#[test]
fn step3_auth_is_answered_before_a_framing_fault() {
    let (upstream, router) = setup();
    let rows = [
        ("Transfer-Encoding: gzip", 501),
        ("Content-Length: 1\r\nContent-Length: 1", 400),
        ("Content-Length: 1\r\nTransfer-Encoding: chunked", 400),
    ];
    for (framing, status) in rows {
        for (auth, want) in [("", 401), ("Authorization: Bearer wrong\r\n", 401)]
            .into_iter()
            .chain([(&*format!("Authorization: Bearer {TOKEN}\r\n"), status)])
        {
            let mut client = Client::connect(router.addr());
            client.send(
                format!("POST /v1/chat/completions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\n{auth}{framing}\r\n\r\nx")
                    .as_bytes(),
            );
            let response = client
                .try_read_response(Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("{framing:?}: {e}"));
            response.assert_error(want);
            client.assert_closed(Duration::from_secs(3), framing);
        }
    }
    upstream.assert_untouched();
}

/// Step 6: a rejected request gets its final status, never a 100.
#[test]
fn step6_expect_with_wrong_token_gets_401_and_no_100() {
    let (upstream, router) = setup();
    let mut client = Client::connect(router.addr());
    client.send(
        format!(
            "POST /v1/embeddings HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nAuthorization: Bearer wrong\r\nExpect: 100-continue\r\nContent-Length: 2097152\r\n\r\n"
        )
        .as_bytes(),
    );
    let response = client
        .try_read_response(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("expected a 401 without sending the body: {e}"));
    assert_ne!(
        response.status, 100,
        "no 100 Continue for a rejected request"
    );
    assert_401(&response);
    upstream.assert_untouched();
}

/// Step 6: whatever the head alone can refuse is refused before a 100: a
/// route path naming no model, or a model that does not exist, or a request
/// with no body to find one in.
#[test]
fn step6_expect_refused_by_the_head_gets_no_100() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let rows = [
        ("POST /route//x", "Content-Length: 3\r\n", 400),
        ("POST /route/nope/x", "Content-Length: 3\r\n", 404),
        ("POST /v1/embeddings", "Content-Length: 0\r\n", 400),
        ("GET /v1/embeddings", "", 400),
    ];
    for (line, framing, status) in rows {
        let mut client = Client::connect(router.addr());
        client.send(
            format!(
                "{line} HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nExpect: 100-continue\r\n{framing}\r\n"
            )
            .as_bytes(),
        );
        let response = client
            .try_read_response(Duration::from_secs(3))
            .unwrap_or_else(|e| {
                panic!("{line}: expected a {status} without sending the body: {e}")
            });
        assert_ne!(
            response.status, 100,
            "{line}: no 100 Continue for a rejected request"
        );
        response.assert_error(status);
    }
    upstream.assert_untouched();
}

/// Step 6: over the cap with Expect: final 413, no 100.
#[test]
fn step6_expect_over_cap_gets_413_and_no_100() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({"maxBodyBytes": 1024}),
    ));
    let mut client = Client::connect(router.addr());
    client.send(
        format!(
            "POST /v1/embeddings HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nExpect: 100-continue\r\nContent-Length: 4096\r\n\r\n"
        )
        .as_bytes(),
    );
    let response = client
        .try_read_response(Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("expected a 413 without sending the body: {e}"));
    assert_ne!(
        response.status, 100,
        "no 100 Continue for a rejected request"
    );
    response.assert_error(413);
    upstream.assert_untouched();
}
