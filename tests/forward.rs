//! SPEC §3 step 9 (forward), step 11 (relay) and step 13 (client reuse):
//! what the upstream receives is the client's request byte for byte, except
//! for the rewrites the SPEC lists.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

/// Step 9: request line with prefix, header order and spelling, whitespace
/// normalized around the colon, Host rewritten in place, hop-by-hop fields
/// (and the names Connection lists), Proxy-Authorization and Expect removed,
/// X-Forwarded-For added after the client's fields, configured header last
/// replacing the client's field of the same name, body unchanged.
#[test]
fn step9_forwarded_head_is_byte_exact() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(json!({
        "models": { "m": {
            "url": format!("{}/prefix", upstream.url()),
            "headers": { "X-API-KEY": "configured-value" }
        } }
    }));
    let body = r#"{"model":"m","messages":[{"role":"user","content":"h\u00e9"}],"n":1}"#;
    let request = format!(
        "POST /v1/chat/completions?api-version=2&x=%2F HTTP/1.1\r\n\
         x-Lower-Case: A\r\n\
         Host: {CLIENT_HOST}\r\n\
         Content-Type:application/json\r\n\
         Connection: keep-alive, X-Drop-Me\r\n\
         X-Drop-Me: gone\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\n\
         TE: trailers\r\n\
         Trailer: X-Foo\r\n\
         Upgrade: h2c\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
         X-Custom:    spaced value\r\n\
         x-api-key: client-value\r\n\
         Authorization: Bearer client-token-kept\r\n\
         Content-Length: {}\r\n\
         \r\n{body}",
        body.len()
    );
    let response = Client::connect(router.addr()).exchange(request.as_bytes());
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));

    let got = upstream.wait_requests(1, Duration::from_secs(5));
    let expected = format!(
        "POST /prefix/v1/chat/completions?api-version=2&x=%2F HTTP/1.1\r\n\
         x-Lower-Case: A\r\n\
         Host: {}\r\n\
         Content-Type: application/json\r\n\
         X-Custom: spaced value\r\n\
         Authorization: Bearer client-token-kept\r\n\
         Content-Length: {}\r\n\
         X-Forwarded-For: 127.0.0.1\r\n\
         X-API-KEY: configured-value\r\n\
         \r\n{body}",
        upstream.authority(),
        body.len()
    );
    assert_eq!(
        lossy(&got[0].raw()),
        expected,
        "upstream must receive exactly the rewritten request"
    );
}

/// Step 9: the url's path prefix is joined to the request path with exactly
/// one `/`, whatever slashes the config has.
#[test]
fn step9_prefix_joined_with_one_slash() {
    let upstream = FakeUpstream::ok();
    let base = upstream.url();
    let cases = [
        ("bare", base.clone(), "/v1/embeddings"),
        ("slash", format!("{base}/"), "/v1/embeddings"),
        ("api", format!("{base}/api"), "/api/v1/embeddings"),
        ("api-slash", format!("{base}/api/"), "/api/v1/embeddings"),
        ("deep", format!("{base}/a/b/v2"), "/a/b/v2/v1/embeddings"),
    ];
    let models: Vec<(&str, &str)> = cases.iter().map(|(m, u, _)| (*m, u.as_str())).collect();
    let router = Router::start(config_for(&models, json!({})));
    let mut client = Client::connect(router.addr());
    for (i, (model, _, want)) in cases.iter().enumerate() {
        let body = format!(r#"{{"model":"{model}","input":"x"}}"#);
        let response = client.exchange(&post_json("/v1/embeddings?q=1", &[], &body));
        assert_eq!(response.status, 200, "{}", lossy(&response.raw));
        let got = upstream.wait_requests(i + 1, Duration::from_secs(5));
        assert_eq!(
            got[i].target,
            format!("{want}?q=1"),
            "model {model}: path prefix join"
        );
        assert_eq!(got[i].version, "HTTP/1.1");
    }
}

/// Step 9: an existing X-Forwarded-For gets the client address appended in place.
#[test]
fn step9_existing_x_forwarded_for_is_appended_in_place() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let body = r#"{"model":"m"}"#;
    let response = Client::connect(router.addr()).exchange(&post_json(
        "/v1/completions",
        &["X-Forwarded-For: 10.0.0.1, 10.0.0.2", "X-After: 1"],
        body,
    ));
    assert_eq!(response.status, 200);
    let got = &upstream.wait_requests(1, Duration::from_secs(5))[0];
    let names: Vec<&str> = got.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Host",
            "Content-Type",
            "X-Forwarded-For",
            "X-After",
            "Content-Length"
        ],
        "X-Forwarded-For must stay where the client put it: {}",
        lossy(&got.head)
    );
    assert_eq!(
        got.header("x-forwarded-for"),
        Some("10.0.0.1, 10.0.0.2, 127.0.0.1")
    );
}

