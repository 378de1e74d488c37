//! Harness shared by the integration tests: the router as a child process, a
//! scriptable fake upstream, and a raw HTTP/1.1 client.
//!
//! Everything runs over real loopback sockets bound to port 0, so test files
//! and the tests inside them run in parallel without port clashes. Nothing
//! here sleeps to wait for readiness: the router is ready when it logs
//! `msg=listening`, and every other wait is [`poll_until`] with a deadline.
//! The only sleeps are the pauses inside scripted upstream replies, which are
//! the behaviour under test (SSE gaps, stale keep-alive).
//!
//! What this module does *not* own: assertions about the SPEC. It records
//! what crossed each socket, byte for byte, and the tests judge it.

// Each test file uses a different part of the harness.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long the router may take from spawn to its `msg=listening` line.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(10);
/// Default bound for reading one response from the router.
pub const READ_DEADLINE: Duration = Duration::from_secs(10);
/// The `Host` the tests send; the router must replace it with the upstream's.
pub const CLIENT_HOST: &str = "llmhop.test";

// ---------------------------------------------------------------------------
// Router
// ---------------------------------------------------------------------------

/// The `llmhop` binary running as a child process on `127.0.0.1:0`.
///
/// Dropping it kills the child through its handle (never by name) and removes
/// its temporary directory.
pub struct Router {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<String>>,
    dir: PathBuf,
}

impl Router {
    /// Writes `config` (with `"listen": "127.0.0.1:0"` unless given) to a
    /// fresh temp dir, spawns the router and waits for `msg=listening`.
    pub fn start(config: Value) -> Router {
        Router::start_with_env(config, &[])
    }

    /// [`Router::start`] with extra environment variables for the child
    /// (for `${env:NAME}` secret references).
    pub fn start_with_env(config: Value, env: &[(&str, &str)]) -> Router {
        Router::launch(config, "router", |path| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_llmhop"));
            command.arg("--config").arg(path).envs(env.iter().copied());
            command
        })
    }

    /// Writes `config` (listening on 127.0.0.1:0 unless it says otherwise)
    /// into a fresh directory, runs `command(config_path)` there with stderr
    /// piped, and waits for the startup line.
    fn launch(
        mut config: Value,
        tag: &str,
        command: impl FnOnce(&std::path::Path) -> Command,
    ) -> Router {
        config
            .as_object_mut()
            .expect("router config must be a JSON object")
            .entry("listen")
            .or_insert(json!("127.0.0.1:0"));
        let dir = fresh_temp_dir(tag);
        let path = dir.join("config.json");
        fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();

        let mut child = command(&path)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the llmhop binary");

        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let drain = Arc::clone(&logs);
        // Keeps draining for the child's whole life so it never blocks on a
        // full pipe; the tests read the shared buffer.
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).into_owned();
                        lock(&drain).push_str(&text);
                        let _ = lines_tx.send(text);
                    }
                }
            }
        });

        let deadline = Instant::now() + STARTUP_DEADLINE;
        let addr = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        break addr;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "router did not log `msg=listening listen=...` within {STARTUP_DEADLINE:?}; stderr:\n{}",
                        lock(&logs)
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    panic!(
                        "router exited before logging `msg=listening` ({status:?}); stderr:\n{}",
                        lock(&logs)
                    );
                }
            }
        };
        Router {
            child,
            addr,
            logs,
            dir,
        }
    }

    /// The first listen address from the startup line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the router wrote to stderr so far.
    pub fn logs(&self) -> String {
        lock(&self.logs).clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM to this child (by PID, through the `kill` command).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run `kill -TERM <pid>`");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// The exit status if the child exits within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// A `/proc/<pid>/status` field in KiB (`VmHWM`, `VmRSS`).
    pub fn proc_status_kib(&self, field: &str) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// The log once it holds at least `n` access lines: the router writes
    /// access lines in batches (at most 100 ms late), in order, so a check
    /// that something is absent from the log waits for the line of the
    /// last request first.
    pub fn logs_after_access(&self, n: usize) -> String {
        assert!(
            poll_until(Duration::from_secs(5), || self.access_lines().len() >= n),
            "fewer than {n} access lines:\n{}",
            self.logs()
        );
        self.logs()
    }

    /// Access-log lines (those with `status=`) so far.
    pub fn access_lines(&self) -> Vec<String> {
        self.logs()
            .lines()
            .filter(|l| l.contains("status=") && l.contains("method="))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Parses `listen=127.0.0.1:PORT[,more]` (optionally quoted) from a logfmt
/// line that also carries `msg=listening`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("msg=listening") && !line.contains("msg=\"listening") {
        return None;
    }
    let value = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("listen="))?;
    value
        .trim_matches('"')
        .split(',')
        .find_map(|addr| addr.trim().parse().ok())
}

