//! Connections to upstreams: connecting with a timeout, and the stream type
//! the pool keeps.
//!
//! Owns: the socket (TCP_NODELAY, connect timeout) and its liveness check.
//! Does not own: what is sent on it (`conn`) or idle bookkeeping (`pool`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::error::Error;
use crate::log;
use crate::route::{Scheme, Upstream};

/// A connection to an upstream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl Stream {
    /// Whether an idle connection can carry another request: the upstream
    /// has not closed it and sent nothing unasked (for TLS, anything
    /// pending — a close_notify, a late ticket — retires the connection).
    /// A peek with a no-op waker answers without waiting (pingora's
    /// `test_reusable_stream`).
    pub fn is_reusable(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        let tcp = match self {
            Stream::Tcp(tcp) => tcp,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.get_ref().0,
            Stream::Unix(unix) => {
                // UnixStream has no peek: readiness says whether the peer
                // closed or wrote, without consuming anything.
                return matches!(unix.poll_read_ready(&mut cx), Poll::Pending);
            }
        };
        matches!(tcp.poll_peek(&mut cx, &mut probe), Poll::Pending)
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

/// Opens a new connection to `up`'s origin within `timeout`, TLS handshake
/// included (504 after). Failures are logged with their reason: the client
/// only sees a 502.
pub async fn connect(up: &Upstream, timeout: Duration) -> Result<Stream, Error> {
    match tokio::time::timeout(timeout, open(up)).await {
        Err(_) => {
            log::info("upstream connect timed out", &[("upstream", &up.origin)]);
            Err(Error::UpstreamTimeout)
        }
        Ok(Err(why)) => {
            log::info(
                "upstream connect failed",
                &[("upstream", &up.origin), ("error", &why)],
            );
            Err(Error::UpstreamUnreachable)
        }
        Ok(Ok(stream)) => Ok(stream),
    }
}

async fn open(up: &Upstream) -> Result<Stream, String> {
    let url = &up.url;
    if url.scheme == Scheme::Unix {
        return UnixStream::connect(&url.host)
            .await
            .map(Stream::Unix)
            .map_err(|e| e.to_string());
    }
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    match url.scheme {
        Scheme::Http | Scheme::Unix => Ok(Stream::Tcp(tcp)),
        #[cfg(feature = "tls")]
        Scheme::Https => Ok(Stream::Tls(Box::new(
            crate::tls::handshake(tcp, &url.host).await?,
        ))),
        #[cfg(not(feature = "tls"))]
        Scheme::Https => Err("https upstreams need the tls feature".into()),
    }
}

/// Forwards a poll method to whichever stream this is.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Stream::Tcp($s) => $e,
            #[cfg(feature = "tls")]
            Stream::Tls($s) => $e,
            Stream::Unix($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        each!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}
