//! llmhop: one port, many models.
//!
//! A small, stateless HTTP/1.1 router for OpenAI-compatible inference
//! backends. It reads the `model` of each request while the body streams in
//! and reverse-proxies the request, bytes unchanged, to the upstream that
//! serves that model. `SPEC.md` (kept beside the project) is the contract;
//! this page is the map.
//!
//! # Layout
//!
//! | module | owns | does not own |
//! |---|---|---|
//! | [`cli`] | argv → [`cli::Mode`] (lexopt) | validation, I/O |
//! | [`config`] | JSON → validated [`config::Config`], key-path errors | sockets |
//! | [`secrets`] | `${env:}` / `${file:}` / `$NAME` expansion, [`secrets::Secret`] | where secrets are used |
//! | [`http::head`] | request/response head parsing, framing decision | bodies |
//! | [`http::body`] | Content-Length / chunked decoding, the body cap | what the body means |
//! | [`http::rewrite`] | upstream request head, client response head | sockets |
//! | [`http::respond`] | router-made responses as bytes | writing them |
//! | [`scan`] | finding `model` in JSON and multipart bodies | framing |
//! | [`auth`] | constant-time token check (`Authorization: Bearer`, `x-api-key`) | which requests need it |
//! | [`route`] | model name → [`route::Upstream`] | connecting |
//! | [`error`] | the request-path error and its status mapping | rendering |
//! | [`conn`] | one client connection, the request sequence; `conn/exchange.rs`: sending, relaying, the tunnel | parsing |
//! | [`upstream`] | connecting (TCP, TLS, unix), the connect timeout, the liveness check | what is sent, the retry (`conn`) |
//! | [`pool`] | idle upstream connections per origin, liveness check | connecting |
//! | [`spare`] | warm buffers for held large bodies, expired when unused | when a body is held |
//! | [`server`] | listeners, accept loop, signals, graceful drain | requests |
//! | `tls` | rustls client config and handshake (feature `tls`) | the TCP connection |
//! | [`log`] | logfmt access and startup lines on stderr | deciding what to log |
//! | `words` | byte tests eight at a time in a `u64` | which bytes to look for |
//! | [`systemd`] | `sd_notify` datagrams, socket-activated listeners (`LISTEN_FDS`) | when to notify, which listeners to use |
//! | `fuzzing` | the invariants the fuzz/ targets check (hidden; unit-tested over the corpora) | running the fuzzers |
//!
//! Everything under `http/` and `scan/` is sans-IO: bytes in, a status out,
//! no tokio. Only `server`, `conn`, `upstream` and `pool` touch sockets.
//!
//! # One request
//!
//! 1. `server` accepts, sets `TCP_NODELAY`, spawns [`conn::serve`].
//! 2. `conn` reads until [`http::head::parse_request`] is complete (64 KiB,
//!    100 fields, 10 s once the first byte arrived).
//! 3. `/health`, `/v1/models`, `/v1/models/{id}` are answered here.
//! 4. [`auth::Tokens::check`] runs before the body is looked at.
//! 5. The framing decided by the head builds an [`http::body::Decoder`]
//!    (cap enforced there); `Expect: 100-continue` is answered.
//! 6. The model comes from `/route/{model}/...`, from `?model=` (requests
//!    without a body, WebSocket upgrades), or from the body: payload bytes
//!    feed a [`scan::Scanner`] and wire bytes are held only until `model` is
//!    found.
//! 7. [`route::Table::get`] picks the upstream (404 `model_not_found`).
//! 8. [`http::rewrite::request_head`] writes the upstream head; the held bytes
//!    and then the rest of the body stream to the upstream while the scanner
//!    keeps watching for a duplicate `model`.
//! 9. The response head is parsed, rewritten and relayed; the body is copied
//!    as it arrives, its end found by a response-side decoder.
//! 10. The upstream connection returns to the [`pool`] if its response ended
//!     cleanly; the client connection loops for the next request.
//!
//! Any error before the first response byte becomes one JSON answer written
//! by `conn`; after that, the only option is to close.

#![deny(unsafe_code)] // one audited exception: systemd::listen_fds (see its SAFETY comment)

pub mod auth;
pub mod cli;
pub mod config;
pub mod conn;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod log;
pub mod pool;
pub mod route;
pub mod scan;
pub mod secrets;
pub mod server;
pub mod spare;
pub mod systemd;
#[cfg(feature = "tls")]
pub mod tls;
pub mod upstream;
mod words;
