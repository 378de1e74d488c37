//! The floors beside llmhop in the proxy benchmark (issue 5), both on
//! llmhop's own runtime (`server::runtime`: a current-thread runtime on one
//! core, one worker per core otherwise), built with the same profile and
//! the same tokio features, linked against the same glibc:
//!
//! - `floor PORT`: a bare accept loop. Each connection is read until it
//!   ends; nothing is answered. It shows how much of llmhop's idle RSS any
//!   tokio server built this way has (its libraries and the runtime) and
//!   how much is llmhop's own.
//! - `floor PORT UPSTREAM_PORT`: a bare byte relay. Each connection gets
//!   its own connection to the upstream and the bytes are copied both ways
//!   (`copy_bidirectional`), with no parsing, no routing and no log. Its
//!   CPU per request is what the kernel's two `recv`s and two `send`s and
//!   tokio's readiness cost: the floor of any proxy on this runtime.
//!
//! `scripts/bench.sh` builds it and benches/proxy starts both; by hand:
//! `cargo bench --bench floor -- 18085`.

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

fn main() {
    // `cargo bench` adds `--bench` to the arguments: take the numbers.
    let ports: Vec<u16> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (port, upstream) = match ports[..] {
        [port] => (port, None),
        [port, upstream] => (port, Some(upstream)),
        _ => {
            eprintln!("usage: floor PORT [UPSTREAM_PORT]");
            std::process::exit(2);
        }
    };
    let runtime = llmhop::server::runtime().expect("runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            match upstream {
                None => tokio::spawn(drain(conn)),
                Some(up) => tokio::spawn(relay(conn, up)),
            };
        }
    });
}

async fn drain(mut conn: TcpStream) {
    let mut buf = [0u8; 1024];
    while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
}

async fn relay(mut conn: TcpStream, port: u16) {
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    // As llmhop and nginx (`tcp_nodelay on`) set it on both sides.
    let _ = conn.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
}
