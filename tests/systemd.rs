//! systemd integration with real processes: socket activation (a listening
//! socket passed as fd 3 with `LISTEN_FDS`/`LISTEN_PID`) and readiness
//! (`READY=1` / `STOPPING=1` datagrams on `$NOTIFY_SOCKET`).
//!
//! The router binary runs as a child process in front of a fake upstream
//! thread; every wait has a deadline and every child is killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single step may take before the test fails.
const STEP: Duration = Duration::from_secs(15);

/// The body every fake upstream answers with.
const UPSTREAM_BODY: &str = r#"{"object":"chat.completion","from":"fake-upstream"}"#;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A per-test scratch path in the temp dir (removed by [`Scratch`]).
fn scratch(suffix: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("llmhop-sd-{}-{n}{suffix}", std::process::id()))
}

/// Removes its file on drop.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes the router config routing model `m` to `upstream`.
fn write_config(upstream: SocketAddr) -> Scratch {
    let path = scratch(".json");
    let json =
        format!(r#"{{"listen":"127.0.0.1:0","models":{{"m":{{"url":"http://{upstream}"}}}}}}"#);
    std::fs::write(&path, json).unwrap();
    Scratch(path)
}

/// A one-shot fake upstream: accepts one connection, reads one request
/// (head + Content-Length body), answers [`UPSTREAM_BODY`] and closes.
/// The request bytes it saw come back on the receiver.
fn fake_upstream() -> (SocketAddr, Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        s.set_read_timeout(Some(STEP)).unwrap();
        let seen = read_http_message(&mut s);
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{UPSTREAM_BODY}",
            UPSTREAM_BODY.len()
        );
        let _ = s.write_all(reply.as_bytes());
        let _ = tx.send(seen);
    });
    (addr, rx)
}

