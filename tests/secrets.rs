//! Secrets never leave the process (issue 4, point 7; SPEC §1, §2, §6).
//!
//! The router is configured with secret values from every source SPEC §2
//! has (`${env:NAME}`, `$NAME`, `${NAME}`, `${file:PATH}` relative to
//! `$CREDENTIALS_DIRECTORY`, absolute `${file:...}`, and literal values) in
//! both places secrets go (`authTokens`, `models.*.headers`), then driven
//! through every path that writes output: startup, forwarding, streaming,
//! 401s, 400/404/413/431/502, own endpoints, SIGTERM; `--check`,
//! `--check --no-secrets`, and startup errors caused by secret values
//! themselves. All of stdout and stderr of every run, every router-made
//! response, and `Debug` of the parsed config are searched for every secret
//! value (and for each one's long fragments): never found.

mod support;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use llmhop::config::{self, SecretMode};
use llmhop::secrets::Lookup;
use serde_json::{json, Value};
use support::*;

const ENV_KEY: &str = "sk-envbraced-Qh7Zk2Lw9SECRET";
const SHORT_ENV: &str = "org-shortform-Pn4Xe8SECRET";
const BRACED_ENV: &str = "proj-bracedshort-Vt3Ma6SECRET";
const FILE_TOKEN: &str = "tok-credsdir-Rb5Yc1SECRET";
const ABS_FILE: &str = "key-absfile-Jd8Uq4SECRET";
const ENV_TOKEN: &str = "tok-envtoken-Ws2Gn7SECRET";
const LITERAL_HEADER: &str = "lit-header-Fk9Hs3SECRET";
const LITERAL_TOKEN: &str = "tok-literal-Ce6Lp0SECRET";

const SECRETS: &[&str] = &[
    ENV_KEY,
    SHORT_ENV,
    BRACED_ENV,
    FILE_TOKEN,
    ABS_FILE,
    ENV_TOKEN,
    LITERAL_HEADER,
    LITERAL_TOKEN,
];

/// Every secret, and every 12-byte piece of it, must be absent from `out`
/// (a truncated or partly masked secret is still a leak).
fn assert_clean(what: &str, out: &str) {
    if let Some(leak) = leak(what, out) {
        panic!("{leak}");
    }
}

/// The first secret (or 12-byte piece of one) found in `out`, described.
fn leak(what: &str, out: &str) -> Option<String> {
    for secret in SECRETS {
        for window in secret.as_bytes().windows(12) {
            let piece = std::str::from_utf8(window).unwrap();
            if out.contains(piece) {
                return Some(format!(
                    "{what}: {piece:?}, part of secret {secret:?}, was printed: {}",
                    out.trim_end()
                ));
            }
        }
    }
    None
}

/// A temp dir with the credential files and the config.
struct Setup {
    dir: PathBuf,
    creds: PathBuf,
}

