//! The routing forms of issue 3 beyond the body's `model`:
//!
//! - point 4, path routing: `/route/{model}/rest?query` (`%2F` decodes to
//!   `/`), forwarded as `<prefix>/rest?query`, body streamed unparsed, auth,
//!   cap and configured headers applied as for body routing;
//! - point 5, query routing: `?model=` for a request without a body;
//! - point 6, Upgrade passthrough: a WebSocket upgrade routed by `?model=`,
//!   tunnelled both ways after the upstream's `101` (a fake upstream that
//!   answers 101 and echoes frames);
//! - point 7, `x-api-key` auth (stripped upstream when auth is on) and
//!   Anthropic-style `POST /v1/messages`, routed by its body's `model`;
//! - point 8, `"unlisted": true` models: routable, hidden from `/v1/models`
//!   and `/v1/models/{id}`, not counted by `/health`.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const WAIT: Duration = Duration::from_secs(5);

/// Echoes the request's target, so a test sees where it landed.
fn echo_target() -> FakeUpstream {
    FakeUpstream::start(|r| Reply::json(json!({ "target": r.target }).to_string()))
}

fn head_text(request: &Request) -> String {
    lossy(&request.head)
}

// ---------------------------------------------------------------------------
// Path routing (point 4)
// ---------------------------------------------------------------------------

#[test]
fn path_route_forwards_the_rest_with_prefix_and_query_and_an_unparsed_body() {
    let up = echo_target();
    let other = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[
            ("tts", &format!("{}/api", up.url())),
            ("other", &other.url()),
        ],
        json!({}),
    ));
    // Not JSON at all, and a `model` that would route elsewhere if the
    // body were read: the path decides, the body is never parsed.
    let body = "{\"model\":\"other\"} and then not JSON at all \u{1}";
    let request = format!(
        "POST /route/tts/v1/audio/speech?format=wav&speed=1 HTTP/1.1\r\nHost: {CLIENT_HOST}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = Client::connect(router.addr()).exchange(request.as_bytes());
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    assert_eq!(
        response.json()["target"],
        "/api/v1/audio/speech?format=wav&speed=1"
    );
    let seen = up.wait_requests(1, WAIT);
    assert_eq!(seen[0].body, body.as_bytes(), "body bytes unchanged");
    assert_eq!(seen[0].header("host"), Some(up.authority().as_str()));
    assert_eq!(seen[0].header("content-type"), Some("text/plain"));
    other.assert_untouched();
    assert!(
        poll_until(WAIT, || router.access_lines().iter().any(|l| {
            let f = logfmt(l);
            f.get("model").map(String::as_str) == Some("tts")
                && f.get("path").map(String::as_str) == Some("/route/tts/v1/audio/speech")
        })),
        "the access line names the model from the path: {}",
        router.logs()
    );
}

#[test]
fn path_route_decodes_percent_2f_in_the_model_name() {
    let up = echo_target();
    let router = Router::start(config_for(&[("org/name", &up.url())], json!({})));
    let response = Client::connect(router.addr()).exchange(&post_json(
        "/route/org%2Fname/v1/embeddings",
        &[],
        r#"{"input":"x"}"#,
    ));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    assert_eq!(response.json()["target"], "/v1/embeddings");

    // Lower-case hex too.
    let response = Client::connect(router.addr()).exchange(&get("/route/org%2fname/health", &[]));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    assert_eq!(response.json()["target"], "/health");
}

#[test]
fn path_route_without_a_body_reaches_the_upstream_not_the_routers_endpoints() {
    let up = echo_target();
    let router = Router::start(config_for(&[("m", &up.url())], json!({})));
    for path in ["/v1/models", "/health"] {
        let response =
            Client::connect(router.addr()).exchange(&get(&format!("/route/m{path}"), &[]));
        assert_eq!(response.status, 200, "{}", lossy(&response.raw));
        assert_eq!(
            response.json()["target"],
            path,
            "/route/m{path} is the upstream's {path}, not llmhop's"
        );
    }
    let seen = up.wait_requests(2, WAIT);
    assert!(seen.iter().all(|r| r.method == "GET" && r.body.is_empty()));
}

