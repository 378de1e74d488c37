//! SPEC §3 steps 1 and 4: malformed heads and conflicting body framing are
//! rejected with 400 (501 for an unknown coding), the connection closes, and
//! not a single byte reaches an upstream. A fresh, well-formed request on a
//! new connection then succeeds.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

/// Sends `request` on a fresh connection, expects `status` and a close, an
/// untouched upstream, and a working router afterwards.
fn assert_rejected(request: &[u8], status: u16) {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let mut client = Client::connect(router.addr());
    let _ = client.send_lossy(request);
    let response = client
        .try_read_response(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("expected a {status} for {:?}: {e}", lossy(request)));
    response.assert_error(status);
    client.assert_closed(
        Duration::from_secs(2),
        &format!("after a {status} framing error"),
    );
    let rest = client.buffered().to_vec();
    assert!(
        !rest.windows(5).any(|w| w == b"HTTP/"),
        "no second response may follow a framing error: {}",
        lossy(&rest)
    );
    upstream.assert_untouched();

    let fresh = Client::connect(router.addr()).exchange(&chat("m"));
    assert_eq!(
        fresh.status,
        200,
        "a normal request after the rejection: {}",
        lossy(&fresh.raw)
    );
    assert_eq!(upstream.wait_requests(1, Duration::from_secs(5)).len(), 1);
}

fn head(lines: &[&str]) -> String {
    let mut out = String::from("POST /v1/chat/completions HTTP/1.1\r\n");
    for line in lines {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out
}

const BODY: &str = r#"{"model":"m"}"#;

#[test]
fn step4_content_length_and_transfer_encoding_is_400() {
    let request = head(&[
        "Host: x",
        "Content-Length: 13",
        "Transfer-Encoding: chunked",
    ]) + "d\r\n"
        + BODY
        + "\r\n0\r\n\r\n";
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step4_two_content_length_fields_is_400() {
    let request = head(&["Host: x", "Content-Length: 13", "Content-Length: 13"]) + BODY;
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step4_content_length_list_is_400() {
    let request = head(&["Host: x", "Content-Length: 13, 13"]) + BODY;
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step4_content_length_with_sign_is_400() {
    let request = head(&["Host: x", "Content-Length: +13"]) + BODY;
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step4_transfer_encoding_gzip_is_501() {
    let request = head(&["Host: x", "Transfer-Encoding: gzip"]) + BODY;
    assert_rejected(request.as_bytes(), 501);
}

#[test]
fn step4_chunk_size_overflow_is_400() {
    let request =
        head(&["Host: x", "Transfer-Encoding: chunked"]) + "10000000000000000d\r\n" + BODY + "\r\n";
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step4_chunk_size_not_hex_is_400() {
    let request = head(&["Host: x", "Transfer-Encoding: chunked"]) + "zz\r\n" + BODY + "\r\n";
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step4_chunk_line_bare_lf_is_400() {
    let request = head(&["Host: x", "Transfer-Encoding: chunked"]) + "d\n" + BODY + "\r\n0\r\n\r\n";
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step4_obs_fold_is_400() {
    let request = head(&[
        "Host: x",
        "X-Folded: first",
        "  continued",
        "Content-Length: 13",
    ]) + BODY;
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step4_bare_lf_in_head_is_400() {
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: b\nX-C: d\r\nContent-Length: 13\r\n\r\n{BODY}"
    );
    assert_rejected(request.as_bytes(), 400);
}

/// A bare LF is refused when it arrives, not when (if ever) the head
/// ends: a head that never ends would otherwise wait for its 408.
#[test]
fn step4_bare_lf_in_an_unfinished_head_is_400_at_once() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({ "timeouts": { "headSeconds": 30 } }),
    ));
    let mut client = Client::connect(router.addr());
    client.send(b"POST /v1/chat/completions HTTP/1.1\r\n");
    // Apart, so that the router has parsed the first line alone (not a
    // readiness wait: the result is the same if they arrive together).
    std::thread::sleep(Duration::from_millis(50));
    client.send(b"Host: x\nX-A: 1\r\n");
    let response = client
        .try_read_response(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("expected a 400 before the head ends: {e}"));
    response.assert_error(400);
    upstream.assert_untouched();
}

#[test]
fn step4_bare_lf_line_ends_is_400() {
    let request =
        format!("POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Length: 13\n\n{BODY}");
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step4_bare_cr_in_head_is_400() {
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: b\rX-C: d\r\nContent-Length: 13\r\n\r\n{BODY}"
    );
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step1_space_before_colon_is_400() {
    let request = head(&[
        "Host: x",
        "Transfer-Encoding : chunked",
        "Content-Length: 13",
    ]) + BODY;
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step1_missing_host_on_http11_is_400() {
    let request = head(&["Content-Length: 13"]) + BODY;
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step1_two_host_fields_is_400() {
    let request = head(&["Host: a", "Host: b", "Content-Length: 13"]) + BODY;
    assert_rejected(request.as_bytes(), 400);
}

#[test]
fn step1_authority_form_target_is_400() {
    let request = format!(
        "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\nContent-Length: 13\r\n\r\n{BODY}"
    );
    assert_rejected(request.as_bytes(), 400);
}

/// The classic CL.TE smuggling shape: a second request hidden in a body
/// whose framing conflicts. One 400, then close; `/sneaky` never runs.
#[test]
fn step4_pipelined_smuggling_in_conflicting_body_is_400() {
    let smuggled = "0\r\n\r\nGET /sneaky HTTP/1.1\r\nHost: x\r\n\r\n";
    let request = head(&[
        "Host: x",
        &format!("Content-Length: {}", smuggled.len()),
        "Transfer-Encoding: chunked",
    ]) + smuggled;
    assert_rejected(request.as_bytes(), 400);
}

/// TE.CL shape: chunked wins only if both are accepted; they must not be.
#[test]
fn step4_smuggling_te_with_duplicate_te_header_is_rejected() {
    let smuggled = format!("0\r\n\r\nPOST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{BODY}");
    let request = head(&[
        "Host: x",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: identity",
    ]) + &smuggled;
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let bytes = raw_exchange(router.addr(), request.as_bytes());
    let responses = parse_all_responses(&bytes);
    assert_eq!(
        responses.len(),
        1,
        "exactly one response expected: {}",
        lossy(&bytes)
    );
    assert!(
        matches!(responses[0].status, 400 | 501),
        "chunked + identity must be rejected: {}",
        lossy(&bytes)
    );
    upstream.assert_untouched();
}
