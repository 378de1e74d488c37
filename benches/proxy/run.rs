//! The orchestrator: starts the fake upstream once, then per run starts
//! every proxy fresh (idle memory read after startup), runs each scenario
//! against each target in an order rotated per run (A B C D, B C D A, ...,
//! so no target always goes first), stops the proxies, and finally prints
//! medians over runs with ratios to nginx and HAProxy taken within a run.
//!
//! Pinning (when the host has two cores or more): proxies on core 0, the
//! upstream and the generator on core 1. The `llmhop-2core` figure runs an
//! unpinned llmhop (one runtime worker per core) with the upstream and the
//! generator unpinned too.
//!
//! Owns every process it starts and ends each one by its PID; anything left
//! running when it returns or panics is killed by [`Procs`]'s `Drop`.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{procfs, Scenario, CONTROL_PORT, SCENARIOS, UPSTREAMS};

/// Time allowed for a started process to open its port.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a generator may run beyond its scenario's own timing before it is
/// killed.
const LOAD_SLACK: Duration = Duration::from_secs(90);

/// Time a proxy gets to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Settling time before the idle memory is read, after the port opened.
const IDLE_SETTLE: Duration = Duration::from_millis(500);

/// The file descriptor limit asked for every process started (500 open
/// streams need ~1000 descriptors in a proxy).
const NOFILE: u32 = 65536;

/// Niceness of every process started (only root may go below 0; others
/// keep their own). The same for all targets.
const NICE: i32 = -15;