/// Reads one HTTP/1.1 message framed by Content-Length (or none).
fn read_http_message(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The router child: killed and reaped on drop unless it already exited.
struct Router {
    child: Child,
    stderr: Receiver<String>,
    seen: Vec<String>,
}

impl Router {
    /// Spawns `cmd` (stderr piped), forwarding stderr lines to a channel.
    fn spawn(mut cmd: Command) -> Router {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn llmhop");
        let pipe = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Router {
            child,
            stderr: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for the `msg=listening` startup line and returns it.
    fn wait_listening(&mut self) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains("msg=listening");
                    self.seen.push(line.clone());
                    if hit {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no `msg=listening` line within {STEP:?}; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Sends SIGTERM (through kill(1): std has no signal API).
    fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits for the child to exit within [`STEP`].
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "llmhop did not exit within {STEP:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The first address of the `listen=` field of a logfmt line
/// (`listen=127.0.0.1:8080` or `listen="127.0.0.1:8080 [::1]:8080"`).
fn listen_field(line: &str) -> SocketAddr {
    let rest = &line[line.find("listen=").expect("listen= in startup line") + 7..];
    let rest = rest.trim_start_matches('"');
    let first = rest
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .next()
        .unwrap();
    first
        .parse()
        .unwrap_or_else(|_| panic!("listen address in {line:?}"))
}

/// Sends one chat request for model `m` with `Connection: close` and returns
/// the whole response.
fn chat(addr: SocketAddr) -> String {
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: llmhop.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, &req)
}

fn exchange(addr: SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, STEP).expect("connect to llmhop");
    s.set_read_timeout(Some(STEP)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read response until close");
    String::from_utf8_lossy(&out).into_owned()
}

/// `sh -c` script that moves stdin (the listening socket) to fd 3, gives the
/// binary an empty stdin and execs it with `LISTEN_PID` = its own pid: the
/// shell's `$$` is the pid the binary keeps across `exec`. This is how a test
/// can set `LISTEN_PID` to the child's pid without `pre_exec` (unsafe).
const ACTIVATE: &str =
    r#"exec 3<&0 0</dev/null; LISTEN_PID=${LISTEN_PID_OVERRIDE:-$$} LISTEN_FDS=1 exec "$0" "$@""#;

/// Command running the router with `listener` inherited as fd 3.
fn activated(listener: TcpListener, config: &Path, pid_override: Option<&str>) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", ACTIVATE, env!("CARGO_BIN_EXE_llmhop"), "--config"])
        .arg(config)
        .env_remove("NOTIFY_SOCKET")
        // The std listener is close-on-exec; as the child's stdin it is
        // dup2'ed to fd 0 by std, which clears that flag.
        .stdin(OwnedFd::from(listener));
    if let Some(pid) = pid_override {
        cmd.env("LISTEN_PID_OVERRIDE", pid);
    }
    cmd
}

#[test]
fn socket_activation_routes_through_inherited_fd3() {
    let (upstream, seen) = fake_upstream();
    let config = write_config(upstream);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();

    let mut router = Router::spawn(activated(listener, &config.0, None));
    let line = router.wait_listening();
    assert_eq!(
        listen_field(&line),
        addr,
        "router must listen on the inherited socket, not bind the config's: {line}"
    );

    let resp = chat(addr);
    assert!(resp.starts_with("HTTP/1.1 200"), "response: {resp}");
    assert!(resp.ends_with(UPSTREAM_BODY), "response: {resp}");
    let req = seen.recv_timeout(STEP).expect("upstream saw the request");
    let req = String::from_utf8_lossy(&req);
    assert!(
        req.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{req}"
    );
    assert!(req.contains(r#""model":"m""#), "{req}");

    router.sigterm();
    assert!(router.wait_exit().success());
}

#[test]
fn socket_activation_for_another_pid_is_ignored() {
    // LISTEN_PID names some other process (variables inherited through an
    // unrelated parent): fd 3 must be left alone and the config's `listen`
    // bound instead.
    let (upstream, _seen) = fake_upstream();
    let config = write_config(upstream);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let inherited = listener.local_addr().unwrap();

    let mut router = Router::spawn(activated(listener, &config.0, Some("1")));
    let line = router.wait_listening();
    let bound = listen_field(&line);
    assert_ne!(bound, inherited, "{line}");
    assert_ne!(bound.port(), 0, "{line}");

    let resp = exchange(
        bound,
        "GET /health HTTP/1.1\r\nHost: llmhop.test\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "response: {resp}");

    router.sigterm();
    assert!(router.wait_exit().success());
}

/// Receives one datagram within [`STEP`].
fn recv_state(sock: &UnixDatagram) -> String {
    sock.set_read_timeout(Some(STEP)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notify datagram within the deadline");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Receives datagrams until one has a line equal to `want` (others, such as
/// `STATUS=...`, are allowed before it).
fn expect_state(sock: &UnixDatagram, want: &str) {
    let mut got = Vec::new();
    while got.len() < 8 {
        let msg = recv_state(sock);
        if msg.lines().any(|l| l == want) {
            return;
        }
        got.push(msg);
    }
    panic!("no {want} datagram; got {got:?}");
}

/// Runs the router with `NOTIFY_SOCKET=notify_socket` and checks
/// READY=1 → serving → SIGTERM → STOPPING=1 → exit 0.
fn notify_lifecycle(rx: &UnixDatagram, notify_socket: &str) {
    let (upstream, _seen) = fake_upstream();
    let config = write_config(upstream);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmhop"));
    cmd.arg("--config")
        .arg(&config.0)
        .env("NOTIFY_SOCKET", notify_socket)
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .stdin(Stdio::null());
    let mut router = Router::spawn(cmd);

    expect_state(rx, "READY=1");
    // READY=1 is only sent once listeners are bound: the address must accept.
    let addr = listen_field(&router.wait_listening());
    let resp = exchange(
        addr,
        "GET /health HTTP/1.1\r\nHost: llmhop.test\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "response: {resp}");

    router.sigterm();
    expect_state(rx, "STOPPING=1");
    assert!(router.wait_exit().success());
}

#[test]
fn notify_socket_gets_ready_and_stopping() {
    let path = scratch(".sock");
    let rx = UnixDatagram::bind(&path).unwrap();
    let _cleanup = Scratch(path.clone());
    notify_lifecycle(&rx, path.to_str().unwrap());
}

/// A supervisor may stop the router the moment it reports ready: the
/// signal handlers must already be there (a SIGTERM before them kills the
/// process with no drain and no `STOPPING=1`; CI hit that once, under load).
#[test]
fn sigterm_right_after_ready_drains() {
    let (upstream, _seen) = fake_upstream();
    let config = write_config(upstream);
    for _ in 0..5 {
        let path = scratch(".sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        let _cleanup = Scratch(path.clone());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmhop"));
        cmd.arg("--config")
            .arg(&config.0)
            .env("NOTIFY_SOCKET", &path)
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .stdin(Stdio::null());
        let mut router = Router::spawn(cmd);
        expect_state(&rx, "READY=1");
        router.sigterm();
        expect_state(&rx, "STOPPING=1");
        assert!(router.wait_exit().success());
    }
}

#[cfg(target_os = "linux")]
#[test]
fn notify_socket_abstract_name() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!(
        "llmhop-sd-test-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    );
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let rx = UnixDatagram::bind_addr(&addr).unwrap();
    notify_lifecycle(&rx, &format!("@{name}"));
}
