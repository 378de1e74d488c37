//! Bounded soak of the release router (issue 4, point 6). Not part of the
//! test run: `scripts/soak.sh` builds the release binary and runs this.
//!
//! ```text
//! cargo run --release --example soak -- --router target/release/llmhop \
//!     [--requests 200000] [--concurrency 256]
//! ```
//!
//! Starts three fake upstreams on loopback (in this process, on tokio), the
//! router as a child process with one model on each, and `concurrency`
//! clients that send `requests` requests in all, on keep-alive connections
//! (a new one every 100 requests, or after a disconnect):
//!
//! - 80 % small chat requests (`chat`), answered with a small JSON body;
//! - 3 % 1 MiB request bodies (`bulk`), answered with the body's length and
//!   FNV-1a hash, which the client checks;
//! - 17 % streamed responses (`stream`, 20 SSE events 2 ms apart), read to
//!   the end; one in five of those clients hangs up after 3 events.
//!
//! Every request carries `X-Soak-Id`; the upstream echoes it, so a response
//! relayed to the wrong client (desync) is a failure. Printed at the end:
//! requests, failures (and those the upstream had answered: must be 0),
//! the router's fds before and after (leaked = after - before - upstream
//! connections still pooled: must be 0), its VmRSS after warm-up and at the
//! end, and a few samples in between.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Bytes in a `bulk` request body.
const BULK_BYTES: usize = 1024 * 1024;
/// SSE events in a `stream` response, and the pause between them.
const EVENTS: usize = 20;
const EVENT_GAP: Duration = Duration::from_millis(2);
/// A streaming client that hangs up does so after this many events.
const HANG_UP_AFTER: usize = 3;
/// Requests on one client connection before it is replaced.
const REQUESTS_PER_CONN: usize = 100;
/// Bound on any one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

struct Args {
    router: PathBuf,
    requests: usize,
    concurrency: usize,
}

fn args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut router = PathBuf::from("target/release/llmhop");
    let mut requests = 200_000;
    let mut concurrency = 256;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("router") => router = parser.value()?.into(),
            Long("requests") => requests = parser.value()?.parse()?,
            Long("concurrency") => concurrency = parser.value()?.parse()?,
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Args {
        router,
        requests,
        concurrency,
    })
}

/// What the upstreams saw.
#[derive(Default)]
struct UpstreamStats {
    /// Connections open right now.
    open: AtomicI64,
    accepted: AtomicU64,
    /// Streams whose client went away before the end (write failed).
    cancelled: AtomicU64,
}

/// Per request id: the upstream answered it.
struct Answered(Vec<AtomicBool>);

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Reads one request: head lines, then a Content-Length body. `None` at EOF.
async fn read_request<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
) -> Option<(HashMap<String, String>, Vec<u8>)> {
    let mut headers = HashMap::new();
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if first {
            first = false;
            continue;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.ok()?;
    Some((headers, body))
}

/// One fake upstream: answers by the model it serves.
async fn upstream(
    listener: TcpListener,
    kind: &'static str,
    stats: Arc<UpstreamStats>,
    answered: Arc<Answered>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let (stats, answered) = (Arc::clone(&stats), Arc::clone(&answered));
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            while let Some((headers, body)) = read_request(&mut read).await {
                let id: usize = headers
                    .get("x-soak-id")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(usize::MAX);
                if let Some(flag) = answered.0.get(id) {
                    flag.store(true, Ordering::Relaxed);
                }
                let ok = match kind {
                    "stream" => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
                        let mut ok = write.write_all(head.as_bytes()).await.is_ok();
                        for i in 0..EVENTS {
                            if !ok {
                                break;
                            }
                            tokio::time::sleep(EVENT_GAP).await;
                            let event = format!("data: {{\"id\":{id},\"i\":{i}}}\n\n");
                            let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                            ok = write.write_all(chunk.as_bytes()).await.is_ok();
                        }
                        ok = ok && write.write_all(b"0\r\n\r\n").await.is_ok();
                        if !ok {
                            stats.cancelled.fetch_add(1, Ordering::Relaxed);
                        }
                        ok
                    }
                    _ => {
                        let json = if kind == "bulk" {
                            format!(
                                "{{\"id\":{id},\"len\":{},\"hash\":{}}}",
                                body.len(),
                                fnv(&body)
                            )
                        } else {
                            format!("{{\"id\":{id}}}")
                        };
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                            json.len()
                        );
                        write.write_all(reply.as_bytes()).await.is_ok()
                    }
                };
                if !ok {
                    break;
                }
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// A client connection to the router with its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A response as the client read it.
struct Response {
    status: u16,
    body: Vec<u8>,
    /// Complete SSE events seen (streamed responses).
    events: usize,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    async fn fill(&mut self) -> Result<(), String> {
        self.buf.reserve(64 * 1024);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err("router closed the connection".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// Reads one response; with `stop_after`, returns after that many
    /// chunks of a chunked body (the caller then hangs up).
    async fn response(&mut self, stop_after: Option<usize>) -> Result<Response, String> {
        let (status, len, chunked, head_len) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut fields);
            match parsed
                .parse(&self.buf)
                .map_err(|e| format!("response head: {e}"))?
            {
                httparse::Status::Complete(n) => {
                    let mut len = None;
                    let mut chunked = false;
                    for f in parsed.headers.iter() {
                        if f.name.eq_ignore_ascii_case("content-length") {
                            len = std::str::from_utf8(f.value)
                                .ok()
                                .and_then(|v| v.parse().ok());
                        } else if f.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = true;
                        }
                    }
                    break (parsed.code.unwrap_or(0), len, chunked, n);
                }
                httparse::Status::Partial => self.fill().await?,
            }
        };
        self.buf.drain(..head_len);
        let mut response = Response {
            status,
            body: Vec::new(),
            events: 0,
        };
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break at;
                    }
                    self.fill().await?;
                };
                let size = std::str::from_utf8(&self.buf[..line_end])
                    .ok()
                    .and_then(|s| usize::from_str_radix(s, 16).ok())
                    .ok_or("bad chunk size from the router")?;
                while self.buf.len() < line_end + 2 + size + 2 {
                    self.fill().await?;
                }
                if size == 0 {
                    self.buf.drain(..line_end + 4);
                    return Ok(response);
                }
                let data = &self.buf[line_end + 2..line_end + 2 + size];
                response.events += data.windows(2).filter(|w| w == b"\n\n").count();
                response.body.extend_from_slice(data);
                self.buf.drain(..line_end + 2 + size + 2);
                if stop_after.is_some_and(|n| response.events >= n) {
                    return Ok(response);
                }
            }
        }
        let len = len.ok_or("response without length")?;
        while self.buf.len() < len {
            self.fill().await?;
        }
        response.body = self.buf.drain(..len).collect();
        Ok(response)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Small,
    Bulk,
    Stream { hang_up: bool },
}

