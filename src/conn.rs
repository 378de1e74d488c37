//! One client connection: the request sequence of SPEC §3, in order.
//!
//! Owns: sequencing (head → own endpoint | auth → framing and cap →
//! `100 Continue` → model → route → forward → relay → keep-alive), the
//! timeouts, and writing every router-made response (through
//! `Client::reject`). Does not own: parsing (`http`, `scan`), status
//! mapping (`error`), connecting (`upstream`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::Config;
use crate::error::Error;
use crate::http::body::{BodyError, Decoder};
use crate::http::head::{
    self, ContentKind, Framing, HeaderIdx, RequestHead, Status, MAX_HEAD_BYTES,
};
use crate::http::rewrite::{self, Forward};
use crate::http::{is_tchar, respond, Version};
use crate::log;
use crate::route::{self, Upstream};
use crate::scan::json::JsonScanner;
use crate::scan::multipart::MultipartScanner;
use crate::scan::{Scan, ScanError, Scanner};
use crate::spare;

mod exchange;

/// Bytes asked of the kernel per read of a request body, in bytes.
const READ_CHUNK: usize = 64 * 1024;

/// Most bytes one read of a request body takes, in bytes: they are
/// scanned right after, while still in the cache. Into a large held-body
/// buffer a read would otherwise take several MiB at once (20 MiB
/// benchmark: CPU per request 11 % lower with this cap; 256 KiB saved
/// less there and cost 1 MiB bodies extra `recv`s).
const MAX_READ: usize = 1024 * 1024;

/// First size of a connection's buffers, in bytes: enough for a typical
/// head and chat request, small enough that thousands of open streams stay
/// in a few MiB. A buffer that fills up grows (see [`grow`]).
const FIRST_BUF: usize = 4 * 1024;

/// First size of the buffer an upstream response is read into, in bytes:
/// a response head and an SSE event fit, and it is held for the whole of a
/// stream (500 open streams: 7.2 MiB peak with 1 KiB, 8.2 with 4 KiB). A
/// read that fills it doubles it for the next one, up to [`READ_CHUNK`].
const FIRST_UP_BUF: usize = 1024;

/// Held body bytes up to this many go out in one write with the upstream
/// head, in bytes.
const SMALL_HELD: usize = 16 * 1024;

/// Request body bytes kept after they were sent upstream, so that a request
/// that failed on a stale pooled connection can be replayed on a fresh one,
/// in bytes. A larger body is not replayed (its failure is a 502).
const REPLAY_LIMIT: usize = 1024 * 1024;

/// A [`Record::said`] up to this capacity is reused by the next request,
/// in bytes (a path is rarely longer; a longer one is not kept).
const SAID_KEPT: usize = 1024;

/// The upstream head, response and relay buffers of a request are reused
/// by the next one on the connection when no larger than this, in bytes
/// (what a chat exchange needs; a grown stream buffer is let go).
const SCRATCH_KEPT: usize = 4 * 1024;

/// Pipelined request bytes read ahead while a response is relayed, in
/// bytes; past this the client is not read until the response is done.
const MAX_READ_AHEAD: usize = 64 * 1024;

/// After an error answer that leaves request bytes unread, how long the
/// socket keeps draining them before closing, so that the kernel does not
/// reset the connection before the client has read the answer.
const LINGER: Duration = Duration::from_secs(1);

/// Serves one client connection until it closes, fails or the router shuts
/// down.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<Config>,
    shutdown: watch::Receiver<bool>,
) {
    let now = Instant::now();
    let idle = Box::pin(tokio::time::sleep_until(later(
        now.into(),
        config.timeouts.idle,
    )));
    let mut stop = shutdown.clone();
    let mut client = Client {
        stream,
        peer: client_address(peer),
        config,
        shutdown,
        idle,
        stop: Stop {
            fut: Some(Box::pin(async move {
                let _ = stop.changed().await;
            })),
            waker: None,
        },
        ended: now,
        head_began: None,
        buf: Vec::new(),
        said: Vec::new(),
        scratch: Scratch::default(),
    };
    loop {
        match client.request().await {
            Next::KeepAlive => client.trim(),
            Next::Close => return,
            Next::Linger => {
                client.linger().await;
                return;
            }
        }
    }
}

