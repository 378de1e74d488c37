//! SPEC §3 step 2: the router's own endpoints, never forwarded: `/health`
//! without auth, `/v1/models` and `/v1/models/{id}` with auth.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "endpoint-token-31a7";

/// Four models whose sorted order differs from config order.
fn setup(tokens: bool) -> (FakeUpstream, Router) {
    let upstream = FakeUpstream::ok();
    let url = upstream.url();
    let extra = if tokens {
        json!({"authTokens": [TOKEN]})
    } else {
        json!({})
    };
    let router = Router::start(config_for(
        &[
            ("zeta", &url),
            ("alpha", &url),
            ("org/name", &url),
            ("Beta", &url),
        ],
        extra,
    ));
    (upstream, router)
}

fn model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "llmhop"})
}

#[test]
fn step2_health_without_auth_even_with_tokens() {
    let (upstream, router) = setup(true);
    let mut client = Client::connect(router.addr());
    let response = client.exchange(&get("/health", &[]));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    assert_eq!(response.json(), json!({"status":"ok","models":4}));
    assert!(response
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json")));
    // Still keep-alive afterwards.
    let again = client.exchange(&get("/health", &[]));
    assert_eq!(again.status, 200);
    upstream.assert_untouched();
}

/// HEAD gets the same answers without a body (RFC 9110 §9.3.2): `/health`
/// for probes that send HEAD, and a router-made error alike. Each is
/// followed on the same connection by a GET, whose answer must come right
/// after the head.
#[test]
fn head_requests_get_heads_only() {
    let (upstream, router) = setup(false);
    for (path, status) in [
        ("/health", "200 OK"),
        ("/v1/models/nope", "404 Not Found"),
        ("/v1/chat/completions", "400 Bad Request"),
    ] {
        let mut client = Client::connect(router.addr());
        let mut bytes = format!("HEAD {path} HTTP/1.1\r\nHost: {CLIENT_HOST}\r\n\r\n").into_bytes();
        bytes.extend_from_slice(&get("/health", &[]));
        client.send(&bytes);
        assert!(
            client
                .read_until_contains(b"\"status\":\"ok\"", Duration::from_secs(5))
                .is_some(),
            "{path}: no answer to the GET: {}",
            lossy(client.buffered())
        );
        let got = client.buffered().to_vec();
        let end = find(&got, b"\r\n\r\n").unwrap() + 4;
        let head = lossy(&got[..end]);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{path}: {head}"
        );
        assert!(head.contains("Content-Length: "), "{path}: {head}");
        assert!(
            got[end..].starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{path}: a body followed the HEAD answer: {}",
            lossy(&got)
        );
    }
    // A head refused before it is parsed: the answer is a head too, then
    // the close.
    for head in [
        "HEAD /health HTTP/1.1\r\nHost: a:b:c\r\n\r\n".to_owned(),
        format!(
            "HEAD /health HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "X: y\r\n".repeat(120)
        ),
    ] {
        let mut client = Client::connect(router.addr());
        client.send(head.as_bytes());
        let (got, closed) = client.read_to_close(Duration::from_secs(5));
        assert!(closed, "{}", lossy(&got));
        assert!(
            got.starts_with(b"HTTP/1.1 4") && got.ends_with(b"\r\n\r\n"),
            "a refused HEAD must get a head only: {}",
            lossy(&got)
        );
    }
    upstream.assert_untouched();
}

#[test]
fn step2_models_list_sorted_openai_shape() {
    let (upstream, router) = setup(false);
    let response = Client::connect(router.addr()).exchange(&get("/v1/models", &[]));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    assert_eq!(
        response.json(),
        json!({
            "object": "list",
            "data": [model("Beta"), model("alpha"), model("org/name"), model("zeta")]
        })
    );
    upstream.assert_untouched();
}

#[test]
fn step2_models_list_requires_auth_when_tokens_set() {
    let (upstream, router) = setup(true);
    let denied = Client::connect(router.addr()).exchange(&get("/v1/models", &[]));
    denied.assert_error(401);
    assert!(denied
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    let wrong = Client::connect(router.addr())
        .exchange(&get("/v1/models/alpha", &["Authorization: Bearer nope"]));
    wrong.assert_error(401);
    let auth = format!("Authorization: Bearer {TOKEN}");
    let allowed = Client::connect(router.addr()).exchange(&get("/v1/models", &[&auth]));
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.json()["data"].as_array().map(Vec::len), Some(4));
    upstream.assert_untouched();
    assert!(
        !router.logs_after_access(3).contains(TOKEN),
        "token leaked into the logs"
    );
}

#[test]
fn step2_model_by_id_percent_decoded() {
    let (upstream, router) = setup(false);
    let mut client = Client::connect(router.addr());
    let response = client.exchange(&get("/v1/models/org%2Fname", &[]));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    assert_eq!(response.json(), model("org/name"));
    let response = client.exchange(&get("/v1/models/alpha", &[]));
    assert_eq!(response.json(), model("alpha"));
    upstream.assert_untouched();
}

#[test]
fn step2_unknown_model_by_id_is_404() {
    let (upstream, router) = setup(false);
    let mut client = Client::connect(router.addr());
    for path in [
        "/v1/models/nope",
        "/v1/models/ALPHA",
        "/v1/models/org%2Fother",
    ] {
        client.exchange(&get(path, &[])).assert_error(404);
    }
    // An id that does not percent-decode is quoted as sent.
    let response = client.exchange(&get("/v1/models/al%zzpha", &[]));
    response.assert_error(404);
    assert!(
        response.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`al%zzpha`")),
        "{}",
        response.text()
    );
    upstream.assert_untouched();
}

/// The own endpoints are answered on a keep-alive connection that then
/// still forwards normally.
#[test]
fn step2_endpoints_and_forwarding_share_a_connection() {
    let (upstream, router) = setup(false);
    let mut client = Client::connect(router.addr());
    assert_eq!(client.exchange(&get("/v1/models", &[])).status, 200);
    assert_eq!(client.exchange(&chat("alpha")).status, 200);
    assert_eq!(client.exchange(&get("/health", &[])).status, 200);
    assert_eq!(upstream.wait_requests(1, Duration::from_secs(5)).len(), 1);
}