/// A new, empty directory under the system temp dir, unique per process and call.
pub fn fresh_temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("llmhop-test-{tag}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// `{"models": {name: {"url": url}}}` plus `extra` top-level keys.
pub fn config_for(models: &[(&str, &str)], extra: Value) -> Value {
    let mut table = serde_json::Map::new();
    for (name, url) in models {
        table.insert((*name).to_owned(), json!({ "url": url }));
    }
    let mut config = json!({ "models": table });
    if let Value::Object(extra) = extra {
        config.as_object_mut().unwrap().extend(extra);
    }
    config
}

// ---------------------------------------------------------------------------
// Fake upstream
// ---------------------------------------------------------------------------

/// How the fake upstream answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// `status` with a JSON body, Content-Length framed, keep-alive.
    Json { status: u16, body: String },
    /// Exactly these bytes; the connection then stays open.
    Raw(Vec<u8>),
    /// 200 `application/json`, `Transfer-Encoding: chunked`, one write per chunk.
    Chunked(Vec<Vec<u8>>),
    /// 200 `text/event-stream`, chunked, one chunk per event, each written
    /// `gap` after the previous one. The instant of every write is recorded
    /// ([`FakeUpstream::sse_writes`]); between writes the connection is
    /// watched, so a close by the router is recorded at once.
    Sse {
        events: Vec<String>,
        gap: Duration,
        extra_headers: Vec<String>,
    },
    /// 200 with no Content-Length and no chunked coding; the body ends when
    /// the upstream closes the connection.
    CloseDelimited(Vec<u8>),
    /// Close the connection without writing a byte.
    CloseBeforeHead,
    /// A head announcing `Content-Length: 1000`, 10 body bytes, then close.
    CloseMidBody,
}

impl Reply {
    /// 200 with this JSON body.
    pub fn json(body: impl Into<String>) -> Reply {
        Reply::Json {
            status: 200,
            body: body.into(),
        }
    }

    /// SSE events (each a complete `data: ...\n\n` block) `gap` apart.
    pub fn sse(events: Vec<String>, gap: Duration) -> Reply {
        Reply::Sse {
            events,
            gap,
            extra_headers: Vec::new(),
        }
    }
}

/// Behaviour knobs of a [`FakeUpstream`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Close a keep-alive connection that stays idle this long after a
    /// response (uvicorn closes idle connections after 5 s).
    pub idle_close: Option<Duration>,
    /// Keep raw and decoded body bytes; off for huge bodies, which are then
    /// only counted and hashed.
    pub store_bodies: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            idle_close: None,
            store_bodies: true,
        }
    }
}

/// One complete request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Index of the upstream connection it came on (accept order).
    pub conn: usize,
    /// The exact head bytes, through the blank line.
    pub head: Vec<u8>,
    pub method: String,
    pub target: String,
    pub version: String,
    /// Header fields in order, name spelling kept, value trimmed.
    pub headers: Vec<(String, String)>,
    /// The exact body bytes on the wire (chunk framing included).
    pub raw_body: Vec<u8>,
    /// The decoded body (empty when bodies are not stored).
    pub body: Vec<u8>,
    pub body_len: u64,
    /// FNV-1a of the decoded body.
    pub body_hash: u64,
}