struct Options {
    smoke: bool,
    runs: usize,
    scenarios: Vec<Scenario>,
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut o = Options {
        smoke: false,
        runs: 0,
        scenarios: SCENARIOS.to_vec(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--smoke" => o.smoke = true,
            "--runs" => {
                o.runs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--runs needs a positive number")?
            }
            "--scenarios" => {
                let list = it.next().ok_or("--scenarios needs a list")?;
                o.scenarios = list
                    .split(',')
                    .map(|s| crate::scenario(s).ok_or(format!("unknown scenario {s}")))
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => {
                return Err("usage: proxy [--smoke] [--runs N] [--scenarios a,b,..]".into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.runs == 0 {
        o.runs = if o.smoke { 1 } else { 3 };
    }
    if o.smoke {
        o.scenarios = o.scenarios.into_iter().map(crate::smoke).collect();
    }
    Ok(o)
}

/// A process this orchestrator started, ended by PID.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The PIDs whose CPU and memory count for this proxy: nginx's master
    /// and its workers, else the process itself.
    fn pids(&self) -> Vec<u32> {
        let mut v = vec![self.pid()];
        v.extend(procfs::children(self.pid()));
        v
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench: {} did not stop on SIGTERM, killing", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every process started and still running; stopped on drop.
#[derive(Default)]
struct Procs(Vec<Proc>);

impl Procs {
    fn stop_all(&mut self) {
        for p in self.0.iter_mut().rev() {
            p.stop();
        }
        self.0.clear();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A command under `sh` raising the descriptor limit and the priority
/// (as root: other work on the host, such as compiles, then delays the
/// measured processes less), pinned to `cpus` when given.
fn command(cpus: Option<&str>, program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "ulimit -n {NOFILE} 2>/dev/null; renice -n {NICE} $$ >/dev/null 2>&1; exec \"$@\""
        ))
        .arg("sh");
    if let Some(cpus) = cpus {
        c.args(["taskset", "-c", cpus]);
    }
    c.arg(program).args(args);
    c
}

fn wait_port(port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status} before listening on {port}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(format!("not listening on {port} after {START_TIMEOUT:?}"))
}

fn start(
    procs: &mut Procs,
    name: &'static str,
    mut cmd: Command,
    port: u16,
    log: &Path,
) -> Result<(), String> {
    if TcpStream::connect(("127.0.0.1", port)).is_ok() {
        return Err(format!("{name}: port {port} is already in use"));
    }
    let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{name}: {e}"))?;
    if let Err(e) = wait_port(port, &mut child) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{name}: {e}"));
    }
    procs.0.push(Proc { name, child });
    Ok(())
}

/// Runs a generator; its last stdout line, or why there is none.
fn run_load(mut cmd: Command, limit: Duration) -> Result<Value, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = child.stdout.take().expect("piped");
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let text = reader.join().unwrap_or_default();
    match status {
        None => Err(format!("generator killed after {limit:?}")),
        Some(s) if !s.success() => Err(format!("generator failed: {s}")),
        Some(_) => text
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| "generator printed no result".into()),
    }
}

fn set_affinity(pid: u32, cpus: &str) {
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status();
}

pub fn main(args: &[&str]) -> ExitCode {
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match bench(&opts) {
        Ok(ok) if ok => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Runs everything; `Ok(false)` when a measurement had errors.
fn bench(o: &Opts) -> Result<bool, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let llmhop = std::env::var_os("LLMHOP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/llmhop"));
    if !llmhop.is_file() {
        return Err(format!(
            "{} missing: cargo build --release first",
            llmhop.display()
        ));
    }
    let static_bin = std::env::var_os("LLMHOP_STATIC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/x86_64-unknown-linux-musl/release/llmhop"));
    let floor_bin = std::env::var_os("LLMHOP_FLOOR_BIN").map(PathBuf::from);
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let pin = cores >= 2;
    let (proxy_cpu, load_cpu) = if pin {
        (Some("0"), Some("1"))
    } else {
        eprintln!("bench: fewer than 2 cores, nothing is pinned");
        (None, None)
    };
    let (nginx, haproxy) = if o.smoke {
        (None, None)
    } else {
        (
            Some(which("nginx").ok_or("nginx not installed (scripts/bench.sh installs it)")?),
            Some(which("haproxy").ok_or("haproxy not installed (scripts/bench.sh installs it)")?),
        )
    };
    let work = std::env::temp_dir().join(format!("llmhop-bench.{}", std::process::id()));
    std::fs::create_dir_all(work.join("nginx/tmp")).map_err(|e| e.to_string())?;
    let bench_dir = root.join("benches");
    let conf = |f: &str| bench_dir.join(f).display().to_string();
    // Measured idle only, for their memory, when built (scripts/bench.sh
    // builds both): the static musl binary the container image ships, and
    // a bare tokio accept loop built like llmhop (benches/floor.rs), the
    // floor of llmhop's idle memory. The same program as a bare byte relay
    // is measured with small requests, the floor of a proxy's CPU.
    let static_conf = conf("llmhop-static.json");
    let idle_only: Vec<(&'static str, PathBuf, Vec<&str>, u16)> = [
        (
            "llmhop-static",
            Some(static_bin),
            vec!["-c", &static_conf],
            18084,
        ),
        ("tokio-floor", floor_bin.clone(), vec!["18085"], 18085),
    ]
    .into_iter()
    .filter_map(|(name, bin, args, port)| {
        let bin = bin.filter(|b| !o.smoke && b.is_file())?;
        Some((name, bin, args, port))
    })
    .collect();
    let relay_bin = floor_bin.filter(|b| !o.smoke && b.is_file());
    let relay_upstream = UPSTREAMS[0].1.to_string();
    let machine = machine();
    eprintln!("bench: {machine}; work dir {}", work.display());

    let mut procs = Procs::default();
    start(
        &mut procs,
        "upstream",
        command(load_cpu, &me, &["upstream"]),
        CONTROL_PORT,
        &work.join("upstream.log"),
    )?;
    let upstream_pid = procs.0[0].pid();

    let mut names: Vec<&'static str> = vec!["direct", "llmhop"];
    if !o.smoke {
        names.extend(["nginx", "haproxy"]);
    }
    let mut results: Vec<Value> = Vec::new();
    let mut all_ok = true;
    let started = Instant::now();
    for run in 0..o.runs {
        let mut proxies = Procs::default();
        let mut pids: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        start(
            &mut proxies,
            "llmhop",
            command(proxy_cpu, &llmhop, &["-c", &conf("llmhop.json")]),
            18080,
            &work.join("llmhop.log"),
        )?;
        if let (Some(nginx), Some(haproxy)) = (&nginx, &haproxy) {
            let prefix = format!("{}/", work.join("nginx").display());
            start(
                &mut proxies,
                "nginx",
                command(
                    proxy_cpu,
                    nginx,
                    &["-p", &prefix, "-c", &conf("nginx.conf"), "-e", "stderr"],
                ),
                18081,
                &work.join("nginx.log"),
            )?;
            start(
                &mut proxies,
                "haproxy",
                command(proxy_cpu, haproxy, &["-f", &conf("haproxy.cfg"), "-db"]),
                18082,
                &work.join("haproxy.log"),
            )?;
            start(
                &mut proxies,
                "llmhop-2core",
                command(None, &llmhop, &["-c", &conf("llmhop-2core.json")]),
                18083,
                &work.join("llmhop-2core.log"),
            )?;
        }
        if let Some(bin) = &relay_bin {
            start(
                &mut proxies,
                "tokio-relay",
                command(proxy_cpu, bin, &["18086", &relay_upstream]),
                18086,
                &work.join("tokio-relay.log"),
            )?;
        }
        for (name, bin, args, port) in &idle_only {
            start(
                &mut proxies,
                name,
                command(proxy_cpu, bin, args),
                *port,
                &work.join(format!("{name}.log")),
            )?;
        }
        thread::sleep(IDLE_SETTLE);
        for p in &proxies.0 {
            let pl = p.pids();
            let rss: u64 = pl.iter().map(|&q| procfs::vm_kib(q, "VmRSS")).sum();
            results.push(serde_json::json!({
                "run": run, "scenario": "idle", "target": p.name,
                "peak_mib": rss as f64 / 1024.0, "errors": 0,
            }));
            pids.insert(p.name, pl);
        }
        for s in &o.scenarios {
            let mut order = names.clone();
            let n = order.len();
            order.rotate_left(run % n);
            if relay_bin.is_some() && s.name.starts_with("small-") {
                order.push("tokio-relay");
            }
            if pin && !o.smoke && s.name == "small-64c" {
                order.push("llmhop-2core");
            }
            let slices = s.slices.max(1);
            let window = (s.duration_ms / u64::from(slices)).to_string();
            let mut parts: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
            for slice in 0..slices {
                for &t in &order {
                    let unpinned = t == "llmhop-2core";
                    if unpinned {
                        set_affinity(upstream_pid, "0-1");
                    }
                    let mut args = vec!["load", s.name, t];
                    if o.smoke {
                        args.push("--smoke");
                    }
                    if slices > 1 {
                        args.extend(["--window-ms", &window]);
                    }
                    let pid_list = pid_arg(&pids, t);
                    if let Some(l) = &pid_list {
                        args.extend(["--pids", l]);
                    }
                    let cpu = if unpinned { None } else { load_cpu };
                    let limit = Duration::from_millis(s.warmup_ms + s.duration_ms) + LOAD_SLACK;
                    let r = run_load(command(cpu, &me, &args), limit);
                    if unpinned {
                        if let Some(c) = load_cpu {
                            set_affinity(upstream_pid, c);
                        }
                    }
                    let v = r.unwrap_or_else(|e| {
                        serde_json::json!({"scenario": s.name, "target": t, "errors": 1, "first_error": e})
                    });
                    if slices > 1 {
                        print_result(run, &format!("{}/{}", s.name, slice + 1), t, &v);
                    }
                    parts.entry(t).or_default().push(v);
                }
            }
            for &t in &order {
                let mut v = merge(&parts[t]);
                v["run"] = run.into();
                print_result(run, s.name, t, &v);
                all_ok &= v["errors"].as_u64().unwrap_or(1) == 0;
                results.push(v);
            }
            if pin && !o.smoke && s.name == "small-64c" {
                for mut v in side_by_side(s, &me, load_cpu, &pids) {
                    v["run"] = run.into();
                    print_result(run, SIDE, v["target"].as_str().unwrap_or("?"), &v);
                    all_ok &= v["errors"].as_u64().unwrap_or(1) == 0;
                    results.push(v);
                }
            }
        }
        proxies.stop_all();
    }
    procs.stop_all();
    let log = work.join("results.jsonl");
    let lines: Vec<String> = results.iter().map(Value::to_string).collect();
    let _ = std::fs::write(&log, lines.join("\n") + "\n");
    println!(
        "\nllmhop proxy benchmark, {} run(s){}, {:.0} s; {machine}",
        o.runs,
        if o.smoke { ", smoke" } else { "" },
        started.elapsed().as_secs_f64()
    );
    println!("raw results: {}", log.display());
    report(&results, o);
    Ok(all_ok)
}

/// `t`'s PIDs as the generator's `--pids` takes them (`P,P..`).
fn pid_arg(pids: &BTreeMap<&str, Vec<u32>>, t: &str) -> Option<String> {
    let list: Vec<String> = pids.get(t)?.iter().map(u32::to_string).collect();
    Some(list.join(","))
}

/// The scenario name of [`side_by_side`]'s results.
const SIDE: &str = "small-64c side by side";

/// llmhop, nginx and the bare relay measured at the same moment: each its
/// own generator, all started together, the proxies sharing core 0.
///
/// Not one of issue 5's measurements (those take turns): on a host whose
/// speed changes from one second to the next, the CPU ratio of two
/// proxies measured a slice apart swings (single slices of small-64c from
/// 0.65x to 1.5x nginx's on one host), while two measured at once see the
/// same host. Sharing the core costs both some cache, so the absolute
/// figures are not those of a proxy alone; the ratios are what it is for.
fn side_by_side(
    s: &Scenario,
    me: &Path,
    load_cpu: Option<&str>,
    pids: &BTreeMap<&str, Vec<u32>>,
) -> Vec<Value> {
    let limit = Duration::from_millis(s.warmup_ms + s.duration_ms) + LOAD_SLACK;
    let running: Vec<_> = ["llmhop", "nginx", "tokio-relay"]
        .into_iter()
        .filter_map(|t| {
            let list = pid_arg(pids, t)?;
            let cmd = command(load_cpu, me, &["load", s.name, t, "--pids", &list]);
            Some((t, thread::spawn(move || run_load(cmd, limit))))
        })
        .collect();
    running
        .into_iter()
        .map(|(t, h)| {
            let r = h
                .join()
                .unwrap_or_else(|_| Err("generator thread panicked".into()));
            let mut v = r.unwrap_or_else(
                |e| serde_json::json!({"target": t, "errors": 1, "first_error": e}),
            );
            v["scenario"] = SIDE.into();
            v
        })
        .collect()
}

/// One measurement's line on stderr, as the run goes.
fn print_result(run: usize, scenario: &str, target: &str, v: &Value) {
    let errors = v["errors"].as_u64().unwrap_or(1);
    eprintln!(
        "run {} {:<10} {:<13} {:>9.0} req/s  p50 {:>7.3} ms  cpu/10k {:>6.3} s  peak {:>6.1} MiB{}",
        run + 1,
        scenario,
        target,
        v["rps"].as_f64().unwrap_or(0.0),
        v["p50_ms"].as_f64().unwrap_or(f64::NAN),
        v["cpu_s_per_10k"].as_f64().unwrap_or(f64::NAN),
        v["peak_mib"].as_f64().unwrap_or(f64::NAN),
        if errors > 0 {
            format!("  ERRORS {errors}: {}", v["first_error"])
        } else {
            String::new()
        }
    );
}

/// The slices of one target's measurement as one: requests, time, CPU,
/// accepts and upstream requests summed (so req/s and the per-10k figures
/// are exact), peak memory the highest, and the latency percentiles the
/// mean of the slices' weighted by their requests (close to, not exactly,
/// the percentile of all requests; no target rests on them in a sliced
/// scenario).
fn merge(parts: &[Value]) -> Value {
    if let [one] = parts {
        return one.clone();
    }
    let f = |v: &Value, k: &str| v[k].as_f64();
    let requests: f64 = parts.iter().filter_map(|v| f(v, "requests")).sum();
    let secs: f64 = parts.iter().filter_map(|v| f(v, "secs")).sum();
    let weighted = |k: &str| -> Option<f64> {
        let mut sum = 0.0;
        for v in parts {
            sum += f(v, k)? * f(v, "requests")?;
        }
        (requests > 0.0).then(|| sum / requests)
    };
    let first_error = parts
        .iter()
        .map(|v| &v["first_error"])
        .find(|e| !e.is_null())
        .cloned()
        .unwrap_or(Value::Null);
    serde_json::json!({
        "scenario": parts[0]["scenario"],
        "target": parts[0]["target"],
        "slices": parts.len(),
        "errors": parts.iter().map(|v| v["errors"].as_u64().unwrap_or(1)).sum::<u64>(),
        "first_error": first_error,
        "requests": requests,
        "secs": secs,
        "rps": requests / secs.max(1e-9),
        "p50_ms": weighted("p50_ms"),
        "p99_ms": weighted("p99_ms"),
        "ttfc_p50_ms": weighted("ttfc_p50_ms"),
        "ttfc_p99_ms": weighted("ttfc_p99_ms"),
        "cpu_s_per_10k": weighted("cpu_s_per_10k"),
        "peak_mib": parts.iter().filter_map(|v| f(v, "peak_mib")).reduce(f64::max),
        "new_conns_per_10k": weighted("new_conns_per_10k"),
        "upstream_requests": parts.iter().filter_map(|v| v["upstream_requests"].as_u64()).sum::<u64>(),
    })
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cores} cores, {cpu}, Linux {}", kernel.trim())
}

