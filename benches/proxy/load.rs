//! The closed-loop load generator: `load SCENARIO TARGET [--smoke]
//! [--window-ms N] [--pids P,P..]` runs one measurement and prints it as
//! one JSON line.
//!
//! Each of the scenario's connections is kept alive and sends its next
//! request as soon as the previous response ended, alternating the target's
//! models. Every response is checked: status 200, `X-Upstream` naming the
//! upstream of the model asked for, and for event streams every event
//! (counted by its blank line). Only requests that started and ended inside
//! the measured window count; the proxy's CPU time and the upstream's
//! accept count are read at the window's edges, its peak RSS reset before
//! the warmup and read after the last response.
//!
//! Single-threaded on purpose: the orchestrator pins it, with the upstream,
//! to one core.

use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::filler::base64_filler;
use crate::wire::Wire;
use crate::{procfs, BodyKind, Scenario, Target, CONTROL_PORT, MODELS, UPSTREAMS};

/// Longest a single exchange may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest the generator waits for in-flight requests after the window.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// After this many errors a connection gives up.
const MAX_ERRORS_PER_CONN: u64 = 20;

/// What one connection measured.
#[derive(Default)]
struct Tally {
    /// Latency of each request inside the window, in ns.
    latency: Vec<u64>,
    /// Time to the first payload byte of each event stream, in ns.
    ttfc: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

struct Ctx {
    scenario: Scenario,
    target: Target,
    /// The whole request (head and body) per model index.
    requests: Vec<Vec<u8>>,
    t0: Instant,
    t1: Instant,
}

pub fn main(args: &[&str]) -> ExitCode {
    let (Some(scenario), Some(target)) = (
        args.first().and_then(|s| crate::scenario(s)),
        args.get(1).and_then(|t| crate::target(t)),
    ) else {
        eprintln!("usage: proxy load SCENARIO TARGET [--smoke] [--window-ms N] [--pids P,P..]");
        return ExitCode::FAILURE;
    };
    let mut scenario = scenario;
    let mut pids = Vec::new();
    let mut rest = args[2..].iter();
    while let Some(a) = rest.next() {
        match *a {
            "--smoke" => scenario = crate::smoke(scenario),
            // One slice of a sliced scenario (see `Scenario::slices`).
            "--window-ms" => match rest.next().and_then(|n| n.parse().ok()) {
                Some(ms) => scenario.duration_ms = ms,
                None => {
                    eprintln!("load: --window-ms needs a number of milliseconds");
                    return ExitCode::FAILURE;
                }
            },
            "--pids" => {
                pids = rest
                    .next()
                    .map(|p| p.split(',').filter_map(|x| x.parse().ok()).collect())
                    .unwrap_or_default()
            }
            other => {
                eprintln!("load: unknown argument {other}");
                return ExitCode::FAILURE;
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let line = local.block_on(&rt, measure(scenario, target, pids));
    println!("{line}");
    // In-flight stragglers past DRAIN_TIMEOUT are abandoned, not awaited.
    std::process::exit(0)
}

/// Bytes of one chat request for `model`, head included.
pub fn request(body: BodyKind, sse: Option<(u32, u64)>, model: &str) -> Vec<u8> {
    let stream = if sse.is_some() {
        r#","stream":true"#
    } else {
        ""
    };
    let json = match body {
        BodyKind::Small => format!(
            r#"{{"messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"Say hello in one short sentence."}}],"model":"{model}","max_tokens":16{stream}}}"#
        ),
        BodyKind::ModelLast(size) => {
            let pre = r#"{"messages":[{"role":"user","content":[{"type":"text","text":"What is in this image?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,"#;
            let post = format!(r#""}}}}]}}],"max_tokens":16{stream},"model":"{model}"}}"#);
            let mut s = String::with_capacity(size + 256);
            s.push_str(pre);
            s.push_str(&base64_filler(size.saturating_sub(pre.len() + post.len())));
            s.push_str(&post);
            s
        }
    };
    let sse_field = sse
        .map(|(n, gap)| format!("X-Sse: {n},{gap}\r\n"))
        .unwrap_or_default();
    let mut out = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: llmhop-bench\r\nAccept: application/json\r\nContent-Type: application/json\r\n{sse_field}Content-Length: {}\r\n\r\n",
        json.len()
    )
    .into_bytes();
    out.extend_from_slice(json.as_bytes());
    out
}

/// The proxy's CPU ticks and the upstream's (accepts, requests) now.
async fn snapshot(pids: &[u32]) -> (u64, u64, u64) {
    let cpu = pids.iter().map(|&p| procfs::cpu_ticks(p)).sum();
    let (accepts, requests) = upstream_stats().await.unwrap_or((0, 0));
    (cpu, accepts, requests)
}

/// `GET /stats` on the upstream's control port.
async fn upstream_stats() -> std::io::Result<(u64, u64)> {
    let mut wire = Wire::connect(CONTROL_PORT).await?;
    wire.write(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let head = wire
        .head()
        .await?
        .ok_or_else(|| std::io::Error::other("no stats"))?;
    let mut text = Vec::new();
    wire.body(&head, |d| text.extend_from_slice(d)).await?;
    let mut n = Vec::new();
    for part in String::from_utf8_lossy(&text).split_whitespace() {
        n.push(part.parse::<u64>().unwrap_or(0));
    }
    Ok((
        n.first().copied().unwrap_or(0),
        n.get(1).copied().unwrap_or(0),
    ))
}

async fn measure(scenario: Scenario, target: Target, pids: Vec<u32>) -> String {
    for &p in &pids {
        procfs::reset_peak(p);
    }
    let requests = MODELS
        .iter()
        .map(|m| request(scenario.body, scenario.sse, m))
        .collect();
    let batch = scenario.per_conn.is_some();
    let start = Instant::now();
    let t0 = start + Duration::from_millis(scenario.warmup_ms);
    let t1 = t0 + Duration::from_millis(scenario.duration_ms);
    let ctx = Rc::new(Ctx {
        scenario,
        target,
        requests,
        t0,
        t1,
    });

    let before = Rc::new(RefCell::new((0, 0, 0)));
    let after = Rc::new(RefCell::new((0, 0, 0)));
    if !batch {
        let (pids, before, after) = (pids.clone(), Rc::clone(&before), Rc::clone(&after));
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until(t0.into()).await;
            *before.borrow_mut() = snapshot(&pids).await;
            tokio::time::sleep_until(t1.into()).await;
            *after.borrow_mut() = snapshot(&pids).await;
        });
    } else {
        *before.borrow_mut() = snapshot(&pids).await;
    }

    let last_end = Rc::new(Cell::new(start));
    let tasks: Vec<_> = (0..scenario.conns)
        .map(|i| tokio::task::spawn_local(connection(Rc::clone(&ctx), i, Rc::clone(&last_end))))
        .collect();
    let mut total = Tally::default();
    let drain_deadline = t1 + DRAIN_TIMEOUT;
    for t in tasks {
        match tokio::time::timeout_at(drain_deadline.into(), t).await {
            Ok(Ok(tally)) => {
                total.latency.extend(tally.latency);
                total.ttfc.extend(tally.ttfc);
                total.errors += tally.errors;
                if total.first_error.is_none() {
                    total.first_error = tally.first_error;
                }
            }
            _ => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert_with(|| "connection hung".into());
            }
        }
    }
    let window = if batch {
        *after.borrow_mut() = snapshot(&pids).await;
        last_end.get() - start
    } else {
        // The snapshot task has run by now (t1 is past).
        tokio::time::sleep(Duration::from_millis(5)).await;
        t1 - t0
    };
    let peak_kib: u64 = pids.iter().map(|&p| procfs::vm_kib(p, "VmHWM")).sum();
    let (b, a) = (*before.borrow(), *after.borrow());
    let tck = procfs::clk_tck();
    let done = total.latency.len() as f64;
    let cpu_s = a.0.saturating_sub(b.0) as f64 / tck;
    let accepts = a.1.saturating_sub(b.1) as f64;
    let per10k = |x: f64| if done > 0.0 { x / done * 1e4 } else { 0.0 };
    let ms = |v: Option<u64>| v.map(|ns| ns as f64 / 1e6);
    let has_pids = !pids.is_empty();
    serde_json::json!({
        "scenario": scenario.name,
        "target": target.name,
        "errors": total.errors,
        "first_error": total.first_error,
        "requests": total.latency.len(),
        "secs": window.as_secs_f64(),
        "rps": done / window.as_secs_f64().max(1e-9),
        "p50_ms": ms(percentile(&mut total.latency, 0.50)),
        "p99_ms": ms(percentile(&mut total.latency, 0.99)),
        "ttfc_p50_ms": ms(percentile(&mut total.ttfc, 0.50)),
        "ttfc_p99_ms": ms(percentile(&mut total.ttfc, 0.99)),
        "cpu_s_per_10k": has_pids.then(|| per10k(cpu_s)),
        "peak_mib": has_pids.then(|| peak_kib as f64 / 1024.0),
        // Going direct, the generator's own connections are the accepts.
        "new_conns_per_10k": has_pids.then(|| per10k(accepts)),
        "upstream_requests": a.2.saturating_sub(b.2),
    })
    .to_string()
}

/// The `q` quantile (nearest rank) of `v`, sorting it.
fn percentile(v: &mut [u64], q: f64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

/// One keep-alive client connection (one per model when going direct).
async fn connection(ctx: Rc<Ctx>, i: usize, last_end: Rc<Cell<Instant>>) -> Tally {
    let mut tally = Tally::default();
    let models = ctx.target.models;
    let direct = ctx.target.port.is_none();
    let mut wires: Vec<Option<Wire>> = (0..UPSTREAMS.len()).map(|_| None).collect();
    if direct {
        // Open every connection now, so none opens inside the window.
        for &m in models {
            wires[m] = Wire::connect(UPSTREAMS[m].1).await.ok();
        }
    }
    let mut sent = 0u32;
    // Each connection keeps to one model, half of them to each: the number
    // of requests in flight to one upstream is then fixed, and the steady
    // state the pool is judged in is reached in the warm-up. (Alternating
    // per request, it wanders around half the connections, and a pool
    // grows, slowly, to the peaks of that walk: 0.1-0.6 new connections
    // per 10k in the window after a 1.5 s warm-up, 0 once warm for 5 s.)
    let m = models[i % models.len()];
    loop {
        if ctx.scenario.per_conn.is_some_and(|n| sent >= n) || Instant::now() >= ctx.t1 {
            break;
        }
        sent += 1;
        let slot = if direct { m } else { 0 };
        let port = ctx.target.port.unwrap_or(UPSTREAMS[m].1);
        let start = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if wires[slot].is_none() {
                wires[slot] = Some(Wire::connect(port).await?);
            }
            let wire = wires[slot].as_mut().expect("connected above");
            exchange(wire, &ctx.requests[m], UPSTREAMS[m].0, ctx.scenario.sse).await
        })
        .await;
        let end = Instant::now();
        match result {
            Ok(Ok(first)) => {
                let batch = ctx.scenario.per_conn.is_some();
                if batch || (start >= ctx.t0 && end <= ctx.t1) {
                    tally.latency.push((end - start).as_nanos() as u64);
                    if let Some(f) = first {
                        tally.ttfc.push((f - start).as_nanos() as u64);
                    }
                }
                if end > last_end.get() {
                    last_end.set(end);
                }
            }
            Ok(Err(e)) => fail(&mut tally, &mut wires[slot], e.to_string()),
            Err(_) => fail(&mut tally, &mut wires[slot], "timed out".into()),
        }
        if tally.errors >= MAX_ERRORS_PER_CONN {
            break;
        }
    }
    tally
}

fn fail(tally: &mut Tally, wire: &mut Option<Wire>, what: String) {
    tally.errors += 1;
    tally.first_error.get_or_insert(what);
    *wire = None;
}

/// Sends one request and reads its response, checking it. Returns when the
/// first payload byte of an event stream arrived.
async fn exchange(
    wire: &mut Wire,
    request: &[u8],
    expect_upstream: &str,
    sse: Option<(u32, u64)>,
) -> std::io::Result<Option<Instant>> {
    wire.write(request).await?;
    let head = wire
        .head()
        .await?
        .ok_or_else(|| std::io::Error::other("connection closed before a response"))?;
    if head.status != 200 {
        return Err(std::io::Error::other(format!("status {}", head.status)));
    }
    if head.upstream != expect_upstream {
        return Err(std::io::Error::other(format!(
            "answered by {:?}, expected {expect_upstream}",
            head.upstream
        )));
    }
    let mut first = None;
    let mut blank_lines = 0u32;
    let mut prev_nl = false;
    wire.body(&head, |d| {
        if !d.is_empty() {
            first.get_or_insert_with(Instant::now);
        }
        for &b in d {
            if b == b'\n' {
                if prev_nl {
                    blank_lines += 1;
                }
                prev_nl = true;
            } else {
                prev_nl = false;
            }
        }
    })
    .await?;
    if let Some((chunks, _)) = sse {
        // Every event and the final `[DONE]` end with a blank line.
        if blank_lines != chunks + 1 {
            return Err(std::io::Error::other(format!(
                "event stream had {blank_lines} events, expected {}",
                chunks + 1
            )));
        }
        if head.close {
            return Err(std::io::Error::other(
                "stream response closed the connection",
            ));
        }
        return Ok(first);
    }
    if head.close {
        return Err(std::io::Error::other("response closed the connection"));
    }
    Ok(None)
}
