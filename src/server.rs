//! Listeners, the accept loop, signals and the graceful drain (SPEC §6).
//!
//! Owns: binding, the connection limit, the shutdown signal every
//! connection watches, and waiting for in-flight requests. Does not own:
//! anything about a request (`conn`).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::config::{Config, Listen};
use crate::{conn, log, spare, systemd};

/// Most client connections served at once; further ones wait in the
/// kernel's accept queue until a connection ends.
pub const MAX_CONNECTIONS: usize = 16 * 1024;

/// Accept queue length asked of the kernel (which caps it at
/// `net.core.somaxconn`, 4096 on current Linux).
pub const BACKLOG: u32 = 4096;

/// Pause after an accept error such as running out of file descriptors, so
/// that the loop backs off instead of spinning a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What must hold beyond the config file before serving, checked by
/// `--check` too: with an `https://` upstream, the TLS roots load (an
/// unreadable `$SSL_CERT_FILE` is an error).
pub fn preflight(config: &Config) -> Result<(), String> {
    #[cfg(feature = "tls")]
    if config
        .routes
        .upstreams()
        .any(|u| u.url.scheme == crate::route::Scheme::Https)
    {
        crate::tls::client_config()?;
    }
    #[cfg(not(feature = "tls"))]
    let _ = config;
    Ok(())
}