/// The client's address as the log and `X-Forwarded-For` give it: an IPv4
/// client of a dual-stack listener (`":PORT"`) as `127.0.0.1`, not as
/// `::ffff:127.0.0.1`.
fn client_address(peer: SocketAddr) -> Arc<str> {
    peer.ip().to_canonical().to_string().into()
}

/// What happens to the connection after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
    /// Close, but first drain what the client is still sending.
    Linger,
}

struct Client {
    stream: TcpStream,
    /// The client's IP address as text, for `X-Forwarded-For` and the log
    /// (each request's [`Record`] holds it too).
    peer: Arc<str>,
    config: Arc<Config>,
    /// Never marked seen, so that [`Client::shutting_down`] needs no lock.
    shutdown: watch::Receiver<bool>,
    /// The idle timeout and the router's shutdown, which a connection waiting
    /// for its next request also waits for. Made once per connection and
    /// reset before each wait, rather than a new timer and a new watch
    /// registration per request.
    idle: Pin<Box<tokio::time::Sleep>>,
    stop: Stop,
    /// When the last request ended (or the connection was accepted): the
    /// idle timeout counts from it.
    ended: Instant,
    /// When the current head began to wait for its rest, if it had to: its
    /// request's time counts from there.
    head_began: Option<Instant>,
    /// Bytes read from the client and not yet released: the current head,
    /// body bytes held or kept for replay, then anything pipelined.
    buf: Vec<u8>,
    /// The last [`Record::said`], kept for the next request's record.
    said: Vec<u8>,
    /// Buffers of the last exchange, kept for the next one.
    scratch: Scratch,
}

/// A request's working buffers, kept between requests: the byte buffers
/// emptied and only up to [`SCRATCH_KEPT`] bytes of capacity, the field
/// indexes as they are (each parse clears its own).
#[derive(Default)]
struct Scratch {
    /// The upstream request head.
    up_head: Vec<u8>,
    /// Bytes read from the upstream.
    ubuf: Vec<u8>,
    /// Bytes on their way to the client.
    out: Vec<u8>,
    /// The field index of the request head, then of the response head
    /// (at most [`head::MAX_HEADERS`] entries each).
    request_fields: Vec<HeaderIdx>,
    response_fields: Vec<HeaderIdx>,
}

/// `buf`, emptied, if small enough to keep.
fn kept(mut buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() > SCRATCH_KEPT {
        return Vec::new();
    }
    buf.clear();
    buf
}

impl Drop for Client {
    fn drop(&mut self) {
        spare::give(std::mem::take(&mut self.buf));
    }
}

/// The access-log facts of one request, filled in as it goes.
///
/// Its access line is written once: by [`Client::request`] when the request
/// ends, or when the record is dropped unwritten, which happens when the
/// connection's task is dropped mid-request (the runtime ending after the
/// shutdown grace period cut it off).
struct Record {
    client: Arc<str>,
    start: Instant,
    /// The request's method then its path, as sent (the head is released
    /// before the line is written); the method is `method_len` bytes.
    said: Vec<u8>,
    method_len: usize,
    model: Option<String>,
    upstream: Option<Arc<Upstream>>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    written: bool,
}

impl Record {
    fn write(&mut self, at: Instant) {
        let (method, path) = self.said.split_at(self.method_len);
        log::access(&log::Access {
            at,
            client: &self.client,
            method,
            path,
            model: self.model.as_deref(),
            status: self.status,
            upstream: self.upstream.as_ref().map(|u| u.origin.as_str()),
            duration: at.saturating_duration_since(self.start),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        });
        self.written = true;
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.written {
            self.write(Instant::now());
        }
    }
}

/// The request body as it is read: framing, model scanner, and how far the
/// client buffer has been decoded.
struct Body {
    decoder: Decoder,
    /// `None` when the model came from the path or the query: the body is
    /// streamed without being parsed.
    scanner: Option<Scanner>,
    /// Offset in `Client::buf` of the first byte not yet decoded.
    pos: usize,
    /// The model once found (taken by the request's record when routed).
    model: Option<String>,
    /// Whether a model was found: the body's end checks it.
    found: bool,
    finished: bool,
    /// Wire bytes of the body decoded so far, for the access log.
    read: u64,
}

