//! The idle-memory floor beside llmhop in the proxy benchmark (issue 5): a
//! bare tokio accept loop on llmhop's own runtime (`server::runtime`: a
//! current-thread runtime on one core, one worker per core otherwise), built
//! with the same profile and the same tokio features, linked against the
//! same glibc. Each connection is read until it ends; nothing is answered.
//!
//! It shows how much of llmhop's idle RSS any tokio server built this way
//! has (its libraries and the runtime) and how much is llmhop's own.
//! `scripts/bench.sh` builds it and benches/proxy starts it; by hand:
//! `cargo bench --bench floor -- 18085`.

use tokio::io::AsyncReadExt;

fn main() {
    // `cargo bench` adds `--bench` to the arguments: take the first number.
    let port: u16 = match std::env::args().skip(1).find_map(|a| a.parse().ok()) {
        Some(p) => p,
        None => {
            eprintln!("usage: floor PORT");
            std::process::exit(2);
        }
    };
    let runtime = llmhop::server::runtime().expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
}
