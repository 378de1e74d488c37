//! Real clients end to end: curl and the official `openai` Python SDK talk
//! to the router, which routes to a fake OpenAI-compatible upstream. A
//! missing `curl`, `python3` or `openai` package fails the test loudly —
//! never a silent skip (scripts/test.sh installs them).

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "sdk-client-token-77ab";

/// Answers like vLLM would for model `sdk-model`.
fn openai_upstream() -> FakeUpstream {
    FakeUpstream::start(|req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let path = req.target.split('?').next().unwrap_or_default();
        match path {
            "/v1/chat/completions" if body["stream"] == json!(true) => {
                let mut events: Vec<String> = ["one", " two", " three"]
                    .iter()
                    .map(|word| {
                        let chunk = json!({
                            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                            "model": "sdk-model",
                            "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": null}]
                        });
                        format!("data: {chunk}\n\n")
                    })
                    .collect();
                events.push("data: [DONE]\n\n".into());
                Reply::sse(events, Duration::from_millis(20))
            }
            "/v1/chat/completions" => Reply::json(
                json!({
                    "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "sdk-model",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "Hello from the fake upstream."}}],
                    "usage": {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
                })
                .to_string(),
            ),
            "/v1/embeddings" => Reply::json(
                json!({
                    "object": "list", "model": "sdk-model",
                    "data": [
                        {"object": "embedding", "index": 0, "embedding": [1.0, 0.5, 0.25]},
                        {"object": "embedding", "index": 1, "embedding": [0.5, 0.25, 0.125]}
                    ],
                    "usage": {"prompt_tokens": 2, "total_tokens": 2}
                })
                .to_string(),
            ),
            _ => Reply::Json {
                status: 404,
                body: r#"{"error":{"message":"no route","type":"invalid_request_error","param":null,"code":null}}"#.into(),
            },
        }
    })
}

fn setup() -> (FakeUpstream, Router) {
    let upstream = openai_upstream();
    let router = Router::start(config_for(
        &[
            ("sdk-model", &upstream.url()),
            ("other-model", &upstream.url()),
        ],
        json!({"authTokens": [TOKEN]}),
    ));
    (upstream, router)
}

/// Runs a required external tool; a missing one is a test failure.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("`{program}` is required by this test and could not be run ({e}); install it (scripts/test.sh does) — this test never skips")
    })
}

fn curl(args: &[&str]) -> String {
    let output = run("curl", args);
    assert!(
        output.status.success(),
        "curl {args:?} failed ({}): {}",
        output.status,
        lossy(&output.stderr)
    );
    lossy(&output.stdout)
}

#[test]
fn curl_streamed_chat_completion() {
    let (upstream, router) = setup();
    let auth = format!("Authorization: Bearer {TOKEN}");
    let url = format!("{}/v1/chat/completions", router.url());
    let out = curl(&[
        "-sS",
        "--no-buffer",
        "--max-time",
        "20",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"model":"sdk-model","stream":true,"messages":[{"role":"user","content":"Count"}]}"#,
        &url,
    ]);
    let data: Vec<&str> = out.lines().filter(|l| l.starts_with("data: ")).collect();
    assert_eq!(data.len(), 4, "curl output:\n{out}");
    assert_eq!(data[3], "data: [DONE]");
    for (line, word) in data.iter().zip(["one", " two", " three"]) {
        let chunk: Value = serde_json::from_str(&line["data: ".len()..]).unwrap();
        assert_eq!(chunk["choices"][0]["delta"]["content"], json!(word));
    }
    let got = &upstream.wait_requests(1, Duration::from_secs(5))[0];
    assert_eq!(got.header("authorization"), None);
}

#[test]
fn curl_plain_post_and_models() {
    let (_upstream, router) = setup();
    let auth = format!("Authorization: Bearer {TOKEN}");
    let out = curl(&[
        "-sS",
        "--max-time",
        "20",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"model":"sdk-model","input":["a","b"]}"#,
        &format!("{}/v1/embeddings", router.url()),
    ]);
    let body: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(body["data"][1]["embedding"], json!([0.5, 0.25, 0.125]));

    let out = curl(&["-sS", "-H", &auth, &format!("{}/v1/models", router.url())]);
    let body: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(body["data"][0]["id"], "other-model");
    assert_eq!(body["data"][1]["id"], "sdk-model");

    // No token: 401 seen by curl as a status, not a transport error.
    let code = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{}/v1/models", router.url()),
    ]);
    assert_eq!(code, "401");
}

#[test]
fn openai_python_sdk() {
    let (upstream, router) = setup();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/openai_client.py");
    let output = run("python3", &[script.to_str().unwrap(), &router.url(), TOKEN]);
    let stdout = lossy(&output.stdout);
    let stderr = lossy(&output.stderr);
    assert!(
        output.status.success(),
        "openai SDK script failed ({}); a missing `openai` package is a failure: pip install openai\nstdout:\n{stdout}\nstderr:\n{stderr}\nrouter log:\n{}",
        output.status,
        router.logs()
    );
    assert!(stdout.contains("ALL OK"), "{stdout}");
    let got = upstream.requests();
    assert_eq!(got.len(), 3, "chat, streamed chat, embeddings");
    for request in &got {
        assert_eq!(request.json()["model"], "sdk-model");
        assert_eq!(request.header("authorization"), None);
    }
    // chat, streamed chat, embeddings, models.list, the unknown model
    assert!(
        !router.logs_after_access(5).contains(TOKEN),
        "token leaked into the logs"
    );
}
