//! Request smuggling and malformed requests (issue 4, point 2): a table of
//! hostile heads and bodies drawn from RFC 9112 and the public
//! request-smuggling research (CL.TE, TE.CL, TE.TE obfuscations, Content-
//! Length and chunk-size tricks, bare CR/LF, obs-fold, odd bytes in names,
//! bad request lines, requests hidden in bodies and trailers).
//!
//! Every row is checked for:
//! - the exact status SPEC §3–4 gives (400, 501 for an unknown coding, 413
//!   for a declared size over the cap, 431 for head limits), as a router-made
//!   OpenAI-shaped error, with no `100 Continue` before it;
//! - the connection closing after it, with no second response (a hidden
//!   request must never be answered);
//! - its own fake upstream receiving zero bytes: each row names its own
//!   model (`mNNN`, all the same length so Content-Length stays right),
//!   routed to an upstream of its own, so a leak is pinned to its row;
//! - the router then serving a normal request on a new connection.
//!
//! All failures are collected and reported together, one line per row.
//!
//! Sources: RFC 9112 §2.2 (bare CR/LF, whitespace before the first field),
//! §3 (request line), §3.2 (Host), §5.1 (no whitespace before the colon),
//! §5.2 (obs-fold), §6.1 and §6.3 (framing), §7.1 (chunked); James Kettle,
//! "HTTP Desync Attacks" (PortSwigger 2019) and "HTTP/1.1 must die" (2025)
//! for the TE.TE obfuscations; the hyper and pingora smuggling tests.

mod support;

use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// The body every row carries, `model` being the row's own (`mXXX` is
/// replaced by `m000`, `m001`, ...; same length).
const BODY: &str = r#"{"model":"mXXX"}"#;
const PLACEHOLDER: &[u8] = b"mXXX";
/// How long a row may take to be answered.
const ROW_DEADLINE: Duration = Duration::from_secs(4);
/// Rows run this many at a time.
const PARALLEL: usize = 12;

/// One hostile request and the status SPEC gives it.
struct Case {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
}

