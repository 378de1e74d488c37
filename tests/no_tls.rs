//! The minimal core (issue 3 point 2): a build without the `tls` feature
//! refuses an `https://` url at startup with one line that names the
//! alternative, an `http://` url to a TLS-terminating sidecar, and still
//! routes plain and unix-socket upstreams.
//!
//! Only meaningful with `cargo test --no-default-features --test no_tls`; a
//! default build compiles this file to nothing.

#![cfg(not(feature = "tls"))]

mod support;

use std::fs;
use std::process::{Command, Output, Stdio};

use serde_json::json;
use support::*;

/// Runs the binary on `config` with `args` before `--config PATH`.
fn run(args: &[&str], config: &serde_json::Value) -> Output {
    let dir = fresh_temp_dir("no-tls");
    let path = dir.join("config.json");
    fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_llmhop"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run the llmhop binary");
    let _ = fs::remove_dir_all(&dir);
    output
}

fn https_config() -> serde_json::Value {
    json!({
        "listen": "127.0.0.1:0",
        "models": {
            "local": { "url": "http://127.0.0.1:30000" },
            "gpt": { "url": "https://api.openai.com" }
        }
    })
}

/// The single stderr line, checked for what the user needs to know.
fn assert_refusal(output: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{what}: an https url is a config error (exit 1); stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: exactly one line; got {stderr:?}");
    let line = lines[0];
    assert!(
        line.contains("models.gpt.url"),
        "{what}: the line names the config path of the fault: {line}"
    );
    assert!(
        line.contains("http://") && line.contains("sidecar"),
        "{what}: the line names the alternative (an http:// url to a TLS-terminating sidecar): {line}"
    );
    assert!(
        !line.contains("listening"),
        "{what}: nothing was bound: {line}"
    );
}

#[test]
fn https_url_is_refused_at_startup_naming_the_sidecar_alternative() {
    let output = run(&[], &https_config());
    assert_refusal(&output, "run");
}

#[test]
fn https_url_is_refused_by_check_too() {
    assert_refusal(&run(&["--check"], &https_config()), "--check");
    assert_refusal(
        &run(&["--check", "--no-secrets"], &https_config()),
        "--check --no-secrets",
    );
}

#[test]
fn the_minimal_core_routes_http_and_unix_upstreams() {
    let tcp = FakeUpstream::ok();
    let unix = UnixUpstream::start(|_| Reply::json(r#"{"via":"unix"}"#));
    let router = Router::start(config_for(
        &[("tcp", &tcp.url()), ("uds", &unix.url())],
        json!({}),
    ));
    let response = Client::connect(router.addr()).exchange(&chat("tcp"));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    let response = Client::connect(router.addr()).exchange(&chat("uds"));
    assert_eq!(response.status, 200, "{}", lossy(&response.raw));
    assert_eq!(response.text(), r#"{"via":"unix"}"#);
}