impl Request {
    /// The first field with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn header_count(&self, name: &str) -> usize {
        header_count(&self.headers, name)
    }

    /// Head and body exactly as received.
    pub fn raw(&self) -> Vec<u8> {
        [self.head.as_slice(), self.raw_body.as_slice()].concat()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("upstream request body is JSON")
    }
}

/// What one upstream connection saw.
#[derive(Clone, Debug, Default)]
pub struct ConnRecord {
    /// Every byte received (only when bodies are stored).
    pub raw: Vec<u8>,
    pub bytes: u64,
    pub requests: usize,
    /// When the router closed or reset it (EOF or error on read/write).
    pub closed_at: Option<Instant>,
    /// The upstream itself closed it as idle.
    pub idle_closed: bool,
}

#[derive(Default)]
struct State {
    conns: Vec<ConnRecord>,
    requests: Vec<Request>,
    sse_writes: Vec<Instant>,
}

type Script = dyn Fn(&Request) -> Reply + Send + Sync;

struct Shared {
    state: Mutex<State>,
    script: Box<Script>,
    options: Options,
}

/// A scripted HTTP/1.1 server on `127.0.0.1:0` that records every byte.
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl FakeUpstream {
    /// Answers every request with `script(&request)`.
    pub fn start(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeUpstream {
        FakeUpstream::start_with(Options::default(), script)
    }

    /// Answers every request with `200 {"ok":true}`.
    pub fn ok() -> FakeUpstream {
        FakeUpstream::start(|_| Reply::json(r#"{"ok":true}"#))
    }

    pub fn start_with(
        options: Options,
        script: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            script: Box::new(script),
            options,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (accept_shared, accept_stop) = (Arc::clone(&shared), Arc::clone(&stop));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let id = {
                    let mut state = lock(&accept_shared.state);
                    state.conns.push(ConnRecord::default());
                    state.conns.len() - 1
                };
                let conn_shared = Arc::clone(&accept_shared);
                thread::spawn(move || serve_conn(stream, id, conn_shared));
            }
        });
        FakeUpstream { addr, shared, stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, the authority the router must put in `Host`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Complete requests received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.state).requests.clone()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        lock(&self.shared.state).conns.len()
    }

    pub fn conns(&self) -> Vec<ConnRecord> {
        lock(&self.shared.state).conns.clone()
    }

    /// Bytes received over all connections.
    pub fn bytes_received(&self) -> u64 {
        lock(&self.shared.state).conns.iter().map(|c| c.bytes).sum()
    }

    /// When each SSE event was written, across all replies.
    pub fn sse_writes(&self) -> Vec<Instant> {
        lock(&self.shared.state).sse_writes.clone()
    }

    /// Waits (bounded) until `n` complete requests arrived and returns them.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let arrived = poll_until(timeout, || self.requests().len() >= n);
        let requests = self.requests();
        assert!(
            arrived,
            "upstream expected {n} request(s) within {timeout:?}, got {}; bytes received: {}",
            requests.len(),
            self.bytes_received()
        );
        requests
    }

    /// Asserts that no byte at all reached this upstream.
    pub fn assert_untouched(&self) {
        let conns = self.conns();
        let bytes: u64 = conns.iter().map(|c| c.bytes).sum();
        assert!(
            bytes == 0,
            "upstream must receive nothing, but received {bytes} byte(s) on {} connection(s): {:?}",
            conns.len(),
            conns
                .iter()
                .map(|c| String::from_utf8_lossy(&c.raw).into_owned())
                .collect::<Vec<_>>()
        );
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblocks `accept` so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// The upstream side of one connection: a read buffer plus the recording.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    id: usize,
    shared: Arc<Shared>,
}