/// `line`, then each field line, CRLF each, a blank line, then `body`.
fn msg(line: &str, fields: &[&str], body: &str) -> Vec<u8> {
    let mut out = format!("{line}\r\n");
    for f in fields {
        out.push_str(f);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// A POST to `/v1/chat/completions` with `Host` and a JSON content type,
/// then `fields`.
fn post(fields: &[&str], body: &str) -> Vec<u8> {
    let mut all = vec!["Host: x", "Content-Type: application/json"];
    all.extend_from_slice(fields);
    msg("POST /v1/chat/completions HTTP/1.1", &all, body)
}

/// `BODY` as one chunk plus the last chunk.
fn chunked_body() -> String {
    format!("{:x}\r\n{BODY}\r\n0\r\n\r\n", BODY.len())
}

/// A chunked POST whose body is `body` (raw chunk framing).
fn chunked(body: &str) -> Vec<u8> {
    post(&["Transfer-Encoding: chunked"], body)
}

/// A POST framed with `Content-Length: BODY.len()` plus `fields`.
fn with_cl(fields: &[&str]) -> Vec<u8> {
    let cl = format!("Content-Length: {}", BODY.len());
    let mut all: Vec<&str> = fields.to_vec();
    all.push(&cl);
    post(&all, BODY)
}

/// Replaces every `from` in `bytes` with `to` (raw bytes, for rows that
/// need bytes a `&str` cannot hold).
fn patch(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    while let Some(at) = find(&bytes, from) {
        bytes.splice(at..at + from.len(), to.iter().copied());
    }
    bytes
}

fn case(name: &'static str, status: u16, request: Vec<u8>) -> Case {
    Case {
        name,
        request,
        status,
    }
}

/// The battery. Expected statuses follow SPEC §3.1/§3.4/§3.5 and §4: a
/// malformed head or framing conflict is 400, an unknown transfer coding
/// 501, a declared size over `maxBodyBytes` 413, a head over the limits 431.
fn cases() -> Vec<Case> {
    let cl = BODY.len();
    let hidden_get = "GET /sneaky HTTP/1.1\r\nHost: x\r\n\r\n";
    let hidden_post = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {cl}\r\n\r\n{BODY}"
    );
    let te_cl_body = format!("{:x}\r\n{hidden_post}\r\n0\r\n\r\n", hidden_post.len());
    let cl_te_body = format!("0\r\n\r\n{hidden_get}");
    let data = BODY;
    let many_fields: Vec<String> = (0..101).map(|i| format!("X-F{i}: v")).collect();
    let many_refs: Vec<&str> = many_fields.iter().map(String::as_str).collect();
    let huge_value = format!("X-Big: {}", "a".repeat(70 * 1024));
    let long_ext = format!("{:x};{}\r\n{data}\r\n0\r\n\r\n", cl, "e".repeat(5000));

    vec![
        // --- CL.TE and TE.CL (RFC 9112 §6.1, §6.3 rule 3) -----------------
        case(
            "cl_te_classic",
            400,
            post(
                &["Content-Length: 6", "Transfer-Encoding: chunked"],
                "0\r\n\r\nG",
            ),
        ),
        case(
            "te_cl_classic",
            400,
            post(
                &["Transfer-Encoding: chunked", "Content-Length: 4"],
                &te_cl_body,
            ),
        ),
        case(
            "cl_te_hidden_get",
            400,
            post(
                &[
                    &format!("Content-Length: {}", cl_te_body.len()),
                    "Transfer-Encoding: chunked",
                ],
                &cl_te_body,
            ),
        ),
        case(
            "cl_te_with_expect_gets_no_100",
            400,
            post(
                &[
                    "Expect: 100-continue",
                    "Content-Length: 6",
                    "Transfer-Encoding: chunked",
                ],
                "0\r\n\r\nG",
            ),
        ),
        case(
            "te_identity_with_cl",
            400,
            with_cl(&["Transfer-Encoding: identity"]),
        ),
        case(
            "http10_te_chunked",
            400,
            msg(
                "POST /v1/chat/completions HTTP/1.0",
                &["Transfer-Encoding: chunked"],
                &chunked_body(),
            ),
        ),
        case(
            "http10_te_and_cl",
            400,
            msg(
                "POST /v1/chat/completions HTTP/1.0",
                &[
                    &format!("Content-Length: {cl}"),
                    "Transfer-Encoding: chunked",
                ],
                BODY,
            ),
        ),
        // --- TE.TE obfuscations (Kettle 2019) ------------------------------
        case(
            "te_xchunked",
            501,
            post(&["Transfer-Encoding: xchunked"], &chunked_body()),
        ),
        case(
            "te_xchunked_with_cl",
            400,
            with_cl(&["Transfer-Encoding: xchunked"]),
        ),
        case(
            "te_chunked_then_identity",
            400,
            post(&["Transfer-Encoding: chunked, identity"], &chunked_body()),
        ),
        case(
            "te_identity_then_chunked",
            501,
            post(&["Transfer-Encoding: identity, chunked"], &chunked_body()),
        ),
        case(
            "te_gzip_then_chunked",
            501,
            post(&["Transfer-Encoding: gzip, chunked"], &chunked_body()),
        ),
        case(
            "te_chunked_twice_in_list",
            400,
            post(&["Transfer-Encoding: chunked, chunked"], &chunked_body()),
        ),
        case(
            "te_two_fields_chunked",
            400,
            post(
                &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
                &chunked_body(),
            ),
        ),
        case(
            "te_two_fields_chunked_identity",
            400,
            post(
                &["Transfer-Encoding: chunked", "Transfer-Encoding: identity"],
                &chunked_body(),
            ),
        ),
        case(
            "te_two_fields_identity_chunked",
            501,
            post(
                &["Transfer-Encoding: identity", "Transfer-Encoding: chunked"],
                &chunked_body(),
            ),
        ),
        case(
            "te_trailing_comma",
            400,
            post(&["Transfer-Encoding: chunked,"], &chunked_body()),
        ),
        case(
            "te_empty_value",
            501,
            post(&["Transfer-Encoding:"], &chunked_body()),
        ),
        case(
            "te_quoted_chunked",
            501,
            post(&["Transfer-Encoding: \"chunked\""], &chunked_body()),
        ),
        case(
            "te_chunked_with_parameter",
            501,
            post(&["Transfer-Encoding: chunked;q=1"], &chunked_body()),
        ),
        case(
            "te_space_before_colon",
            400,
            post(&["Transfer-Encoding : chunked"], &chunked_body()),
        ),
        case(
            "te_tab_before_colon",
            400,
            post(&["Transfer-Encoding\t: chunked"], &chunked_body()),
        ),
        case(
            "te_vertical_tab_before_value",
            400,
            post(&["Transfer-Encoding:\x0bchunked"], &chunked_body()),
        ),
        case(
            "te_form_feed_before_value",
            400,
            post(&["Transfer-Encoding:\x0cchunked"], &chunked_body()),
        ),
        case(
            "te_line_folded_into_previous_field",
            400,
            with_cl(&["X-Pad: a", " Transfer-Encoding: chunked"]),
        ),
        case(
            "te_whitespace_before_first_field",
            400,
            msg(
                "POST /v1/chat/completions HTTP/1.1",
                &[
                    " Transfer-Encoding: chunked",
                    "Host: x",
                    &format!("Content-Length: {cl}"),
                ],
                BODY,
            ),
        ),
        case(
            "te_value_continued_by_obs_fold",
            400,
            post(
                &["Transfer-Encoding: chunked", " , identity"],
                &chunked_body(),
            ),
        ),
        case(
            "te_trailing_tab_with_cl",
            400,
            with_cl(&["Transfer-Encoding: chunked\t"]),
        ),
        case(
            "te_leading_spaces_with_cl",
            400,
            with_cl(&["Transfer-Encoding:   chunked"]),
        ),
        case(
            "te_upper_case_with_cl",
            400,
            with_cl(&["TRANSFER-ENCODING: CHUNKED"]),
        ),
        case(
            "te_nul_in_name",
            400,
            post(&["Transfer-Encoding\0: chunked"], &chunked_body()),
        ),
        // --- Content-Length (RFC 9110 §8.6, RFC 9112 §6.3 rule 5) ----------
        case(
            "cl_two_fields_equal",
            400,
            post(
                &[
                    &format!("Content-Length: {cl}"),
                    &format!("Content-Length: {cl}"),
                ],
                BODY,
            ),
        ),
        case(
            "cl_two_fields_differ",
            400,
            post(
                &[&format!("Content-Length: {cl}"), "Content-Length: 0"],
                BODY,
            ),
        ),
        case(
            "cl_comma_list_equal",
            400,
            post(&[&format!("Content-Length: {cl}, {cl}")], BODY),
        ),
        case(
            "cl_comma_list_differ",
            400,
            post(&[&format!("Content-Length: {cl}, 0")], BODY),
        ),
        case(
            "cl_plus_sign",
            400,
            post(&[&format!("Content-Length: +{cl}")], BODY),
        ),
        case(
            "cl_minus_sign",
            400,
            post(&[&format!("Content-Length: -{cl}")], BODY),
        ),
        case("cl_minus_one", 400, post(&["Content-Length: -1"], BODY)),
        case("cl_hex", 400, post(&["Content-Length: 0x10"], BODY)),
        case("cl_exponent", 400, post(&["Content-Length: 1.6e1"], BODY)),
        case(
            "cl_decimal",
            400,
            post(&[&format!("Content-Length: {cl}.0")], BODY),
        ),
        case("cl_empty", 400, post(&["Content-Length:"], BODY)),
        case("cl_inner_space", 400, post(&["Content-Length: 1 6"], BODY)),
        case(
            "cl_fullwidth_digits",
            400,
            post(&["Content-Length: \u{ff11}\u{ff16}"], BODY),
        ),
        case(
            "cl_vertical_tab",
            400,
            post(&[&format!("Content-Length: {cl}\x0b")], BODY),
        ),
        case(
            "cl_overflows_u64",
            400,
            post(&["Content-Length: 99999999999999999999"], BODY),
        ),
        case(
            "cl_u64_max_plus_one",
            400,
            post(&["Content-Length: 18446744073709551616"], BODY),
        ),
        case(
            "cl_u64_max_is_over_the_cap",
            413,
            post(&["Content-Length: 18446744073709551615"], BODY),
        ),
        case(
            "cl_value_on_folded_line",
            400,
            post(&["Content-Length:", &format!(" {cl}")], BODY),
        ),
        case(
            "cl_leading_space_line",
            400,
            post(&["X-Pad: a", &format!(" Content-Length: {cl}")], BODY),
        ),
        case(
            "cl_space_before_colon",
            400,
            post(&[&format!("Content-Length : {cl}")], BODY),
        ),
        // --- chunked framing (RFC 9112 §7.1) ------------------------------
        case(
            "chunk_size_17_digits_overflow",
            400,
            chunked(&format!("10000000000000010\r\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_size_32_digits",
            400,
            chunked(&format!("{}\r\n{data}\r\n0\r\n\r\n", "f".repeat(32))),
        ),
        case(
            "chunk_size_u64_max_is_over_the_cap",
            413,
            chunked(&format!("ffffffffffffffff\r\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_size_0x_prefix",
            400,
            chunked(&format!("0x10\r\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_size_negative",
            400,
            chunked(&format!("-10\r\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_size_plus",
            400,
            chunked(&format!("+10\r\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_size_leading_space",
            400,
            chunked(&format!(" 10\r\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_size_trailing_space_without_ext",
            400,
            chunked(&format!("10 \r\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_size_not_hex",
            400,
            chunked(&format!("1g\r\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_size_empty_line",
            400,
            chunked(&format!("\r\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_size_line_bare_lf",
            400,
            chunked(&format!("10\n{data}\r\n0\r\n\r\n")),
        ),
        case("chunk_extension_too_long", 400, chunked(&long_ext)),
        case(
            "chunk_extension_bare_lf",
            400,
            chunked(&format!("10;a=b\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_extension_nul",
            400,
            chunked(&format!("10;a\0=b\r\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_extension_bare_cr",
            400,
            chunked(&format!("10;a\rb\r\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_shorter_than_its_data",
            400,
            chunked(&format!("5\r\n{data}\r\n0\r\n\r\n")),
        ),
        case(
            "chunk_data_not_followed_by_crlf",
            400,
            chunked(&format!("10\r\n{data}XX0\r\n\r\n")),
        ),
        case(
            "chunk_data_followed_by_bare_lf",
            400,
            chunked(&format!("10\r\n{data}\n0\r\n\r\n")),
        ),
        case(
            "last_chunk_trailer_bare_lf",
            400,
            chunked(&format!("10\r\n{data}\r\n0\r\nX-T: y\n\r\n")),
        ),
        case(
            "last_chunk_trailer_obs_fold",
            400,
            chunked(&format!("10\r\n{data}\r\n0\r\nX-T: y\r\n z\r\n\r\n")),
        ),
        case(
            "request_hidden_in_trailer",
            400,
            chunked(&format!("10\r\n{data}\r\n0\r\n{hidden_get}")),
        ),
        // --- line ends and folding (RFC 9112 §2.2, §5.2) -------------------
        case(
            "bare_lf_line_ends",
            400,
            format!("POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Length: {cl}\n\n{BODY}")
                .into_bytes(),
        ),
        case(
            "bare_lf_on_one_field",
            400,
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\nContent-Length: {cl}\r\n\r\n{BODY}"
            )
            .into_bytes(),
        ),
        case(
            "bare_lf_request_line",
            400,
            format!(
                "POST /v1/chat/completions HTTP/1.1\nHost: x\r\nContent-Length: {cl}\r\n\r\n{BODY}"
            )
            .into_bytes(),
        ),
        case(
            "bare_lf_ends_head",
            400,
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {cl}\r\n\n{BODY}"
            )
            .into_bytes(),
        ),
        case("bare_cr_inside_value", 400, with_cl(&["X-A: a\rb"])),
        case(
            "bare_cr_as_line_end",
            400,
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\rContent-Length: {cl}\r\n\r\n{BODY}"
            )
            .into_bytes(),
        ),
        case("obs_fold", 400, with_cl(&["X-A: a", " b"])),
        case("obs_fold_with_tab", 400, with_cl(&["X-A: a", "\tb"])),
        // --- field names and values (RFC 9110 §5.1, §5.5) ------------------
        case("nul_in_name", 400, with_cl(&["X\0A: b"])),
        case(
            "high_byte_in_name",
            400,
            patch(with_cl(&["X-~A: b"]), b"X-~A", b"X-\xffA"),
        ),
        case(
            "utf8_in_name",
            400,
            with_cl(&["Tr\u{e4}nsfer-Encoding: chunked"]),
        ),
        case("nul_in_value", 400, with_cl(&["X-A: a\0b"])),
        case("del_in_value", 400, with_cl(&["X-A: a\x7fb"])),
        case("empty_name", 400, with_cl(&[": v"])),
        case("space_in_name", 400, with_cl(&["X A: b"])),
        case("no_colon", 400, with_cl(&["XA"])),
        case("separator_in_name", 400, with_cl(&["X(A): b"])),
        // --- request line (RFC 9112 §3) ------------------------------------
        case(
            "method_with_control_byte",
            400,
            patch(with_cl(&[]), b"POST /", b"PO\x01ST /"),
        ),
        case(
            "method_with_separator",
            400,
            patch(with_cl(&[]), b"POST /", b"PO(ST /"),
        ),
        case("method_empty", 400, patch(with_cl(&[]), b"POST /", b" /")),
        case(
            "method_non_ascii",
            400,
            patch(with_cl(&[]), b"POST /", b"P\xd0\x9eST /"),
        ),
        case(
            "request_line_two_spaces",
            400,
            patch(with_cl(&[]), b"POST /", b"POST  /"),
        ),
        case(
            "request_line_tab",
            400,
            patch(with_cl(&[]), b"POST /", b"POST\t/"),
        ),
        case(
            "request_line_trailing_space",
            400,
            patch(with_cl(&[]), b"HTTP/1.1\r\n", b"HTTP/1.1 \r\n"),
        ),
        case(
            "target_asterisk",
            400,
            msg("OPTIONS * HTTP/1.1", &["Host: x"], ""),
        ),
        case(
            "target_authority_form",
            400,
            msg(
                "CONNECT api.openai.com:443 HTTP/1.1",
                &["Host: api.openai.com:443"],
                "",
            ),
        ),
        case(
            "target_relative",
            400,
            patch(with_cl(&[]), b"POST /v1/", b"POST v1/"),
        ),
        case(
            "target_fragment",
            400,
            patch(with_cl(&[]), b"completions HTTP", b"completions#x HTTP"),
        ),
        case(
            "target_non_ascii",
            400,
            patch(with_cl(&[]), b"completions HTTP", b"completions\xff HTTP"),
        ),
        case(
            "target_absolute_with_userinfo",
            400,
            patch(with_cl(&[]), b"POST /v1/", b"POST http://user:pw@x/v1/"),
        ),
        case(
            "target_absolute_other_scheme",
            400,
            patch(with_cl(&[]), b"POST /v1/", b"POST ftp://x/v1/"),
        ),
        case(
            "http09_request_line",
            400,
            b"GET /v1/models\r\n\r\n".to_vec(),
        ),
        case(
            "http20_request_line",
            400,
            patch(with_cl(&[]), b"HTTP/1.1\r\n", b"HTTP/2.0\r\n"),
        ),
        case(
            "http2_preface",
            400,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        case(
            "http12_request_line",
            400,
            patch(with_cl(&[]), b"HTTP/1.1\r\n", b"HTTP/1.2\r\n"),
        ),
        case(
            "http_version_lower_case",
            400,
            patch(with_cl(&[]), b"HTTP/1.1\r\n", b"http/1.1\r\n"),
        ),
        case(
            "http_version_two_digit_minor",
            400,
            patch(with_cl(&[]), b"HTTP/1.1\r\n", b"HTTP/1.10\r\n"),
        ),
        // --- Host (RFC 9112 §3.2) ------------------------------------------
        case(
            "host_missing",
            400,
            patch(with_cl(&[]), b"Host: x\r\n", b""),
        ),
        case("host_twice", 400, with_cl(&["Host: y"])),
        case(
            "host_with_slash",
            400,
            patch(with_cl(&[]), b"Host: x\r\n", b"Host: x/y\r\n"),
        ),
        case(
            "host_with_space",
            400,
            patch(with_cl(&[]), b"Host: x\r\n", b"Host: a b\r\n"),
        ),
        case(
            "http10_host_twice",
            400,
            msg(
                "POST /v1/chat/completions HTTP/1.0",
                &["Host: x", "Host: y", &format!("Content-Length: {cl}")],
                BODY,
            ),
        ),
        // --- fields the router and upstream could read differently --------
        case(
            "authorization_twice",
            400,
            with_cl(&["Authorization: Bearer a", "Authorization: Bearer b"]),
        ),
        case(
            "content_type_twice",
            400,
            with_cl(&["Content-Type: multipart/form-data; boundary=x"]),
        ),
        // --- head limits (SPEC §3.1) ---------------------------------------
        case("fields_over_100", 431, with_cl(&many_refs)),
        case("head_over_64_kib", 431, with_cl(&[&huge_value])),
    ]
}

/// Opens a connection, sends `case`, checks status, close and silence;
/// returns a description of every way it failed.
fn run_case(router: &Router, case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let mut client = Client::connect(router.addr());
    // The router may rightly close before reading everything.
    let _ = client.send_lossy(&case.request);
    match client.try_read_response(ROW_DEADLINE) {
        Ok(response) if response.status == case.status => {
            let raw = lossy(&response.raw);
            if !response
                .header("content-type")
                .is_some_and(|v| v.starts_with("application/json"))
                || !response.json()["error"]["message"].is_string()
            {
                problems.push(format!(
                    "status {} is not a router-made error: {raw:?}",
                    case.status
                ));
            }
            if !client.closed_within(Duration::from_secs(3)) {
                problems.push("connection stayed open after the error".to_owned());
            }
            let rest = client.buffered();
            if find(rest, b"HTTP/").is_some() {
                problems.push(format!(
                    "a second response followed (a hidden request was answered): {:?}",
                    lossy(rest)
                ));
            }
        }
        Ok(response) => problems.push(format!(
            "expected {}, got {}: {:?}",
            case.status,
            response.status,
            lossy(&response.raw)
        )),
        Err(e) => problems.push(format!("expected {}, got no response: {e}", case.status)),
    }
    problems
}

/// Asserts a normal request on a new connection still works.
fn probe(router: &Router) -> Result<(), String> {
    let mut client = Client::connect(router.addr());
    client.send(&chat("probe"));
    match client.try_read_response(Duration::from_secs(5)) {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!("probe answered {}: {:?}", r.status, lossy(&r.raw))),
        Err(e) => Err(format!("probe failed: {e}")),
    }
}

#[test]
fn smuggling_battery_is_refused_and_never_reaches_an_upstream() {
    let cases = cases();
    assert!(cases.len() >= 50, "the battery has {} rows", cases.len());
    assert!(cases.len() < 1000, "model names are mNNN");
    let upstreams: Vec<FakeUpstream> = cases.iter().map(|_| FakeUpstream::ok()).collect();
    let probe_upstream = FakeUpstream::ok();
    let mut models = serde_json::Map::new();
    for (i, up) in upstreams.iter().enumerate() {
        models.insert(format!("m{i:03}"), json!({ "url": up.url() }));
    }
    models.insert("probe".into(), json!({ "url": probe_upstream.url() }));
    let router = Router::start(json!({
        "models": Value::Object(models),
        // A head the router keeps waiting for must not stall the table.
        "timeouts": { "headSeconds": 3 },
    }));

    let failures = Mutex::new(Vec::<String>::new());
    let rows: Vec<(usize, &Case)> = cases.iter().enumerate().collect();
    for batch in rows.chunks(PARALLEL) {
        thread::scope(|s| {
            for &(i, case) in batch {
                let (router, upstream, failures) = (&router, &upstreams[i], &failures);
                s.spawn(move || {
                    let model = format!("m{i:03}");
                    let request = patch(case.request.clone(), PLACEHOLDER, model.as_bytes());
                    let row = Case {
                        name: case.name,
                        request,
                        status: case.status,
                    };
                    let mut problems = run_case(router, &row);
                    let received = upstream.bytes_received();
                    if received > 0 {
                        problems.push(format!(
                            "upstream {model} received {received} byte(s): {:?}",
                            upstream
                                .conns()
                                .iter()
                                .map(|c| lossy(&c.raw))
                                .collect::<Vec<_>>()
                        ));
                    }
                    if let Err(e) = probe(router) {
                        problems.push(format!("router did not serve afterwards: {e}"));
                    }
                    if !problems.is_empty() {
                        let mut all = failures.lock().unwrap();
                        for p in problems {
                            all.push(format!("{} ({model}): {p}", case.name));
                        }
                    }
                });
            }
        });
    }
    // A late leak (bytes sent after the answer) is caught here.
    for (i, up) in upstreams.iter().enumerate() {
        if up.bytes_received() > 0 {
            let mut all = failures.lock().unwrap();
            let line = format!(
                "{} (m{i:03}): upstream received {} byte(s) in the end",
                cases[i].name,
                up.bytes_received()
            );
            if !all
                .iter()
                .any(|l| l.starts_with(cases[i].name) && l.contains("received"))
            {
                all.push(line);
            }
        }
    }
    let failures = failures.into_inner().unwrap();
    println!(
        "smuggling battery: {} rows, {} failure line(s)",
        cases.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Framings that look odd but are valid are forwarded as exactly one
/// request with the body bytes unchanged; what follows the body on the
/// connection is parsed as the next request, never glued to this one.
#[test]
fn valid_framings_forward_exactly_one_request() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let body = r#"{"model":"m","messages":"GET /sneaky HTTP/1.1\r\nHost: x\r\n\r\n"}"#;
    let chunk = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let rows: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        // A request line inside a JSON string is just body bytes.
        (
            "request_text_inside_json",
            post(&[&format!("Content-Length: {}", body.len())], body),
            body.as_bytes().to_vec(),
        ),
        // OWS around the coding is not part of it (RFC 9110 §5.5).
        (
            "te_chunked_trailing_tab",
            post(&["Transfer-Encoding: chunked\t"], &chunk),
            chunk.clone().into_bytes(),
        ),
        // Leading zeros are still 1*DIGIT.
        (
            "cl_leading_zeros",
            post(&[&format!("Content-Length: 00{}", body.len())], body),
            body.as_bytes().to_vec(),
        ),
        // Chunk extensions are allowed and ignored (RFC 9112 §7.1.1).
        (
            "chunk_extension",
            post(
                &["Transfer-Encoding: chunked"],
                &format!("{:x} ; name=\"v;x\"\r\n{body}\r\n0\r\n\r\n", body.len()),
            ),
            format!("{:x} ; name=\"v;x\"\r\n{body}\r\n0\r\n\r\n", body.len()).into_bytes(),
        ),
    ];
    for (i, (name, request, wire_body)) in rows.iter().enumerate() {
        // The request, then a pipelined own-endpoint request in the same write.
        let mut client = Client::connect(router.addr());
        client.send(&[request.as_slice(), &get("/health", &[])].concat());
        let first = client.read_response();
        assert_eq!(first.status, 200, "{name}: {}", lossy(&first.raw));
        let second = client.read_response();
        assert_eq!(
            second.status,
            200,
            "{name}: the pipelined /health: {}",
            lossy(&second.raw)
        );
        assert!(
            second.text().contains("\"status\":\"ok\""),
            "{name}: the second answer must be the router's /health: {}",
            second.text()
        );
        let seen = upstream.wait_requests(i + 1, Duration::from_secs(5));
        assert_eq!(seen.len(), i + 1, "{name}: exactly one upstream request");
        let got = &seen[i];
        assert_eq!(
            lossy(&got.raw_body),
            lossy(wire_body),
            "{name}: the body must reach the upstream byte for byte"
        );
        assert!(
            !seen.iter().any(|r| r.target.contains("sneaky")),
            "{name}: a hidden request reached the upstream"
        );
    }
}

/// A framing error found after `model` was known and the body had started
/// streaming (SPEC §3.10): the bytes before it may have gone upstream, but
/// the offending bytes never do, the upstream request is aborted (its
/// connection closed, no complete request), and the client, who has seen no
/// response byte, gets a 400 and a close.
#[test]
fn late_framing_error_aborts_the_upstream_request() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let first = r#"{"model":"m","pad":""#;
    let pad = "p".repeat(200 * 1024);
    let good = format!(
        "{:x}\r\n{first}\r\n{:x}\r\n{pad}\r\n",
        first.len(),
        pad.len()
    );
    let poison = "POISON";
    let rows: Vec<(&str, String)> = vec![
        (
            "trailer_over_16_kib",
            format!("{good}0\r\nX-{poison}: {}\r\n\r\n", "t".repeat(17 * 1024)),
        ),
        (
            "chunk_size_not_hex",
            format!("{good}{poison}\r\nGET /sneaky HTTP/1.1\r\n\r\n"),
        ),
        (
            "chunk_size_bare_lf",
            format!("{good}5\n{poison}\r\n0\r\n\r\n"),
        ),
        (
            "chunk_size_overflow",
            format!("{good}{}\r\n{poison}\r\n0\r\n\r\n", "f".repeat(17)),
        ),
        (
            "hidden_request_in_trailer",
            format!("{good}0\r\nGET /{poison} HTTP/1.1\r\n\r\n"),
        ),
    ];
    for (i, (name, body)) in rows.iter().enumerate() {
        let mut client = Client::connect(router.addr());
        let _ = client.send_lossy(&chunked(body));
        let response = client
            .try_read_response(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{name}: expected a 400: {e}"));
        response.assert_error(400);
        client.assert_closed(Duration::from_secs(3), name);
        assert!(
            poll_until(Duration::from_secs(5), || upstream
                .conns()
                .get(i)
                .is_some_and(|c| c.closed_at.is_some())),
            "{name}: the router must close the upstream connection of an aborted request"
        );
        let conn = &upstream.conns()[i];
        assert!(
            find(&conn.raw, poison.as_bytes()).is_none(),
            "{name}: the offending bytes reached the upstream"
        );
        assert!(
            upstream.requests().is_empty(),
            "{name}: the upstream must never see a complete request"
        );
    }
}

/// A body the model scanner refuses (bad JSON, `model` not a string or
/// twice) is still a body: its 400 comes after all of it was read, and the
/// next request on the connection starts after it, never inside it. Each
/// row hides a routable request in its body, then pipelines `/health`.
#[test]
fn a_refused_body_is_never_read_as_a_request() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &upstream.url())], json!({})));
    let hidden = "POST /route/m/SMUGGLED HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    let pad = "p".repeat(200 * 1024);
    let rows: Vec<(&str, String, u16)> = vec![
        ("not_json", hidden.to_owned(), 400),
        (
            "model_not_a_string",
            format!(r#"{{"model":1}}{hidden}"#),
            400,
        ),
        (
            "model_twice",
            format!(r#"{{"model":"m","model":"m"}}{hidden}"#),
            400,
        ),
        ("unknown_model", r#"{"model":"nope"}"#.to_owned(), 404),
        // Found early, then refused at the end after streaming upstream.
        (
            "trailing_bytes_after_streaming",
            format!(r#"{{"model":"m","pad":"{pad}"}}{hidden}"#),
            400,
        ),
    ];
    for (name, body, status) in &rows {
        let request = post(&[&format!("Content-Length: {}", body.len())], body);
        for split in [false, true] {
            let mut client = Client::connect(router.addr());
            if split {
                // The body in a write of its own, after the head.
                let head_end = find(&request, b"\r\n\r\n").unwrap() + 4;
                client.send(&request[..head_end]);
                client.send(&[&request[head_end..], get("/health", &[]).as_slice()].concat());
            } else {
                client.send(&[request.as_slice(), &get("/health", &[])].concat());
            }
            let first = client.read_response();
            first.assert_error(*status);
            let second = client
                .try_read_response(Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{name}: the pipelined /health: {e}"));
            assert!(
                second.status == 200 && second.text().contains("\"status\":\"ok\""),
                "{name} (split {split}): the second answer must be /health's, got {}",
                lossy(&second.raw)
            );
        }
    }
    assert!(
        !upstream
            .requests()
            .iter()
            .any(|r| r.target.contains("SMUGGLED")),
        "a request hidden in a body reached the upstream"
    );
    assert!(
        upstream.requests().is_empty(),
        "no refused request may reach the upstream complete"
    );
}

/// SPEC §6: one access-log line per request, so an operator sees smuggling
/// attempts and slow heads too, not only the requests that got past the
/// head: a refused head is logged with its status like any other request.
#[test]
fn refused_heads_are_access_logged() {
    let upstream = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("m", &upstream.url())],
        json!({ "timeouts": { "headSeconds": 1 } }),
    ));
    let huge = format!("X-Big: {}", "a".repeat(70 * 1024));
    let rows: Vec<(&str, u16, Vec<u8>)> = vec![
        (
            "cl_te",
            400,
            post(
                &["Content-Length: 6", "Transfer-Encoding: chunked"],
                "0\r\n\r\nG",
            ),
        ),
        (
            "unknown_coding",
            501,
            post(&["Transfer-Encoding: xchunked"], &chunked_body()),
        ),
        ("head_over_64_kib", 431, with_cl(&[&huge])),
        (
            "incomplete_head",
            408,
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n".to_vec(),
        ),
    ];
    let mut missing = Vec::new();
    for (name, status, request) in &rows {
        let before = router.access_lines().len();
        let mut client = Client::connect(router.addr());
        let _ = client.send_lossy(request);
        let r = client
            .try_read_response(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.status, *status, "{name}");
        let logged = poll_until(Duration::from_secs(2), || {
            router
                .access_lines()
                .iter()
                .skip(before)
                .any(|l| l.contains(&format!("status={status}")))
        });
        if !logged {
            missing.push(format!("{name} ({status})"));
        }
    }
    assert!(
        missing.is_empty(),
        "refused requests without an access-log line: {}; stderr:\n{}",
        missing.join(", "),
        router.logs()
    );
    // What the lines say: the time a slow head took, the bytes a refused
    // head carried.
    let line = |status: &str| {
        let lines = router.access_lines();
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("status={status}")))
            .unwrap_or_else(|| panic!("no {status} line"));
        logfmt(line)
    };
    let timed_out = line("408");
    let ms: f64 = timed_out["duration_ms"].parse().unwrap();
    assert!(ms >= 900.0, "a 408 after 1 s logged {ms} ms");
    let too_large = line("431");
    let bytes: u64 = too_large["bytes_in"].parse().unwrap();
    assert!(
        bytes >= 64 * 1024,
        "a refused 64 KiB head logged bytes_in={bytes}"
    );
}