impl Body {
    /// Decodes all of `buf[self.pos..]` that belongs to the body, feeding
    /// the payload to the scanner. At the body's end, the scanner has the
    /// last word (missing or duplicate `model`).
    fn advance(&mut self, buf: &[u8]) -> Result<(), Error> {
        while self.pos < buf.len() && !self.decoder.is_done() {
            let at = self.pos;
            let p = self.decoder.decode(&buf[at..])?;
            // The decoder has taken these bytes whatever the scanner says of
            // them: `pos` must say so before a scan error returns, or a
            // rejected body that ended here would be read again as the next
            // request.
            self.pos += p.consumed;
            self.read += p.consumed as u64;
            let scan = self.scanner_feed(&buf[at + p.payload.start..at + p.payload.end]);
            self.note(scan)?;
            if p.consumed == 0 && !p.done {
                break;
            }
        }
        if self.decoder.is_done() && !self.finished {
            self.finished = true;
            if let Some(scanner) = &mut self.scanner {
                let last = scanner.finish();
                self.note(last)?;
            }
            if !self.found {
                return Err(Error::Scan(ScanError::Missing));
            }
        }
        Ok(())
    }

    fn scanner_feed(&mut self, payload: &[u8]) -> Scan {
        match &mut self.scanner {
            Some(scanner) if !payload.is_empty() => scanner.feed(payload),
            _ => Scan::NeedMore,
        }
    }

    fn note(&mut self, scan: Scan) -> Result<(), Error> {
        match scan {
            Scan::NeedMore => Ok(()),
            Scan::Found(m) => {
                self.model = Some(m);
                self.found = true;
                Ok(())
            }
            Scan::Invalid(e) => Err(Error::Scan(e)),
        }
    }
}

/// How an exchange with the upstream failed.
enum Failure {
    /// Before any response byte reached the client: answer with this.
    Answer(Error),
    /// The client went away, or the response broke after it started:
    /// nothing more can be said, close.
    Close,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Answer(e)
    }
}

impl Client {
    /// Reads and answers one request.
    async fn request(&mut self) -> Next {
        let (next, mut rec) = match self.read_head().await {
            Ok(None) => return Next::Close,
            Err(err) => {
                // A refused head is logged too, with what can be said of it:
                // its method when the request line got that far (a HEAD's
                // answer then goes without a body).
                let mut rec = self.record(None);
                let method = self
                    .buf
                    .iter()
                    .position(|&b| b == b' ')
                    .map(|n| &self.buf[..n]);
                if let Some(m) = method.filter(|m| m.len() <= 16 && m.iter().all(|&b| is_tchar(b)))
                {
                    rec.said.extend_from_slice(m);
                    rec.method_len = m.len();
                }
                rec.bytes_in = self.buf.len() as u64;
                (self.reject(&mut rec, &err, None).await, rec)
            }
            Ok(Some(head)) => {
                let mut rec = self.record(Some(&head));
                let next = if self.shutting_down() {
                    // A request that arrived during the drain: the client
                    // may retry it on another instance.
                    self.reject(&mut rec, &Error::ShuttingDown, None).await
                } else {
                    self.dispatch(&head, &mut rec).await
                };
                self.scratch.request_fields = head.headers;
                (next, rec)
            }
        };
        self.ended = Instant::now();
        rec.write(self.ended);
        if rec.said.capacity() <= SAID_KEPT {
            self.said = std::mem::take(&mut rec.said);
        }
        next
    }

    fn record(&mut self, head: Option<&RequestHead>) -> Record {
        let (method, path) = head.map_or((0..0, 0..0), |h| (h.method.clone(), h.path.clone()));
        let mut said = std::mem::take(&mut self.said);
        said.clear();
        said.extend_from_slice(&self.buf[method]);
        let method_len = said.len();
        said.extend_from_slice(&self.buf[path]);
        Record {
            client: Arc::clone(&self.peer),
            start: self.head_began.take().unwrap_or_else(Instant::now),
            said,
            method_len,
            model: None,
            upstream: None,
            status: 0,
            bytes_in: head.map_or(0, |h| h.len as u64),
            bytes_out: 0,
            written: false,
        }
    }

