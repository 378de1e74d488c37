//! Idle upstream connections, one pool per origin.
//!
//! Owns: keeping, expiring and liveness-checking idle connections. Does not
//! own: connecting or deciding whether a connection may be reused (`conn`
//! returns one only after a response ended cleanly).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::upstream::Stream;

/// Most idle connections kept per origin; more are closed on return.
pub const MAX_IDLE_PER_ORIGIN: usize = 256;

/// An idle connection older than this is closed rather than reused, in
/// seconds. Backends close idle keep-alive connections on their own (uvicorn
/// after 5 s); the liveness check catches those, this bounds the rest.
pub const IDLE_EXPIRY: Duration = Duration::from_secs(90);

struct Idle {
    stream: Stream,
    since: Instant,
}

/// The idle connections to one origin.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// The most recently returned connection that is still usable: not
    /// expired, not closed by the upstream, no unexpected bytes waiting.
    /// Dead ones found on the way are dropped.
    pub fn take(&self) -> Option<Stream> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if idle.since.elapsed() < IDLE_EXPIRY && idle.stream.is_reusable() {
                return Some(idle.stream);
            }
        }
    }

    /// Returns a connection whose last response ended cleanly.
    pub fn put(&self, stream: Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= MAX_IDLE_PER_ORIGIN {
            idle.remove(0);
        }
        idle.push(Idle {
            stream,
            since: Instant::now(),
        });
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
