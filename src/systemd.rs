//! systemd integration without libsystemd: readiness notification
//! (`sd_notify(3)`) and socket activation (`sd_listen_fds(3)`).
//!
//! Both protocols are a few lines of environment parsing around a socket, so
//! they are written here against `std` instead of pulling in a crate:
//!
//! - [`notify`] sends one datagram such as `READY=1` to `$NOTIFY_SOCKET`
//!   (a filesystem path, or an abstract name written `@name`).
//! - [`listen_fds`] takes the listening sockets systemd passed as fds
//!   `3..3+$LISTEN_FDS`, when `$LISTEN_PID` names this process.
//!
//! This module does not decide *when* to notify or *which* listeners to use:
//! that is `server`'s job (bind inherited listeners instead of the configured
//! `listen` when there are any, `READY=1` after binding, `STOPPING=1` when the
//! drain starts). Outside systemd both functions do nothing.

use std::ffi::OsStr;
use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The first file descriptor systemd passes (`SD_LISTEN_FDS_START`); fds
/// 0, 1 and 2 stay stdin, stdout and stderr.
pub const LISTEN_FDS_START: RawFd = 3;

/// Set once [`listen_fds`] has taken ownership of the inherited fds, so a
/// second call can never wrap the same descriptors twice.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes the TCP listening sockets passed by systemd socket activation.
///
/// Returns an empty `Vec` when the process was not socket-activated:
/// `$LISTEN_PID` unset or naming another process (the variables were
/// inherited through an unrelated parent), or `$LISTEN_FDS` = 0. On the first
/// call `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` are removed from the
/// environment in every case (as `sd_listen_fds(1)` does), so no child and no
/// later call sees them; later calls return an empty `Vec`.
///
/// Each fd becomes a [`TcpListener`] after a check that it is an IPv4 or
/// IPv6 socket (`local_addr` succeeds). The returned listeners are close-on-
/// exec duplicates of the inherited fds, in the blocking mode systemd left
/// them in: call `set_nonblocking(true)` before
/// `tokio::net::TcpListener::from_std`.
///
/// Call it before any other thread exists: it edits the environment.
///
/// # Errors
///
/// Malformed `LISTEN_PID`/`LISTEN_FDS`, or an inherited fd that is not an
/// IPv4/IPv6 socket (a unix or UDP socket unit pointed at llmhop by mistake).
pub fn listen_fds() -> io::Result<Vec<TcpListener>> {
    let pid = std::env::var_os("LISTEN_PID");
    let fds = std::env::var_os("LISTEN_FDS");
    // Rust 2021: `remove_var` is safe; the single-thread rule above is why.
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");

    let n = listen_count(pid.as_deref(), fds.as_deref(), std::process::id())?;
    if n == 0 || TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    let end = LISTEN_FDS_START
        .checked_add(RawFd::try_from(n).map_err(|_| invalid("LISTEN_FDS: too large"))?)
        .ok_or_else(|| invalid("LISTEN_FDS: too large"))?;

    let mut listeners = Vec::with_capacity(n);
    for fd in LISTEN_FDS_START..end {
        #[allow(unsafe_code)]
        // SAFETY: per sd_listen_fds(3), systemd passes exactly LISTEN_FDS open
        // descriptors starting at fd 3 to the process named by LISTEN_PID.
        // `listen_count` verified LISTEN_PID == our pid, so these fds are ours
        // and open; nothing else in llmhop opens fds before this call or owns
        // 3.., `TAKEN` makes sure they are wrapped at most once per process,
        // and the variables are unset above so no later caller can retake them.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        listeners.push(into_listener(owned, fd)?);
    }
    Ok(listeners)
}

/// Wraps one inherited fd: checks it is an IPv4/IPv6 socket and swaps it for
/// a close-on-exec duplicate (std's `try_clone` uses `F_DUPFD_CLOEXEC`), as
/// `sd_listen_fds` sets `FD_CLOEXEC` on the fds it hands out.
fn into_listener(owned: OwnedFd, fd: RawFd) -> io::Result<TcpListener> {
    let inherited = TcpListener::from(owned);
    inherited.local_addr().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("LISTEN_FDS: fd {fd} is not a TCP listening socket: {e}"),
        )
    })?;
    inherited.try_clone()
    // `inherited` drops here, closing the non-CLOEXEC original.
}

