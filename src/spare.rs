//! Warm buffers for large request bodies.
//!
//! A body whose `model` comes last (the openai SDK's order) is held whole
//! before it can be routed, in a buffer as large as the body. A fresh buffer
//! per request is costly: the allocator maps new pages, the kernel faults
//! and zeroes each one on first write and unmaps them at free (musl does so
//! for every large allocation, glibc for most), which took more CPU than the
//! two socket copies of the body. Finished requests leave their large
//! buffers here for the next large body instead.
//!
//! Owns: keeping and handing out buffers, and expiring them. The stash
//! holds at most [`MAX_SPARES`] buffers, none longer than [`IDLE`] unused,
//! so it never holds more than the recent peak of large bodies in flight,
//! and an idle router gives that memory back.
//! Does not own: when a connection needs a large buffer (`conn`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A buffer at most this large is not worth keeping: allocating it is cheap
/// and connections keep one of about this size anyway.
pub const SMALL: usize = 64 * 1024;

/// Most buffers kept.
pub const MAX_SPARES: usize = 16;

/// A buffer unused for this long is freed.
pub const IDLE: Duration = Duration::from_secs(10);

static STASH: Mutex<Stash> = Mutex::new(Stash { spares: Vec::new() });

/// Makes room for `additional` more bytes in `buf`, moving its bytes into
/// a kept buffer when `buf` would have to grow past [`SMALL`] and one is
/// there; otherwise `buf` grows as a `Vec` does.
pub fn reserve(buf: &mut Vec<u8>, additional: usize) {
    if buf.capacity() - buf.len() >= additional {
        return;
    }
    let needed = buf.len() + additional;
    if needed > SMALL {
        let warm = lock().take(needed, Instant::now());
        if let Some(mut warm) = warm {
            warm.extend_from_slice(buf);
            give(std::mem::replace(buf, warm));
            return;
        }
    }
    buf.reserve(additional);
}

/// Keeps `buf` for a later large body if it is large; frees it otherwise.
pub fn give(buf: Vec<u8>) {
    if buf.capacity() > SMALL {
        lock().put(buf, Instant::now());
    }
}

/// Frees the buffers unused for [`IDLE`]; the server calls it periodically.
pub fn expire() {
    lock().expire(Instant::now());
}

/// Bytes of capacity kept.
pub fn kept_bytes() -> usize {
    lock().spares.iter().map(|s| s.buf.capacity()).sum()
}

fn lock() -> std::sync::MutexGuard<'static, Stash> {
    STASH.lock().unwrap_or_else(|e| e.into_inner())
}

struct Spare {
    buf: Vec<u8>,
    since: Instant,
}

/// The kept buffers, with the clock passed in so that the policy is tested
/// without waiting.
struct Stash {
    spares: Vec<Spare>,
}

impl Stash {
    /// The largest kept buffer, when it holds at least `needed` bytes: a
    /// body that outgrows a smaller one would only be copied again.
    fn take(&mut self, needed: usize, now: Instant) -> Option<Vec<u8>> {
        self.expire(now);
        let (i, _) = self
            .spares
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.buf.capacity())?;
        if self.spares[i].buf.capacity() < needed {
            return None;
        }
        Some(self.spares.swap_remove(i).buf)
    }

    /// Keeps `buf`, emptied; when full, the smallest buffer goes.
    fn put(&mut self, mut buf: Vec<u8>, now: Instant) {
        self.expire(now);
        buf.clear();
        self.spares.push(Spare { buf, since: now });
        if self.spares.len() > MAX_SPARES {
            let (i, _) = self
                .spares
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.buf.capacity())
                .expect("more than MAX_SPARES");
            self.spares.swap_remove(i);
        }
    }

    fn expire(&mut self, now: Instant) {
        self.spares
            .retain(|s| now.saturating_duration_since(s.since) < IDLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    fn stash() -> Stash {
        Stash { spares: Vec::new() }
    }

    fn capacities(s: &Stash) -> Vec<usize> {
        let mut c: Vec<usize> = s.spares.iter().map(|s| s.buf.capacity()).collect();
        c.sort();
        c
    }

    #[test]
    fn take_hands_out_the_largest_buffer_when_it_is_large_enough() {
        let t0 = Instant::now();
        let mut s = stash();
        s.put(Vec::with_capacity(MIB), t0);
        s.put(Vec::with_capacity(4 * MIB), t0);
        assert!(s.take(5 * MIB, t0).is_none(), "none holds 5 MiB");
        let got = s.take(MIB / 2, t0).expect("a 4 MiB buffer fits");
        assert!(got.capacity() >= 4 * MIB && got.is_empty());
        assert_eq!(capacities(&s).len(), 1);
    }

    #[test]
    fn put_keeps_at_most_max_spares_dropping_the_smallest() {
        let t0 = Instant::now();
        let mut s = stash();
        for i in 0..MAX_SPARES + 3 {
            s.put(Vec::with_capacity((i + 1) * MIB), t0);
        }
        let c = capacities(&s);
        assert_eq!(c.len(), MAX_SPARES);
        assert!(c[0] >= 4 * MIB, "the three smallest went: {c:?}");
    }

    #[test]
    fn buffers_unused_for_idle_are_freed() {
        let t0 = Instant::now();
        let mut s = stash();
        s.put(Vec::with_capacity(MIB), t0);
        s.put(Vec::with_capacity(2 * MIB), t0 + IDLE / 2);
        s.expire(t0 + IDLE);
        assert_eq!(capacities(&s).len(), 1, "the first one expired");
        assert!(s.take(MIB, t0 + IDLE + IDLE / 2).is_none(), "both expired");
    }

    #[test]
    fn reserve_moves_the_bytes_into_a_kept_buffer() {
        // The only test touching the process-wide stash.
        give(vec![7u8; 3 * MIB]);
        let mut buf = Vec::with_capacity(SMALL);
        buf.extend_from_slice(&[1u8; SMALL]);
        reserve(&mut buf, SMALL);
        assert!(buf.capacity() >= 3 * MIB, "took the kept buffer");
        assert_eq!(buf.len(), SMALL);
        assert!(buf.iter().all(|&b| b == 1), "bytes moved, not the old ones");
        assert!(kept_bytes() < 3 * MIB, "the small one was not kept");
        let mut small = Vec::new();
        reserve(&mut small, 100);
        assert!(small.capacity() < SMALL, "small growth stays a Vec's");
    }
}
