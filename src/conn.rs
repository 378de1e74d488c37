//! One client connection: the request sequence of SPEC §3, in order.
//!
//! Owns: sequencing (head → own endpoint | auth → framing and cap →
//! `100 Continue` → model → route → forward → relay → keep-alive), the
//! timeouts, and writing every router-made response (through
//! [`Client::reject`]). Does not own: parsing (`http`, `scan`), status
//! mapping (`error`), connecting (`upstream`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::Config;
use crate::error::Error;
use crate::http::body::{BodyError, Decoder};
use crate::http::head::{
    self, ContentKind, Framing, RequestHead, ResponseHead, Status, MAX_HEAD_BYTES,
};
use crate::http::rewrite::{self, ClientSide, Forward};
use crate::http::{respond, Version};
use crate::log;
use crate::route::{self, Upstream};
use crate::scan::json::JsonScanner;
use crate::scan::multipart::MultipartScanner;
use crate::scan::{Scan, ScanError, Scanner};
use crate::upstream::{self, Stream};

/// Bytes asked of the kernel per read of a request body, in bytes.
const READ_CHUNK: usize = 64 * 1024;

/// First size of a connection's buffers, in bytes: enough for a typical
/// head and chat request, small enough that thousands of open streams stay
/// in a few MiB. A buffer that fills up grows (see [`grow`]).
const FIRST_BUF: usize = 4 * 1024;

/// Request body bytes kept after they were sent upstream, so that a request
/// that failed on a stale pooled connection can be replayed on a fresh one,
/// in bytes. A larger body is not replayed (its failure is a 502).
const REPLAY_LIMIT: usize = 1024 * 1024;

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
    let mut client = Client {
        stream,
        peer,
        config,
        shutdown,
        buf: Vec::new(),
    };
    loop {
        match client.request().await {
            Next::KeepAlive => continue,
            Next::Close => return,
            Next::Linger => {
                client.linger().await;
                return;
            }
        }
    }
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
    peer: SocketAddr,
    config: Arc<Config>,
    shutdown: watch::Receiver<bool>,
    /// Bytes read from the client and not yet released: the current head,
    /// body bytes held or kept for replay, then anything pipelined.
    buf: Vec<u8>,
}

/// The access-log facts of one request, filled in as it goes.
struct Record {
    start: Instant,
    method: String,
    path: String,
    model: Option<String>,
    upstream: Option<Arc<Upstream>>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
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
    model: Option<String>,
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
            let p = self.decoder.decode(&buf[self.pos..])?;
            let payload = &buf[self.pos + p.payload.start..self.pos + p.payload.end];
            let scan = self.scanner_feed(payload);
            self.note(scan)?;
            self.pos += p.consumed;
            self.read += p.consumed as u64;
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
            if self.model.is_none() {
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
        let head = match self.read_head().await {
            Ok(Some(head)) => head,
            Ok(None) => return Next::Close,
            Err(err) => {
                let mut rec = self.record(None);
                return self.reject(&mut rec, &err, None).await;
            }
        };
        let mut rec = self.record(Some(&head));
        let next = if self.shutting_down() {
            // A head that was still arriving when the drain began: the
            // client may retry it on another instance.
            self.reject(&mut rec, &Error::ShuttingDown, None).await
        } else {
            self.dispatch(&head, &mut rec).await
        };
        log::access(&log::Access {
            client: self.peer,
            method: rec.method.as_bytes(),
            path: rec.path.as_bytes(),
            model: rec.model.as_deref(),
            status: rec.status,
            upstream: rec.upstream.as_ref().map(|u| u.origin.as_str()),
            duration: rec.start.elapsed(),
            bytes_in: rec.bytes_in,
            bytes_out: rec.bytes_out,
        });
        next
    }