/// How many fds systemd passed, from `$LISTEN_PID` and `$LISTEN_FDS`
/// (sd_listen_fds(3)): 0 unless `LISTEN_PID` is set and equals `our_pid`.
fn listen_count(pid: Option<&OsStr>, fds: Option<&OsStr>, our_pid: u32) -> io::Result<usize> {
    let Some(pid) = pid else { return Ok(0) };
    let pid: u32 = digits(pid).ok_or_else(|| invalid("LISTEN_PID: not a process id"))?;
    if pid != our_pid {
        return Ok(0);
    }
    let Some(fds) = fds else { return Ok(0) };
    digits(fds).ok_or_else(|| invalid("LISTEN_FDS: not a number"))
}

/// Parses ASCII digits only: `FromStr` would also take a leading `+`.
fn digits<T: std::str::FromStr>(s: &OsStr) -> Option<T> {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

/// Sends `state` (e.g. `READY=1`, `STOPPING=1`, `STATUS=...`) to the service
/// manager, as `sd_notify(0, state)` does.
///
/// A no-op when `$NOTIFY_SOCKET` is unset (not started by systemd with
/// `Type=notify`). Errors are ignored: readiness is best effort and must never
/// stop the router; this function never panics. `$NOTIFY_SOCKET` is kept, so
/// `READY=1` and a later `STOPPING=1` both reach the manager.
pub fn notify(state: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        let _ = send(&path, state);
    }
}

/// One datagram to a `$NOTIFY_SOCKET` value: `/path` or `@abstract-name`.
fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    let sent = match bytes.first() {
        Some(b'/') => sock.send_to(state.as_bytes(), Path::new(socket))?,
        Some(b'@') => send_abstract(&sock, &bytes[1..], state.as_bytes())?,
        // vsock:CID:PORT (systemd ≥ 253 in VMs) is not supported.
        _ => return Err(invalid("NOTIFY_SOCKET: not a path or @abstract name")),
    };
    if sent != state.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short datagram"));
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(sock: &UnixDatagram, name: &[u8], msg: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(msg, &addr)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets are Linux-only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// (LISTEN_PID, LISTEN_FDS, our pid, expected count; `None` = error)
    type Case = (
        Option<&'static str>,
        Option<&'static str>,
        u32,
        Option<usize>,
    );

    #[test]
    fn listen_count_table() {
        let cases: &[Case] = &[
            (None, None, 7, Some(0)),
            (None, Some("2"), 7, Some(0)),
            (Some("7"), Some("2"), 7, Some(2)),
            (Some("7"), Some("0"), 7, Some(0)),
            (Some("7"), None, 7, Some(0)),
            (Some("8"), Some("2"), 7, Some(0)), // inherited from a parent: not ours
            (Some("7"), Some("+2"), 7, None),
            (Some("7"), Some("-1"), 7, None),
            (Some("7"), Some(""), 7, None),
            (Some(" 7"), Some("1"), 7, None),
            (Some("x"), Some("1"), 7, None),
            (Some("99999999999"), Some("1"), 7, None),
        ];
        for &(pid, fds, ours, want) in cases {
            let got = listen_count(pid.map(OsStr::new), fds.map(OsStr::new), ours).ok();
            assert_eq!(got, want, "LISTEN_PID={pid:?} LISTEN_FDS={fds:?}");
        }
    }

    #[test]
    fn send_to_path() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("llmhop-sd-unit-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_file(&path).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn send_to_abstract() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("llmhop-sd-unit-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn send_rejects_other_forms_and_missing_sockets() {
        assert!(send(OsStr::new("vsock:2:1"), "READY=1").is_err());
        assert!(send(OsStr::new(""), "READY=1").is_err());
        assert!(send(OsStr::new("/nonexistent/llmhop.sock"), "READY=1").is_err());
    }
}