    /// Reads until a complete head is buffered. `None`: the connection
    /// ended quietly (clean EOF, idle timeout, shutdown between requests).
    async fn read_head(&mut self) -> Result<Option<RequestHead>, Error> {
        let timeouts = self.config.timeouts;
        let mut deadline = None;
        let mut scanned = 0;
        loop {
            if !self.buf.is_empty() {
                // Parse only when the end of a head may have arrived (or on
                // the first bytes, to refuse garbage at once): a head
                // trickled byte by byte must not cost a parse per byte.
                if scanned == 0 || worth_parsing(&self.buf, scanned) {
                    let index = std::mem::take(&mut self.scratch.request_fields);
                    if let Status::Complete(head) = head::parse_request_into(&self.buf, index)? {
                        return Ok(Some(head));
                    }
                }
                if self.buf.len() > MAX_HEAD_BYTES {
                    return Err(Error::Head(head::HeadError::TooLarge));
                }
                scanned = self.buf.len();
            }
            grow(&mut self.buf);
            let n = if self.buf.is_empty() {
                self.idle
                    .as_mut()
                    .reset(later(self.ended.into(), timeouts.idle));
                // In this order (no random start): a request that is
                // already there is read without polling the timer and the
                // drain signal.
                tokio::select! {
                    biased;
                    r = self.stream.read_buf(&mut self.buf) => r,
                    _ = &mut self.idle => return Ok(None),
                    _ = self.stop.wait(&self.shutdown) => {
                        // Idle connections close at the drain, unless a
                        // request is already waiting in the socket: that
                        // one is read and answered 503, not reset.
                        match self.stream.try_read_buf(&mut self.buf) {
                            Ok(n) if n > 0 => continue,
                            _ => return Ok(None),
                        }
                    }
                }
            } else {
                // A head has begun: it has `timeouts.head` from the first
                // wait for the rest of it.
                let deadline = *deadline.get_or_insert_with(|| {
                    let now = tokio::time::Instant::now();
                    self.head_began = Some(now.into_std());
                    later(now, timeouts.head)
                });
                tokio::select! {
                    r = self.stream.read_buf(&mut self.buf) => r,
                    _ = tokio::time::sleep_until(deadline) => return Err(Error::HeadTimeout),
                }
            };
            match n {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// Everything after the head: own endpoints, auth, body, forwarding.
    async fn dispatch(&mut self, head: &RequestHead, rec: &mut Record) -> Next {
        let config = Arc::clone(&self.config);
        let method = &self.buf[head.method.clone()];
        let path = &self.buf[head.path.clone()];
        let authorized = config.tokens.check(
            head.header(&self.buf, head.authorization),
            head.header(&self.buf, head.api_key),
        );
        let framing = match head.framing {
            Ok(framing) => framing,
            // SPEC §3.3–4: a body that cannot be framed is refused and the
            // connection closed, but auth comes first.
            Err(e) => {
                let err = if authorized {
                    Error::Head(e)
                } else {
                    Error::Unauthorized
                };
                return self.reject(rec, &err, None).await;
            }
        };
        let body_follows = !matches!(framing, Framing::Empty | Framing::Length(0));
        // What to release after an answer that reads no body.
        let no_body = if body_follows { None } else { Some(head.len) };

        // SPEC §3.2: the router's own endpoints, never forwarded (HEAD too,
        // as load balancers' probes send it: `answer` leaves the body out).
        if method == b"GET" || method == b"HEAD" {
            let own: Option<Result<&[u8], Error>> = if path == b"/health" {
                Some(Ok(&config.routes.health_json))
            } else if !authorized && (path == b"/v1/models" || path.starts_with(b"/v1/models/")) {
                Some(Err(Error::Unauthorized))
            } else if path == b"/v1/models" {
                Some(Ok(&config.routes.models_json))
            } else if let Some(id) = path.strip_prefix(b"/v1/models/") {
                // An id that does not decode names no model; the 404 quotes
                // it as sent.
                let name = route::percent_decode(id);
                Some(match name.as_deref().and_then(|n| config.routes.get(n)) {
                    Some(up) if up.listed => Ok(&up.model_json),
                    _ => {
                        Err(Error::NoSuchModel(name.unwrap_or_else(|| {
                            String::from_utf8_lossy(id).into_owned()
                        })))
                    }
                })
            } else {
                None
            };
            match own {
                Some(Ok(body)) => {
                    // A body on these GETs is not read: close after answering.
                    let close = body_follows || !head.keep_alive || self.shutting_down();
                    let mut out = Vec::with_capacity(160 + body.len());
                    respond::json(&mut out, 200, b"", body, close);
                    rec.status = 200;
                    return self.answer(rec, &out, close, no_body).await;
                }
                Some(Err(err)) => return self.reject(rec, &err, no_body).await,
                None => {}
            }
        }

        // SPEC §3.3: auth before anything about the body or the model.
        if !authorized {
            return self.reject(rec, &Error::Unauthorized, no_body).await;
        }
        // SPEC §3.4–5: framing and the cap, before reading the body.
        let cap = config.max_body_bytes;
        match framing {
            Framing::Length(n) if n > cap => {
                return self
                    .reject(rec, &Error::Body(BodyError::TooLarge), None)
                    .await
            }
            Framing::Empty | Framing::Length(_) | Framing::Chunked => {}
            Framing::UntilClose => {
                return self
                    .reject(rec, &Error::Head(head::HeadError::Malformed), None)
                    .await
            }
        }
        // Where the model comes from: the path, the query, or the body.
        let (known, forward_path) = match select(&self.buf, head, body_follows) {
            Ok(selected) => selected,
            Err(err) => return self.reject(rec, &err, no_body).await,
        };
        // SPEC §3.6: the router answers `Expect: 100-continue` itself
        // (RFC 9110 §10.1.1), once nothing short of the body can refuse the
        // request: the checks above, and the route of a model the path named.
        if head.expect_continue
            && head.version == Version::Http11
            && body_follows
            && self.buf.len() == head.len
        {
            if let Some(model) = known.as_deref().filter(|m| config.routes.get(m).is_none()) {
                rec.model = Some(model.to_owned());
                let err = Error::UnknownModel(model.to_owned());
                return self.reject(rec, &err, no_body).await;
            }
            if self.stream.write_all(respond::CONTINUE).await.is_err() {
                return Next::Close;
            }
        }
        let scanner = match (&known, &head.content) {
            (Some(_), _) => None,
            (None, ContentKind::Json) => Some(Scanner::Json(JsonScanner::new())),
            (None, ContentKind::Multipart { boundary }) => {
                Some(Scanner::Multipart(MultipartScanner::new(boundary)))
            }
        };
        let mut body = Body {
            decoder: Decoder::new(framing, Some(cap)),
            scanner,
            pos: head.len,
            found: known.is_some(),
            model: known,
            finished: false,
            read: 0,
        };

        // SPEC §3.7: hold the body until `model` is known.
        loop {
            if let Err(err) = body.advance(&self.buf) {
                return self.reject_in_body(rec, &err, &body).await;
            }
            if body.found {
                break;
            }
            match self.read_more().await {
                Ok(true) => {}
                Ok(false) | Err(()) => {
                    rec.bytes_in += body.read;
                    return Next::Close;
                }
            }
        }
        rec.model = body.model.take();
        let model = rec.model.as_deref().unwrap_or_default();

        // SPEC §3.8: exact match.
        let Some(up) = config.routes.get(model) else {
            let err = Error::UnknownModel(model.to_owned());
            return self.reject_in_body(rec, &err, &body).await;
        };
        rec.upstream = Some(Arc::clone(up));

        // SPEC §3.9: the upstream head.
        // Room for the held body too when it goes out with the head.
        let held = body.pos - head.len;
        let mut up_head = std::mem::take(&mut self.scratch.up_head);
        up_head.reserve(
            head.len + 128 + up.header_block.len() + if held <= SMALL_HELD { held } else { 0 },
        );
        let forward = Forward {
            path: forward_path
                .as_ref()
                .map_or(&self.buf[head.path.clone()], |p| p.as_slice()),
            client: self.peer.as_bytes(),
            strip_auth: config.tokens.enabled(),
        };
        rewrite::request_head(&self.buf, head, up, &forward, &mut up_head);

        let result = self.exchange(head, up, &mut up_head, &mut body, rec).await;
        self.scratch.up_head = kept(up_head);
        rec.bytes_in += body.read;
        match result {
            Ok(next) => next,
            Err(Failure::Answer(err)) => self.reject_in_body(rec, &err, &body).await,
            Err(Failure::Close) => Next::Close,
        }
    }

    /// Reads more client bytes into `buf`. `Ok(false)` on EOF.
    async fn read_more(&mut self) -> Result<bool, ()> {
        spare::reserve(&mut self.buf, READ_CHUNK);
        let mut stream = (&mut self.stream).take(MAX_READ as u64);
        match stream.read_buf(&mut self.buf).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(_) => Err(()),
        }
    }

    /// Drops the first `n` bytes of `buf` (a finished request, or body bytes
    /// no longer needed).
    fn release(&mut self, n: usize) {
        self.buf.drain(..n);
    }

    /// Between requests: a connection that carried a large body does not
    /// keep its capacity for its lifetime; the large buffer goes to the
    /// [`spare`] stash for the next large body, and a first-size one takes
    /// its place (so that keep-alive requests do not allocate one each).
    fn trim(&mut self) {
        if self.buf.capacity() > READ_CHUNK {
            let mut small = Vec::with_capacity(self.buf.len().max(FIRST_BUF));
            small.extend_from_slice(&self.buf);
            spare::give(std::mem::replace(&mut self.buf, small));
        }
    }

    fn shutting_down(&self) -> bool {
        // The value only ever turns true, and this receiver never marks it
        // seen: a change is the shutdown (a dropped sender too).
        self.shutdown.has_changed().unwrap_or(true)
    }

    /// Answers `err` during the body: the connection can stay only when the
    /// whole body was read (and then the request's bytes are released).
    async fn reject_in_body(&mut self, rec: &mut Record, err: &Error, body: &Body) -> Next {
        let consumed = body.decoder.is_done().then_some(body.pos);
        self.reject(rec, err, consumed).await
    }

    /// Writes the answer for `err`; the only place router-made error
    /// responses are written. `consumed`: how many bytes of `buf` the
    /// request took, `None` when some are still unread (then the
    /// connection cannot continue).
    async fn reject(&mut self, rec: &mut Record, err: &Error, consumed: Option<usize>) -> Next {
        let close = consumed.is_none() || err.closes_connection() || self.shutting_down();
        let mut out = Vec::with_capacity(256);
        respond::error(&mut out, err, close);
        rec.status = err.status();
        self.answer(rec, &out, close, consumed).await
    }

    /// Writes a complete router-made response and says what comes next.
    async fn answer(
        &mut self,
        rec: &mut Record,
        out: &[u8],
        close: bool,
        consumed: Option<usize>,
    ) -> Next {
        // A response to HEAD has no body (RFC 9110 §9.3.2), the router's
        // own included: the client would read it as the next response.
        let out = match rec.said.get(..rec.method_len) {
            Some(b"HEAD") => {
                memchr::memmem::find(out, b"\r\n\r\n").map_or(out, |end| &out[..end + 4])
            }
            _ => out,
        };
        if self.stream.write_all(out).await.is_err() {
            return Next::Close;
        }
        rec.bytes_out += out.len() as u64;
        match consumed {
            Some(n) if !close => {
                self.release(n);
                Next::KeepAlive
            }
            Some(_) => Next::Close,
            None => Next::Linger,
        }
    }

    /// Half-closes and discards what the client still sends, for at most
    /// [`LINGER`], so that the answer is not lost to a reset.
    async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut sink = vec![0u8; READ_CHUNK];
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, self.stream.read(&mut sink)).await {
            if n == 0 {
                break;
            }
        }
    }
}