/// Runs the router until SIGTERM or SIGINT; builds its own runtime with one
/// worker per core the process may use.
pub fn main(config: Config) -> ExitCode {
    if let Err(e) = preflight(&config) {
        eprintln!("llmhop: {e}");
        return ExitCode::FAILURE;
    }
    // Before the runtime exists: taking inherited sockets edits the
    // environment, which must happen while this is the only thread.
    let inherited = match systemd::listen_fds() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("llmhop: LISTEN_FDS: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("llmhop: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let signals = Signals::install();
        let bound = if inherited.is_empty() {
            bind(&config.listen).await
        } else {
            adopt(inherited)
        };
        let listeners = match bound {
            Ok(l) => l,
            Err(e) => {
                eprintln!("llmhop: listen: {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        run(listeners, Arc::new(config), signals).await;
        ExitCode::SUCCESS
    })
}

/// The runtime the router runs on: one worker per core this process may
/// run on (sched_getaffinity). On a single core the current-thread
/// scheduler does the same work without cross-thread wake-ups. Public for
/// the idle-memory floor of the benchmark (benches/floor.rs).
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
}

/// Binds the configured address. `":PORT"` binds `[::]:PORT` (dual-stack
/// where the host allows) and `0.0.0.0:PORT` unless the IPv6 socket already
/// covers IPv4; either alone is enough.
pub async fn bind(listen: &Listen) -> io::Result<Vec<TcpListener>> {
    match listen {
        Listen::Addr(addr) => {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            for addr in tokio::net::lookup_host(addr.as_str()).await? {
                match listener(addr) {
                    Ok(l) => return Ok(vec![l]),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Listen::All(port) => {
            let v6 = listener(SocketAddr::from((Ipv6Addr::UNSPECIFIED, *port)));
            let v4 = listener(SocketAddr::from((Ipv4Addr::UNSPECIFIED, *port)));
            match (v6, v4) {
                (Ok(a), Ok(b)) => Ok(vec![a, b]),
                (Ok(a), Err(e)) if e.kind() == io::ErrorKind::AddrInUse => Ok(vec![a]),
                (Ok(_), Err(e)) => Err(e),
                (Err(_), Ok(b)) => Ok(vec![b]),
                (Err(e), Err(_)) => Err(e),
            }
        }
    }
}

/// A listening socket with a [`BACKLOG`]-deep accept queue
/// (`TcpListener::bind` would give 128: a burst of connections then loses
/// SYNs, and each costs its client a one-second retransmit).
fn listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Socket activation (`LISTEN_FDS`): serve on the sockets systemd passed
/// instead of binding `listen`.
fn adopt(inherited: Vec<std::net::TcpListener>) -> io::Result<Vec<TcpListener>> {
    inherited
        .into_iter()
        .map(|l| {
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        })
        .collect()
}

/// Serves on `listeners` until a signal, then drains: listeners close (new
/// connections are refused), idle connections close, in-flight requests get
/// up to the shutdown timeout, or until a second signal.
pub async fn run(listeners: Vec<TcpListener>, config: Arc<Config>, mut signals: Signals) {
    let addrs: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    log::info(
        "listening",
        &[
            ("listen", &addrs.join(",")),
            ("models", &config.routes.names().join(",")),
        ],
    );
    systemd::notify("READY=1");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Every connection task holds a clone; `recv` returns `None` once all
    // of them have ended (mini-redis's drop-based completion signal).
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut accepting = Vec::new();
    for listener in listeners {
        let acceptor = Acceptor {
            listener,
            config: Arc::clone(&config),
            limit: Arc::clone(&limit),
            shutdown: shutdown_rx.clone(),
            done: done_tx.clone(),
        };
        accepting.push(tokio::spawn(acceptor.run()));
    }
    drop(done_tx);
    let flushing = tokio::spawn(log::flusher());
    // Large body buffers kept for reuse go back to the kernel once unused.
    let expiring = tokio::spawn(async {
        let mut every = tokio::time::interval(spare::IDLE);
        loop {
            every.tick().await;
            spare::expire();
        }
    });

    signals.recv().await;
    expiring.abort();
    systemd::notify("STOPPING=1");
    log::info(
        "shutting down",
        &[(
            "grace_seconds",
            &format!("{}", config.timeouts.shutdown.as_secs_f64()),
        )],
    );
    let _ = shutdown_tx.send(true);
    for task in accepting {
        let _ = task.await;
    }
    tokio::select! {
        drained = tokio::time::timeout(config.timeouts.shutdown, done_rx.recv()) => {
            if drained.is_err() {
                log::info("grace period over, closing remaining connections", &[]);
            }
        }
        // Someone at a terminal pressing Ctrl-C again does not want to wait.
        _ = signals.recv() => {
            log::info("signalled again, closing remaining connections", &[]);
        }
    }
    flushing.abort();
    log::unbatch();
}

/// One listener's accept loop.
struct Acceptor {
    listener: TcpListener,
    config: Arc<Config>,
    limit: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
}

impl Acceptor {
    async fn run(mut self) {
        let mut last_error_log: Option<Instant> = None;
        loop {
            let permit = tokio::select! {
                p = Arc::clone(&self.limit).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = self.shutdown.changed() => return,
            };
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = self.shutdown.changed() => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let config = Arc::clone(&self.config);
                    let shutdown = self.shutdown.clone();
                    let done = self.done.clone();
                    tokio::spawn(async move {
                        conn::serve(stream, peer, config, shutdown).await;
                        drop(permit);
                        drop(done);
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off, log at most once a second.
                    if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        log::info("accept failed", &[("error", &e.to_string())]);
                        last_error_log = Some(Instant::now());
                    }
                    drop(permit);
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        _ = self.shutdown.changed() => return,
                    }
                }
            }
        }
    }
}

/// The SIGTERM and SIGINT handlers.
pub struct Signals {
    handlers: Option<(Signal, Signal)>,
}

impl Signals {
    /// Installs the handlers at once, not when first awaited: a supervisor
    /// may signal as soon as it sees `READY=1` or the `listening` line, and
    /// a signal before the handlers exist kills the process without a
    /// drain or `STOPPING=1` (seen once in CI, under load).
    pub fn install() -> Signals {
        let handlers = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            // Without handlers the process still dies on SIGTERM.
            _ => None,
        };
        Signals { handlers }
    }

    /// Completes on the next SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        match &mut self.handlers {
            Some((term, int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            None => std::future::pending().await,
        }
    }
}