impl Wire {
    /// One read into `buf`; `Ok(0)` is EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        let mut state = lock(&self.shared.state);
        let record = &mut state.conns[self.id];
        record.bytes += n as u64;
        if self.shared.options.store_bodies {
            record.raw.extend_from_slice(&chunk[..n]);
        }
        drop(state);
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// `fill`, with EOF turned into an error (EOF inside a request).
    fn fill_more(&mut self) -> io::Result<()> {
        match self.fill()? {
            0 => Err(ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }

    /// One CRLF-terminated line, CRLF included.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                return Ok(self.buf.drain(..at + 2).collect());
            }
            self.fill_more()?;
        }
    }

    /// Exactly `n` bytes, passed to `sink` piece by piece.
    fn take(&mut self, mut n: u64, mut sink: impl FnMut(&[u8])) -> io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() {
                self.fill_more()?;
            }
            let len = (n as usize).min(self.buf.len());
            sink(&self.buf[..len]);
            self.buf.drain(..len);
            n -= len as u64;
        }
        Ok(())
    }

    /// Waits up to `timeout` for input or EOF; true when bytes are buffered.
    fn readable_within(&mut self, timeout: Duration) -> io::Result<bool> {
        if !self.buf.is_empty() {
            return Ok(true);
        }
        self.stream.set_read_timeout(Some(timeout))?;
        let result = self.fill();
        self.stream.set_read_timeout(None)?;
        match result {
            Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The next complete request; `Ok(None)` on a clean EOF between requests.
    fn request(&mut self) -> io::Result<Option<Request>> {
        let head_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            if self.fill()? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ErrorKind::UnexpectedEof.into())
                };
            }
        };
        let head: Vec<u8> = self.buf.drain(..head_end).collect();
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let mut start = lines.next().unwrap_or_default().splitn(3, ' ');
        let (method, target, version) = (
            start.next().unwrap_or_default().to_owned(),
            start.next().unwrap_or_default().to_owned(),
            start.next().unwrap_or_default().to_owned(),
        );
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| match l.split_once(':') {
                Some((n, v)) => (n.to_owned(), v.trim().to_owned()),
                None => (l.to_owned(), String::new()),
            })
            .collect();
        let mut request = Request {
            conn: self.id,
            head,
            method,
            target,
            version,
            headers,
            raw_body: Vec::new(),
            body: Vec::new(),
            body_len: 0,
            body_hash: Fnv::new().finish(),
        };
        let store = self.shared.options.store_bodies;
        let mut hash = Fnv::new();
        let chunked = request
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        if chunked {
            loop {
                let size_line = self.line()?;
                let size_text = String::from_utf8_lossy(&size_line);
                let size_hex = size_text.trim_end().split(';').next().unwrap_or_default();
                let size = u64::from_str_radix(size_hex.trim(), 16)
                    .map_err(|_| io::Error::new(ErrorKind::InvalidData, "bad chunk size"))?;
                request.raw_body.extend_from_slice(&size_line);
                if size == 0 {
                    loop {
                        let trailer = self.line()?;
                        request.raw_body.extend_from_slice(&trailer);
                        if trailer == b"\r\n" {
                            break;
                        }
                    }
                    break;
                }
                let (raw, body) = (&mut request.raw_body, &mut request.body);
                self.take(size, |data| {
                    hash.write(data);
                    raw.extend_from_slice(data);
                    body.extend_from_slice(data);
                })?;
                request.body_len += size;
                let crlf = self.line()?;
                request.raw_body.extend_from_slice(&crlf);
            }
        } else if let Some(len) = request.header("content-length") {
            let len: u64 = len
                .parse()
                .map_err(|_| io::Error::new(ErrorKind::InvalidData, "bad content-length"))?;
            let (raw, body) = (&mut request.raw_body, &mut request.body);
            self.take(len, |data| {
                hash.write(data);
                if store {
                    raw.extend_from_slice(data);
                    body.extend_from_slice(data);
                }
            })?;
            request.body_len = len;
        }
        request.body_hash = hash.finish();
        Ok(Some(request))
    }

    /// Writes `bytes`, recording a failed write as the router closing.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    fn record_closed(&self) {
        let mut state = lock(&self.shared.state);
        let record = &mut state.conns[self.id];
        record.closed_at.get_or_insert_with(Instant::now);
    }
}