/// `after` past `now`; a timeout too long to add is as good as none.
fn later(now: tokio::time::Instant, after: Duration) -> tokio::time::Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// The router's shutdown, as a connection waiting for its next request
/// waits for it: one watch registration for the connection's life, polled
/// again only when a shutdown was sent or the waker changed. (Polling a
/// registered watch again takes its waiter lock: 170 instructions at every
/// request, 1 % of a small one, for a signal that comes once.)
struct Stop {
    /// `changed()` on the connection's own receiver; `None` once it fired.
    fut: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The waker `fut` was last polled with: it wakes this task at the
    /// shutdown.
    waker: Option<Waker>,
}

impl Stop {
    /// Completes when the router shuts down: at once if it already did.
    /// `shutdown` is a receiver that never marks a value seen.
    async fn wait(&mut self, shutdown: &watch::Receiver<bool>) {
        std::future::poll_fn(|cx| self.poll(cx, shutdown)).await
    }

    fn poll(&mut self, cx: &mut Context<'_>, shutdown: &watch::Receiver<bool>) -> Poll<()> {
        let Some(fut) = &mut self.fut else {
            return Poll::Ready(());
        };
        let sent = shutdown.has_changed().unwrap_or(true);
        if !sent && self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            // Registered with a waker of this task, which the watch wakes
            // when a shutdown is sent.
            return Poll::Pending;
        }
        match fut.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.fut = None;
                self.waker = None;
                Poll::Ready(())
            }
            Poll::Pending => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Makes room for the next read: a first small buffer, then doubling each
