use super::*;

fn show(input: &[u8]) -> String {
    input.escape_ascii().to_string()
}

/// Parses `input`, which must be one complete request head.
fn req(input: &[u8]) -> RequestHead {
    match parse_request(input) {
        Ok(Status::Complete(head)) => head,
        other => panic!("{}: want a complete head, got {other:?}", show(input)),
    }
}

/// Parses `input`, which must be refused with `want`: the head itself, or
/// (for a framing fault) its `framing`.
fn req_err(input: &[u8], want: HeadError) {
    match parse_request(input) {
        Err(got) => assert_eq!(got, want, "{}", show(input)),
        Ok(Status::Complete(RequestHead {
            framing: Err(got), ..
        })) => assert_eq!(got, want, "{}", show(input)),
        other => panic!("{}: want {want:?}, got {other:?}", show(input)),
    }
}

fn res(input: &[u8], head_request: bool) -> ResponseHead {
    match parse_response(input, head_request) {
        Ok(Status::Complete(head)) => head,
        other => panic!("{}: want a complete head, got {other:?}", show(input)),
    }
}

/// A `POST` HTTP/1.1 request head with `Host` and then `fields`.
fn post(fields: &[&str]) -> Vec<u8> {
    let mut head = String::from("POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\n");
    for field in fields {
        head.push_str(field);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The request framing for `fields`, or the error.
fn framing(fields: &[&str]) -> Result<Framing, HeadError> {
    match parse_request(&post(fields)) {
        Ok(Status::Complete(head)) => head.framing,
        Ok(Status::Partial) => panic!("{fields:?}: partial"),
        Err(e) => Err(e),
    }
}

#[test]
fn simple_get() {
    let buf = b"GET /v1/models?x=1 HTTP/1.1\r\nHost: llm:8080\r\nAccept: */*\r\n\r\nBODY";
    let head = req(buf);
    assert_eq!(head.len, buf.len() - 4);
    assert_eq!(&buf[head.method], b"GET");
    assert_eq!(&buf[head.path], b"/v1/models");
    assert_eq!(head.query.map(|q| &buf[q]), Some(&b"x=1"[..]));
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.headers.len(), 2);
    assert_eq!(head.headers[1].name_bytes(buf), b"Accept");
    assert_eq!(head.headers[1].value_bytes(buf), b"*/*");
    assert_eq!(head.framing, Ok(Framing::Empty));
    assert!(head.keep_alive);
    assert!(!head.expect_continue);
    assert_eq!(head.content, ContentKind::Json);
    assert_eq!(head.authorization, None);
}

#[test]
fn ranges_index_the_buffer_after_leading_empty_line() {
    // RFC 9112 §2.2: a server SHOULD ignore an empty line (CRLF) before
    // the request line; httparse does, and the ranges still hold.
    let buf = b"\r\nPOST /a HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\n\r\n";
    let head = req(buf);
    assert_eq!(&buf[head.method.clone()], b"POST");
    assert_eq!(&buf[head.path.clone()], b"/a");
    assert_eq!(head.header(buf, head.authorization), Some(&b"Bearer t"[..]));
    assert_eq!(head.authorization, Some(1));
    assert_eq!(head.len, buf.len());
}

#[test]
fn malformed_heads() {
    use HeadError::*;
    #[rustfmt::skip]
    let cases: &[(&[u8], HeadError)] = &[
        // Bare LF and bare CR, anywhere (httparse accepts bare LF).
        (b"GET / HTTP/1.1\nHost: a\n\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\n", Malformed),
        (b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n", Malformed),
        // obs-fold, whitespace before the colon, leading whitespace.
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", Malformed),
        // NUL and other controls in names and values.
        (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x0b\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX\x00: b\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", Malformed),
        // Request line grammar.
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", Malformed),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", Malformed),
        (b"GET /\r\n\r\n", Malformed), // HTTP/0.9
        // Versions.
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Version),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Version),
        (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", Version),
        (b"GET / http/1.1\r\nHost: a\r\n\r\n", Version),
        // Repeated fields the router and upstream could read apart.
        (b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n\r\n", Malformed),
    ];
    for (input, want) in cases {
        req_err(input, *want);
    }
}

#[test]
fn partial_is_never_an_error_for_a_valid_head() {
    let heads = [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"\r\nPOST /v1/x?y HTTP/1.0\r\nContent-Length: 3\r\nX:\r\n\r\n",
        &post(&["Transfer-Encoding: chunked", "Expect: 100-continue"]),
    ];
    for head in heads {
        for cut in 0..head.len() {
            let got = parse_request(&head[..cut]);
            assert!(
                matches!(got, Ok(Status::Partial)),
                "{} cut {cut}: {got:?}",
                show(head)
            );
        }
        req(head);
    }
}

#[test]
fn bad_line_ends_are_reported_on_partial_input() {
    #[rustfmt::skip]
    let cases: &[(&[u8], HeadError)] = &[
        (b"GET / HTTP/1.1\nHo", HeadError::Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\nX", HeadError::Malformed),
        (b"GET / HTTP/1.1\r\nHost: a\rX", HeadError::Malformed),
        (b"GET / HTTP/2", HeadError::Version),
    ];
    for (input, want) in cases {
        req_err(input, *want);
    }
    // A CR at the very end is not proof yet.
    assert!(matches!(
        parse_request(b"GET / HTTP/1.1\r\nHost: a\r"),
        Ok(Status::Partial)
    ));
}

#[test]
fn limits() {
    let fields: Vec<String> = (0..MAX_HEADERS - 1).map(|i| format!("X-{i}: v")).collect();
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    assert_eq!(req(&post(&fields)).headers.len(), MAX_HEADERS); // + Host
    let mut more = fields.clone();
    more.push("X-Last: v");
    req_err(&post(&more), HeadError::TooManyHeaders);

    let big = format!("X: {}", "a".repeat(MAX_HEAD_BYTES));
    req_err(&post(&[&big]), HeadError::TooLarge);
    let partial = post(&[&big]);
    req_err(&partial[..MAX_HEAD_BYTES], HeadError::TooLarge);
    assert!(matches!(
        parse_request(&partial[..MAX_HEAD_BYTES - 1]),
        Ok(Status::Partial)
    ));

    // A head of exactly MAX_HEAD_BYTES is fine.
    let base = post(&["X: "]).len();
    let exact = format!("X: {}", "a".repeat(MAX_HEAD_BYTES - base));
    assert_eq!(req(&post(&[&exact])).len, MAX_HEAD_BYTES);
}

#[test]
fn request_framing() {
    use Framing::*;
    use HeadError::*;
    #[rustfmt::skip]
    let cases: &[(&[&str], Result<Framing, HeadError>)] = &[
        (&[], Ok(Empty)),
        (&["Content-Length: 5"], Ok(Length(5))),
        (&["Content-Length: 0"], Ok(Length(0))),
        (&["Content-Length: 007"], Ok(Length(7))),
        (&["content-length:5   "], Ok(Length(5))),
        (&["Content-Length: 18446744073709551615"], Ok(Length(u64::MAX))),
        (&["Transfer-Encoding: chunked"], Ok(Chunked)),
        (&["Transfer-Encoding: CHUNKED"], Ok(Chunked)),
        (&["transfer-encoding:\t chunked \t"], Ok(Chunked)),
        // Content-Length: digits only, one field.
        (&["Content-Length: +5"], Err(ContentLength)),
        (&["Content-Length: -5"], Err(ContentLength)),
        (&["Content-Length: 0x10"], Err(ContentLength)),
        (&["Content-Length: 5, 5"], Err(ContentLength)),
        (&["Content-Length: 5,5"], Err(ContentLength)),
        (&["Content-Length: 1 0"], Err(ContentLength)),
        (&["Content-Length:"], Err(ContentLength)),
        (&["Content-Length: 5.0"], Err(ContentLength)),
        (&["Content-Length: 18446744073709551616"], Err(ContentLength)),
        (&["Content-Length: 99999999999999999999999999"], Err(ContentLength)),
        (&["Content-Length: 5", "Content-Length: 5"], Err(ContentLength)),
        (&["Content-Length: 5", "Content-Length: 6"], Err(ContentLength)),
        // Smuggling classics.
        (&["Content-Length: 5", "Transfer-Encoding: chunked"], Err(FramingConflict)),
        (&["Transfer-Encoding: chunked", "Content-Length: 5"], Err(FramingConflict)),
        (&["Transfer-Encoding: chunked", "Content-Length: x"], Err(FramingConflict)),
        (&["Transfer-Encoding: chunked, identity"], Err(FramingConflict)),
        (&["Transfer-Encoding: chunked, gzip"], Err(FramingConflict)),
        (&["Transfer-Encoding: chunked, chunked"], Err(FramingConflict)),
        (&["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], Err(FramingConflict)),
        (&["Transfer-Encoding: chunked", "Transfer-Encoding: identity"], Err(FramingConflict)),
        (&["Transfer-Encoding: chunked,"], Err(FramingConflict)),
        (&["Transfer-Encoding: xchunked"], Err(UnsupportedCoding)),
        (&["Transfer-Encoding: chunkedx"], Err(UnsupportedCoding)),
        (&["Transfer-Encoding: identity"], Err(UnsupportedCoding)),
        (&["Transfer-Encoding: gzip"], Err(UnsupportedCoding)),
        (&["Transfer-Encoding: gzip, chunked"], Err(UnsupportedCoding)),
        (&["Transfer-Encoding: identity, chunked"], Err(UnsupportedCoding)),
        (&["Transfer-Encoding: ,chunked"], Err(UnsupportedCoding)),
        (&["Transfer-Encoding:"], Err(UnsupportedCoding)),
        (&["Transfer-Encoding: chunked;x=1"], Err(UnsupportedCoding)),
        (&["Transfer-Encoding: \"chunked\""], Err(UnsupportedCoding)),
        (&["Transfer-Encoding: chu nked"], Err(UnsupportedCoding)),
        (&["Transfer-Encoding: chunked\x0b"], Err(Malformed)),
        (&["Transfer-Encoding : chunked"], Err(Malformed)),
        (&["Transfer-Encoding\t: chunked"], Err(Malformed)),
        (&[" Transfer-Encoding: chunked"], Err(Malformed)),
        (&["X: a", " Transfer-Encoding: chunked"], Err(Malformed)),
        (&["X: a", "\tTransfer-Encoding: chunked"], Err(Malformed)),
        (&["Transfer-Encoding: \x00chunked"], Err(Malformed)),
    ];
    for (fields, want) in cases {
        assert_eq!(framing(fields), *want, "{fields:?}");
    }
}

#[test]
fn http10_requests() {
    let head = req(b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(head.version, Version::Http10);
    assert_eq!(head.framing, Ok(Framing::Length(2)));
    assert!(!head.keep_alive);
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
    req_err(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        HeadError::FramingConflict,
    );
    // RFC 9110 §10.1.1: 100-continue in HTTP/1.0 is ignored.
    assert!(!req(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
}

#[test]
fn targets() {
    type Cases<'a> = &'a [(&'a [u8], &'a [u8], Option<&'a [u8]>)];
    #[rustfmt::skip]
    // (target, path, query)
    let ok: Cases = &[
        (b"/v1/chat/completions", b"/v1/chat/completions", None),
        (b"/a?b=c&d", b"/a", Some(b"b=c&d")),
        (b"/a?", b"/a", Some(b"")),
        (b"/a?b?c", b"/a", Some(b"b?c")),
        (b"//a", b"//a", None),
        (b"/v1/models/org%2Fname", b"/v1/models/org%2Fname", None),
        (b"http://example.com/v1/x?y=1", b"/v1/x", Some(b"y=1")),
        (b"HTTPS://example.com:443/v1", b"/v1", None),
        (b"http://example.com", b"/", None),
        (b"http://example.com?q", b"/", Some(b"q")),
        (b"http://[::1]:8080/p", b"/p", None),
    ];
    for (target, path, query) in ok {
        let mut buf = b"GET ".to_vec();
        buf.extend_from_slice(target);
        buf.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
        let head = req(&buf);
        assert_eq!(&buf[head.path], *path, "{}", show(target));
        assert_eq!(head.query.map(|q| &buf[q]), *query, "{}", show(target));
    }
    #[rustfmt::skip]
    let bad: &[&[u8]] = &[
        b"OPTIONS * HTTP/1.1", b"CONNECT example.com:443 HTTP/1.1",
        b"CONNECT /x HTTP/1.1", b"GET example.com:443 HTTP/1.1",
        b"GET http:// HTTP/1.1", b"GET http:///a HTTP/1.1",
        b"GET http://user@h/a HTTP/1.1", b"GET ftp://h/a HTTP/1.1",
        b"GET http:/h/a HTTP/1.1", b"GET a/b HTTP/1.1",
        b"GET /a#frag HTTP/1.1", b"GET /caf\xc3\xa9 HTTP/1.1",
    ];
    for line in bad {
        let mut buf = line.to_vec();
        buf.extend_from_slice(b"\r\nHost: h\r\n\r\n");
        req_err(&buf, HeadError::Target);
    }
}

#[test]
fn host() {
    #[rustfmt::skip]
    let cases: &[(&[u8], Option<HeadError>)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nhOsT: [::1]:8080\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", None),
        (b"GET / HTTP/1.0\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.1\r\nHost: a\"\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.1\r\nHost: a:8080\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: a:\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: 10.0.0.1:80\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: x:abc\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.1\r\nHost: [zz\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.1\r\nHost: []\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.1\r\nHost: a]:1\r\n\r\n", Some(HeadError::Host)),
        (b"GET / HTTP/1.1\r\nHost: [::1]:8a\r\n\r\n", Some(HeadError::Host)),
    ];
    for (input, want) in cases {
        match want {
            None => drop(req(input)),
            Some(e) => req_err(input, *e),
        }
    }
}

#[test]
fn keep_alive_and_expect() {
    #[rustfmt::skip]
    let cases: &[(&[u8], bool, bool)] = &[
        // (head, keep_alive, expect_continue)
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true, false),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false, false),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", false, false),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n", false, false),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true, false),
        (b"GET / HTTP/1.0\r\n\r\n", false, false),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true, false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false, false),
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", true, true),
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n", true, true),
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", true, false),
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continuex\r\n\r\n", true, false),
    ];
    for (input, keep_alive, expect) in cases {
        let head = req(input);
        assert_eq!(
            (head.keep_alive, head.expect_continue),
            (*keep_alive, *expect),
            "{}",
            show(input)
        );
    }
}

#[test]
fn upgrade_and_api_key() {
    #[rustfmt::skip]
    let cases: &[(&[u8], bool, Option<usize>)] = &[
        // (head, upgrade, api_key index)
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, None),
        (b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", true, None),
        (b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", false, None),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", false, None),
        (b"POST / HTTP/1.1\r\nHost: a\r\nX-Api-Key: k\r\n\r\n", false, Some(1)),
    ];
    for (input, upgrade, api_key) in cases {
        let head = req(input);
        assert_eq!(
            (head.upgrade, head.api_key),
            (*upgrade, *api_key),
            "{}",
            show(input)
        );
    }
    let two = b"POST / HTTP/1.1\r\nHost: a\r\nx-api-key: a\r\nx-api-key: b\r\n\r\n";
    assert!(matches!(parse_request(two), Err(HeadError::Malformed)));
}

#[test]
fn content_kinds() {
    let multipart = |b: &[u8]| ContentKind::Multipart {
        boundary: b.to_vec(),
    };
    #[rustfmt::skip]
    let cases: &[(&str, ContentKind)] = &[
        ("application/json", ContentKind::Json),
        ("text/plain", ContentKind::Json),
        ("multipart/form-data; boundary=abc", multipart(b"abc")),
        ("Multipart/Form-Data;BOUNDARY=abc", multipart(b"abc")),
        ("multipart/form-data ; charset=utf-8; boundary=\"a b;c\"", multipart(b"a b;c")),
        ("multipart/form-data; boundary=\"a\\\"b\"", multipart(b"a\"b")),
        ("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxk", multipart(b"----WebKitFormBoundary7MA4YWxk")),
        ("multipart/form-data;; boundary=x;", multipart(b"x")),
        ("multipart/form-data", ContentKind::Json),
        ("multipart/form-data; boundary=", ContentKind::Json),
        ("multipart/form-data; boundary=\"\"", ContentKind::Json),
        ("multipart/form-data; boundary=\"abc", ContentKind::Json),
        ("multipart/form-data; boundary=a; boundary=b", ContentKind::Json),
        ("multipart/form-data; boundary", ContentKind::Json),
        ("multipart/mixed; boundary=abc", ContentKind::Json),
    ];
    for (value, want) in cases {
        let field = format!("Content-Type: {value}");
        let buf = post(&[&field]);
        assert_eq!(req(&buf).content, *want, "{value}");
    }
}

#[test]
fn responses() {
    use Framing::*;
    #[rustfmt::skip]
    let cases: &[(&[u8], bool, Framing, bool)] = &[
        // (head, head_request, framing, keep_alive)
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, Length(5), true),
        (b"HTTP/1.1 200\r\nContent-Length: 5\r\n\r\n", false, Length(5), true),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", false, Length(5), true),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false, Length(5), true),
        (b"HTTP/1.1 200 OK\r\n\r\n", false, UntilClose, false),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false, Length(0), false),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, Chunked, true),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, Chunked, true),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, \r\n\r\n", false, Chunked, true),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false, UntilClose, false),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", false, Chunked, false),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n", false, Chunked, false),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, Empty, true),
        (b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", false, Empty, true),
        (b"HTTP/1.1 100 Continue\r\n\r\n", false, Empty, true),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false, Empty, true),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", false, UntilClose, false),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, Empty, true),
        (b"HTTP/1.1 200 OK\r\n\r\n", true, Empty, true),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false, Length(5), false),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\n", false, Length(5), true),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false, UntilClose, false),
    ];
    for (input, head_request, framing, keep_alive) in cases {
        let head = res(input, *head_request);
        assert_eq!(
            (head.framing, head.keep_alive),
            (*framing, *keep_alive),
            "{}",
            show(input)
        );
    }
}

