//! The fake OpenAI-compatible upstream: one listener per model, each
//! answering every request with a small chat completion (or an event stream
//! when the request carries `X-Sse: CHUNKS,GAP_MS`) and naming itself in
//! `X-Upstream`, so the load generator can tell a misrouted request.
//!
//! It counts accepted connections per listener; `GET /stats` on the control
//! port (never proxied, never counted) answers `ACCEPTS REQUESTS` summed
//! over the model listeners. Owns no timing: it answers as fast as it can.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

use crate::wire::Wire;
use crate::{CONTROL_PORT, UPSTREAMS};

/// Accept queue length of every listener: 500 streams opened at once must
/// not overflow it (`TcpListener::bind` gives 128 here).
const BACKLOG: u32 = 4096;

/// A loopback listener on `port` with a [`BACKLOG`]-long accept queue.
fn listen(port: u16) -> TcpListener {
    let bind = || -> std::io::Result<TcpListener> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(([127, 0, 0, 1], port).into())?;
        socket.listen(BACKLOG)
    };
    bind().unwrap_or_else(|e| panic!("upstream: bind {port}: {e}"))
}

/// Counters shared by the listeners of this single-threaded process.
#[derive(Default)]
struct Counts {
    accepts: AtomicU64,
    requests: AtomicU64,
}

/// Runs the upstream until killed (the orchestrator owns its lifetime).
pub fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let counts = Rc::new(Counts::default());
        for &(name, port) in UPSTREAMS {
            let listener = listen(port);
            let counts = Rc::clone(&counts);
            tokio::task::spawn_local(async move {
                let reply = Rc::new(chat_reply(name));
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    counts.accepts.fetch_add(1, Ordering::Relaxed);
                    let counts = Rc::clone(&counts);
                    let reply = Rc::clone(&reply);
                    tokio::task::spawn_local(async move {
                        let _ = serve(Wire::new(stream), name, &reply, &counts).await;
                    });
                }
            });
        }
        let control = listen(CONTROL_PORT);
        println!("ready");
        loop {
            let Ok((stream, _)) = control.accept().await else {
                continue;
            };
            let mut wire = Wire::new(stream);
            if let Ok(Some(_)) = wire.head().await {
                let body = format!(
                    "{} {}",
                    counts.accepts.load(Ordering::Relaxed),
                    counts.requests.load(Ordering::Relaxed)
                );
                let out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = wire.write(out.as_bytes()).await;
            }
        }
    });
}

/// A complete non-streaming chat completion response from upstream `name`.
fn chat_reply(name: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"{name}","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello! How can I help you today?"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29}}}}"#
    );
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Upstream: {name}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One SSE event as one HTTP chunk.
fn sse_chunk(name: &str, i: u32) -> Vec<u8> {
    let event = format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"model\":\"{name}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}}}}]}}\n\n"
    );
    format!("{:x}\r\n{event}\r\n", event.len()).into_bytes()
}

/// Answers the requests of one connection until it closes.
async fn serve(mut wire: Wire, name: &str, reply: &[u8], counts: &Counts) -> std::io::Result<()> {
    while let Some(head) = wire.head().await? {
        wire.body(&head, |_| {}).await?;
        counts.requests.fetch_add(1, Ordering::Relaxed);
        match head.sse {
            None => wire.write(reply).await?,
            Some((chunks, gap_ms)) => {
                let start = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Upstream: {name}\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                wire.write(start.as_bytes()).await?;
                for i in 0..chunks {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(gap_ms)).await;
                    }
                    wire.write(&sse_chunk(name, i)).await?;
                }
                wire.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n").await?;
            }
        }
        if head.close {
            break;
        }
    }
    Ok(())
}
