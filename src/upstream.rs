//! Connections to upstreams: connecting with a timeout, and the stream type
//! the pool keeps.
//!
//! Owns: the socket (TCP_NODELAY, connect timeout) and its liveness check.
//! Does not own: what is sent on it (`conn`) or idle bookkeeping (`pool`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::Error;
use crate::route::Upstream;

/// A connection to an upstream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
}

impl Stream {
    /// Whether an idle connection can carry another request: the upstream
    /// has not closed it and sent nothing unasked. A non-blocking read
    /// answers without waiting (pingora's `test_reusable_stream`).
    pub fn is_reusable(&self) -> bool {
        let Stream::Tcp(tcp) = self;
        let mut probe = [0u8; 1];
        matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// Takes an idle pooled connection for `up`, or opens a new one within
/// `timeout`. The flag says whether the connection was reused (only a
/// reused connection may be retried on failure).
pub async fn checkout(up: &Upstream, timeout: Duration) -> Result<(Stream, bool), Error> {
    if let Some(stream) = up.pool.take() {
        return Ok((stream, true));
    }
    Ok((connect(up, timeout).await?, false))
}

/// Opens a new connection to `up`'s origin within `timeout` (504 after).
pub async fn connect(up: &Upstream, timeout: Duration) -> Result<Stream, Error> {
    let addr = (up.url.host.as_str(), up.url.port);
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(Error::UpstreamTimeout),
        Ok(Err(_)) => return Err(Error::UpstreamClosed),
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    Ok(Stream::Tcp(tcp))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
