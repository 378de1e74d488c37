//! The upstream half of a request: sending it (with the one retry on a
//! stale pooled connection), reading the response head, relaying the
//! response as it arrives, and the tunnel after a `101`.
//!
//! Owns: what happens between the chosen upstream and the client once the
//! model is known. Does not own: reading the request or answering errors
//! (the parent module), connecting (`upstream`).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    grow, kept, Body, Client, Failure, Next, Record, FIRST_UP_BUF, MAX_READ_AHEAD, READ_CHUNK,
    REPLAY_LIMIT, SMALL_HELD,
};
use crate::error::Error;
use crate::http::body::Decoder;
use crate::http::head::{
    self, Framing, HeaderIdx, RequestHead, ResponseHead, Status, MAX_HEAD_BYTES,
};
use crate::http::rewrite::{self, ClientSide};
use crate::http::Version;
use crate::route::Upstream;
use crate::spare;
use crate::upstream::{self, Stream};

/// How long an upstream that stopped taking a request may take to show the
/// answer it sent first. Its connection is already broken, so what it sent
/// is there at once; the bound only guards against a connection that
/// failed to write yet still reads as open.
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(1);

impl Client {
    /// Sends the request upstream and relays the response (SPEC §3.9–13).
    pub(super) async fn exchange(
        &mut self,
        head: &RequestHead,
        up: &Arc<Upstream>,
        up_head: &mut Vec<u8>,
        body: &mut Body,
        rec: &mut Record,
    ) -> Result<Next, Failure> {
        let connect = self.config.timeouts.connect;
        // Decided now: the head's bytes may be released while the body
        // streams.
        let head_request = &self.buf[head.method.clone()] == b"HEAD";
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
                Err(Failure::Answer(Error::UpstreamClosed)) => {
                    // The upstream stopped taking the request. It may have
                    // answered first (a 413 for a body it will not take):
                    // that answer is relayed rather than a 502.
                    let early = tokio::time::timeout(
                        EARLY_ANSWER_WAIT,
                        self.read_response_head(&mut stream, head_request, body.pos),
                    );
                    if let Ok(Ok(Some(answer))) = early.await {
                        let cut_short = !body.decoder.is_done();
                        self.release(body.pos);
                        body.pos = 0;
                        let next = self.relay(stream, head, up, answer, rec, cut_short);
                        // The rest of the body is never read: the client
                        // connection ends after the answer.
                        return match next.await {
                            Ok(Next::Close) if cut_short => Ok(Next::Linger),
                            other => other,
                        };
                    }
                    if reused && sent_from.is_some() {
                        continue;
                    }
                    return Err(Error::UpstreamClosed.into());
                }
                Err(f) => return Err(f),
            }
            match self
                .read_response_head(&mut stream, head_request, body.pos)
                .await
            {
                Ok(Some((ubuf, rh))) => {
                    // The request can no longer be replayed: release it. A
                    // response that may stream for minutes does not keep the
                    // client's buffer meanwhile (thousands of open streams
                    // stay in a few MiB).
                    self.release(body.pos);
                    body.pos = 0;
                    if self.buf.is_empty()
                        && !matches!(rh.framing, Framing::Length(_) | Framing::Empty)
                    {
                        spare::give(std::mem::take(&mut self.buf));
                    }
                    return self.relay(stream, head, up, (ubuf, rh), rec, false).await;
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
        up_head: &mut Vec<u8>,
        body: &mut Body,
        sent_from: &mut Option<usize>,
    ) -> Result<(), Failure> {
        let closed = |_| Failure::Answer(Error::UpstreamClosed);
        let held = &self.buf[sent_from.unwrap_or(body.pos)..body.pos];
        if held.len() <= SMALL_HELD {
            // One segment for the common small request, written from the
            // head's own buffer (sized for it); the head is kept as it was
            // for a retry.
            let head_len = up_head.len();
            up_head.extend_from_slice(held);
            let written = stream.write_all(up_head).await;
            up_head.truncate(head_len);
            written.map_err(closed)?;
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
        // TLS may hold the last bytes back when the socket was full: a
        // write that is accepted is not yet sent.
        stream.flush().await.map_err(closed)
    }

    /// Reads the upstream's final response head, skipping 1xx interim
    /// responses. `None`: the upstream closed or reset the connection
    /// before sending a byte (the request may be replayed).
    async fn read_response_head(
        &mut self,
        stream: &mut Stream,
        head_request: bool,
        request_end: usize,
    ) -> Result<Option<(Vec<u8>, ResponseHead)>, Failure> {
        let mut ubuf = std::mem::take(&mut self.scratch.ubuf);
        ubuf.reserve(FIRST_UP_BUF);
        let mut any = false;
        loop {
            if !ubuf.is_empty() {
                let index = std::mem::take(&mut self.scratch.response_fields);
                match head::parse_response_into(&ubuf, head_request, index) {
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
            match self.read_upstream(stream, &mut ubuf, request_end).await {
                // Closed or reset before a byte: a pooled connection the
                // upstream dropped as the request arrived looks like either.
                Ok(0) | Err(Failure::Answer(Error::UpstreamClosed)) if !any => return Ok(None),
                Ok(0) => return Err(Error::UpstreamClosed.into()),
                Ok(_) => any = true,
                Err(f) => return Err(f),
            }
        }
    }

    /// Relays the response: head rewritten, body bytes as they arrive.
    /// `cut_short`: the upstream answered before taking the whole request,
    /// so neither connection can be reused.
    async fn relay(
        &mut self,
        mut stream: Stream,
        head: &RequestHead,
        up: &Arc<Upstream>,
        (mut ubuf, rh): (Vec<u8>, ResponseHead),
        rec: &mut Record,
        cut_short: bool,
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
            || cut_short
            || self.shutting_down();
        let mut out = std::mem::take(&mut self.scratch.out);
        out.reserve(rh.len + 64);
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
            if decoder.is_done() {
                // The upstream's part is over: pool the connection before the
                // last write to the client, so that the client's next
                // request (on any connection) finds it. Reuse only after a
                // clean end with nothing extra sent.
                if rh.keep_alive
                    && pos == ubuf.len()
                    && rh.framing != Framing::UntilClose
                    && !cut_short
                {
                    up.pool.put(stream);
                }
                return self.finish_relay(out, ubuf, rh.headers, close, rec).await;
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
            let filled = ubuf.len() == ubuf.capacity();
            ubuf.clear();
            if filled {
                ubuf.reserve((2 * ubuf.capacity()).min(READ_CHUNK));
            }
            pos = 0;
            match self.read_upstream(&mut stream, &mut ubuf, 0).await {
                // A close-delimited body ends here; any other is truncated,
                // and the client must not take it as complete.
                Ok(0) if decoder.eof().is_ok() => {
                    // `out` was written before this read: it is empty.
                    return self.finish_relay(out, ubuf, rh.headers, close, rec).await;
                }
                Ok(0) | Err(_) => return Err(Failure::Close),
                Ok(_) => {}
            }
        }
    }

    /// Writes the last bytes of a relayed response, keeps the relay's
    /// buffers for the next response on this connection, and says what
    /// comes next.
    async fn finish_relay(
        &mut self,
        out: Vec<u8>,
        ubuf: Vec<u8>,
        fields: Vec<HeaderIdx>,
        close: bool,
        rec: &mut Record,
    ) -> Result<Next, Failure> {
        if !out.is_empty() {
            self.stream
                .write_all(&out)
                .await
                .map_err(|_| Failure::Close)?;
            rec.bytes_out += out.len() as u64;
        }
        self.scratch.ubuf = kept(ubuf);
        self.scratch.out = kept(out);
        self.scratch.response_fields = fields;
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
        if write_flushed(&mut stream, &ahead).await.is_err() {
            return Err(Failure::Close);
        }
        rec.bytes_in += ahead.len() as u64;
        rec.bytes_out += first.len() as u64;
        // Until either side closes (or fails): then both are closed, so a
        // peer that hung up is never left half-connected.
        let mut up_buf = vec![0u8; 16 * 1024];
        let mut down_buf = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                r = self.stream.read(&mut up_buf) => match r {
                    Ok(n) if n > 0 => {
                        if write_flushed(&mut stream, &up_buf[..n]).await.is_err() {
                            break;
                        }
                        rec.bytes_in += n as u64;
                    }
                    _ => break,
                },
                r = stream.read(&mut down_buf) => match r {
                    Ok(n) if n > 0 => {
                        if self.stream.write_all(&down_buf[..n]).await.is_err() {
                            break;
                        }
                        rec.bytes_out += n as u64;
                    }
                    _ => break,
                },
            }
        }
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
            // The upstream first (no random start): its answer is what
            // wakes this task nearly every time.
            tokio::select! {
                biased;
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
}

/// Writes `bytes` to the upstream and flushes them: through TLS, a write
/// that was accepted may still sit in the session until flushed.
async fn write_flushed(stream: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}