#[test]
fn path_route_streams_the_body_before_it_ends() {
    let up = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &up.url())], json!({})));
    let mut client = Client::connect(router.addr());
    let first = chunk_bytes(b"{\"messages\":[\"first part, no model in sight\"");
    client.send(
        format!(
            "POST /route/m/v1/chat/completions HTTP/1.1\r\nHost: {CLIENT_HOST}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    );
    client.send(&first);
    assert!(
        poll_until(WAIT, || up
            .conns()
            .first()
            .is_some_and(|c| find(&c.raw, &first).is_some())),
        "the first chunk must reach the upstream before the body ends (no model scan holds it); upstream got: {:?}",
        up.conns().first().map(|c| lossy(&c.raw))
    );
    let rest = [
        chunk_bytes(b",\"second\"],\"model\":\"m\",\"model\":\"dup\"}"),
        b"0\r\n\r\n".to_vec(),
    ]
    .concat();
    client.send(&rest);
    let response = client.read_response();
    assert_eq!(
        response.status,
        200,
        "an unparsed body is never judged (a duplicate `model` is fine): {}",
        lossy(&response.raw)
    );
    let seen = up.wait_requests(1, WAIT);
    assert_eq!(
        seen[0].raw_body,
        [first, rest].concat(),
        "chunk framing kept"
    );
    assert_eq!(seen[0].header("transfer-encoding"), Some("chunked"));
}

#[test]
fn path_route_refuses_an_unknown_or_empty_model() {
    let up = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &up.url())], json!({})));
    let response = Client::connect(router.addr()).exchange(&post_json(
        "/route/nope/v1/chat/completions",
        &[],
        r#"{"model":"m"}"#,
    ));
    assert_eq!(response.assert_error(404), "model_not_found");
    let response =
        Client::connect(router.addr()).exchange(&post_json("/route//v1/chat", &[], "{}"));
    response.assert_error(400);
    up.assert_untouched();
}

#[test]
fn path_route_applies_auth_cap_and_configured_headers() {
    let up = FakeUpstream::ok();
    let config = json!({
        "authTokens": ["client-token"],
        "maxBodyBytes": 100,
        "models": { "m": {
            "url": up.url(),
            "headers": { "Authorization": "Bearer upstream-key", "X-Org": "acme" }
        }}
    });
    let router = Router::start(config);
    let path = "/route/m/v1/chat/completions";

    let response = Client::connect(router.addr()).exchange(&post_json(path, &[], "{}"));
    response.assert_error(401);
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));

    let big = "x".repeat(101);
    let mut client = Client::connect(router.addr());
    let _ = client.send_lossy(&post_json(
        path,
        &["Authorization: Bearer client-token"],
        &big,
    ));
    client.read_response().assert_error(413);
    up.assert_untouched();

    let response = Client::connect(router.addr()).exchange(&post_json(
        path,
        &["Authorization: Bearer client-token", "X-Org: client"],
        "{}",
    ));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    let seen = up.wait_requests(1, WAIT);
    assert_eq!(seen[0].header("authorization"), Some("Bearer upstream-key"));
    assert_eq!(seen[0].header_count("authorization"), 1);
    assert_eq!(seen[0].header("x-org"), Some("acme"));
    assert_eq!(seen[0].header_count("x-org"), 1);
    assert!(!head_text(&seen[0]).contains("client-token"));
}

// ---------------------------------------------------------------------------
// Query routing (point 5)
// ---------------------------------------------------------------------------

#[test]
fn query_model_routes_requests_without_a_body() {
    let a = echo_target();
    let b = echo_target();
    let router = Router::start(config_for(
        &[("a", &a.url()), ("org/b", &b.url())],
        json!({}),
    ));
    let response =
        Client::connect(router.addr()).exchange(&get("/v1/realtime/sessions?x=1&model=a", &[]));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    assert_eq!(
        response.json()["target"],
        "/v1/realtime/sessions?x=1&model=a",
        "path and query forwarded unchanged"
    );

    let response = Client::connect(router.addr()).exchange(
        format!("DELETE /v1/files/f1?model=org%2Fb HTTP/1.1\r\nHost: {CLIENT_HOST}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    assert_eq!(response.json()["target"], "/v1/files/f1?model=org%2Fb");

    // An empty body is no body.
    let response = Client::connect(router.addr()).exchange(&post_json(
        "/v1/batches/b1/cancel?model=a",
        &[],
        "",
    ));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    assert_eq!(a.wait_requests(2, WAIT).len(), 2);
    assert_eq!(b.wait_requests(1, WAIT)[0].method, "DELETE");
}

#[test]
fn query_model_missing_or_unknown_is_refused() {
    let up = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &up.url())], json!({})));
    let response = Client::connect(router.addr()).exchange(&get("/v1/realtime", &[]));
    response.assert_error(400);
    let response =
        Client::connect(router.addr()).exchange(&get("/v1/realtime?modelx=m&x=model=m", &[]));
    response.assert_error(400);
    let response = Client::connect(router.addr()).exchange(&get("/v1/realtime?model=", &[]));
    response.assert_error(400);
    let response = Client::connect(router.addr()).exchange(&get("/v1/realtime?model=zz", &[]));
    assert_eq!(response.assert_error(404), "model_not_found");
    up.assert_untouched();
}

