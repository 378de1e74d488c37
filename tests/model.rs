//! SPEC §3 steps 7, 8 and 10: the model is the string value of the top-level
//! `model` key (JSON) or of the `model` part (multipart), found while the
//! body streams; missing, duplicate or malformed → 400; unknown → 404.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

/// Two upstreams so a test can tell which one a request reached.
struct Pair {
    m: FakeUpstream,
    other: FakeUpstream,
    router: Router,
}

fn pair() -> Pair {
    let m = FakeUpstream::start(|_| Reply::json(r#"{"served_by":"m"}"#));
    let other = FakeUpstream::start(|_| Reply::json(r#"{"served_by":"other"}"#));
    let router = Router::start(config_for(
        &[("m", &m.url()), ("other", &other.url())],
        json!({}),
    ));
    Pair { m, other, router }
}

fn post(router: &Router, body: &str) -> Response {
    Client::connect(router.addr()).exchange(&post_json("/v1/chat/completions", &[], body))
}

#[test]
fn step7_json_model_routes_to_its_upstream() {
    let p = pair();
    assert_eq!(
        post(&p.router, r#"{"model":"other","x":1}"#).json(),
        json!({"served_by":"other"})
    );
    assert_eq!(
        post(&p.router, r#"{"x":1,"model":"m"}"#).json(),
        json!({"served_by":"m"})
    );
    assert_eq!(p.m.requests().len(), 1);
    assert_eq!(p.other.requests().len(), 1);
}

/// Step 7/10: the model key after a 20 MiB string; the body still arrives
/// byte for byte.
#[test]
fn step7_model_last_in_20mib_body() {
    let p = pair();
    let filler = "x".repeat(20 << 20);
    let body = format!(r#"{{"input":"{filler}","model":"other"}}"#);
    let response = post(&p.router, &body);
    assert_eq!(response.json(), json!({"served_by":"other"}));
    let got = &p.other.wait_requests(1, Duration::from_secs(10))[0];
    assert_eq!(got.body_len, body.len() as u64);
    assert!(
        got.body == body.as_bytes(),
        "20 MiB body altered in transit"
    );
    p.m.assert_untouched();
}

#[test]
fn step7_nested_model_keys_ignored() {
    let p = pair();
    let body = r#"{"meta":{"model":"m"},"list":[{"model":"m"},"model",["model","m"]],"model":"other","tail":{"model":"m"}}"#;
    assert_eq!(post(&p.router, body).json(), json!({"served_by":"other"}));
    p.m.assert_untouched();
}

#[test]
fn step7_only_nested_model_is_400() {
    let p = pair();
    post(&p.router, r#"{"meta":{"model":"m"},"x":[{"model":"m"}]}"#).assert_error(400);
    p.m.assert_untouched();
}

#[test]
fn step7_escaped_key_and_value_are_unescaped() {
    let p = pair();
    assert_eq!(
        post(&p.router, r#"{"m\u006fdel":"other"}"#).json(),
        json!({"served_by":"other"})
    );
    assert_eq!(
        post(&p.router, r#"{"model":"\u006ft\u0068er"}"#).json(),
        json!({"served_by":"other"})
    );
}

/// Step 7: nesting far deeper than serde_json's 128 levels routes.
#[test]
fn step7_deep_nesting_routes() {
    let p = pair();
    let deep = "[{\"model\":\"x\",\"a\":".repeat(500) + "1" + &"}]".repeat(500);
    let body = format!(r#"{{"deep":{deep},"model":"m"}}"#);
    assert_eq!(post(&p.router, &body).json(), json!({"served_by":"m"}));
}

/// Step 7: pathological nesting (200 000 levels) cannot overflow a stack:
/// the router answers and keeps serving.
#[test]
fn step7_pathological_nesting_does_not_crash() {
    let p = pair();
    let deep = "[".repeat(200_000) + &"]".repeat(200_000);
    let body = format!(r#"{{"deep":{deep},"model":"m"}}"#);
    let response = post(&p.router, &body);
    assert!(
        matches!(response.status, 200 | 400),
        "expected the request routed or refused, got {}",
        lossy(&response.raw)
    );
    assert_eq!(post(&p.router, r#"{"model":"m"}"#).status, 200);
}

#[test]
fn step7_missing_model_is_400() {
    let p = pair();
    post(&p.router, r#"{"messages":[]}"#).assert_error(400);
    post(&p.router, r#"{}"#).assert_error(400);
    p.m.assert_untouched();
    p.other.assert_untouched();
}

#[test]
fn step7_duplicate_model_is_400() {
    let p = pair();
    post(&p.router, r#"{"model":"m","model":"m"}"#).assert_error(400);
    post(&p.router, r#"{"model":"m","x":1,"m\u006fdel":"other"}"#).assert_error(400);
}

#[test]
fn step7_model_not_a_string_is_400() {
    let p = pair();
    for body in [
        r#"{"model":5}"#,
        r#"{"model":null}"#,
        r#"{"model":["m"]}"#,
        r#"{"model":{"id":"m"}}"#,
        r#"{"model":true}"#,
        &format!(r#"{{"model":"{}"}}"#, "m".repeat(4097)),
    ] {
        let response = post(&p.router, body);
        assert_eq!(
            response.status,
            400,
            "body {body}: {}",
            lossy(&response.raw)
        );
        assert!(
            response
                .text()
                .contains("must be a UTF-8 string of at most 4096 bytes"),
            "the message says what a model must be: {}",
            response.text()
        );
    }
    p.m.assert_untouched();
}

#[test]
fn step7_top_level_not_an_object_is_400() {
    let p = pair();
    for body in [r#"["model","m"]"#, r#""model""#, "42", "null", "not json"] {
        let response = post(&p.router, body);
        assert_eq!(
            response.status,
            400,
            "body {body}: {}",
            lossy(&response.raw)
        );
    }
    p.m.assert_untouched();
}

/// Step 10: the model comes first, so the router streams the first MiB on
/// to the upstream; a second `model` key after that aborts the upstream
/// request (connection closed, request never completed) and the client
/// gets a 400.
#[test]
fn step10_late_duplicate_aborts_upstream_and_answers_400() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let filler = "f".repeat(3 << 20 >> 1); // 1.5 MiB
    let first = format!(r#"{{"model":"m","pad":"{filler}""#);
    let tail = r#","model":"m"}"#;
    let total = first.len() + tail.len();
    let mut client = Client::connect(router.addr());
    client.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nContent-Length: {total}\r\n\r\n"
        )
        .as_bytes(),
    );
    client.send(first.as_bytes());
    assert!(
        poll_until(Duration::from_secs(5), || upstream.bytes_received()
            >= 1 << 20),
        "router must stream the body on once the model is known; upstream got {} bytes",
        upstream.bytes_received()
    );
    let _ = client.send_lossy(tail.as_bytes());
    let response = client
        .try_read_response(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("expected a 400 for a late duplicate model: {e}"));
    response.assert_error(400);
    assert!(
        poll_until(Duration::from_secs(2), || upstream
            .conns()
            .iter()
            .all(|c| c.closed_at.is_some())),
        "the upstream connection must be closed/aborted: {:?}",
        upstream
            .conns()
            .iter()
            .map(|c| (c.bytes, c.closed_at))
            .collect::<Vec<_>>()
    );
    assert!(
        upstream.requests().is_empty(),
        "the upstream must never receive the complete request with the duplicate"
    );
}

/// A body streamed past the replay limit is released as it goes, head
/// included; the last bytes arriving alone (here: one byte) must still end
/// in a relayed response.
#[test]
fn step10_long_body_whose_last_byte_arrives_alone_is_relayed() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let filler = "f".repeat(3 << 20 >> 1); // 1.5 MiB
    let body = format!(r#"{{"model":"m","pad":"{filler}"}}"#);
    let (most, last) = body.split_at(body.len() - 1);
    let mut client = Client::connect(router.addr());
    client.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    client.send(most.as_bytes());
    assert!(
        poll_until(Duration::from_secs(5), || upstream.bytes_received()
            >= most.len() as u64),
        "upstream got {} bytes",
        upstream.bytes_received()
    );
    client.send(last.as_bytes());
    let response = client
        .try_read_response(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("no response after the last byte: {e}"));
    assert_eq!(response.status, 200);
    let got = upstream.wait_requests(1, Duration::from_secs(5));
    assert_eq!(got[0].body.len(), body.len());
}

#[test]
fn step8_unknown_model_is_404_model_not_found() {
    let p = pair();
    let response = post(&p.router, r#"{"model":"M"}"#);
    assert_eq!(response.assert_error(404), json!("model_not_found"));
    let response = post(&p.router, r#"{"model":"nope"}"#);
    assert_eq!(response.assert_error(404), json!("model_not_found"));
    p.m.assert_untouched();
    p.other.assert_untouched();
}

/// Step 7: `multipart/form-data` as `/v1/audio/transcriptions` sends it:
/// a binary file part first, the `model` part after it.
#[test]
fn step7_multipart_model_part_routes() {
    let p = pair();
    let boundary = "----llmhopBoundary7MA4YWxkTrZu0gW";
    let audio: Vec<u8> = (0..=255u8).cycle().take(50_000).collect();
    let mut body = Vec::new();
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend(&audio);
    body.extend(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nother\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    let head = format!(
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let response = Client::connect(p.router.addr()).exchange(&[head.as_bytes(), &body].concat());
    assert_eq!(response.json(), json!({"served_by":"other"}));
    let got = &p.other.wait_requests(1, Duration::from_secs(5))[0];
    assert!(got.body == body, "multipart body altered in transit");
    p.m.assert_untouched();
}

#[test]
fn step7_multipart_without_model_part_is_400() {
    let p = pair();
    let boundary = "b0undary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--{boundary}--\r\n"
    );
    let head = format!(
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    Client::connect(p.router.addr())
        .exchange((head + &body).as_bytes())
        .assert_error(400);
    p.m.assert_untouched();
}

#[test]
fn step7_request_without_body_is_400() {
    let p = pair();
    let mut client = Client::connect(p.router.addr());
    client.exchange(&get("/v1/files", &[])).assert_error(400);
    let empty = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nContent-Length: 0\r\n\r\n"
    );
    Client::connect(p.router.addr())
        .exchange(empty.as_bytes())
        .assert_error(400);
    p.m.assert_untouched();
    p.other.assert_untouched();
}

/// Step 7: the model found in a body that arrives a few bytes at a time.
#[test]
fn step7_model_split_across_many_reads() {
    let p = pair();
    let body = r#"{"stream":true,"model":"other"}"#;
    let mut client = Client::connect(p.router.addr());
    client.send_pieces(&post_json("/v1/chat/completions", &[], body), 3);
    assert_eq!(client.read_response().json(), json!({"served_by":"other"}));
}
