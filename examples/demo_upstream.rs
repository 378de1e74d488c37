//! A tiny OpenAI-compatible backend for trying llmhop without a GPU.
//!
//! ```text
//! cargo run --release --example demo_upstream -- --port 30001 --model demo-small
//! ```
//!
//! It serves one model name and answers, like a single-model vLLM or
//! llama-server would:
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/chat/completions` | a `chat.completion`; with `"stream": true` an SSE stream, one token every 50 ms, ending `data: [DONE]` |
//! | `POST /v1/completions` | a `text_completion` (streams too with `"stream": true`) |
//! | `POST /v1/embeddings` | one deterministic 8-dimensional vector per input |
//! | `GET /v1/models` | the one model |
//!
//! The HTTP/1.1 handling is deliberately minimal (Content-Length and chunked
//! request bodies, keep-alive, no pipelining guarantees beyond in-order
//! replies): enough to sit behind llmhop, not a server to expose.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head accepted, in bytes.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted, in bytes.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Pause between streamed tokens.
const TOKEN_GAP: Duration = Duration::from_millis(50);

#[tokio::main]
async fn main() {
    let mut port: u16 = 30000;
    let mut host = String::from("127.0.0.1");
    let mut model = String::from("demo-small");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--port" => {
                port = value("--port")
                    .parse()
                    .unwrap_or_else(|_| usage("--port must be a number"))
            }
            "--host" => host = value("--host"),
            "--model" => model = value("--model"),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let listener = TcpListener::bind((host.as_str(), port))
        .await
        .unwrap_or_else(|e| {
            eprintln!("demo_upstream: cannot listen on {host}:{port}: {e}");
            std::process::exit(1)
        });
    eprintln!(
        "demo_upstream: serving model {model:?} on http://{}",
        listener.local_addr().unwrap()
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let model = model.clone();
        tokio::spawn(async move {
            // A client error or disconnect only ends this connection.
            let _ = serve(stream, &model).await;
        });
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("demo_upstream: {problem}");
    }
    eprintln!("usage: demo_upstream [--host 127.0.0.1] [--port 30000] [--model demo-small]");
    std::process::exit(if problem.is_empty() { 0 } else { 2 })
}

/// One parsed request.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
    keep_alive: bool,
}

/// Serves requests on one connection until the client closes it.
async fn serve(mut stream: TcpStream, model: &str) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buf).await? {
        respond(&mut stream, model, &request).await?;
        if !request.keep_alive {
            break;
        }
    }
    Ok(())
}

/// Reads one request; `None` on a clean close between requests.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Request>> {
    let head_end = loop {
        if let Some(at) = find(buf, b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid("head too large"));
        }
        if !fill(stream, buf).await? {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(invalid("closed inside a head"))
            };
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let method = start.next().unwrap_or_default().to_owned();
    let target = start.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let version = start.next().unwrap_or_default();
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut keep_alive = version == "HTTP/1.1";
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid("bad header line"));
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                content_length = value.parse().map_err(|_| invalid("bad length"))?
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" if value.eq_ignore_ascii_case("close") => keep_alive = false,
            "connection" if value.eq_ignore_ascii_case("keep-alive") => keep_alive = true,
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(stream, buf).await?
    } else {
        if content_length > MAX_BODY {
            return Err(invalid("body too large"));
        }
        while buf.len() < content_length {
            if !fill(stream, buf).await? {
                return Err(invalid("closed inside a body"));
            }
        }
        buf.drain(..content_length).collect()
    };
    Ok(Some(Request {
        method,
        path,
        body,
        keep_alive,
    }))
}

/// De-chunks a chunked request body (extensions ignored, trailers skipped).
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream, buf).await?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            while !read_line(stream, buf).await?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid("body too large"));
        }
        while buf.len() < size + 2 {
            if !fill(stream, buf).await? {
                return Err(invalid("closed inside a chunk"));
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<String> {
    loop {
        if let Some(at) = find(buf, b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..at]).into_owned();
            buf.drain(..at + 2);
            return Ok(line);
        }
        if buf.len() > MAX_HEAD || !fill(stream, buf).await? {
            return Err(invalid("bad chunk line"));
        }
    }
}

/// One read into `buf`; false on EOF.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The sentence every completion answers with, split into tokens.
fn tokens(model: &str) -> Vec<String> {
    let sentence = format!("Hello from {model}! This reply streams token by token through llmhop.");
    sentence
        .split(' ')
        .enumerate()
        .map(|(i, word)| {
            if i == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            }
        })
        .collect()
}

async fn respond(stream: &mut TcpStream, model: &str, request: &Request) -> std::io::Result<()> {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let streaming = body["stream"] == json!(true);
    let created = now();
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/v1/models") => {
            let list = json!({"object": "list", "data": [
                {"id": model, "object": "model", "created": created, "owned_by": "demo"}
            ]});
            write_json(stream, 200, &list, request.keep_alive).await
        }
        ("POST", "/v1/chat/completions") if streaming => {
            let events = tokens(model).into_iter().map(|token| {
                json!({"id": "chatcmpl-demo", "object": "chat.completion.chunk", "created": created,
                       "model": model,
                       "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": null}]})
            });
            let last = json!({"id": "chatcmpl-demo", "object": "chat.completion.chunk",
                              "created": created, "model": model,
                              "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
            write_sse(stream, events.chain([last]), request.keep_alive).await
        }
        ("POST", "/v1/chat/completions") => {
            let text: String = tokens(model).concat();
            let reply = json!({
                "id": "chatcmpl-demo", "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 8, "completion_tokens": tokens(model).len(),
                          "total_tokens": 8 + tokens(model).len()}
            });
            write_json(stream, 200, &reply, request.keep_alive).await
        }
        ("POST", "/v1/completions") if streaming => {
            let events = tokens(model).into_iter().map(|token| {
                json!({"id": "cmpl-demo", "object": "text_completion", "created": created,
                       "model": model,
                       "choices": [{"index": 0, "text": token, "finish_reason": null}]})
            });
            write_sse(stream, events, request.keep_alive).await
        }
        ("POST", "/v1/completions") => {
            let reply = json!({
                "id": "cmpl-demo", "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": tokens(model).concat(), "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 8, "completion_tokens": tokens(model).len(),
                          "total_tokens": 8 + tokens(model).len()}
            });
            write_json(stream, 200, &reply, request.keep_alive).await
        }
        ("POST", "/v1/embeddings") => {
            let inputs: Vec<String> = match &body["input"] {
                Value::Array(items) => items.iter().map(Value::to_string).collect(),
                other => vec![other.to_string()],
            };
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(index, input)| {
                    json!({"object": "embedding", "index": index, "embedding": embed(input)})
                })
                .collect();
            let reply = json!({"object": "list", "model": model, "data": data,
                               "usage": {"prompt_tokens": inputs.len(), "total_tokens": inputs.len()}});
            write_json(stream, 200, &reply, request.keep_alive).await
        }
        _ => {
            let error = json!({"error": {"message": format!("{} {} is not served here", request.method, request.path),
                                         "type": "invalid_request_error", "param": null, "code": null}});
            write_json(stream, 404, &error, request.keep_alive).await
        }
    }
}

/// A deterministic unit-length 8-dimensional vector for `input`.
fn embed(input: &str) -> Vec<f64> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    let raw: Vec<f64> = (0..8)
        .map(|i| {
            for b in input.bytes().chain([i as u8]) {
                state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.iter().map(|x| x / norm).collect()
}

async fn write_json(
    stream: &mut TcpStream,
    status: u16,
    body: &Value,
    keep_alive: bool,
) -> std::io::Result<()> {
    let body = body.to_string();
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await
}

/// Writes `events` as an SSE stream, one chunk per event, `TOKEN_GAP` apart,
/// then `data: [DONE]`.
async fn write_sse(
    stream: &mut TcpStream,
    events: impl Iterator<Item = Value>,
    keep_alive: bool,
) -> std::io::Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: {connection}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    for (i, event) in events.enumerate() {
        if i > 0 {
            tokio::time::sleep(TOKEN_GAP).await;
        }
        write_chunk(stream, &format!("data: {event}\n\n")).await?;
    }
    write_chunk(stream, "data: [DONE]\n\n").await?;
    stream.write_all(b"0\r\n\r\n").await
}

async fn write_chunk(stream: &mut TcpStream, data: &str) -> std::io::Result<()> {
    let chunk = format!("{:x}\r\n{data}\r\n", data.len());
    stream.write_all(chunk.as_bytes()).await
}
