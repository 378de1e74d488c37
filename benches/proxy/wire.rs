//! The HTTP/1.1 both ends of the benchmark speak: a buffered socket that
//! reads one head at a time (httparse), skips Content-Length bodies and
//! walks chunked ones.
//!
//! Deliberately independent of llmhop's own `http` module: the apparatus
//! must not share the code it measures. Owns no policy: what a head means
//! (a request to answer, a response to check) is the caller's.

use std::io;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read buffer per connection, in bytes: large enough that a 20 MiB body
/// costs ~80 reads.
const BUF_BYTES: usize = 256 * 1024;

/// Longest head accepted, in bytes.
const MAX_HEAD: usize = 64 * 1024;

/// Fields parsed per head.
const MAX_FIELDS: usize = 64;

/// What the benchmark needs of a head, request or response.
#[derive(Debug, Default)]
pub struct Head {
    /// Response status; 0 for a request.
    pub status: u16,
    /// Request path; empty for a response.
    pub path: String,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// `X-Upstream`: which fake upstream answered.
    pub upstream: String,
    /// `X-Sse: CHUNKS,GAP_MS` on a request: answer as an event stream.
    pub sse: Option<(u32, u64)>,
    /// `Connection: close` was sent.
    pub close: bool,
}

/// A socket with a read buffer.
pub struct Wire {
    pub stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Wire {
    pub fn new(stream: TcpStream) -> Wire {
        let _ = stream.set_nodelay(true);
        Wire {
            stream,
            buf: vec![0; BUF_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    pub async fn connect(port: u16) -> io::Result<Wire> {
        Ok(Wire::new(TcpStream::connect(("127.0.0.1", port)).await?))
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// One read into the free end of the buffer (compacting first).
    /// Returns the bytes read; 0 is EOF.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Reads the next head. `None`: clean EOF before its first byte.
    pub async fn head(&mut self) -> io::Result<Option<Head>> {
        let mut searched = self.start;
        let len = loop {
            let from = searched.saturating_sub(3).max(self.start);
            if let Some(i) = memmem::find(&self.buf[from..self.end], b"\r\n\r\n") {
                break from + i + 4 - self.start;
            }
            if self.end - self.start > MAX_HEAD {
                return Err(bad("head too large"));
            }
            searched = self.end;
            let before = self.start;
            if self.fill().await? == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(bad("EOF inside a head"))
                };
            }
            searched -= before - self.start;
        };
        let bytes = &self.buf[self.start..self.start + len];
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut head = Head::default();
        let headers: &[httparse::Header] = if bytes.starts_with(b"HTTP/") {
            let mut res = httparse::Response::new(&mut fields);
            res.parse(bytes).map_err(|_| bad("bad response head"))?;
            head.status = res.code.unwrap_or(0);
            res.headers
        } else {
            let mut req = httparse::Request::new(&mut fields);
            req.parse(bytes).map_err(|_| bad("bad request head"))?;
            head.path = req.path.unwrap_or("").to_string();
            req.headers
        };
        for h in headers {
            let v = h.value;
            if h.name.eq_ignore_ascii_case("content-length") {
                let s = std::str::from_utf8(v).map_err(|_| bad("content-length"))?;
                head.content_length = Some(s.trim().parse().map_err(|_| bad("content-length"))?);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked = v.eq_ignore_ascii_case(b"chunked");
            } else if h.name.eq_ignore_ascii_case("x-upstream") {
                head.upstream = String::from_utf8_lossy(v).into_owned();
            } else if h.name.eq_ignore_ascii_case("x-sse") {
                let s = String::from_utf8_lossy(v);
                let (n, gap) = s.split_once(',').ok_or_else(|| bad("x-sse"))?;
                head.sse = Some((
                    n.trim().parse().map_err(|_| bad("x-sse"))?,
                    gap.trim().parse().map_err(|_| bad("x-sse"))?,
                ));
            } else if h.name.eq_ignore_ascii_case("connection") {
                head.close = v.eq_ignore_ascii_case(b"close");
            }
        }
        self.start += len;
        Ok(Some(head))
    }

    /// Reads `n` body bytes, handing them to `on_data` as they arrive.
    async fn content(&mut self, mut n: u64, mut on_data: impl FnMut(&[u8])) -> io::Result<()> {
        loop {
            let have = (self.end - self.start) as u64;
            let take = have.min(n);
            on_data(&self.buf[self.start..self.start + take as usize]);
            self.start += take as usize;
            n -= take;
            if n == 0 {
                return Ok(());
            }
            if self.fill().await? == 0 {
                return Err(bad("EOF inside a body"));
            }
        }
    }

    /// Reads the body `head` announces, calling `on_data` with every piece
    /// of payload as it arrives (de-chunked).
    pub async fn body(&mut self, head: &Head, on_data: impl FnMut(&[u8])) -> io::Result<()> {
        if head.chunked {
            self.chunked(on_data).await
        } else {
            self.content(head.content_length.unwrap_or(0), on_data)
                .await
        }
    }

    /// Ensures a full line is buffered; returns the index of its `\n`.
    async fn line(&mut self) -> io::Result<usize> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                return Ok(self.start + i);
            }
            if self.end - self.start > 4096 {
                return Err(bad("chunk line too long"));
            }
            if self.fill().await? == 0 {
                return Err(bad("EOF inside a chunked body"));
            }
        }
    }

    /// Walks a chunked body to its end, trailers included (RFC 9112 §7.1).
    async fn chunked(&mut self, mut on_data: impl FnMut(&[u8])) -> io::Result<()> {
        loop {
            let nl = self.line().await?;
            let line = &self.buf[self.start..nl];
            let digits = line
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .copied()
                .collect::<Vec<u8>>();
            let size = u64::from_str_radix(std::str::from_utf8(&digits).unwrap_or(""), 16)
                .map_err(|_| bad("chunk size"))?;
            self.start = nl + 1;
            if size == 0 {
                // Trailers until the empty line.
                loop {
                    let nl = self.line().await?;
                    let empty = nl == self.start || (nl == self.start + 1);
                    self.start = nl + 1;
                    if empty {
                        return Ok(());
                    }
                }
            }
            let mut left = size;
            while left > 0 {
                if self.start == self.end && self.fill().await? == 0 {
                    return Err(bad("EOF inside a chunk"));
                }
                let take = ((self.end - self.start) as u64).min(left) as usize;
                on_data(&self.buf[self.start..self.start + take]);
                self.start += take;
                left -= take as u64;
            }
            let nl = self.line().await?;
            if nl > self.start + 1 {
                return Err(bad("chunk not followed by CRLF"));
            }
            self.start = nl + 1;
        }
    }
}
