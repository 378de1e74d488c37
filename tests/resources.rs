//! Resources (issue 4, point 5).
//!
//! - Out of file descriptors: the router runs under `ulimit -n 64`; the
//!   test opens connections until `accept` fails. The accept loop must
//!   back off (its CPU time stays low), log `accept failed` about once a
//!   second (not a flood), and serve again once descriptors free up.
//! - After a burst of requests, the router's descriptors return to their
//!   baseline: exactly, when the upstream closes its connections; bounded
//!   by the burst's concurrency (pooled, reusable upstream connections)
//!   and flat across bursts, when it keeps them alive.
//!
//! Descriptors and CPU time come from `/proc/<pid>/fd` and
//! `/proc/<pid>/stat`.

mod support;

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// The router's open-file limit in the exhaustion test.
const NOFILE: u32 = 64;

fn accept_failures(router: &Router) -> usize {
    router
        .logs()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count()
}

#[test]
fn running_out_of_descriptors_backs_off_logs_once_a_second_and_recovers() {
    let upstream = FakeUpstream::ok();
    let router =
        Router::start_with_nofile(config_for(&[("m", &upstream.url())], json!({})), NOFILE);
    let pid = router.pid();
    let r = Client::connect(router.addr()).exchange(&chat("m"));
    assert_eq!(r.status, 200);
    let baseline = fd_count(pid);
    println!("router pid {pid}: {baseline} fds at baseline, limit {NOFILE}");

    // Connect until the router cannot accept any more. The kernel still
    // completes handshakes into the listen backlog, so connects succeed;
    // the router's accept fails with EMFILE.
    let mut held: Vec<TcpStream> = Vec::new();
    let exhausted = poll_until(Duration::from_secs(10), || {
        for _ in 0..8 {
            held.push(TcpStream::connect(router.addr()).expect("connect"));
        }
        accept_failures(&router) > 0
    });
    assert!(
        exhausted,
        "no `accept failed` logged with {} connections open and ulimit -n {NOFILE}; fds {}",
        held.len(),
        fd_count(pid)
    );
    let first_log = router
        .logs()
        .lines()
        .find(|l| l.contains("accept failed"))
        .unwrap_or_default()
        .to_owned();
    println!("{} connections open; {first_log}", held.len());
    assert!(
        first_log.contains("Too many open files") || first_log.contains("os error 24"),
        "the log says why: {first_log}"
    );

    // While exhausted: about one log line a second, and no spinning.
    let window = Duration::from_secs(3);
    let logs_before = accept_failures(&router);
    let cpu_before = cpu_time(pid);
    let start = Instant::now();
    thread::sleep(window);
    let elapsed = start.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    let lines = accept_failures(&router) - logs_before;
    println!("exhausted for {elapsed:?}: {lines} `accept failed` line(s), router CPU time {cpu:?}");
    assert!(
        (1..=5).contains(&lines),
        "`accept failed` must be logged about once a second: {lines} lines in {elapsed:?}"
    );
    assert!(
        cpu < Duration::from_millis(300),
        "the accept loop spins: {cpu:?} of CPU in {elapsed:?}"
    );

    // Free the descriptors: the router serves again, and its descriptors
    // come back to the baseline.
    drop(held);
    let served = poll_until(Duration::from_secs(10), || {
        let mut c = Client::connect(router.addr());
        c.send(&chat("m"));
        c.try_read_response(Duration::from_secs(2))
            .is_ok_and(|r| r.status == 200)
    });
    assert!(
        served,
        "the router must serve again once descriptors are free"
    );
    assert!(
        poll_until(Duration::from_secs(5), || fd_count(pid) <= baseline + 1),
        "router fds {} after recovery, baseline {baseline}",
        fd_count(pid)
    );
}

/// Runs `total` requests, `concurrency` at a time, each on a new client
/// connection.
fn burst(router: &Router, model: &str, total: usize, concurrency: usize) {
    let per = total / concurrency;
    thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| {
                for _ in 0..per {
                    let r = Client::connect(router.addr()).exchange(&chat(model));
                    assert_eq!(r.status, 200, "{}", lossy(&r.raw));
                }
            });
        }
    });
}

#[test]
fn descriptors_return_to_baseline_after_a_burst() {
    // Answers with `Connection: close`: the router cannot pool these.
    let closing = FakeUpstream::start(|_| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                .to_vec(),
        )
    });
    let keeping = FakeUpstream::ok();
    let router = Router::start(config_for(
        &[("close", &closing.url()), ("keep", &keeping.url())],
        json!({}),
    ));
    let pid = router.pid();
    let rss_start = router.proc_status_kib("VmRSS");
    let baseline = fd_count(pid);

    burst(&router, "close", 2000, 32);
    let settled = poll_until(Duration::from_secs(5), || fd_count(pid) == baseline);
    println!(
        "after 2000 requests (upstream closes): {} fds, baseline {baseline}",
        fd_count(pid)
    );
    assert!(
        settled,
        "fds {} after the burst, baseline {baseline}",
        fd_count(pid)
    );

    // Keep-alive upstream: the pool keeps at most one connection per
    // concurrent request, and a second burst reuses them.
    const CONCURRENCY: usize = 32;
    burst(&router, "keep", 2000, CONCURRENCY);
    poll_until(Duration::from_secs(2), || {
        fd_count(pid) <= baseline + CONCURRENCY
    });
    let after_first = fd_count(pid);
    burst(&router, "keep", 2000, CONCURRENCY);
    poll_until(Duration::from_secs(2), || fd_count(pid) <= after_first);
    let after_second = fd_count(pid);
    let rss_end = router.proc_status_kib("VmRSS");
    println!(
        "keep-alive upstream: fds {after_first} after burst 1, {after_second} after burst 2 (baseline {baseline}); upstream connections {}; VmRSS {rss_start} -> {rss_end} KiB",
        keeping.accepted()
    );
    assert!(
        after_first <= baseline + CONCURRENCY,
        "{after_first} fds: more than one pooled connection per concurrent request"
    );
    assert!(
        after_second <= after_first,
        "fds grew across identical bursts: {after_first} -> {after_second}"
    );
    assert!(
        keeping.accepted() <= 2 * CONCURRENCY,
        "{} upstream connections for 4000 requests at concurrency {CONCURRENCY}: the pool is not reused",
        keeping.accepted()
    );
}