type Opts = Options;

/// Per (scenario, target), per run, the figure `key`.
fn series(results: &[Value], scenario: &str, target: &str, key: &str) -> BTreeMap<u64, f64> {
    results
        .iter()
        .filter(|v| v["scenario"] == scenario && v["target"] == target)
        .filter_map(|v| Some((v["run"].as_u64()?, v[key].as_f64()?)))
        .collect()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn med(results: &[Value], s: &str, t: &str, key: &str) -> Option<f64> {
    median(series(results, s, t, key).into_values().collect())
}

/// Median over runs of `a`'s figure divided by `b`'s from the same run.
fn ratio(results: &[Value], s: &str, a: &str, b: &str, key: &str) -> Option<f64> {
    let sa = series(results, s, a, key);
    let sb = series(results, s, b, key);
    median(
        sa.iter()
            .filter_map(|(run, x)| Some(x / sb.get(run)?))
            .collect(),
    )
}

/// Median over runs of `t`'s p50 minus direct's p50 from the same run.
fn added_p50(results: &[Value], s: &str, t: &str) -> Option<f64> {
    let st = series(results, s, t, "p50_ms");
    let sd = series(results, s, "direct", "p50_ms");
    median(
        st.iter()
            .filter_map(|(run, x)| Some(x - sd.get(run)?))
            .collect(),
    )
}

fn cell(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.prec$}"))
}