#[test]
fn bad_responses() {
    use HeadError::*;
    #[rustfmt::skip]
    let cases: &[(&[u8], HeadError)] = &[
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", ContentLength),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", ContentLength),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", ContentLength),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n", ContentLength),
        (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", FramingConflict),
        (b"HTTP/1.1 000 X\r\n\r\n", Malformed),
        (b"HTTP/1.1 099 X\r\n\r\n", Malformed),
        (b"HTTP/1.1 600 X\r\n\r\n", Malformed),
        (b"HTTP/1.1 20 OK\r\n\r\n", Malformed),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", Malformed),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", Malformed),
        (b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n", Malformed),
        (b"HTTP/2 200\r\n\r\n", Version),
        (b"HTTP/1.1 200 OK\nX", Malformed),
    ];
    for (input, want) in cases {
        match parse_response(input, false) {
            Err(got) => assert_eq!(got, *want, "{}", show(input)),
            other => panic!("{}: want {want:?}, got {other:?}", show(input)),
        }
    }
    assert!(matches!(
        parse_response(b"HTTP/1.1 200 OK\r\nX: a\r\n", false),
        Ok(Status::Partial)
    ));
}

#[test]
fn event_stream() {
    #[rustfmt::skip]
    let cases: &[(&[u8], bool)] = &[
        (b"Content-Type: text/event-stream", true),
        (b"Content-Type: TEXT/Event-Stream; charset=utf-8", true),
        (b"content-type:text/event-stream ;x", true),
        (b"Content-Type: text/event-streams", false),
        (b"Content-Type: application/json", false),
        (b"X: text/event-stream", false),
    ];
    for (field, want) in cases {
        let mut buf = b"HTTP/1.1 200 OK\r\n".to_vec();
        buf.extend_from_slice(field);
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(res(&buf, false).event_stream, *want, "{}", show(field));
    }
}