/// Serves one upstream connection until either side closes it.
fn serve_conn(stream: TcpStream, id: usize, shared: Arc<Shared>) {
    let mut wire = Wire {
        stream,
        buf: Vec::new(),
        id,
        shared,
    };
    let idle_close = wire.shared.options.idle_close;
    loop {
        if let Some(idle) = idle_close {
            match wire.readable_within(idle) {
                Ok(true) => {}
                Ok(false) => {
                    lock(&wire.shared.state).conns[id].idle_closed = true;
                    let _ = wire.stream.shutdown(Shutdown::Both);
                    return;
                }
                Err(_) => return wire.record_closed(),
            }
        }
        let request = match wire.request() {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => return wire.record_closed(),
        };
        let wants_close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let reply = (wire.shared.script)(&request);
        {
            let mut state = lock(&wire.shared.state);
            state.conns[id].requests += 1;
            state.requests.push(request);
        }
        match write_reply(&mut wire, reply) {
            Ok(true) if !wants_close => {}
            Ok(_) => {
                let _ = wire.stream.shutdown(Shutdown::Both);
                return;
            }
            Err(_) => return wire.record_closed(),
        }
    }
}

/// Writes one scripted reply; `Ok(false)` when the connection must close.
fn write_reply(wire: &mut Wire, reply: Reply) -> io::Result<bool> {
    match reply {
        Reply::Json { status, body } => {
            let head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                reason(status),
                body.len()
            );
            wire.send(&[head.as_bytes(), body.as_bytes()].concat())?;
            Ok(true)
        }
        Reply::Raw(bytes) => {
            wire.send(&bytes)?;
            Ok(true)
        }
        Reply::Chunked(chunks) => {
            wire.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            )?;
            for chunk in chunks {
                wire.send(&chunk_bytes(&chunk))?;
            }
            wire.send(b"0\r\n\r\n")?;
            Ok(true)
        }
        Reply::Sse {
            events,
            gap,
            extra_headers,
        } => {
            let mut head = String::from(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n",
            );
            for line in extra_headers {
                head.push_str(&line);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            wire.send(head.as_bytes())?;
            for (i, event) in events.iter().enumerate() {
                if i > 0 {
                    // Watch the connection during the pause: a close by the
                    // router is what the cancellation tests measure.
                    let until = Instant::now() + gap;
                    loop {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        // Bytes arriving mid-stream are kept for later requests.
                        wire.readable_within(left)?;
                        if !wire.buf.is_empty() {
                            thread::sleep(left);
                            break;
                        }
                    }
                }
                wire.send(&chunk_bytes(event.as_bytes()))?;
                lock(&wire.shared.state).sse_writes.push(Instant::now());
            }
            wire.send(b"0\r\n\r\n")?;
            Ok(true)
        }
        Reply::CloseDelimited(body) => {
            wire.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")?;
            wire.send(&body)?;
            Ok(false)
        }
        Reply::CloseBeforeHead => Ok(false),
        Reply::CloseMidBody => {
            wire.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"partial\":")?;
            Ok(false)
        }
    }
}

/// One chunk of a chunked body.
pub fn chunk_bytes(data: &[u8]) -> Vec<u8> {
    [format!("{:x}\r\n", data.len()).as_bytes(), data, b"\r\n"].concat()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        418 => "I'm a teapot",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

// ---------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------

/// A parsed HTTP/1.1 response as the client received it.
#[derive(Clone, Debug)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Decoded body (de-chunked).
    pub body: Vec<u8>,
    /// Exactly the bytes of this response on the wire.
    pub raw: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn header_count(&self, name: &str) -> usize {
        header_count(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.raw)
            )
        })
    }

    /// Asserts the router-made error shape of SPEC §4 and returns `code`.
    pub fn assert_error(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected a {status}, got: {}",
            String::from_utf8_lossy(&self.raw)
        );
        assert!(
            self.header("content-type")
                .is_some_and(|v| v.starts_with("application/json")),
            "router-made {status} must be application/json: {}",
            String::from_utf8_lossy(&self.raw)
        );
        let body = self.json();
        let error = &body["error"];
        assert!(
            error["message"].is_string() && error["type"].is_string(),
            "error body must be OpenAI-shaped: {body}"
        );
        assert!(
            error.get("param") == Some(&Value::Null),
            "error.param must be null: {body}"
        );
        error["code"].clone()
    }

    /// True when `Transfer-Encoding: chunked` framed the body.
    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// Parses one response from the front of `buf`. `eof` says the peer closed,
