//! llmhop side by side with nginx and HAProxy (issue 5): one binary, three
//! roles chosen by the first argument.
//!
//! | role | module | what it does |
//! |---|---|---|
//! | *(none)* | [`run`] | the orchestrator: starts the fake upstream, the proxies and one generator per measurement, pins them, prints the table |
//! | `upstream` | [`upstream`] | the fake OpenAI-compatible upstreams (one port per model) |
//! | `load SCENARIO TARGET` | [`load`] | one closed-loop measurement, printed as one JSON line |
//!
//! `scripts/bench.sh` is the one command (`--smoke` for CI). The tables
//! below are shared by all three roles, so a scenario or a target is
//! defined in exactly one place.

#[path = "../common/filler.rs"]
mod filler;
mod load;
mod procfs;
mod run;
mod upstream;
mod wire;

use std::process::ExitCode;

/// The fake upstreams: (name echoed in `X-Upstream`, port). Model `m1` is
/// served by `u1`, `m2` by `u2`.
pub const UPSTREAMS: &[(&str, u16)] = &[("u1", 19001), ("u2", 19002)];

/// The upstream's uncounted control port (`GET /stats`).
pub const CONTROL_PORT: u16 = 19000;

/// The model names, index-aligned with [`UPSTREAMS`].
pub const MODELS: &[&str] = &["m1", "m2"];

/// Something the generator sends requests to.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub name: &'static str,
    /// Listening port; `None` for going direct to the upstream of each model.
    pub port: Option<u16>,
    /// Indexes into [`MODELS`] the generator alternates between. nginx
    /// routes nothing, so it only ever gets `m1`.
    pub models: &'static [usize],
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "direct",
        port: None,
        models: &[0, 1],
    },
    Target {
        name: "llmhop",
        port: Some(18080),
        models: &[0, 1],
    },
    Target {
        name: "nginx",
        port: Some(18081),
        models: &[0],
    },
    Target {
        name: "haproxy",
        port: Some(18082),
        models: &[0, 1],
    },
    // The floor of a proxy's CPU (benches/floor.rs): bytes relayed to
    // `u1`, nothing parsed, so like nginx it only ever gets `m1`.
    Target {
        name: "tokio-relay",
        port: Some(18086),
        models: &[0],
    },
    // The same binary, not pinned: its runtime gets one worker per core.
    Target {
        name: "llmhop-2core",
        port: Some(18083),
        models: &[0, 1],
    },
];

/// The request body of a scenario.
#[derive(Clone, Copy, Debug)]
pub enum BodyKind {
    /// A ~200 B chat request.
    Small,
    /// A chat request of about this many bytes whose bulk is one base64
    /// image string, `model` the last key (the openai SDK's order).
    ModelLast(usize),
}

/// One measurement's shape.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub conns: usize,
    pub body: BodyKind,
    /// Ask the upstream for an event stream of (chunks, gap in ms).
    pub sse: Option<(u32, u64)>,
    /// Requests before the measured window, to fill pools, in ms.
    pub warmup_ms: u64,
    /// The measured window, in ms (`smoke` shortens it).
    pub duration_ms: u64,
    /// Requests per connection, when the scenario is a fixed batch rather
    /// than a timed window (then the window is the whole batch).
    pub per_conn: Option<u32>,
    /// The window cut into this many slices, the targets taking turns
    /// slice by slice (A B C A B C ...) and each target's slices summed:
    /// the host's fast and slow phases last seconds, and a target measured
    /// in one window of its own can land in another phase than the target
    /// it is compared with. 1: one window per target.
    pub slices: u32,
}

pub const MIB: usize = 1024 * 1024;

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "small-1c",
        conns: 1,
        body: BodyKind::Small,
        sse: None,
        warmup_ms: 300,
        duration_ms: 3000,
        per_conn: None,
        slices: 1,
    },
    Scenario {
        name: "small-64c",
        conns: 64,
        body: BodyKind::Small,
        sse: None,
        warmup_ms: 300,
        duration_ms: 3000,
        per_conn: None,
        slices: 3,
    },
    Scenario {
        name: "body-1m",
        conns: 4,
        body: BodyKind::ModelLast(MIB),
        sse: None,
        warmup_ms: 300,
        duration_ms: 3000,
        per_conn: None,
        slices: 3,
    },
    Scenario {
        name: "body-20m",
        conns: 2,
        body: BodyKind::ModelLast(20 * MIB),
        sse: None,
        warmup_ms: 500,
        duration_ms: 4000,
        per_conn: None,
        slices: 4,
    },
    Scenario {
        name: "sse-32",
        conns: 32,
        body: BodyKind::Small,
        sse: Some((20, 10)),
        warmup_ms: 300,
        // Longer than the others: a stream costs little CPU, and /proc
        // counts it in 10 ms ticks (3 s was ~20 ticks, 5 % a tick; 10 s
        // also puts ~1 400 first chunks under the p99).
        duration_ms: 10_000,
        per_conn: None,
        slices: 1,
    },
    Scenario {
        name: "open-500",
        conns: 500,
        body: BodyKind::Small,
        sse: Some((20, 100)),
        warmup_ms: 0,
        duration_ms: 20_000,
        per_conn: Some(1),
        slices: 1,
    },
];

/// Scales a scenario's timed window for `--smoke`.
pub fn smoke(s: Scenario) -> Scenario {
    Scenario {
        warmup_ms: s.warmup_ms.min(200),
        slices: 1,
        duration_ms: if s.per_conn.is_some() {
            s.duration_ms
        } else {
            1500
        },
        ..s
    }
}

pub fn scenario(name: &str) -> Option<Scenario> {
    SCENARIOS.iter().copied().find(|s| s.name == name)
}

pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` appends `--bench`; it means nothing here.
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    match args.first() {
        Some(&"upstream") => {
            upstream::main();
            ExitCode::SUCCESS
        }
        Some(&"load") => load::main(&args[1..]),
        _ => run::main(&args),
    }
}
