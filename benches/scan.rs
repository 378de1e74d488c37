//! Scanner micro-benchmark (issue 5, point 4): how fast
//! `llmhop::scan::json::JsonScanner` finds `model` in a chat request whose
//! bulk is a 20 MiB base64 image, fed in 64 KiB pieces as the router reads
//! them, beside `serde_json::from_slice::<Value>` on the same bytes.
//!
//! Cases: `model` first, `model` last (the openai SDK's order; target
//! ≥ 4 GB/s), `model` absent (the whole body is scanned, then `finish`),
//! and a ~200 B chat request (ns per request). Prints the median of
//! several runs. `cargo bench --bench scan` (or `scripts/bench.sh --scan`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use llmhop::scan::json::JsonScanner;

#[path = "common/filler.rs"]
mod filler;
use filler::base64_filler;
use llmhop::scan::{Scan, ScanError};

/// The router's read size, in bytes: the scanner sees pieces this large.
const PIECE: usize = 64 * 1024;

/// Size of the base64 image string, in bytes.
const IMAGE: usize = 20 * 1024 * 1024;

/// Timed runs per case (the median is printed).
const RUNS: usize = 9;

/// Timed runs for serde_json, which is far slower.
const SERDE_RUNS: usize = 5;

/// A chat request with one image, `model` placed as `at` says.
fn document(at: &str, image: &str) -> Vec<u8> {
    let messages = format!(
        r#""messages":[{{"role":"user","content":[{{"type":"text","text":"What is in this image?"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{image}"}}}}]}}],"max_tokens":16"#
    );
    match at {
        "first" => format!(r#"{{"model":"llama-3-8b",{messages}}}"#),
        "last" => format!(r#"{{{messages},"model":"llama-3-8b"}}"#),
        _ => format!(r#"{{{messages}}}"#),
    }
    .into_bytes()
}

/// Scans `doc` in router-sized pieces to the end, as the router does
/// (it keeps scanning after `Found` to catch a duplicate).
fn scan(doc: &[u8]) -> Option<String> {
    let mut scanner = JsonScanner::new();
    let mut model = None;
    for piece in doc.chunks(PIECE) {
        match scanner.feed(piece) {
            Scan::Found(m) => model = Some(m),
            Scan::NeedMore => {}
            Scan::Invalid(e) => panic!("scanner refused the document: {e:?}"),
        }
    }
    match scanner.finish() {
        Scan::NeedMore => {}
        Scan::Invalid(ScanError::Missing) => assert!(model.is_none()),
        other => panic!("finish: {other:?}"),
    }
    model
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median wall time of `runs` calls of `f`.
fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm caches and the allocator
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

/// Where the time of skipping a long string goes: the scanner makes two
/// passes over its bytes (memchr2 for `"`/`\\`, then a min-fold for
/// control bytes); each pass alone, to see what bounds the whole.
fn kernels(image: &[u8]) {
    let memchr2 = time(RUNS, || {
        black_box(memchr::memchr2(b'"', b'\\', black_box(image)));
    });
    let min_fold = time(RUNS, || {
        let any = image
            .chunks(128)
            .any(|c| c.iter().fold(u8::MAX, |m, &b| m.min(b)) < 0x20);
        black_box(any);
    });
    println!(
        "string skip, the scanner's two passes alone: memchr2 {:.2} GB/s, control-byte min-fold {:.2} GB/s",
        gbps(image.len(), memchr2),
        gbps(image.len(), min_fold)
    );
}

fn main() {
    let image = base64_filler(IMAGE);
    println!(
        "JSON model scan, {} MiB base64 image, {} KiB pieces, median of {RUNS} (serde_json {SERDE_RUNS})",
        IMAGE >> 20,
        PIECE >> 10
    );
    println!(
        "{:<8} {:>10} {:>14} {:>14} {:>8}",
        "model", "bytes", "JsonScanner", "serde_json", "ratio"
    );
    for at in ["first", "last", "absent"] {
        let doc = document(at, &image);
        let expect = (at != "absent").then(|| "llama-3-8b".to_string());
        assert_eq!(scan(&doc), expect);
        let ours = time(RUNS, || {
            black_box(scan(black_box(&doc)));
        });
        let serde = time(SERDE_RUNS, || {
            let v: serde_json::Value = serde_json::from_slice(black_box(&doc)).expect("valid JSON");
            black_box(v);
        });
        println!(
            "{:<8} {:>10} {:>9.2} GB/s {:>9.2} GB/s {:>7.1}x",
            at,
            doc.len(),
            gbps(doc.len(), ours),
            gbps(doc.len(), serde),
            serde.as_secs_f64() / ours.as_secs_f64()
        );
    }

    let small = br#"{"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence."}],"model":"m1","max_tokens":16}"#;
    assert_eq!(scan(small).as_deref(), Some("m1"));
    const BATCH: usize = 10_000;
    let ours = time(RUNS, || {
        for _ in 0..BATCH {
            black_box(scan(black_box(small)));
        }
    });
    let serde = time(RUNS, || {
        for _ in 0..BATCH {
            let v: serde_json::Value = serde_json::from_slice(black_box(small)).expect("valid");
            black_box(v);
        }
    });
    println!(
        "{:<8} {:>10} {:>10.0} ns/req {:>10.0} ns/req {:>7.1}x",
        "small",
        small.len(),
        ours.as_nanos() as f64 / BATCH as f64,
        serde.as_nanos() as f64 / BATCH as f64,
        serde.as_secs_f64() / ours.as_secs_f64()
    );
    kernels(image.as_bytes());
}