fn report(results: &[Value], o: &Opts) {
    let targets = [
        "direct",
        "llmhop",
        "nginx",
        "haproxy",
        "llmhop-2core",
        "tokio-relay",
        "llmhop-static",
        "tokio-floor",
    ];
    let present = |s: &str, t: &str| {
        results
            .iter()
            .any(|v| v["scenario"] == s && v["target"] == t)
    };
    let mut scenarios: Vec<&str> = vec!["idle"];
    scenarios.extend(o.scenarios.iter().map(|s| s.name));
    println!(
        "\n{:<10} {:<13} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>6}",
        "scenario",
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "+p50 ms",
        "cpu s/10k",
        "peak MiB",
        "ttfc p50",
        "ttfc p99",
        "new up/10k",
        "errors"
    );
    for s in &scenarios {
        for t in targets.iter().filter(|t| present(s, t)) {
            let errors: f64 = series(results, s, t, "errors").values().sum();
            println!(
                "{:<10} {:<13} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>6}",
                s,
                t,
                cell(med(results, s, t, "rps"), 0),
                cell(med(results, s, t, "p50_ms"), 3),
                cell(med(results, s, t, "p99_ms"), 3),
                cell(
                    if *t == "direct" {
                        None
                    } else {
                        added_p50(results, s, t)
                    },
                    3
                ),
                cell(med(results, s, t, "cpu_s_per_10k"), 3),
                cell(med(results, s, t, "peak_mib"), 1),
                cell(med(results, s, t, "ttfc_p50_ms"), 2),
                cell(med(results, s, t, "ttfc_p99_ms"), 2),
                cell(med(results, s, t, "new_conns_per_10k"), 1),
                errors
            );
        }
        for base in ["nginx", "haproxy"] {
            if !present(s, base) || !present(s, "llmhop") {
                continue;
            }
            let r = |k| cell(ratio(results, s, "llmhop", base, k), 2);
            println!(
                "{:<10} {:<13} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8}",
                "",
                format!("llmhop÷{base}"),
                r("rps"),
                r("p50_ms"),
                r("p99_ms"),
                "",
                r("cpu_s_per_10k"),
                r("peak_mib"),
                r("ttfc_p50_ms"),
                r("ttfc_p99_ms"),
            );
        }
    }
    if o.smoke {
        return;
    }
    // Issue 5, point 3.
    println!("\nissue 5 targets (medians of same-run ratios):");
    let verdict = |name: &str, ok: Option<bool>, detail: String| {
        let mark = match ok {
            Some(true) => "MET   ",
            Some(false) => "MISSED",
            None => "n/a   ",
        };
        println!("  {mark} {name}: {detail}");
    };
    let r = |s: &str, b: &str, k: &str| ratio(results, s, "llmhop", b, k);
    let le = |x: Option<f64>, lim: f64| x.map(|x| x <= lim);
    let ge = |x: Option<f64>, lim: f64| x.map(|x| x >= lim);
    let c = r("small-64c", "nginx", "cpu_s_per_10k");
    verdict(
        "small 64c CPU/request <= 0.7 x nginx",
        le(c, 0.7),
        format!("{} x", cell(c, 2)),
    );
    let q = r("small-64c", "nginx", "rps");
    verdict(
        "small 64c req/s >= nginx",
        ge(q, 1.0),
        format!("{} x", cell(q, 2)),
    );
    let (a, b) = (
        added_p50(results, "small-1c", "llmhop"),
        added_p50(results, "small-1c", "nginx"),
    );
    verdict(
        "small 1c added p50 <= nginx's",
        a.zip(b).map(|(a, b)| a <= b),
        format!("{} ms vs {} ms", cell(a, 3), cell(b, 3)),
    );
    for s in ["body-1m", "body-20m"] {
        let (n, h, cpu) = (
            r(s, "nginx", "rps"),
            r(s, "haproxy", "rps"),
            r(s, "nginx", "cpu_s_per_10k"),
        );
        verdict(
            &format!("{s} req/s >= nginx"),
            ge(n, 1.0),
            format!("{} x", cell(n, 2)),
        );
        verdict(
            &format!("{s} req/s >= 4 x haproxy"),
            ge(h, 4.0),
            format!("{} x", cell(h, 2)),
        );
        verdict(
            &format!("{s} CPU/request <= 1.2 x nginx"),
            le(cpu, 1.2),
            format!("{} x", cell(cpu, 2)),
        );
    }
    let t = r("sse-32", "nginx", "ttfc_p99_ms");
    verdict(
        "SSE ttfc p99 <= nginx's",
        le(t, 1.0),
        format!("{} x", cell(t, 2)),
    );
    let t = r("sse-32", "nginx", "cpu_s_per_10k");
    verdict(
        "SSE CPU/stream <= nginx's",
        le(t, 1.0),
        format!("{} x", cell(t, 2)),
    );
    for (s, lim) in [("idle", 3.0), ("open-500", 8.0), ("body-20m", 48.0)] {
        let m = med(results, s, "llmhop", "peak_mib");
        verdict(
            &format!("{s} llmhop peak RSS <= {lim} MiB"),
            le(m, lim),
            format!("{} MiB", cell(m, 1)),
        );
    }
    // The dynamic build's idle RSS is mostly glibc's shared pages (libc,
    // libm, ld.so); the static binary shows what the process itself needs.
    let m = med(results, "idle", "llmhop-static", "peak_mib");
    verdict(
        "idle llmhop-static (musl, as shipped) peak RSS <= 3 MiB",
        le(m, 3.0),
        format!("{} MiB", cell(m, 1)),
    );
    // Not a target: what any tokio server built like llmhop idles at here.
    let m = med(results, "idle", "tokio-floor", "peak_mib");
    verdict(
        "idle tokio-floor (bare tokio accept loop, same build; not a target) peak RSS",
        None,
        format!("{} MiB", cell(m, 1)),
    );
    // Not a target: what a proxy that parses nothing costs on this host.
    let c = ratio(
        results,
        "small-64c",
        "tokio-relay",
        "nginx",
        "cpu_s_per_10k",
    );
    verdict(
        "small 64c tokio-relay (bare tokio byte relay, same build; not a target) CPU/request",
        None,
        format!("{} x nginx", cell(c, 2)),
    );
    let (l, r) = (
        ratio(results, SIDE, "llmhop", "nginx", "cpu_s_per_10k"),
        ratio(results, SIDE, "tokio-relay", "nginx", "cpu_s_per_10k"),
    );
    verdict(
        "small 64c side by side (on core 0 at the same moment; not a target) CPU/request",
        None,
        format!(
            "llmhop {} x nginx, tokio-relay {} x nginx",
            cell(l, 2),
            cell(r, 2)
        ),
    );
    let a = added_p50(results, "small-1c", "tokio-relay");
    verdict(
        "small 1c tokio-relay (not a target) added p50",
        None,
        format!("{} ms", cell(a, 3)),
    );
    let n = med(results, "small-64c", "llmhop", "new_conns_per_10k");
    verdict(
        "steady state new upstream connections per 10k == 0",
        le(n, 0.0),
        cell(n, 1),
    );
    let (one, two) = (
        med(results, "small-64c", "llmhop", "rps"),
        med(results, "small-64c", "llmhop-2core", "rps"),
    );
    verdict(
        "2-core unpinned figure shown",
        two.map(|_| true),
        format!(
            "{} req/s pinned, {} req/s unpinned",
            cell(one, 0),
            cell(two, 0)
        ),
    );
}