/// time one fills up, to at most [`READ_CHUNK`] of free space per read.
fn grow(buf: &mut Vec<u8>) {
    let spare = buf.capacity() - buf.len();
    if spare == 0 {
        buf.reserve(buf.capacity().clamp(FIRST_BUF, READ_CHUNK));
    }
}

/// Where the model of a request comes from: `/route/{model}/rest` names it
/// in the path (forwarded as `/rest`); an `Upgrade` request or one without
/// a body takes it from `?model=` (llama-swap's convention); any other
/// request has it in its body (`None`: scan the body).
fn select(
    buf: &[u8],
    head: &RequestHead,
    body_follows: bool,
) -> Result<(Option<String>, Option<Vec<u8>>), Error> {
    let path = &buf[head.path.clone()];
    if let Some(rest) = path.strip_prefix(b"/route/") {
        let end = memchr::memchr(b'/', rest).unwrap_or(rest.len());
        let model = route::percent_decode(&rest[..end])
            .filter(|m| !m.is_empty())
            .ok_or(Error::RoutePath)?;
        let forward = match &rest[end..] {
            b"" => b"/".to_vec(),
            tail => tail.to_vec(),
        };
        return Ok((Some(model), Some(forward)));
    }
    if head.upgrade || !body_follows {
        let query = head.query.as_ref().map(|q| &buf[q.clone()]);
        return match query.and_then(query_model) {
            Some(model) => Ok((Some(model), None)),
            None => Err(Error::NoBody),
        };
    }
    Ok((None, None))
}