impl Setup {
    fn new(upstream: &str, down: &str) -> Setup {
        let dir = fresh_temp_dir("secrets");
        let creds = dir.join("creds");
        fs::create_dir_all(&creds).unwrap();
        fs::write(creds.join("client_token"), format!("{FILE_TOKEN}\n")).unwrap();
        fs::write(dir.join("abs_key"), format!("{ABS_FILE}\r\n")).unwrap();
        let config = json!({
            "listen": "127.0.0.1:0",
            "maxBodyBytes": 4096,
            "authTokens": ["${file:client_token}", "${env:LLMHOP_ENV_TOKEN}", LITERAL_TOKEN],
            "timeouts": { "headSeconds": 1, "shutdownSeconds": 2 },
            "models": {
                "m": {
                    "url": upstream,
                    "headers": {
                        "Authorization": "Bearer ${env:LLMHOP_ENV_KEY}",
                        "OpenAI-Organization": "$LLMHOP_ORG",
                        "OpenAI-Project": "${LLMHOP_PROJECT}",
                        "X-Abs": format!("${{file:{}}}", dir.join("abs_key").display()),
                        "X-Literal": LITERAL_HEADER,
                    }
                },
                "down": {
                    "url": down,
                    "headers": { "Authorization": "Bearer ${env:LLMHOP_ENV_KEY}" }
                }
            }
        });
        fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        Setup { dir, creds }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmhop"));
        cmd.current_dir(&self.dir)
            .args(args)
            .env("CREDENTIALS_DIRECTORY", &self.creds)
            .env("LLMHOP_ENV_KEY", ENV_KEY)
            .env("LLMHOP_ORG", SHORT_ENV)
            .env("LLMHOP_PROJECT", BRACED_ENV)
            .env("LLMHOP_ENV_TOKEN", ENV_TOKEN)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs to completion; returns (exit code, stdout + stderr).
    fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.command(args).output().expect("run llmhop");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The router as a child whose stdout and stderr go to files (nothing to
/// drain, panics included), killed through its handle on drop.
struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Running {
    fn start(setup: &Setup) -> (Running, std::net::SocketAddr) {
        let out = setup.dir.join("stdout.log");
        let err = setup.dir.join("stderr.log");
        let child = setup
            .command(&[])
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn llmhop");
        let mut running = Running { child, out, err };
        let mut addr = None;
        let started = poll_until(STARTUP_DEADLINE, || {
            addr = running.output().lines().find_map(|l| {
                if !l.contains("msg=listening") {
                    return None;
                }
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("listen="))
                    .and_then(|v| v.trim_matches('"').split(',').next()?.parse().ok())
            });
            addr.is_some() || matches!(running.child.try_wait(), Ok(Some(_)))
        });
        let Some(addr) = addr.filter(|_| started) else {
            let text = running.output();
            let _ = running.child.kill();
            panic!("router did not start:\n{text}");
        };
        (running, addr)
    }

    fn output(&self) -> String {
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.out), read(&self.err))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn running_router_never_prints_a_secret() {
    let upstream = FakeUpstream::start(|r| {
        if r.target.contains("stream") {
            Reply::sse(
                vec!["data: {\"x\":1}\n\n".into(), "data: [DONE]\n\n".into()],
                Duration::from_millis(5),
            )
        } else {
            Reply::json(r#"{"ok":true}"#)
        }
    });
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let setup = Setup::new(&upstream.url(), &down);
    let (router, addr) = Running::start(&setup);

    let auth = |token: &str| format!("Authorization: Bearer {token}");
    let good = [
        auth(FILE_TOKEN),
        auth(ENV_TOKEN),
        auth(LITERAL_TOKEN),
        format!("x-api-key: {FILE_TOKEN}"),
    ];
    let mut router_made = Vec::new();
    // Forwarded, with every accepted token form.
    for header in &good {
        let r = Client::connect(addr).exchange(&post_json(
            "/v1/chat/completions",
            &[header],
            r#"{"model":"m"}"#,
        ));
        assert_eq!(r.status, 200, "{header}: {}", lossy(&r.raw));
    }
    // Streamed.
    let r = Client::connect(addr).exchange(&post_json(
        "/v1/stream",
        &[&good[0]],
        r#"{"model":"m","stream":true}"#,
    ));
    assert_eq!(r.status, 200);
    // The configured secrets did reach the upstream (so the search below
    // is searching for values the router really holds).
    let seen = upstream.wait_requests(5, Duration::from_secs(5));
    assert_eq!(
        seen[0].header("authorization"),
        Some(&*format!("Bearer {ENV_KEY}"))
    );
    assert_eq!(seen[0].header("openai-organization"), Some(SHORT_ENV));
    assert_eq!(seen[0].header("openai-project"), Some(BRACED_ENV));
    assert_eq!(seen[0].header("x-abs"), Some(ABS_FILE));
    assert_eq!(seen[0].header("x-literal"), Some(LITERAL_HEADER));

    // Router-made answers, each on its own connection.
    let half = &FILE_TOKEN[..FILE_TOKEN.len() / 2];
    let requests: Vec<(u16, Vec<u8>)> = vec![
        (401, chat("m")),
        (401, post_json("/v1/chat/completions", &[&auth(half)], r#"{"model":"m"}"#)),
        (
            401,
            post_json(
                "/v1/chat/completions",
                &[&auth(&format!("{FILE_TOKEN}x"))],
                r#"{"model":"m"}"#,
            ),
        ),
        (401, get("/v1/models", &[&format!("x-api-key: {ENV_KEY}")])),
        (200, get("/v1/models", &[&good[1]])),
        (200, get("/v1/models/m", &[&good[2]])),
        (200, get("/health", &[])),
        (404, post_json("/v1/chat/completions", &[&good[0]], r#"{"model":"nope"}"#)),
        (400, post_json("/v1/chat/completions", &[&good[0]], r#"{"model":1}"#)),
        (400, post_json("/v1/chat/completions", &[&good[0]], "not json")),
        (502, post_json("/v1/chat/completions", &[&good[0]], r#"{"model":"down"}"#)),
        (
            413,
            post_json(
                "/v1/chat/completions",
                &[&good[0]],
                &format!(r#"{{"model":"m","x":"{}"}}"#, "a".repeat(5000)),
            ),
        ),
        (
            400,
            format!("POST / HTTP/1.1\r\nHost: x\r\n{}\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", good[0]).into_bytes(),
        ),
        (
            431,
            format!(
                "GET /health HTTP/1.1\r\nHost: x\r\n{}\r\nX-Pad: {}\r\n\r\n",
                good[0],
                "p".repeat(70 * 1024)
            )
            .into_bytes(),
        ),
    ];
    for (status, request) in &requests {
        let mut client = Client::connect(addr);
        let _ = client.send_lossy(request);
        let r = client
            .try_read_response(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("expected {status}: {e}"));
        assert_eq!(r.status, *status, "{}", lossy(&r.raw));
        router_made.push(lossy(&r.raw));
    }
    // A head that never completes: 408 after headSeconds.
    let mut slow = Client::connect(addr);
    slow.send(format!("POST / HTTP/1.1\r\n{}\r\n", good[0]).as_bytes());
    let r = slow.read_response();
    assert_eq!(r.status, 408);
    router_made.push(lossy(&r.raw));
    for (i, text) in router_made.iter().enumerate() {
        assert_clean(&format!("router-made response {i}"), text);
    }

    // SIGTERM: the shutdown lines too.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(router.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let mut router = router;
    let exited = poll_until(Duration::from_secs(10), || {
        matches!(router.child.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "router did not exit on SIGTERM");
    let output = router.output();
    assert!(
        output.matches("status=").count() >= 15,
        "the access log is part of what is searched:\n{output}"
    );
    assert_clean("router stdout + stderr", &output);
}

#[test]
fn check_and_startup_errors_never_print_a_secret() {
    let setup = Setup::new("http://127.0.0.1:9", "http://127.0.0.1:9");
    let (code, out) = setup.run(&["--check"]);
    assert_eq!(code, Some(0), "{out}");
    assert_clean("--check", &out);
    let (code, out) = setup.run(&["--check", "--no-secrets"]);
    assert_eq!(code, Some(0), "{out}");
    assert_clean("--check --no-secrets", &out);
    let (code, out) = setup.run(&["--help"]);
    assert_eq!(code, Some(0), "{out}");
    assert_clean("--help", &out);

    // Config errors caused by, or next to, secret values.
    let base: Value =
        serde_json::from_slice(&fs::read(setup.dir.join("config.json")).unwrap()).unwrap();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        edit(&mut c);
        c
    };
    let cases: Vec<(&str, Value, Option<SecretFile>)> = vec![
        // A secret file with a newline in the middle.
        (
            "file secret with inner newline",
            base.clone(),
            Some((
                "client_token",
                format!("{FILE_TOKEN}\nX-Injected: {ENV_KEY}\n"),
            )),
        ),
        // A secret file with a CR and a NUL.
        (
            "file secret with CR",
            base.clone(),
            Some(("client_token", format!("{FILE_TOKEN}\r{ABS_FILE}"))),
        ),
        (
            "file secret with NUL",
            base.clone(),
            Some(("client_token", format!("{FILE_TOKEN}\0"))),
        ),
        // An env secret in a header whose name is invalid.
        (
            "bad header name",
            with(&|c| {
                c["models"]["m"]["headers"]["Bad Name"] = json!("${env:LLMHOP_ENV_KEY}");
            }),
            None,
        ),
        // A typo next to the secrets.
        (
            "unknown key",
            with(&|c| c["models"]["m"]["headerz"] = json!({ "A": LITERAL_HEADER })),
            None,
        ),
        // Literal secrets in the wrong shape: serde's messages quote
        // strings they did not expect.
        (
            "authTokens as a string",
            with(&|c| c["authTokens"] = json!(LITERAL_TOKEN)),
            None,
        ),
        (
            "headers as a string",
            with(&|c| {
                c["models"]["m"]["headers"] = json!(format!("Authorization: {LITERAL_HEADER}"))
            }),
            None,
        ),
        (
            "header value as a list",
            with(&|c| c["models"]["m"]["headers"]["X-Literal"] = json!([LITERAL_HEADER])),
            None,
        ),
        (
            "token as the url",
            with(&|c| c["models"]["m"]["url"] = json!(format!("http://u:{LITERAL_TOKEN}@h"))),
            None,
        ),
        (
            "empty token among secrets",
            with(&|c| c["authTokens"] = json!([LITERAL_TOKEN, ""])),
            None,
        ),
    ];
    let mut leaks = Vec::new();
    for (name, config, file) in cases {
        fs::write(
            setup.dir.join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        if let Some((path, content)) = &file {
            fs::write(setup.creds.join(path), content).unwrap();
        }
        for args in [&["--check"][..], &[][..]] {
            let (code, out) = setup.run(args);
            assert_eq!(code, Some(1), "{name} {args:?}: must fail:\n{out}");
            assert_eq!(out.lines().count(), 1, "{name}: one line:\n{out}");
            leaks.extend(leak(&format!("{name} {args:?}"), &out));
        }
        if file.is_some() {
            fs::write(setup.creds.join("client_token"), format!("{FILE_TOKEN}\n")).unwrap();
        }
    }

    assert!(
        leaks.is_empty(),
        "{} config error(s) printed a secret:\n{}",
        leaks.len(),
        leaks.join("\n")
    );

    // A JSON syntax error right after a literal secret.
    let text =
        format!("{{\"authTokens\": [\"{LITERAL_TOKEN}\" \"{LITERAL_HEADER}\"], \"models\": {{}}}}");
    fs::write(setup.dir.join("config.json"), text).unwrap();
    let (code, out) = setup.run(&["--check"]);
    assert_eq!(code, Some(1), "{out}");
    assert_clean("JSON syntax error", &out);
    // The config path pointed at a secret file by mistake.
    for path in ["creds/client_token", "abs_key"] {
        let (code, out) = setup.run(&["--check", "--config", path]);
        assert_eq!(code, Some(1), "{out}");
        assert_clean(&format!("--config {path}"), &out);
    }
}

/// A credential file to overwrite for one case: (name, content).
type SecretFile = (&'static str, String);

/// The fake environment for the library-level check.
struct Fake;

impl Lookup for Fake {
    fn env(&self, name: &str) -> Result<String, std::env::VarError> {
        match name {
            "LLMHOP_ENV_KEY" => Ok(ENV_KEY.into()),
            "LLMHOP_ORG" => Ok(SHORT_ENV.into()),
            "LLMHOP_PROJECT" => Ok(BRACED_ENV.into()),
            "LLMHOP_ENV_TOKEN" => Ok(ENV_TOKEN.into()),
            _ => Err(std::env::VarError::NotPresent),
        }
    }

    fn file(&self, path: &str) -> io::Result<String> {
        if path.ends_with("abs_key") {
            Ok(format!("{ABS_FILE}\n"))
        } else if path == "client_token" {
            Ok(format!("{FILE_TOKEN}\n"))
        } else {
            Err(io::ErrorKind::NotFound.into())
        }
    }
}

#[test]
fn config_debug_and_errors_never_show_a_secret() {
    let setup = Setup::new("http://127.0.0.1:9", "http://127.0.0.1:9");
    let text = fs::read_to_string(setup.dir.join("config.json")).unwrap();
    let config = config::parse(&text, SecretMode::Resolve, &Fake).expect("the config parses");
    assert_clean("Debug of Config", &format!("{config:?}"));
    assert_clean("Debug of Config (pretty)", &format!("{config:#?}"));
    assert_clean("--check summary", &config.summary());
    for upstream in config.routes.upstreams() {
        assert_clean("Debug of Upstream", &format!("{upstream:?}"));
    }
    assert_clean("Debug of Tokens", &format!("{:?}", config.tokens));
    // Secret values as such.
    let secret = llmhop::secrets::expand("${env:LLMHOP_ENV_KEY}", &Fake).unwrap();
    assert_eq!(secret.expose(), ENV_KEY);
    assert_clean("Debug of Secret", &format!("{secret:?} {secret}"));
    // Errors raised by bad secret values.
    let bad = text.replace("${env:LLMHOP_ENV_KEY}", &format!("{ENV_KEY}\\r\\nX: y"));
    let err = config::parse(&bad, SecretMode::Resolve, &Fake).expect_err("CRLF in a value");
    assert_clean("ConfigError", &format!("{err} {err:?}"));
}