#[test]
fn error_mapping_is_pinned() {
    assert_eq!(
        from_httparse(httparse::Error::TooManyHeaders),
        HeadError::TooManyHeaders
    );
    assert_eq!(from_httparse(httparse::Error::Version), HeadError::Version);
    assert_eq!(
        from_httparse(httparse::Error::NewLine),
        HeadError::Malformed
    );
}

/// The line-end check word by word agrees with a byte-by-byte reading of
/// its rule, for every string of CR, LF and other bytes up to 9 long at
/// every offset in a head (so across word boundaries and in the tail).
#[test]
fn line_end_words_agree_with_bytes() {
    fn bytewise(head: &[u8]) -> bool {
        head.iter().enumerate().all(|(i, &b)| match b {
            b'\n' => i > 0 && head[i - 1] == b'\r',
            b'\r' => head.get(i + 1).is_none_or(|&next| next == b'\n'),
            _ => true,
        })
    }
    let alphabet = [b'\r', b'\n', b'a'];
    let mut checked = 0;
    for len in 0..=9u32 {
        for n in 0..3usize.pow(len) {
            let tail = (0..len).map(|k| alphabet[n / 3usize.pow(k) % 3]);
            for pad in 0..9 {
                let head: Vec<u8> = std::iter::repeat_n(b'x', pad).chain(tail.clone()).collect();
                let want = bytewise(&head);
                assert_eq!(check_line_ends(&head).is_ok(), want, "{}", show(&head));
                checked += 1;
            }
        }
    }
    assert!(checked > 200_000);
}