fn kind_of(n: usize) -> Kind {
    // A fixed pattern over 100 requests: 80 small, 3 bulk, 17 streamed
    // (the first 3 of which hang up, ~18 %).
    match n % 100 {
        0..=79 => Kind::Small,
        80..=82 => Kind::Bulk,
        83..=85 => Kind::Stream { hang_up: true },
        _ => Kind::Stream { hang_up: false },
    }
}

/// One request through `conn`; `Ok(false)`: done, but the connection must
/// be replaced (the client hung up on purpose).
async fn one(conn: &mut Conn, id: usize, bulk: &str) -> Result<bool, String> {
    let kind = kind_of(id);
    let (model, path, body) = match kind {
        Kind::Small => (
            "chat",
            "/v1/chat/completions",
            format!(r#"{{"model":"chat","messages":[{{"role":"user","content":"hello {id}"}}]}}"#),
        ),
        Kind::Bulk => ("bulk", "/v1/embeddings", bulk.to_owned()),
        Kind::Stream { .. } => (
            "stream",
            "/v1/chat/completions",
            r#"{"model":"stream","stream":true}"#.to_owned(),
        ),
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\nX-Soak-Id: {id}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.stream
        .write_all(&[head.as_bytes(), body.as_bytes()].concat())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let stop = match kind {
        Kind::Stream { hang_up: true } => Some(HANG_UP_AFTER),
        _ => None,
    };
    let r = conn.response(stop).await?;
    if r.status != 200 {
        return Err(format!(
            "{model}: status {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    let text = String::from_utf8_lossy(&r.body);
    match kind {
        Kind::Small => {
            if text != format!("{{\"id\":{id}}}") {
                return Err(format!("chat {id}: wrong body {text}"));
            }
        }
        Kind::Bulk => {
            let want = format!(
                "{{\"id\":{id},\"len\":{},\"hash\":{}}}",
                bulk.len(),
                fnv(bulk.as_bytes())
            );
            if text != want {
                return Err(format!("bulk {id}: got {text}, want {want}"));
            }
        }
        Kind::Stream { hang_up } => {
            let want = if hang_up { HANG_UP_AFTER } else { EVENTS };
            if r.events < want || !text.starts_with(&format!("data: {{\"id\":{id},\"i\":0}}")) {
                return Err(format!("stream {id}: {} events: {text}", r.events));
            }
            if hang_up {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(soak(args))
}

async fn soak(args: Args) -> ExitCode {
    let stats = Arc::new(UpstreamStats::default());
    let answered = Arc::new(Answered(
        (0..args.requests).map(|_| AtomicBool::new(false)).collect(),
    ));
    let mut models = serde_json::Map::new();
    for kind in ["chat", "bulk", "stream"] {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let url = format!("http://{}", listener.local_addr().unwrap());
        models.insert(kind.into(), serde_json::json!({ "url": url }));
        tokio::spawn(upstream(
            listener,
            kind,
            Arc::clone(&stats),
            Arc::clone(&answered),
        ));
    }
    let dir = std::env::temp_dir().join(format!("llmhop-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({ "listen": "127.0.0.1:0", "models": models }).to_string(),
    )
    .unwrap();
    let log = dir.join("stderr.log");
    let mut child = Command::new(&args.router)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", args.router.display()));
    let pid = child.id();
    let start = Instant::now();
    let addr: std::net::SocketAddr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(a) = text
            .lines()
            .filter(|l| l.contains("msg=listening"))
            .find_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("listen=")))
            .and_then(|v| v.trim_matches('"').split(',').next()?.parse().ok())
        {
            break a;
        }
        if start.elapsed() > Duration::from_secs(10) || matches!(child.try_wait(), Ok(Some(_))) {
            eprintln!("soak: the router did not start:\n{text}");
            let _ = child.kill();
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let fds_before = fd_count(pid);
    let rss_start = proc_status_kib(pid, "VmRSS");
    println!(
        "soak: router pid {pid} on {addr}; {} requests, concurrency {}; fds {fds_before}, VmRSS {rss_start} KiB at start",
        args.requests, args.concurrency
    );

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<(usize, String)>::new()));
    let bulk = Arc::new(format!(
        r#"{{"model":"bulk","input":"{}"}}"#,
        "b".repeat(BULK_BYTES - 30)
    ));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (next, done, failures, bulk) = (
            Arc::clone(&next),
            Arc::clone(&done),
            Arc::clone(&failures),
            Arc::clone(&bulk),
        );
        let total = args.requests;
        workers.push(tokio::spawn(async move {
            let mut conn: Option<Conn> = None;
            let mut used = 0;
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= total {
                    return;
                }
                if conn.is_none() || used >= REQUESTS_PER_CONN {
                    match Conn::open(addr).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            failures.lock().unwrap().push((id, e));
                            done.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                    used = 0;
                }
                used += 1;
                let c = conn.as_mut().unwrap();
                let result = tokio::time::timeout(REQUEST_TIMEOUT, one(c, id, &bulk)).await;
                match result {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => conn = None,
                    Ok(Err(e)) => {
                        failures.lock().unwrap().push((id, e));
                        conn = None;
                    }
                    Err(_) => {
                        failures.lock().unwrap().push((id, "timed out".into()));
                        conn = None;
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Samples of progress and memory; "after warm-up" is at 10 %.
    let mut samples = Vec::new();
    let mut rss_warm = None;
    let mut next_mark = 1;
    while done.load(Ordering::Relaxed) < args.requests {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let d = done.load(Ordering::Relaxed);
        if d * 10 >= next_mark * args.requests && next_mark <= 10 {
            let rss = proc_status_kib(pid, "VmRSS");
            if next_mark == 1 {
                rss_warm = Some(rss);
            }
            samples.push((d, rss, fd_count(pid), start.elapsed()));
            println!(
                "soak: {d:>7} done, {:>5} failed, VmRSS {rss} KiB, fds {}, {:.1}s",
                failures.lock().unwrap().len(),
                fd_count(pid),
                start.elapsed().as_secs_f64()
            );
            next_mark += 1;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            eprintln!("soak: the router exited during the run");
            return ExitCode::FAILURE;
        }
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = start.elapsed();
    // Client connections are closed now; let the router notice.
    let settle = Instant::now();
    let mut fds_after = fd_count(pid);
    let mut pooled = stats.open.load(Ordering::Relaxed);
    while settle.elapsed() < Duration::from_secs(5) {
        fds_after = fd_count(pid);
        pooled = stats.open.load(Ordering::Relaxed);
        if fds_after as i64 - fds_before as i64 - pooled <= 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_end = proc_status_kib(pid, "VmRSS");
    let hwm = proc_status_kib(pid, "VmHWM");
    let failures = failures.lock().unwrap();
    let answered_failures = failures
        .iter()
        .filter(|(id, _)| answered.0[*id].load(Ordering::Relaxed))
        .count();
    let leaked = fds_after as i64 - fds_before as i64 - pooled;
    let access_lines = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" status="))
        .count();
    println!("soak: ---- results ----");
    println!("requests:              {}", args.requests);
    println!(
        "duration:              {:.1} s ({:.0} req/s)",
        elapsed.as_secs_f64(),
        args.requests as f64 / elapsed.as_secs_f64()
    );
    println!("failures:              {}", failures.len());
    println!("failures upstream had answered: {answered_failures}");
    println!(
        "streams cut by client (seen upstream): {}",
        stats.cancelled.load(Ordering::Relaxed)
    );
    println!(
        "upstream connections:  {} accepted, {pooled} still open (pooled)",
        stats.accepted.load(Ordering::Relaxed)
    );
    println!("router fds:            {fds_before} before, {fds_after} after ({pooled} pooled) -> leaked {leaked}");
    println!(
        "router VmRSS:          {rss_start} KiB at start, {} KiB after warm-up (10 %), {rss_end} KiB at the end; VmHWM {hwm} KiB",
        rss_warm.unwrap_or(0)
    );
    println!("access-log lines:      {access_lines}");
    for (id, why) in failures.iter().take(10) {
        println!("failure: request {id}: {why}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    if answered_failures == 0 && leaked <= 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