/// Step 9: configured headers are set last and replace every client field of
/// the same name, case-insensitively; several configured headers all apply.
#[test]
fn step9_configured_headers_replace_client_fields() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(json!({
        "models": { "m": {
            "url": upstream.url(),
            "headers": { "Authorization": "Bearer upstream-key", "OpenAI-Organization": "org-1" }
        } }
    }));
    let response = Client::connect(router.addr()).exchange(&post_json(
        "/v1/chat/completions",
        &[
            "authorization: Bearer client-key",
            "openai-organization: client-org",
            "OPENAI-ORGANIZATION: client-org-2",
        ],
        r#"{"model":"m"}"#,
    ));
    assert_eq!(response.status, 200);
    let got = &upstream.wait_requests(1, Duration::from_secs(5))[0];
    assert_eq!(got.header_count("authorization"), 1, "{}", lossy(&got.head));
    assert_eq!(got.header("authorization"), Some("Bearer upstream-key"));
    assert_eq!(
        got.header_count("openai-organization"),
        1,
        "{}",
        lossy(&got.head)
    );
    assert_eq!(got.header("openai-organization"), Some("org-1"));
    let last_two: Vec<&str> = got.headers[got.headers.len() - 2..]
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        last_two.contains(&"Authorization") && last_two.contains(&"OpenAI-Organization"),
        "configured headers must come last, in their configured spelling: {}",
        lossy(&got.head)
    );
}

/// Step 9: a configured `Host` replaces the upstream's authority (a virtual
/// host reached by address), in the client's Host position, once.
#[test]
fn step9_configured_host_replaces_the_authority() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(json!({
        "models": { "m": { "url": upstream.url(), "headers": { "host": "llm.internal:8443" } } }
    }));
    let response = Client::connect(router.addr()).exchange(&post_json(
        "/v1/chat/completions",
        &[],
        r#"{"model":"m"}"#,
    ));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    let got = &upstream.wait_requests(1, Duration::from_secs(5))[0];
    assert_eq!(got.header_count("host"), 1, "{}", lossy(&got.head));
    assert_eq!(got.header("host"), Some("llm.internal:8443"));
    assert_eq!(got.headers[0].0, "Host", "{}", lossy(&got.head));
}

/// Step 9: a chunked body is forwarded with its own framing, chunk
/// boundaries and extensions byte for byte; the model spans two chunks.
#[test]
fn step9_chunked_body_forwarded_byte_for_byte() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let body = b"6;ext=\"quoted\"\r\n{\"mode\r\n4\r\nl\":\"\r\n3;a=b;c\r\nm\",\r\n0B\r\n\"n\":1234567\r\n1\r\n}\r\n0\r\n\r\n";
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    );
    let response = Client::connect(router.addr()).exchange(&[head.as_bytes(), body].concat());
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    let got = &upstream.wait_requests(1, Duration::from_secs(5))[0];
    assert_eq!(lossy(&got.raw_body), lossy(body), "chunked wire bytes");
    assert_eq!(got.header("transfer-encoding"), Some("chunked"));
    assert_eq!(got.header("content-length"), None);
    assert_eq!(lossy(&got.body), r#"{"model":"m","n":1234567}"#);
}

/// Step 9: a Content-Length body with arbitrary bytes (escapes, UTF-8,
/// whitespace) arrives identical.
#[test]
fn step9_content_length_body_forwarded_identically() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let body = " \n\t{ \"a\" : [1, 2.5e3, null, {\"model\":\"nested\"}],\r\n \"model\" :\t\"m\", \"s\": \"\\\"\\u0000\u{1F600}\" }\n";
    let response =
        Client::connect(router.addr()).exchange(&post_json("/v1/completions", &[], body));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    let got = &upstream.wait_requests(1, Duration::from_secs(5))[0];
    assert_eq!(got.body, body.as_bytes());
    assert_eq!(got.header("content-length"), Some(&*body.len().to_string()));
}

/// Step 1: an absolute-form target is reduced to its path and query.
#[test]
fn step1_absolute_form_target_reduced_to_path() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("m", &format!("{}/base", upstream.url()))],
        json!({}),
    ));
    let body = r#"{"model":"m"}"#;
    let request = format!(
        "POST http://{CLIENT_HOST}:8080/v1/completions?a=b&c HTTP/1.1\r\nHost: {CLIENT_HOST}:8080\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = Client::connect(router.addr()).exchange(request.as_bytes());
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    let got = &upstream.wait_requests(1, Duration::from_secs(5))[0];
    assert_eq!(got.method, "POST");
    assert_eq!(got.target, "/base/v1/completions?a=b&c");
    assert_eq!(got.header("host"), Some(&*upstream.authority()));
}