    fn record(&self, head: Option<&RequestHead>) -> Record {
        let (method, path) = match head {
            Some(h) => (
                String::from_utf8_lossy(&self.buf[h.method.clone()]).into_owned(),
                String::from_utf8_lossy(&self.buf[h.path.clone()]).into_owned(),
            ),
            None => (String::new(), String::new()),
        };
        Record {
            start: Instant::now(),
            method,
            path,
            model: None,
            upstream: None,
            status: 0,
            bytes_in: head.map_or(0, |h| h.len as u64),
            bytes_out: 0,
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
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + timeouts.head);
                // Parse only when the end of a head may have arrived (or on
                // the first bytes, to refuse garbage at once): a head
                // trickled byte by byte must not cost a parse per byte.
                if scanned == 0 || ends_head(&self.buf, scanned) {
                    if let Status::Complete(head) = head::parse_request(&self.buf)? {
                        return Ok(Some(head));
                    }
                }
                if self.buf.len() > MAX_HEAD_BYTES {
                    return Err(Error::Head(head::HeadError::TooLarge));
                }
                scanned = self.buf.len();
            }
            grow(&mut self.buf);
            let n = match deadline {
                None => {
                    tokio::select! {
                        r = self.stream.read_buf(&mut self.buf) => r,
                        _ = tokio::time::sleep(timeouts.idle) => return Ok(None),
                        _ = self.shutdown.changed() => {
                            // Idle connections close at the drain, unless a
                            // request is already waiting in the socket: that
                            // one is read and answered 503, not reset.
                            match self.stream.try_read_buf(&mut self.buf) {
                                Ok(n) if n > 0 => continue,
                                _ => return Ok(None),
                            }
                        }
                    }
                }
                Some(deadline) => {
                    tokio::select! {
                        r = self.stream.read_buf(&mut self.buf) => r,
                        _ = tokio::time::sleep_until(deadline) => return Err(Error::HeadTimeout),
                    }
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
        let body_follows = !matches!(head.framing, Framing::Empty | Framing::Length(0));
        // What to release after an answer that reads no body.
        let no_body = if body_follows { None } else { Some(head.len) };

        // SPEC §3.2: the router's own endpoints, never forwarded.
        if method == b"GET" {
            let own: Option<Result<&[u8], Error>> = if path == b"/health" {
                Some(Ok(&config.routes.health_json))
            } else if !authorized && (path == b"/v1/models" || path.starts_with(b"/v1/models/")) {
                Some(Err(Error::Unauthorized))
            } else if path == b"/v1/models" {
                Some(Ok(&config.routes.models_json))
            } else if let Some(id) = path.strip_prefix(b"/v1/models/") {
                let name = route::percent_decode(id).unwrap_or_default();
                Some(match config.routes.get(&name) {
                    Some(up) if up.listed => Ok(&up.model_json),
                    _ => Err(Error::NoSuchModel(name)),
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
        match head.framing {
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
        // SPEC §3.6: the router answers `Expect: 100-continue` itself
        // (RFC 9110 §10.1.1), once the head passed every check above.
        if head.expect_continue
            && head.version == Version::Http11
            && self.buf.len() == head.len
            && self.stream.write_all(respond::CONTINUE).await.is_err()
        {
            return Next::Close;
        }

        // Where the model comes from: the path, the query, or the body.
        let (known, forward_path) = match select(&self.buf, head, body_follows) {
            Ok(selected) => selected,
            Err(err) => return self.reject(rec, &err, no_body).await,
        };
        let scanner = match (&known, &head.content) {
            (Some(_), _) => None,
            (None, ContentKind::Json) => Some(Scanner::Json(JsonScanner::new())),
            (None, ContentKind::Multipart { boundary }) => {
                Some(Scanner::Multipart(MultipartScanner::new(boundary)))
            }
        };
        let mut body = Body {
            decoder: Decoder::new(head.framing, Some(cap)),
            scanner,
            pos: head.len,
            model: known,
            finished: false,
            read: 0,
        };

        // SPEC §3.7: hold the body until `model` is known.
        loop {
            if let Err(err) = body.advance(&self.buf) {
                return self.reject_in_body(rec, &err, &body).await;
            }
            if body.model.is_some() {
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
        let model = body.model.clone().unwrap_or_default();
        rec.model = Some(model.clone());

        // SPEC §3.8: exact match.
        let Some(up) = config.routes.get(&model).cloned() else {
            return self
                .reject_in_body(rec, &Error::UnknownModel(model), &body)
                .await;
        };
        rec.upstream = Some(Arc::clone(&up));

        // SPEC §3.9: the upstream head.
        let mut up_head = Vec::with_capacity(head.len + 128 + up.header_block.len());
        let forward = Forward {
            path: forward_path
                .as_ref()
                .map_or(&self.buf[head.path.clone()], |p| p.as_slice()),
            client: self.peer.ip(),
            strip_auth: config.tokens.enabled(),
        };
        rewrite::request_head(&self.buf, head, &up, &forward, &mut up_head);

        let result = self.exchange(head, &up, &up_head, &mut body, rec).await;
        rec.bytes_in += body.read;
        match result {
            Ok(next) => next,
            Err(Failure::Answer(err)) => self.reject_in_body(rec, &err, &body).await,
            Err(Failure::Close) => Next::Close,
        }
    }

    /// Sends the request upstream and relays the response (SPEC §3.9–13).
    async fn exchange(
        &mut self,
        head: &RequestHead,
        up: &Arc<Upstream>,
        up_head: &[u8],
        body: &mut Body,
        rec: &mut Record,
    ) -> Result<Next, Failure> {
        let connect = self.config.timeouts.connect;
        let (mut stream, mut reused) = upstream::checkout(up, connect).await?;
        // Body bytes already sent upstream start here in `buf`; `None` once
        // they were released and the request can no longer be replayed.
        let mut sent_from = Some(head.len);
        let mut first = true;
        loop {
            if !first {
                // Retry once, on a fresh connection (SPEC §3.13).
                stream = upstream::connect(up, connect).await?;
                reused = false;
            }
            first = false;
            match self.send(&mut stream, up_head, body, &mut sent_from).await {
                Ok(()) => {}
                Err(Failure::Answer(Error::UpstreamClosed)) if reused && sent_from.is_some() => {
                    continue
                }
                Err(f) => return Err(f),
            }
            match self.read_response_head(&mut stream, head, body.pos).await {
                Ok(Some((ubuf, rh))) => {
                    // The request can no longer be replayed: release it, and
                    // the buffer with it while the response streams.
                    self.release(body.pos);
                    body.pos = 0;
                    if self.buf.is_empty() {
                        self.buf = Vec::new();
                    }
                    return self.relay(stream, head, up, ubuf, rh, rec).await;
                }
                Ok(None) if reused && sent_from.is_some() => continue,
                Ok(None) => return Err(Failure::Answer(Error::UpstreamClosed)),
                Err(f) => return Err(f),
            }
        }
    }

    /// Writes the head, the held body bytes, then pumps the rest of the body
    /// from the client as it arrives, checking it as it goes.
    async fn send(
        &mut self,
        stream: &mut Stream,
        up_head: &[u8],
        body: &mut Body,
        sent_from: &mut Option<usize>,
    ) -> Result<(), Failure> {
        let closed = |_| Failure::Answer(Error::UpstreamClosed);
        let held = &self.buf[sent_from.unwrap_or(body.pos)..body.pos];
        if held.len() <= 16 * 1024 {
            // One segment for the common small request.
            let mut first = Vec::with_capacity(up_head.len() + held.len());
            first.extend_from_slice(up_head);
            first.extend_from_slice(held);
            stream.write_all(&first).await.map_err(closed)?;
        } else {
            stream.write_all(up_head).await.map_err(closed)?;
            stream.write_all(held).await.map_err(closed)?;
        }
        while !body.decoder.is_done() {
            if let Some(from) = *sent_from {
                if body.pos - from > REPLAY_LIMIT {
                    *sent_from = None;
                }
            }
            if sent_from.is_none() {
                // Not replayable any more: keep memory flat.
                self.release(body.pos);
                body.pos = 0;
            }
            match self.read_more().await {
                Ok(true) => {}
                // The client went away mid-body: abort the upstream request.
                Ok(false) | Err(()) => return Err(Failure::Close),
            }
            let start = body.pos;
            body.advance(&self.buf)?;
            stream
                .write_all(&self.buf[start..body.pos])
                .await
                .map_err(closed)?;
        }
        Ok(())
    }

    /// Reads the upstream's final response head, skipping 1xx interim
    /// responses. `None`: the upstream closed before sending a byte (the
    /// request may be replayed).
    async fn read_response_head(
        &mut self,
        stream: &mut Stream,
        head: &RequestHead,
        request_end: usize,
    ) -> Result<Option<(Vec<u8>, ResponseHead)>, Failure> {
        let head_request = &self.buf[head.method.clone()] == b"HEAD";
        let mut ubuf = Vec::with_capacity(FIRST_BUF);
        let mut any = false;
        loop {
            if !ubuf.is_empty() {
                match head::parse_response(&ubuf, head_request) {
                    Ok(Status::Complete(rh))
                        if (100..200).contains(&rh.status) && rh.status != 101 =>
                    {
                        ubuf.drain(..rh.len);
                        continue;
                    }
                    Ok(Status::Complete(rh)) => return Ok(Some((ubuf, rh))),
                    Ok(Status::Partial) if ubuf.len() > MAX_HEAD_BYTES => {
                        return Err(Error::UpstreamGarbage.into())
                    }
                    Ok(Status::Partial) => {}
                    Err(_) => return Err(Error::UpstreamGarbage.into()),
                }
            }
            match self.read_upstream(stream, &mut ubuf, request_end).await? {
                0 if !any => return Ok(None),
                0 => return Err(Error::UpstreamClosed.into()),
                _ => any = true,
            }
        }
    }

    /// Relays the response: head rewritten, body bytes as they arrive.
    async fn relay(
        &mut self,
        mut stream: Stream,
        head: &RequestHead,
        up: &Arc<Upstream>,
        mut ubuf: Vec<u8>,
        rh: ResponseHead,
        rec: &mut Record,
    ) -> Result<Next, Failure> {
        let upgrade = rh.status == 101;
        if upgrade && !head.upgrade {
            // A switch nobody asked for cannot be relayed.
            return Err(Error::UpstreamGarbage.into());
        }
        let dechunk = head.version == Version::Http10 && rh.framing == Framing::Chunked;
        let close = !head.keep_alive
            || rh.framing == Framing::UntilClose
            || dechunk
            || self.shutting_down();
        let mut out = Vec::with_capacity(rh.len + 64);
        rewrite::response_head(
            &ubuf,
            &rh,
            ClientSide {
                version: head.version,
                close,
                dechunk,
                upgrade,
            },
            &mut out,
        );
        rec.status = rh.status;
        if upgrade {
            out.extend_from_slice(&ubuf[rh.len..]);
            return self.tunnel(stream, &out, rec).await;
        }

        let mut decoder = Decoder::new(rh.framing, None);
        let mut pos = rh.len;
        loop {
            // Copy what is buffered, up to the end of the response.
            let start = pos;
            while pos < ubuf.len() && !decoder.is_done() {
                let p = match decoder.decode(&ubuf[pos..]) {
                    Ok(p) => p,
                    // A malformed body: never relay it. Before the first
                    // byte went out, the client still gets a 502.
                    Err(_) if rec.bytes_out == 0 => return Err(Error::UpstreamGarbage.into()),
                    Err(_) => return Err(Failure::Close),
                };
                if dechunk {
                    out.extend_from_slice(&ubuf[pos + p.payload.start..pos + p.payload.end]);
                }
                pos += p.consumed;
                if p.consumed == 0 && !p.done {
                    break;
                }
            }
            if !dechunk {
                out.extend_from_slice(&ubuf[start..pos]);
            }
            if !out.is_empty() {
                if self.stream.write_all(&out).await.is_err() {
                    // SPEC §3.12: client gone, the upstream connection is
                    // dropped here, not pooled.
                    return Err(Failure::Close);
                }
                rec.bytes_out += out.len() as u64;
                out.clear();
            }
            if decoder.is_done() {
                break;
            }
            ubuf.clear();
            pos = 0;
            match self.read_upstream(&mut stream, &mut ubuf, 0).await {
                Ok(0) => {
                    if decoder.eof().is_ok() {
                        break;
                    }
                    // Truncated: the client must not take it as complete.
                    return Err(Failure::Close);
                }
                Ok(_) => {}
                Err(_) => return Err(Failure::Close),
            }
        }
        // Reuse only after a clean end with nothing extra sent.
        if rh.keep_alive
            && decoder.is_done()
            && pos == ubuf.len()
            && rh.framing != Framing::UntilClose
        {
            up.pool.put(stream);
        }
        Ok(if close { Next::Close } else { Next::KeepAlive })
    }

    /// After a `101`: writes `first` (the response head and whatever the
    /// upstream sent after it) to the client and the client's read-ahead to
    /// the upstream, then copies both ways until either side closes.
    async fn tunnel(
        &mut self,
        mut stream: Stream,
        first: &[u8],
        rec: &mut Record,
    ) -> Result<Next, Failure> {
        if self.stream.write_all(first).await.is_err() {
            return Err(Failure::Close);
        }
        let ahead = std::mem::take(&mut self.buf);
        if stream.write_all(&ahead).await.is_err() {
            return Err(Failure::Close);
        }
        let copied = tokio::io::copy_bidirectional(&mut self.stream, &mut stream).await;
        let (to_upstream, to_client) = copied.unwrap_or((0, 0));
        rec.bytes_in += ahead.len() as u64 + to_upstream;
        rec.bytes_out += first.len() as u64 + to_client;
        Ok(Next::Close)
    }

    /// One read from the upstream into `ubuf`, while watching the client:
    /// if the client goes away first, the exchange ends (SPEC §3.12).
    /// Client bytes from `request_end` on are the next requests, read ahead.
    async fn read_upstream(
        &mut self,
        stream: &mut Stream,
        ubuf: &mut Vec<u8>,
        request_end: usize,
    ) -> Result<usize, Failure> {
        grow(ubuf);
        loop {
            let watch_client = self.buf.len() < request_end + MAX_READ_AHEAD;
            tokio::select! {
                r = stream.read_buf(ubuf) => return r.map_err(|_| Failure::Answer(Error::UpstreamClosed)),
                r = self.stream.read_buf(&mut self.buf), if watch_client => match r {
                    // A client that closes (or half-closes) its side before
                    // the response is complete is gone: the upstream must stop
                    // generating.
                    Ok(0) | Err(_) => return Err(Failure::Close),
                    Ok(_) => {}
                },
            }
        }
    }

    /// Reads more client bytes into `buf`. `Ok(false)` on EOF.
    async fn read_more(&mut self) -> Result<bool, ()> {
        self.buf.reserve(READ_CHUNK);
        match self.stream.read_buf(&mut self.buf).await {
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

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
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

/// Whether the bytes from `from - 3` on hold the blank line that ends a head
/// (CRLF CRLF, or a bare-LF variant the parser will refuse).
fn ends_head(buf: &[u8], from: usize) -> bool {
    let tail = &buf[from.saturating_sub(3)..];
    memchr::memmem::find(tail, b"\n\r\n").is_some() || memchr::memmem::find(tail, b"\n\n").is_some()
}