#[test]
fn a_body_model_wins_over_the_query() {
    let a = FakeUpstream::ok();
    let b = FakeUpstream::ok();
    let router = Router::start(config_for(&[("a", &a.url()), ("b", &b.url())], json!({})));
    let response = Client::connect(router.addr()).exchange(&post_json(
        "/v1/chat/completions?model=b",
        &[],
        r#"{"model":"a"}"#,
    ));
    assert_eq!(response.status, 200);
    a.wait_requests(1, WAIT);
    b.assert_untouched();
}

// ---------------------------------------------------------------------------
// Upgrade passthrough (point 6)
// ---------------------------------------------------------------------------

/// RFC 6455 §1.3's example key and its accept value: the fake needs no SHA-1.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;

/// One WebSocket frame (RFC 6455 §5.2), FIN set; clients mask, servers don't.
fn ws_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(masked | n as u8),
        n if n <= 0xffff => {
            out.push(masked | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Frame {
    opcode: u8,
    masked: bool,
    payload: Vec<u8>,
}

/// Parses one frame from the front of `buf` (unmasking it); `None` until
/// it is complete.
fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len, mut pos) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let key: Option<[u8; 4]> = if masked {
        let key = buf.get(pos..pos + 4)?.try_into().ok()?;
        pos += 4;
        Some(key)
    } else {
        None
    };
    let data = buf.get(pos..pos + len)?;
    let payload = match key {
        Some(k) => data.iter().enumerate().map(|(i, b)| b ^ k[i % 4]).collect(),
        None => data.to_vec(),
    };
    Some((
        Frame {
            opcode: b0 & 0x0f,
            masked,
            payload,
        },
        pos + len,
    ))
}

/// What the WebSocket fake answers to an upgrade request.
#[derive(Clone)]
enum WsMode {
    /// `101`, with this server frame written in the same segment, then
    /// echo every client frame back unmasked; a close is echoed and the
    /// connection closed.
    Accept { greeting: Vec<u8> },
    /// These exact bytes (a refusal), then wait for EOF.
    Refuse(Vec<u8>),
}

/// A WebSocket server on `127.0.0.1:0` for the upgrade tests.
struct WsUpstream {
    addr: SocketAddr,
    /// The raw upgrade request head of every connection.
    heads: Arc<Mutex<Vec<String>>>,
    /// Client frames as received (unmasked), with their mask flag.
    frames: Arc<Mutex<Vec<Frame>>>,
    /// The router closed its side (EOF) or the fake closed after a close.
    closed: Arc<AtomicBool>,
}

impl WsUpstream {
    fn start(mode: WsMode) -> WsUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ws = WsUpstream {
            addr: listener.local_addr().unwrap(),
            heads: Arc::default(),
            frames: Arc::default(),
            closed: Arc::default(),
        };
        let (heads, frames, closed) = (
            Arc::clone(&ws.heads),
            Arc::clone(&ws.frames),
            Arc::clone(&ws.closed),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (heads, frames, closed, mode) = (
                    Arc::clone(&heads),
                    Arc::clone(&frames),
                    Arc::clone(&closed),
                    mode.clone(),
                );
                thread::spawn(move || ws_serve(stream, mode, &heads, &frames, &closed));
            }
        });
        ws
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

