//! `https://` upstreams (issue 3 point 1), against a TLS server the project
//! did not write: Debian's nginx on 127.0.0.1, terminating TLS with a
//! certificate each test generates with the `openssl` CLI, and proxying in
//! plain HTTP/1.1 (unbuffered) to a [`FakeUpstream`].
//!
//! nginx and openssl are required: CI installs them
//! (`apt-get install -y nginx openssl`). A missing binary fails the
//! test loudly; it never skips. nginx runs as a single foreground process
//! (`master_process off; daemon off;`) with every path under the test's own
//! temp dir, and is stopped by killing that child process.
//!
//! nginx's access log records, per request, the TLS connection number
//! (`$connection`), SNI, the negotiated ALPN protocol and the `Host` the
//! router sent, so pooling and the handshake are checked on the server side.

#![cfg(feature = "tls")]

mod support;

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// The apt line that provides what these tests run.
const INSTALL: &str = "apt-get install -y nginx openssl";

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A test PKI in `dir`: `ca.pem` signs `server.pem` (SAN `localhost` and
/// `127.0.0.1`); `other-ca.pem` is an unrelated CA that signed nothing.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the openssl CLI ({e}); these tests need it: {INSTALL}")
        });
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A self-signed CA certificate `name.pem` with key `name.key`.
fn make_ca(dir: &Path, name: &str, subject: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn make_pki(dir: &Path) -> Pki {
    make_ca(dir, "ca", "/CN=llmhop test CA");
    make_ca(dir, "other-ca", "/CN=llmhop unrelated CA");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "4242",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    Pki {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

// ---------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------

/// nginx terminating TLS on `127.0.0.1:port` for one backend.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
    pki: Pki,
}

/// Extra `server`-block directives for a test (e.g. a short keep-alive).
#[derive(Default)]
struct NginxOptions {
    server_extra: &'static str,
}

fn nginx_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LLMHOP_TEST_NGINX") {
        return path.into();
    }
    // Debian puts it in /usr/sbin, which a non-root PATH often lacks.
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

impl Nginx {
    fn start(backend: SocketAddr) -> Nginx {
        Nginx::start_with(backend, NginxOptions::default())
    }

    fn start_with(backend: SocketAddr, options: NginxOptions) -> Nginx {
        let dir = fresh_temp_dir("nginx");
        let pki = make_pki(&dir);
        // nginx needs a fixed port in its config: take a free one from the
        // kernel, and try another if someone grabbed it in between.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let conf = nginx_conf(&dir, &pki, port, backend, &options);
            fs::write(dir.join("nginx.conf"), conf).unwrap();
            let mut child = spawn_nginx(&dir).unwrap_or_else(|e| {
                let _ = fs::remove_dir_all(&dir);
                panic!("{e}")
            });
            match wait_ready(&mut child, port, &dir) {
                Ok(()) => {
                    return Nginx {
                        child,
                        port,
                        dir,
                        pki,
                    }
                }
                Err(e) => last_error = e,
            }
            let _ = child.kill();
            let _ = child.wait();
            if !last_error.contains("Address already in use") {
                break;
            }
        }
        let _ = fs::remove_dir_all(&dir);
        panic!("nginx did not start: {last_error}");
    }

    fn stderr(&self) -> String {
        nginx_stderr(&self.dir)
    }

    /// `https://localhost:PORT` plus `path`.
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// The CA that signed nginx's certificate, for `SSL_CERT_FILE`.
    fn ca(&self) -> String {
        self.pki.ca.display().to_string()
    }

    /// One map per access-log line (see [`nginx_conf`] for the fields).
    fn access_log(&self) -> Vec<HashMap<String, String>> {
        fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(logfmt)
            .collect()
    }

    /// Waits (bounded) until nginx logged `n` requests and returns them.
    fn wait_access(&self, n: usize) -> Vec<HashMap<String, String>> {
        let logged = poll_until(WAIT, || self.access_log().len() >= n);
        let lines = self.access_log();
        assert!(
            logged,
            "nginx logged {} request(s), expected {n}; stderr: {}",
            lines.len(),
            self.stderr()
        );
        lines
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // By the child's PID, never by name.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// nginx in the foreground, its stderr to `dir/stderr.log`.
fn spawn_nginx(dir: &Path) -> Result<Child, String> {
    let stderr = fs::File::create(dir.join("stderr.log")).unwrap();
    let spawned = Command::new(nginx_binary())
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg("stderr")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn();
    spawned.map_err(|e| match e.kind() {
        ErrorKind::NotFound => format!(
            "nginx is not installed (looked for {}): these tests need it, CI runs `{INSTALL}`",
            nginx_binary().display()
        ),
        _ => format!("cannot spawn nginx: {e}"),
    })
}

/// Polls until nginx accepts on `port`, or fails with its stderr.
fn wait_ready(child: &mut Child, port: u16, dir: &Path) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("nginx exited ({status}): {}", nginx_stderr(dir)));
        }
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "nginx did not listen on {addr} within {WAIT:?}: {}",
                nginx_stderr(dir)
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn nginx_stderr(dir: &Path) -> String {
    fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config that needs no root and writes nothing outside `dir`:
/// foreground single process, pid file, logs and every temp path in `dir`.
fn nginx_conf(
    dir: &Path,
    pki: &Pki,
    port: u16,
    backend: SocketAddr,
    options: &NginxOptions,
) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    log_format llmhop 'conn=$connection reqs=$connection_requests proto=$ssl_protocol sni=$ssl_server_name alpn=$ssl_alpn_protocol host=$http_host method=$request_method uri=$request_uri status=$status';
    access_log {d}/access.log llmhop;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {extra}
        location / {{
            proxy_pass http://{backend};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"#,
        cert = pki.cert.display(),
        key = pki.key.display(),
        extra = options.server_extra,
    )
}

/// The router with `models`, trusting `ca` through `SSL_CERT_FILE`.
fn router_trusting(ca: &str, models: &[(&str, &str)]) -> Router {
    Router::start_with_env(config_for(models, json!({})), &[("SSL_CERT_FILE", ca)])
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn request_is_routed_through_https_with_the_https_authority_as_host() {
    let up = FakeUpstream::start(|r| Reply::json(format!(r#"{{"target":"{}"}}"#, r.target)));
    let nginx = Nginx::start(up.addr());
    let by_name = nginx.url("/api");
    let by_ip = format!("https://127.0.0.1:{}", nginx.port);
    let router = router_trusting(&nginx.ca(), &[("named", &by_name), ("ip", &by_ip)]);

    let body = r#"{"model":"named","messages":[{"role":"user","content":"hi"}]}"#;
    let response =
        Client::connect(router.addr()).exchange(&post_json("/v1/chat/completions", &[], body));
    assert_eq!(
        response.status,
        200,
        "{}\nrouter log:\n{}",
        lossy(&response.raw),
        router.logs()
    );
    assert_eq!(response.text(), r#"{"target":"/api/v1/chat/completions"}"#);

    let seen = up.wait_requests(1, WAIT);
    assert_eq!(
        seen[0].header("host"),
        Some(format!("localhost:{}", nginx.port).as_str()),
        "Host is the https url's authority"
    );
    assert_eq!(seen[0].body, body.as_bytes(), "body unchanged through TLS");

    let log = nginx.wait_access(1);
    assert_eq!(log[0]["sni"], "localhost", "SNI names the url's host");
    assert_eq!(log[0]["alpn"], "http/1.1", "ALPN offers http/1.1");
    assert!(log[0]["proto"].starts_with("TLSv1."), "{:?}", log[0]);
    assert_eq!(log[0]["host"], format!("localhost:{}", nginx.port));
    assert_eq!(log[0]["uri"], "/api/v1/chat/completions");

    // An IP-address url: certificate checked against the IP SAN, no SNI.
    let response = Client::connect(router.addr()).exchange(&chat("ip"));
    assert_eq!(
        response.status,
        200,
        "{}\nrouter log:\n{}",
        lossy(&response.raw),
        router.logs()
    );
    let seen = up.wait_requests(2, WAIT);
    assert_eq!(
        seen[1].header("host"),
        Some(format!("127.0.0.1:{}", nginx.port).as_str())
    );
}

#[test]
fn sse_streams_through_tls_event_by_event() {
    const EVENTS: usize = 4;
    let gap = Duration::from_millis(300);
    let events: Vec<String> = (1..=EVENTS)
        .map(|n| format!("data: {{\"n\":{n}}}\n\n"))
        .chain(["data: [DONE]\n\n".to_owned()])
        .collect();
    let script_events = events.clone();
    let up = FakeUpstream::start(move |_| Reply::sse(script_events.clone(), gap));
    let nginx = Nginx::start(up.addr());
    let router = router_trusting(&nginx.ca(), &[("m", &nginx.url(""))]);

    let mut client = Client::connect(router.addr());
    client.send(&post_json(
        "/v1/chat/completions",
        &[],
        r#"{"model":"m","stream":true,"messages":[]}"#,
    ));
    let mut seen_at = Vec::new();
    for n in 1..=EVENTS {
        let needle = format!("{{\"n\":{n}}}");
        assert!(
            client
                .read_until_contains(needle.as_bytes(), WAIT)
                .is_some(),
            "event {n} did not arrive; got: {}",
            lossy(client.buffered())
        );
        seen_at.push(Instant::now());
    }
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/event-stream")));
    assert_eq!(response.header("x-accel-buffering"), Some("no"));
    assert_eq!(response.text(), events.concat(), "stream bytes unchanged");

    let writes = up.sse_writes();
    assert_eq!(writes.len(), EVENTS + 1);
    for n in 1..EVENTS {
        assert!(
            seen_at[n - 1] < writes[n],
            "event {n} reached the client {:?} after the upstream wrote event {}: \
             the stream was buffered or coalesced on the way through TLS",
            seen_at[n - 1] - writes[n],
            n + 1
        );
    }
}

/// nginx's `$connection` of every logged request, checked to be one and the
/// same connection serving requests 1..=n in order.
fn assert_one_tls_connection(nginx: &Nginx, router: &Router, n: usize) {
    let log = nginx.wait_access(n);
    let conns: Vec<&str> = log.iter().map(|l| l["conn"].as_str()).collect();
    assert!(
        conns.iter().all(|c| *c == conns[0]),
        "all {n} requests must ride one pooled TLS connection; nginx saw connections {conns:?} \
         (nginx numbers its upstream connections too, so gaps are expected)\nrouter log:\n{}",
        router.logs()
    );
    let reqs: Vec<String> = log.iter().map(|l| l["reqs"].clone()).collect();
    let expected: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    assert_eq!(
        reqs, expected,
        "$connection_requests counts up on one connection"
    );
}

#[test]
fn sequential_requests_reuse_one_tls_connection() {
    const REQUESTS: usize = 5;
    let up = FakeUpstream::start(|r| {
        if r.json()["stream"] == true {
            Reply::sse(
                vec!["data: {}\n\n".into(), "data: [DONE]\n\n".into()],
                Duration::ZERO,
            )
        } else {
            Reply::json(r#"{"ok":true}"#)
        }
    });
    let nginx = Nginx::start(up.addr());
    let router = router_trusting(&nginx.ca(), &[("m", &nginx.url(""))]);

    // JSON and SSE responses alike leave the TLS connection reusable.
    let mut client = Client::connect(router.addr());
    for i in 0..REQUESTS {
        let body = format!(r#"{{"model":"m","stream":{}}}"#, i % 2 == 1);
        let response = client.exchange(&post_json("/v1/chat/completions", &[], &body));
        assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    }
    assert_one_tls_connection(&nginx, &router, REQUESTS);
}

/// Clients that send each request on a new connection once the previous
/// response arrived (curl in a loop, one-shot scripts) get the pooled TLS
/// connection too: the router must have returned it to the pool by the
/// time the client has the whole response.
#[test]
fn sequential_clients_on_fresh_connections_reuse_one_tls_connection() {
    const REQUESTS: usize = 10;
    let up = FakeUpstream::ok();
    let nginx = Nginx::start(up.addr());
    let router = router_trusting(&nginx.ca(), &[("m", &nginx.url(""))]);

    for _ in 0..REQUESTS {
        let response = Client::connect(router.addr()).exchange(&chat("m"));
        assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    }
    assert_one_tls_connection(&nginx, &router, REQUESTS);
}

#[test]
fn a_tls_connection_closed_by_the_server_while_pooled_does_not_cost_a_request() {
    let up = FakeUpstream::ok();
    let nginx = Nginx::start_with(
        up.addr(),
        NginxOptions {
            server_extra: "keepalive_timeout 300ms;",
        },
    );
    let router = router_trusting(&nginx.ca(), &[("m", &nginx.url(""))]);

    let first = Client::connect(router.addr()).exchange(&chat("m"));
    assert_eq!(first.status, 200);
    // The idle pause is the behaviour under test: nginx sends close_notify
    // and closes the pooled connection after its keep-alive timeout.
    std::thread::sleep(Duration::from_millis(800));
    let second = Client::connect(router.addr()).exchange(&chat("m"));
    assert_eq!(
        second.status,
        200,
        "a pooled TLS connection the server closed must not cost a request: {}\nrouter log:\n{}",
        lossy(&second.raw),
        router.logs()
    );
    let log = nginx.wait_access(2);
    assert_ne!(log[0]["conn"], log[1]["conn"], "a fresh TLS connection");
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn a_large_body_crosses_tls_unchanged() {
    let up = FakeUpstream::ok();
    let nginx = Nginx::start(up.addr());
    let router = router_trusting(&nginx.ca(), &[("m", &nginx.url(""))]);

    let filler = "x".repeat(3 * 1024 * 1024);
    let body = format!(r#"{{"model":"m","input":"{filler}"}}"#);
    let response =
        Client::connect(router.addr()).exchange(&post_json("/v1/embeddings", &[], &body));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    let seen = up.wait_requests(1, WAIT);
    assert_eq!(seen[0].body_len, body.len() as u64);
    assert!(seen[0].body == body.as_bytes(), "body bytes unchanged");
}

#[test]
fn an_untrusted_certificate_is_a_502_whose_log_says_why() {
    let up = FakeUpstream::ok();
    let nginx = Nginx::start(up.addr());
    // The router trusts an unrelated CA (and the bundled Mozilla roots):
    // nginx's certificate has an unknown issuer. Setting SSL_CERT_FILE
    // explicitly keeps the test independent of the environment's own.
    let other = nginx.pki.other_ca.display().to_string();
    let router = router_trusting(&other, &[("m", &nginx.url(""))]);

    let response = Client::connect(router.addr()).exchange(&chat("m"));
    response.assert_error(502);
    assert!(
        poll_until(WAIT, || router.logs().lines().any(|l| {
            l.contains(&format!("localhost:{}", nginx.port))
                && (l.contains("UnknownIssuer") || l.contains("certificate"))
        })),
        "the log line names the upstream and says the certificate is why:\n{}",
        router.logs()
    );
    assert!(
        !router.logs().contains("BEGIN CERTIFICATE"),
        "no certificate dumps in the log"
    );
    up.assert_untouched();
    assert!(
        nginx.access_log().is_empty(),
        "no request may cross an unverified connection"
    );
}

#[test]
fn a_stalled_tls_handshake_counts_against_the_connect_timeout() {
    // Accepts TCP (kernel backlog) but never answers the ClientHello.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://localhost:{}", silent.local_addr().unwrap().port());
    let mut config = config_for(&[("m", &url)], json!({}));
    config["timeouts"] = json!({ "connectSeconds": 1 });
    let router = Router::start(config);

    let started = Instant::now();
    let response = Client::connect(router.addr()).exchange(&chat("m"));
    let took = started.elapsed();
    response.assert_error(504);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "504 after the 1 s connect timeout, took {took:?}"
    );
    drop(silent);
}