/// which ends a close-delimited body. `Ok(None)`: need more bytes.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(Response, usize)>, String> {
    let Some(at) = find(buf, b"\r\n\r\n") else {
        return if eof && !buf.is_empty() {
            Err(format!(
                "connection closed inside a response head: {:?}",
                String::from_utf8_lossy(buf)
            ))
        } else {
            Ok(None)
        };
    };
    let head_len = at + 4;
    let text = String::from_utf8_lossy(&buf[..at]).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_owned();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let headers: Vec<(String, String)> = lines
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.to_owned(), v.trim().to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect();
    let mut response = Response {
        version,
        status,
        headers,
        body: Vec::new(),
        raw: Vec::new(),
    };
    if (100..200).contains(&status) || status == 204 || status == 304 {
        response.raw = buf[..head_len].to_vec();
        return Ok(Some((response, head_len)));
    }
    let rest = &buf[head_len..];
    let used = if response.is_chunked() {
        let mut pos = 0;
        loop {
            let Some(line_end) = find(&rest[pos..], b"\r\n") else {
                return incomplete(eof, buf);
            };
            let line = String::from_utf8_lossy(&rest[pos..pos + line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            pos += line_end + 2;
            if size == 0 {
                // Trailers up to the blank line.
                loop {
                    let Some(end) = find(&rest[pos..], b"\r\n") else {
                        return incomplete(eof, buf);
                    };
                    pos += end + 2;
                    if end == 0 {
                        break;
                    }
                }
                break pos;
            }
            if rest.len() < pos + size + 2 {
                return incomplete(eof, buf);
            }
            response.body.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad content-length {len:?}"))?;
        if rest.len() < len {
            return incomplete(eof, buf);
        }
        response.body.extend_from_slice(&rest[..len]);
        len
    } else if eof {
        response.body.extend_from_slice(rest);
        rest.len()
    } else {
        return Ok(None);
    };
    response.raw = buf[..head_len + used].to_vec();
    Ok(Some((response, head_len + used)))
}

fn incomplete(eof: bool, buf: &[u8]) -> Result<Option<(Response, usize)>, String> {
    if eof {
        Err(format!(
            "connection closed inside a response body: {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(2000)])
        ))
    } else {
        Ok(None)
    }
}

/// Parses every complete response in `bytes` (as read until close).
pub fn parse_all_responses(bytes: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match parse_response(rest, true) {
            Ok(Some((response, used))) => {
                out.push(response);
                rest = &rest[used..];
            }
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// A raw client connection to the router.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to router at {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Writes all of `bytes`; panics on error.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("writing to the router failed: {e}"));
    }

    /// Writes `bytes` in pieces of `len`, one write and a 1 ms pause each,
    /// so the router sees many small reads (split-read robustness).
    pub fn send_pieces(&mut self, bytes: &[u8], len: usize) {
        for piece in bytes.chunks(len) {
            self.send(piece);
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Writes what the router accepts; errors are returned, not panics (for
    /// tests where the router rightly closes before reading everything).
    pub fn send_lossy(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// One read with a deadline. Returns false on timeout; sets `eof` on
    /// EOF or reset (a reset after data is how a closing peer often looks).
    fn fill_until(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || self.eof {
            return false;
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                true
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(_) => {
                self.eof = true;
                true
            }
        }
    }

    /// The next response, or an error describing what arrived instead.
    pub fn try_read_response(&mut self, timeout: Duration) -> Result<Response, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((response, used)) = parse_response(&self.buf, self.eof)? {
                self.buf.drain(..used);
                return Ok(response);
            }
            if self.eof {
                return Err(if self.buf.is_empty() {
                    "connection closed before any response byte".to_owned()
                } else {
                    format!(
                        "connection closed with partial response: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )
                });
            }
            if !self.fill_until(deadline) {
                return Err(format!(
                    "no complete response within {timeout:?}; got: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        }
    }

    /// The next response within [`READ_DEADLINE`]; panics otherwise.
    pub fn read_response(&mut self) -> Response {
        self.try_read_response(READ_DEADLINE)
            .unwrap_or_else(|e| panic!("reading a response from the router: {e}"))
    }

    /// Sends `bytes` and reads one response.
    pub fn exchange(&mut self, bytes: &[u8]) -> Response {
        self.send(bytes);
        self.read_response()
    }

    /// Reads until the buffer holds `needle` (returns its end offset) or
    /// the deadline passes (None).
    pub fn read_until_contains(&mut self, needle: &[u8], timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = find(&self.buf, needle) {
                return Some(at + needle.len());
            }
            if self.eof || !self.fill_until(deadline) {
                return None;
            }
        }
    }

    /// Bytes read but not yet consumed as a response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Waits up to `timeout` for the router to close the connection; any
    /// bytes that arrive meanwhile are kept. True when it closed.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.eof {
            if !self.fill_until(deadline) {
                return false;
            }
        }
        true
    }

    /// Reads everything until close or `timeout`; returns the bytes and
    /// whether the peer closed.
    pub fn read_to_close(&mut self, timeout: Duration) -> (Vec<u8>, bool) {
        let closed = self.closed_within(timeout);
        (std::mem::take(&mut self.buf), closed)
    }

    /// Reads until the connection is closed or `timeout`, panics if not closed.
    pub fn assert_closed(&mut self, timeout: Duration, why: &str) {
        assert!(
            self.closed_within(timeout),
            "router must close the connection ({why}) but it stayed open {timeout:?}; unread bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

/// Writes `bytes` to a fresh connection and reads until close or 5 s.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut client = Client::connect(addr);
    let _ = client.send_lossy(bytes);
    client.read_to_close(Duration::from_secs(5)).0
}

/// Polls `done` every 5 ms until it holds (true) or `timeout` passes (false).
pub fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------
// Request builders and small helpers
// ---------------------------------------------------------------------------

/// A `POST` with a Content-Length JSON body and optional extra header lines.
pub fn post_json(path: &str, extra_headers: &[&str], body: &str) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {CLIENT_HOST}\r\nContent-Type: application/json\r\n"
    );
    for line in extra_headers {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    [head.as_bytes(), body.as_bytes()].concat()
}

/// A chat-completion request for `model`.
pub fn chat(model: &str) -> Vec<u8> {
    post_json(
        "/v1/chat/completions",
        &[],
        &format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#),
    )
}

/// A `GET` without body.
pub fn get(path: &str, extra_headers: &[&str]) -> Vec<u8> {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {CLIENT_HOST}\r\n");
    for line in extra_headers {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Incremental FNV-1a (64 bit), to compare huge bodies without storing them.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

/// Counts keys in the router's logfmt lines, e.g. `status=502`.
pub fn count_log_field(logs: &str, field: &str) -> usize {
    logs.lines()
        .filter(|l| l.split_whitespace().any(|f| f == field))
        .count()
}

/// Parses a logfmt line into key → value (quotes stripped; values without
/// spaces only, which is all the tests look at).
pub fn logfmt(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// Unix-socket upstream
// ---------------------------------------------------------------------------

/// A [`FakeUpstream`] reached through a unix socket (vLLM's `--uds`).
///
/// Every connection accepted on the socket is spliced, both ways and with
/// half-closes passed on, to its own TCP connection to an inner
/// [`FakeUpstream`], so the inner one records and scripts exactly as for
/// TCP: one inner connection per unix connection, in accept order.
pub struct UnixUpstream {
    inner: FakeUpstream,
    path: PathBuf,
    dir: PathBuf,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl UnixUpstream {
    /// Answers every request with `script(&request)`.
    pub fn start(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> UnixUpstream {
        UnixUpstream::wrap(FakeUpstream::start(script))
    }

    /// Puts `inner` behind a fresh socket `<tempdir>/upstream.sock`.
    pub fn wrap(inner: FakeUpstream) -> UnixUpstream {
        use std::os::unix::net::UnixListener;

        let dir = fresh_temp_dir("unix");
        let path = dir.join("upstream.sock");
        let listener = UnixListener::bind(&path)
            .unwrap_or_else(|e| panic!("bind unix socket {}: {e}", path.display()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt, target) = (Arc::clone(&accepted), Arc::clone(&stop), inner.addr());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(unix) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(tcp) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                splice(unix, tcp);
            }
        });
        UnixUpstream {
            inner,
            path,
            dir,
            accepted,
            stop,
        }
    }

    /// `unix:///tmp/.../upstream.sock`, the url to configure.
    pub fn url(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Connections accepted on the unix socket so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The recording fake behind the socket.
    pub fn upstream(&self) -> &FakeUpstream {
        &self.inner
    }
}

impl Drop for UnixUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblocks `accept` so the thread sees the flag.
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Copies bytes both ways between a unix and a TCP stream, one thread per
/// direction; EOF on one side becomes a write shutdown on the other.
fn splice(unix: std::os::unix::net::UnixStream, tcp: TcpStream) {
    let (Ok(mut unix_read), Ok(mut tcp_read)) = (unix.try_clone(), tcp.try_clone()) else {
        return;
    };
    let (mut unix_write, mut tcp_write) = (unix, tcp);
    thread::spawn(move || {
        let _ = io::copy(&mut unix_read, &mut tcp_write);
        let _ = tcp_write.shutdown(Shutdown::Write);
    });
    thread::spawn(move || {
        let _ = io::copy(&mut tcp_read, &mut unix_write);
        let _ = unix_write.shutdown(Shutdown::Write);
    });
}

// ---------------------------------------------------------------------------
// Raw upstream, for fault injection (appended for tests/faults.rs, slow.rs)
// ---------------------------------------------------------------------------

/// A bare TCP upstream on `127.0.0.1:0`: every accepted connection is handed,
/// with its accept index, to `handler` on a thread of its own. For replies
/// [`FakeUpstream`] cannot script: resets, half-written heads, endless bodies.
pub struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl RawUpstream {
    pub fn start(handler: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (Arc::clone(&accepted), Arc::clone(&stop));
        let handler = Arc::new(handler);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let id = count.fetch_add(1, Ordering::SeqCst);
                let handler = Arc::clone(&handler);
                thread::spawn(move || handler(stream, id));
            }
        });
        RawUpstream {
            addr,
            accepted,
            stop,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one request (head byte by byte, so nothing past it is consumed,
/// then a Content-Length body) from `stream`. `None` on EOF or error.
pub fn read_raw_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    head.extend_from_slice(&body);
    Some(head)
}

/// A one-shot signal between a test and a handler thread.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn open(&self) {
        *lock(&self.0 .0) = true;
        self.0 .1.notify_all();
    }

    /// Waits until opened, at most `timeout`; true when it was opened.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = lock(&self.0 .0);
        let (guard, _) = self
            .0
             .1
            .wait_timeout_while(guard, timeout, |open| !*open)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

/// Open file descriptors of process `pid` (entries of `/proc/<pid>/fd`).
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// User + system CPU time of process `pid`, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `)` that closes the command name; utime and stime
    // are fields 14 and 15 of the whole line, 12 and 13 after the `)`.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

impl Router {
    /// [`Router::start`], but the router runs with its open-file limit
    /// lowered to `nofile` (`sh -c 'ulimit -n N; exec llmhop ...'`: `exec`
    /// keeps the PID, so [`Router::pid`] is the router's).
    pub fn start_with_nofile(config: Value, nofile: u32) -> Router {
        Router::launch(config, "router-nofile", |path| {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_llmhop"))
                .arg("--config")
                .arg(path);
            command
        })
    }
}

/// The first field named `name` (case-insensitive) among `headers`.
fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// How many fields are named `name` (case-insensitive).
fn header_count(headers: &[(String, String)], name: &str) -> usize {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .count()
}