fn ws_serve(
    mut stream: TcpStream,
    mode: WsMode,
    heads: &Mutex<Vec<String>>,
    frames: &Mutex<Vec<Frame>>,
    closed: &AtomicBool,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return closed.store(true, Ordering::SeqCst),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = lossy(&buf[..head_end]);
    buf.drain(..head_end);
    heads.lock().unwrap().push(head.clone());
    let greeting = match mode {
        WsMode::Refuse(bytes) => {
            let _ = stream.write_all(&bytes);
            while matches!(stream.read(&mut chunk), Ok(n) if n > 0) {}
            return closed.store(true, Ordering::SeqCst);
        }
        WsMode::Accept { greeting } => greeting,
    };
    let accept = if head.contains(&format!("Sec-WebSocket-Key: {WS_KEY}")) {
        WS_ACCEPT
    } else {
        "key-not-forwarded"
    };
    let switch = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream
        .write_all(&[switch.as_bytes(), &greeting].concat())
        .is_err()
    {
        return closed.store(true, Ordering::SeqCst);
    }
    loop {
        while let Some((frame, used)) = parse_frame(&buf) {
            buf.drain(..used);
            let echo = ws_frame(frame.opcode, &frame.payload, None);
            let is_close = frame.opcode == OP_CLOSE;
            frames.lock().unwrap().push(frame);
            if stream.write_all(&echo).is_err() || is_close {
                let _ = stream.shutdown(Shutdown::Both);
                return closed.store(true, Ordering::SeqCst);
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return closed.store(true, Ordering::SeqCst),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A client-side WebSocket over the router, after the 101.
struct WsClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl WsClient {
    /// Sends the upgrade request (plus `extra` bytes in the same write) and
    /// reads the 101; bytes after its head stay buffered for frames.
    fn open(router: &Router, target: &str, headers: &[&str], extra: &[u8]) -> (WsClient, Response) {
        let mut client = Client::connect(router.addr());
        let mut request = format!(
            "GET {target} HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"
        );
        for line in headers {
            request.push_str(line);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        client.send(&[request.as_bytes(), extra].concat());
        let response = client.read_response();
        let ws = WsClient {
            buf: client.buffered().to_vec(),
            stream: client.stream,
        };
        (ws, response)
    }

    fn send(&mut self, opcode: u8, payload: &[u8]) {
        let frame = ws_frame(opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d]));
        // Several writes: frames split across segments must survive.
        for piece in frame.chunks(frame.len() / 3 + 1) {
            self.stream.write_all(piece).unwrap();
        }
    }

    /// The next frame from the server within [`WAIT`].
    fn recv(&mut self) -> Frame {
        let deadline = Instant::now() + WAIT;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return frame;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no complete frame within {WAIT:?}; buffered {} byte(s)",
                self.buf.len()
            );
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the router closed the tunnel while a frame was expected"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("reading the tunnel: {e}"),
            }
        }
    }

    /// True when the router closes the connection within `timeout` (EOF or
    /// reset), with no bytes left unread.
    fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.buf.is_empty(),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return self.buf.is_empty(),
            }
        }
    }
}