/// Step 13: pipelined requests in one write are answered in order, even
/// when the first answer is the slow one.
#[test]
fn step13_pipelined_requests_answered_in_order() {
    let upstream = FakeUpstream::start(|req| {
        let input = req.json()["input"].as_str().unwrap().to_owned();
        if input == "first" {
            Reply::sse(
                vec!["data: first-a\n\n".into(), "data: first-b\n\n".into()],
                Duration::from_millis(150),
            )
        } else {
            Reply::json(format!(r#"{{"echo":"{input}"}}"#))
        }
    });
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    let mut pipeline = Vec::new();
    for input in ["first", "second", "third"] {
        pipeline.extend(post_json(
            "/v1/embeddings",
            &[],
            &format!(r#"{{"model":"m","input":"{input}"}}"#),
        ));
    }
    client.send(&pipeline);
    let first = client.read_response();
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "data: first-a\n\ndata: first-b\n\n");
    assert_eq!(client.read_response().json(), json!({"echo":"second"}));
    assert_eq!(client.read_response().json(), json!({"echo":"third"}));
}

/// Step 11: an HTTP/1.0 client gets a chunked upstream body de-chunked and
/// the connection closed; the upstream still sees HTTP/1.1 with its Host.
#[test]
fn step11_http10_client_gets_dechunked_body_and_close() {
    let upstream = FakeUpstream::start(|_| {
        Reply::Chunked(vec![
            b"{\"id\":".to_vec(),
            b"\"cmpl-1\",".to_vec(),
            b"\"n\":3}".to_vec(),
        ])
    });
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let body = r#"{"model":"m"}"#;
    let request = format!(
        "POST /v1/completions HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut client = Client::connect(router.addr());
    client.send(request.as_bytes());
    let (bytes, closed) = client.read_to_close(Duration::from_secs(5));
    assert!(
        closed,
        "HTTP/1.0 response must end with a close: {}",
        lossy(&bytes)
    );
    let responses = parse_all_responses(&bytes);
    assert_eq!(responses.len(), 1, "{}", lossy(&bytes));
    let response = &responses[0];
    assert_eq!(response.status, 200);
    assert!(
        !response.is_chunked(),
        "HTTP/1.0 client must not get chunked: {}",
        lossy(&bytes)
    );
    assert_eq!(response.text(), r#"{"id":"cmpl-1","n":3}"#);
    if let Some(len) = response.header("content-length") {
        assert_eq!(len, response.body.len().to_string());
    }
    let got = &upstream.wait_requests(1, Duration::from_secs(5))[0];
    assert_eq!(got.version, "HTTP/1.1");
    assert_eq!(got.header("host"), Some(&*upstream.authority()));
}

/// RFC 9112 §6.1: no Transfer-Encoding to an HTTP/1.0 client, also on the
/// head answering its HEAD (which has no body to de-chunk).
#[test]
fn http10_head_gets_no_transfer_encoding() {
    let upstream = FakeUpstream::start(|_| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec())
    });
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    client.send(b"HEAD /route/m/v1/x HTTP/1.0\r\n\r\n");
    let (bytes, closed) = client.read_to_close(Duration::from_secs(5));
    assert!(closed, "{}", lossy(&bytes));
    let text = lossy(&bytes).to_ascii_lowercase();
    assert!(
        text.starts_with("http/1.1 200 ok\r\n") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
    assert!(!text.contains("transfer-encoding"), "{text}");
}

/// Step 13: one client connection carries several requests (HTTP/1.1 is
/// keep-alive by default) and stays open after them.
#[test]
fn step13_client_connection_kept_alive_across_requests() {
    let upstream = FakeUpstream::start(|req| {
        Reply::json(format!(r#"{{"n":{}}}"#, req.json()["n"].as_u64().unwrap()))
    });
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    for n in 0..5 {
        let response = client.exchange(&post_json(
            "/v1/completions",
            &[],
            &format!(r#"{{"model":"m","n":{n}}}"#),
        ));
        assert_eq!(response.status, 200);
        assert_eq!(response.json(), json!({ "n": n }));
        assert!(
            !response
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close")),
            "keep-alive response must not say Connection: close"
        );
    }
    assert!(
        !client.closed_within(Duration::from_millis(200)),
        "router closed a keep-alive connection"
    );
}

/// Step 13: `Connection: close` from the client is honoured after the
/// response (and not forwarded).
#[test]
fn step13_client_connection_close_honoured() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    let response = client.exchange(&post_json(
        "/v1/completions",
        &["Connection: close"],
        r#"{"model":"m"}"#,
    ));
    assert_eq!(response.status, 200);
    client.assert_closed(Duration::from_secs(2), "client sent Connection: close");
    let got = &upstream.wait_requests(1, Duration::from_secs(5))[0];
    assert_eq!(got.header("connection"), None, "{}", lossy(&got.head));
}

/// Step 11: the upstream's status, headers and body reach the client
/// unchanged.
#[test]
fn step11_upstream_status_headers_body_relayed() {
    let upstream = FakeUpstream::start(|_| {
        Reply::Raw(
            b"HTTP/1.1 418 I'm a teapot\r\nContent-Type: application/json\r\nX-Upstream-Header: kept\r\nx-request-id: abc\r\nContent-Length: 17\r\n\r\n{\"teapot\":\"yes\"}\n"
                .to_vec(),
        )
    });
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let response = Client::connect(router.addr()).exchange(&chat("m"));
    assert_eq!(response.status, 418);
    assert_eq!(response.header("x-upstream-header"), Some("kept"));
    assert_eq!(response.header("x-request-id"), Some("abc"));
    assert_eq!(response.text(), "{\"teapot\":\"yes\"}\n");
}

/// Step 11: large response bodies — Content-Length, chunked in uneven
/// pieces, close-delimited — arrive byte for byte, twice on one keep-alive
/// connection (the relay starts with a small buffer and grows it; nothing
/// may be lost or repeated at a boundary).
#[test]
fn step11_large_response_bodies_relayed_byte_for_byte() {
    // Not a repeating pattern, so that a dropped or doubled piece shows.
    let body: Vec<u8> = (0u32..3 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let chunks: Vec<Vec<u8>> = body
        .chunks(70_001)
        .flat_map(|c| {
            let (a, b) = c.split_at(c.len().min(3));
            [a.to_vec(), b.to_vec()]
        })
        .filter(|c| !c.is_empty())
        .collect();
    let mut with_length =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    with_length.extend_from_slice(&body);
    let (length_reply, chunked_reply) = (with_length.clone(), chunks.clone());
    let upstream = FakeUpstream::start(move |r| match r.json()["model"].as_str() {
        Some("length") => Reply::Raw(length_reply.clone()),
        _ => Reply::Chunked(chunked_reply.clone()),
    });
    let closing = FakeUpstream::start({
        let body = body.clone();
        move |_| Reply::CloseDelimited(body.clone())
    });
    let router = Router::start(config_for(
        &[
            ("length", &upstream.url()),
            ("chunked", &upstream.url()),
            ("closing", &closing.url()),
        ],
        json!({}),
    ));
    let mut client = Client::connect(router.addr());
    for model in ["length", "chunked", "length", "chunked"] {
        let response = client.exchange(&chat(model));
        assert_eq!(response.status, 200, "{model}");
        assert!(
            response.body == body,
            "{model}: body differs ({} bytes)",
            response.body.len()
        );
    }
    let mut client = Client::connect(router.addr());
    client.send(&chat("closing"));
    let (bytes, closed) = client.read_to_close(Duration::from_secs(10));
    assert!(closed);
    let responses = parse_all_responses(&bytes);
    assert_eq!(responses.len(), 1);
    assert!(responses[0].body == body, "close-delimited body differs");
}

/// Step 11: a close-delimited upstream body is relayed unchanged and the
/// client connection then closes, announced with `Connection: close`.
#[test]
fn step11_close_delimited_response_relayed_then_closed() {
    let upstream =
        FakeUpstream::start(|_| Reply::CloseDelimited(b"{\"until\":\"close\"}".to_vec()));
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    client.send(&chat("m"));
    let (bytes, closed) = client.read_to_close(Duration::from_secs(5));
    assert!(closed, "router must close after a close-delimited body");
    let responses = parse_all_responses(&bytes);
    assert_eq!(responses.len(), 1, "{}", lossy(&bytes));
    assert_eq!(responses[0].status, 200);
    assert_eq!(responses[0].text(), "{\"until\":\"close\"}");
    assert!(
        responses[0]
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close")),
        "router closing the client connection must say Connection: close: {}",
        lossy(&bytes)
    );
}

/// §6: one access-log line per request with the documented keys.
#[test]
fn access_log_line_per_request() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    assert_eq!(client.exchange(&chat("m")).status, 200);
    assert_eq!(client.exchange(&chat("nope")).status, 404);
    assert!(
        poll_until(Duration::from_secs(2), || router.access_lines().len() >= 2),
        "expected 2 access-log lines; stderr:\n{}",
        router.logs()
    );
    let lines = router.access_lines();
    let first = logfmt(&lines[0]);
    for key in [
        "time",
        "client",
        "method",
        "path",
        "model",
        "status",
        "upstream",
        "duration_ms",
        "bytes_in",
        "bytes_out",
    ] {
        assert!(
            first.contains_key(key),
            "access log lacks {key}: {}",
            lines[0]
        );
    }
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/v1/chat/completions");
    assert_eq!(first["model"], "m");
    assert_eq!(first["status"], "200");
    assert_eq!(logfmt(&lines[1])["status"], "404");
}