/// The percent-decoded value of the first `model=` in a query string.
fn query_model(query: &[u8]) -> Option<String> {
    query
        .split(|&b| b == b'&')
        .find_map(|pair| pair.strip_prefix(b"model="))
        .and_then(route::percent_decode)
        .filter(|m| !m.is_empty())
}

/// Whether the bytes read since `from` make a parse worth it: they may end
/// the head (CRLF CRLF, or a bare-LF variant the parser will refuse), or
/// they hold a bare CR or LF, which the parser refuses before the end.
fn worth_parsing(buf: &[u8], from: usize) -> bool {
    let tail = &buf[from.saturating_sub(3)..];
    memchr::memmem::find(tail, b"\n\r\n").is_some()
        || memchr::memmem::find(tail, b"\n\n").is_some()
        || has_bare_line_end(buf, from.saturating_sub(1))
}

/// A LF not after a CR, or a CR followed by something other than LF, at or
/// after `from` (a CR that ends `buf` is not bare yet).
fn has_bare_line_end(buf: &[u8], from: usize) -> bool {
    memchr::memchr2_iter(b'\r', b'\n', &buf[from..]).any(|i| {
        let i = from + i;
        match buf[i] {
            b'\n' => i == 0 || buf[i - 1] != b'\r',
            _ => buf.get(i + 1).is_some_and(|&b| b != b'\n'),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_are_canonical() {
        let show = |a: &str| client_address(a.parse().unwrap()).to_string();
        assert_eq!(show("[::ffff:127.0.0.1]:5"), "127.0.0.1");
        assert_eq!(show("10.1.2.3:5"), "10.1.2.3");
        assert_eq!(show("[::1]:5"), "::1");
    }

    #[test]
    fn bare_line_ends() {
        let cases: &[(&[u8], usize, bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: x\r\n", 0, false),
            (b"GET / HTTP/1.1\r\nHost: x\nX: 1", 0, true),
            (b"GET / HTTP/1.1\r\nHost: x\rX: 1", 0, true),
            (b"GET / HTTP/1.1\r", 0, false),
            (b"\nGET", 0, true),
            // Only what was read since `from` is looked at.
            (b"A\nB\r\nC", 3, false),
        ];
        for &(buf, from, want) in cases {
            assert_eq!(has_bare_line_end(buf, from), want, "{}", buf.escape_ascii());
        }
    }
}