#[test]
fn websocket_upgrade_is_routed_by_query_and_tunnelled_both_ways() {
    let greeting = ws_frame(OP_TEXT, br#"{"type":"session.created"}"#, None);
    let ws = WsUpstream::start(WsMode::Accept {
        greeting: greeting.clone(),
    });
    let decoy = FakeUpstream::ok();
    let config = json!({
        "authTokens": ["client-token"],
        "models": {
            "gpt-realtime": { "url": ws.url() },
            "decoy": { "url": decoy.url() }
        }
    });
    let router = Router::start(config);

    let (mut client, response) = WsClient::open(
        &router,
        "/v1/realtime?model=gpt-realtime",
        &[
            "Authorization: Bearer client-token",
            "OpenAI-Beta: realtime=v1",
        ],
        b"",
    );
    assert_eq!(response.status, 101, "{}", lossy(&response.raw));
    assert!(response
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert!(response
        .header("connection")
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")));
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some(WS_ACCEPT),
        "the upstream's handshake answer is relayed (and the key reached it)"
    );

    // The upstream's head as forwarded.
    let heads = ws.heads();
    assert_eq!(heads.len(), 1);
    let head = &heads[0];
    assert!(
        head.starts_with("GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\n"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(
        lower.contains("\r\nsec-websocket-version: 13\r\n"),
        "{head}"
    );
    assert!(lower.contains("\r\nopenai-beta: realtime=v1\r\n"), "{head}");
    assert!(
        lower.contains(&format!("\r\nhost: {}\r\n", ws.addr)),
        "{head}"
    );
    assert!(
        !head.contains("client-token"),
        "the client's token stays at llmhop: {head}"
    );

    // Server frame sent together with the 101 arrives first.
    let first = client.recv();
    assert_eq!((first.opcode, first.masked), (OP_TEXT, false));
    assert_eq!(first.payload, br#"{"type":"session.created"}"#);

    // Client → upstream → client, small and large (64-bit length) frames.
    client.send(OP_TEXT, br#"{"type":"response.create"}"#);
    assert_eq!(client.recv().payload, br#"{"type":"response.create"}"#);
    let audio: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    client.send(OP_BINARY, &audio);
    let echoed = client.recv();
    assert_eq!(echoed.opcode, OP_BINARY);
    assert!(echoed.payload == audio, "binary frame unchanged both ways");

    let frames = ws.frames();
    assert_eq!(frames.len(), 2);
    assert!(
        frames.iter().all(|f| f.masked),
        "client frames arrive still masked: bytes unchanged"
    );

    // Close from the client: echoed, then the upstream closes and so must
    // the router.
    client.send(OP_CLOSE, &1000u16.to_be_bytes());
    assert_eq!(client.recv().opcode, OP_CLOSE);
    assert!(
        client.closed_within(WAIT),
        "after the upstream closed the tunnel, the router closes the client side"
    );
    drop(client);
    decoy.assert_untouched();
    assert!(
        poll_until(WAIT, || router.access_lines().iter().any(|l| {
            let f = logfmt(l);
            f.get("status").map(String::as_str) == Some("101")
                && f.get("model").map(String::as_str) == Some("gpt-realtime")
        })),
        "one access line for the tunnel, status 101: {}",
        router.logs()
    );
}

/// Issue 3 point 6: the sockets are spliced "until either closes". When the
/// upstream closes, the tunnel is over: the router closes the client
/// connection and finishes the request (its access line is written), even
/// if the client has not closed its own side yet.
#[test]
fn websocket_tunnel_ends_when_the_upstream_closes() {
    let ws = WsUpstream::start(WsMode::Accept {
        greeting: Vec::new(),
    });
    let router = Router::start(config_for(&[("rt", &ws.url())], json!({})));
    let (mut client, response) = WsClient::open(&router, "/v1/realtime?model=rt", &[], b"");
    assert_eq!(response.status, 101);
    // The upstream echoes the close frame and closes its socket.
    client.send(OP_CLOSE, &1000u16.to_be_bytes());
    assert_eq!(client.recv().opcode, OP_CLOSE);
    assert!(poll_until(WAIT, || ws.closed()));
    assert!(client.closed_within(WAIT), "the router passes the close on");
    // The client keeps its socket open (not every client closes promptly).
    let ended = poll_until(WAIT, || {
        router
            .access_lines()
            .iter()
            .any(|l| logfmt(l).get("status").map(String::as_str) == Some("101"))
    });
    assert!(
        ended,
        "the upstream closed the tunnel, yet {WAIT:?} later the router still holds it open \
         (no access line yet): it only half-closed the client side and waits for the client; log:\n{}",
        router.logs()
    );
    drop(client);
}

#[test]
fn websocket_frame_sent_with_the_upgrade_request_reaches_the_upstream() {
    let ws = WsUpstream::start(WsMode::Accept {
        greeting: Vec::new(),
    });
    let router = Router::start(config_for(&[("rt", &ws.url())], json!({})));
    let early = ws_frame(OP_TEXT, b"early bird", Some([1, 2, 3, 4]));
    let (mut client, response) = WsClient::open(&router, "/v1/realtime?model=rt", &[], &early);
    assert_eq!(response.status, 101, "{}", lossy(&response.raw));
    let echo = client.recv();
    assert_eq!(echo.payload, b"early bird");
}

#[test]
fn websocket_client_going_away_closes_the_upstream_side() {
    let ws = WsUpstream::start(WsMode::Accept {
        greeting: Vec::new(),
    });
    let router = Router::start(config_for(&[("rt", &ws.url())], json!({})));
    let (mut client, response) = WsClient::open(&router, "/v1/realtime?model=rt", &[], b"");
    assert_eq!(response.status, 101);
    client.send(OP_TEXT, b"ping");
    assert_eq!(client.recv().payload, b"ping");
    drop(client);
    assert!(
        poll_until(WAIT, || ws.closed()),
        "the upstream side of the tunnel must close when the client leaves"
    );
}

#[test]
fn websocket_upgrade_refused_by_the_upstream_is_relayed() {
    let body = r#"{"error":{"message":"realtime not enabled"}}"#;
    let refusal = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let ws = WsUpstream::start(WsMode::Refuse(refusal.into_bytes()));
    let router = Router::start(config_for(&[("rt", &ws.url())], json!({})));
    let (_client, response) = WsClient::open(&router, "/v1/realtime?model=rt", &[], b"");
    assert_eq!(response.status, 403, "{}", lossy(&response.raw));
    assert_eq!(response.text(), body);
}

#[test]
fn websocket_upgrade_without_query_model_is_refused() {
    let ws = WsUpstream::start(WsMode::Accept {
        greeting: Vec::new(),
    });
    let router = Router::start(config_for(&[("rt", &ws.url())], json!({})));
    let (_client, response) = WsClient::open(&router, "/v1/realtime", &[], b"");
    response.assert_error(400);
    let (_client, response) = WsClient::open(&router, "/v1/realtime?model=nope", &[], b"");
    assert_eq!(response.assert_error(404), "model_not_found");
    assert!(ws.heads().is_empty(), "nothing reached the upstream");
}

/// `curl --http2` on an `http://` url offers `Upgrade: h2c` on its POST: an
/// offer llmhop ignores (RFC 9110 §7.8), so the request is routed by its
/// body like any other and the offer's fields stay behind.
#[test]
fn an_h2c_upgrade_offer_is_ignored_and_the_body_routes() {
    let up = FakeUpstream::ok();
    let router = Router::start(config_for(&[("m", &up.url())], json!({})));
    let body = r#"{"model":"m","messages":[]}"#;
    let response = Client::connect(router.addr()).exchange(&post_json(
        "/v1/chat/completions",
        &[
            "Connection: Upgrade, HTTP2-Settings",
            "Upgrade: h2c",
            "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
        ],
        body,
    ));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    let seen = up.wait_requests(1, Duration::from_secs(5));
    assert_eq!(seen.len(), 1);
    let got = &seen[0];
    assert_eq!(lossy(&got.raw_body), body);
    for name in ["upgrade", "http2-settings", "connection"] {
        assert_eq!(got.header_count(name), 0, "{name} must not be forwarded");
    }
}

// ---------------------------------------------------------------------------
// x-api-key and /v1/messages (point 7)
// ---------------------------------------------------------------------------

#[test]
fn x_api_key_authenticates_like_bearer_and_is_stripped_upstream() {
    let up = FakeUpstream::ok();
    let config = config_for(
        &[("m", &up.url())],
        json!({ "authTokens": ["first-token", "second-token"] }),
    );
    let router = Router::start(config);

    for key in ["first-token", "second-token"] {
        let response = Client::connect(router.addr()).exchange(&post_json(
            "/v1/chat/completions",
            &[&format!("x-api-key: {key}")],
            r#"{"model":"m"}"#,
        ));
        assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    }
    // Bearer still works; both fields at once with one valid is accepted.
    let response = Client::connect(router.addr()).exchange(&post_json(
        "/v1/chat/completions",
        &["Authorization: Bearer first-token"],
        r#"{"model":"m"}"#,
    ));
    assert_eq!(response.status, 200);

    let seen = up.wait_requests(3, WAIT);
    for request in &seen {
        assert_eq!(request.header("x-api-key"), None, "{}", head_text(request));
        assert_eq!(request.header("authorization"), None);
        assert!(!head_text(request).contains("-token"));
    }

    for bad in [
        "x-api-key: wrong",
        "x-api-key: first-toke",
        "x-api-key:",
        "X-Api-Key: Bearer first-token",
    ] {
        let response = Client::connect(router.addr()).exchange(&post_json(
            "/v1/chat/completions",
            &[bad],
            r#"{"model":"m"}"#,
        ));
        response.assert_error(401);
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(
        up.requests().len(),
        3,
        "refused requests never reach the upstream"
    );

    // The router's own endpoint accepts it too.
    let response =
        Client::connect(router.addr()).exchange(&get("/v1/models", &["x-api-key: second-token"]));
    assert_eq!(response.status, 200);
    let response =
        Client::connect(router.addr()).exchange(&get("/v1/models", &["x-api-key: nope"]));
    response.assert_error(401);
}

#[test]
fn x_api_key_passes_through_when_auth_is_off() {
    let up = FakeUpstream::ok();
    let router = Router::start(config_for(&[("claude", &up.url())], json!({})));
    let response = Client::connect(router.addr()).exchange(&post_json(
        "/v1/messages",
        &["x-api-key: sk-ant-client"],
        r#"{"model":"claude"}"#,
    ));
    assert_eq!(response.status, 200);
    let seen = up.wait_requests(1, WAIT);
    assert_eq!(seen[0].header("x-api-key"), Some("sk-ant-client"));
}

#[test]
fn anthropic_messages_route_by_body_model_and_stream() {
    let events: Vec<String> = vec![
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\"}}\n\n".into(),
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n".into(),
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".into(),
    ];
    let script_events = events.clone();
    let claude = FakeUpstream::start(move |_| Reply::sse(script_events.clone(), Duration::ZERO));
    let gpt = FakeUpstream::ok();
    let config = json!({
        "authTokens": ["client-token"],
        "models": {
            "claude-sonnet-4-5": {
                "url": format!("{}/anthropic", claude.url()),
                "headers": { "x-api-key": "sk-ant-upstream" }
            },
            "gpt-4o": { "url": gpt.url() }
        }
    });
    let router = Router::start(config);
    let body = r#"{"max_tokens":1024,"system":[{"type":"text","text":"be brief","model":"gpt-4o"}],"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hello"}],"stream":true}"#;
    let response = Client::connect(router.addr()).exchange(&post_json(
        "/v1/messages",
        &[
            "x-api-key: client-token",
            "anthropic-version: 2023-06-01",
            "anthropic-beta: prompt-caching-2024-07-31",
        ],
        body,
    ));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    assert_eq!(
        response.text(),
        events.concat(),
        "event stream relayed unchanged"
    );

    let seen = claude.wait_requests(1, WAIT);
    let request = &seen[0];
    assert_eq!(request.target, "/anthropic/v1/messages");
    assert_eq!(request.body, body.as_bytes());
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        request.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    assert_eq!(
        request.header("x-api-key"),
        Some("sk-ant-upstream"),
        "the configured key replaces the client's"
    );
    assert_eq!(request.header_count("x-api-key"), 1);
    gpt.assert_untouched();
}

// ---------------------------------------------------------------------------
// Unlisted models (point 8)
// ---------------------------------------------------------------------------

#[test]
fn unlisted_models_route_but_stay_out_of_the_listing_and_the_count() {
    let up = echo_target();
    let config = json!({
        "models": {
            "zeta": { "url": up.url() },
            "alpha": { "url": up.url(), "unlisted": false },
            "org/hidden": { "url": up.url(), "unlisted": true }
        }
    });
    let router = Router::start(config);

    let models = Client::connect(router.addr()).exchange(&get("/v1/models", &[]));
    assert_eq!(models.status, 200);
    let ids: Vec<Value> = models.json()["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!("alpha"), json!("zeta")]);

    let one = Client::connect(router.addr()).exchange(&get("/v1/models/org%2Fhidden", &[]));
    assert_eq!(
        one.assert_error(404),
        "model_not_found",
        "an unlisted model is not found by id either"
    );
    let one = Client::connect(router.addr()).exchange(&get("/v1/models/alpha", &[]));
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["id"], "alpha");

    let health = Client::connect(router.addr()).exchange(&get("/health", &[]));
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), json!({"status": "ok", "models": 2}));

    // Routable by every form.
    let by_body = Client::connect(router.addr()).exchange(&chat("org/hidden"));
    assert_eq!(by_body.status, 200, "{}", lossy(&by_body.raw));
    let by_path = Client::connect(router.addr()).exchange(&get("/route/org%2Fhidden/v1/x", &[]));
    assert_eq!(by_path.status, 200, "{}", lossy(&by_path.raw));
    assert_eq!(by_path.json()["target"], "/v1/x");
    let by_query = Client::connect(router.addr()).exchange(&get("/v1/y?model=org%2Fhidden", &[]));
    assert_eq!(by_query.status, 200, "{}", lossy(&by_query.raw));
    assert_eq!(up.wait_requests(3, WAIT).len(), 3);
}
