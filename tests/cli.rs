//! The real binary: `--version`, `--help`, `--check` summaries, exit codes,
//! one-line errors, and secrets never printed (SPEC §1, §2).
//!
//! Each test writes its files into its own temp directory and runs the
//! binary with a controlled environment; every run's stdout and stderr are
//! checked against every secret string the test planted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Secret values planted by the tests. None may ever appear in output.
const SECRETS: &[&str] = &[
    "sk-env-SECRET-1",
    "tok-file-SECRET-2",
    "cred-SECRET-3",
    "inner-SECRET-4",
    "literal-SECRET-5",
];

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("llmhop-cli-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs llmhop in `cwd` with `args`, `CREDENTIALS_DIRECTORY` and the test
/// variables cleared and then `env` set; asserts no secret was printed.
fn llmhop(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmhop"));
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("LLMHOP_TEST_KEY")
        .env_remove("LLMHOP_TEST_UNSET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run llmhop");
    let run = Run {
        status: status.code(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    };
    for secret in SECRETS {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "secret {secret} printed:\nstdout: {}\nstderr: {}",
            run.stdout,
            run.stderr
        );
    }
    run
}

/// Asserts a failure: `status`, nothing on stdout, exactly one stderr line
/// that starts with `llmhop: ` and contains `wants`.
fn assert_one_line_error(run: &Run, status: i32, wants: &[&str]) {
    assert_eq!(run.status, Some(status), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr.lines().count(), 1, "{:?}", run.stderr);
    assert!(run.stderr.starts_with("llmhop: "), "{}", run.stderr);
    for want in wants {
        assert!(run.stderr.contains(want), "want {want:?} in {}", run.stderr);
    }
}

#[test]
fn version() {
    let dir = TempDir::new();
    let run = llmhop(&dir.0, &["--version"], &[]);
    assert_eq!(run.status, Some(0));
    assert_eq!(
        run.stdout,
        format!("llmhop {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(run.stderr, "");
    assert_eq!(llmhop(&dir.0, &["-V"], &[]).stdout, run.stdout);
}

#[test]
fn help() {
    let dir = TempDir::new();
    let run = llmhop(&dir.0, &["--help"], &[]);
    assert_eq!(run.status, Some(0));
    assert_eq!(run.stderr, "");
    for flag in ["--config", "--check", "--no-secrets", "--version", "--help"] {
        assert!(run.stdout.contains(flag), "{flag} missing from help");
    }
    assert_eq!(llmhop(&dir.0, &["-h"], &[]).stdout, run.stdout);
}

#[test]
fn usage_errors_exit_2() {
    let dir = TempDir::new();
    for (args, want) in [
        (
            &["--no-secrets"][..],
            "--no-secrets is only valid with --check",
        ),
        (&["--bogus"][..], "invalid option '--bogus'"),
        (&["run"][..], "unexpected argument \"run\""),
        (&["--config"][..], "missing argument for option '--config'"),
    ] {
        let run = llmhop(&dir.0, args, &[]);
        assert_one_line_error(&run, 2, &[want, "--help"]);
    }
}

const FULL: &str = r#"{
  "listen": "127.0.0.1:18080",
  "authTokens": ["${file:client_token}", "literal-SECRET-5"],
  "models": {
    "llama-3-8b": { "url": "http://localhost:30000" },
    "openai-gpt-4o": { "url": "http://127.0.0.1:8443",
                       "headers": { "Authorization": "Bearer ${env:LLMHOP_TEST_KEY}",
                                    "X-Title": "$$literal-SECRET-5" } },
    "router-model": { "url": "http://localhost:30001/api/" }
  }
}"#;

#[test]
fn check_prints_summary_without_secrets() {
    let dir = TempDir::new();
    dir.write("config.json", FULL);
    dir.write("client_token", "tok-file-SECRET-2\n");
    let run = llmhop(
        &dir.0,
        &["--check"],
        &[("LLMHOP_TEST_KEY", "sk-env-SECRET-1")],
    );
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stderr, "");
    let out = &run.stdout;
    for want in [
        "listen: 127.0.0.1:18080",
        "auth: on (2 tokens)",
        "llama-3-8b -> http://localhost:30000",
        "openai-gpt-4o -> http://127.0.0.1:8443",
        "router-model -> http://localhost:30001/api",
        "authorization",
        "x-title",
    ] {
        assert!(out.contains(want), "want {want:?} in:\n{out}");
    }
    // Header values and tokens, even the literal parts, stay out.
    for never in ["Bearer", "$literal"] {
        assert!(!out.contains(never), "{never:?} in:\n{out}");
    }
}

#[test]
fn check_with_explicit_config_path() {
    let dir = TempDir::new();
    let path = dir.write("other.json", r#"{"models":{"m":{"url":"http://h"}}}"#);
    let run = llmhop(&dir.0, &["--check", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.contains("listen: :8080"), "{}", run.stdout);
    assert!(run.stdout.contains("auth: off"), "{}", run.stdout);
    assert!(run.stdout.contains("m -> http://h"), "{}", run.stdout);
}

#[test]
fn unset_env_var_is_one_line_naming_the_key_path() {
    let dir = TempDir::new();
    dir.write("config.json", FULL);
    dir.write("client_token", "tok-file-SECRET-2\n");
    let run = llmhop(&dir.0, &["--check"], &[]);
    assert_one_line_error(
        &run,
        1,
        &["llmhop: config.json: models.openai-gpt-4o.headers.Authorization: env var LLMHOP_TEST_KEY is not set"],
    );
}

/// A variable set to bytes that are not UTF-8 is named as such, not as
/// unset, and its value is not printed.
#[test]
fn env_var_not_utf8_is_named_as_such() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new();
    dir.write(
        "config.json",
        r#"{"models":{"m":{"url":"http://h","headers":{"X-Key":"${env:LLMHOP_TEST_KEY}"}}}}"#,
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmhop"));
    cmd.current_dir(&dir.0).arg("--check").env(
        "LLMHOP_TEST_KEY",
        std::ffi::OsStr::from_bytes(b"SECRET-\xff-value"),
    );
    let out = cmd.output().expect("run llmhop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "llmhop: config.json: models.m.headers.X-Key: env var LLMHOP_TEST_KEY is not valid UTF-8"
    );
}

#[test]
fn run_mode_reports_config_errors_too() {
    let dir = TempDir::new();
    dir.write("config.json", FULL);
    let run = llmhop(&dir.0, &[], &[("LLMHOP_TEST_KEY", "sk-env-SECRET-1")]);
    assert_one_line_error(
        &run,
        1,
        &["llmhop: config.json: authTokens[0]: cannot read file client_token: No such file or directory"],
    );
}

/// A listen address that cannot be bound is one line naming it.
#[test]
fn listen_address_in_use_is_one_line_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = TempDir::new();
    dir.write(
        "config.json",
        &format!(r#"{{"listen":"{addr}","models":{{"m":{{"url":"http://127.0.0.1:9"}}}}}}"#),
    );
    let run = llmhop(&dir.0, &[], &[]);
    assert_one_line_error(&run, 1, &[&format!("llmhop: listen: {addr}: "), "in use"]);
}

#[test]
fn secret_file_with_inner_newline_is_refused() {
    let dir = TempDir::new();
    dir.write(
        "config.json",
        r#"{"models":{"m":{"url":"http://h","headers":{"X-Key":"${file:key}"}}}}"#,
    );
    dir.write("key", "inner-SECRET-4\nInjected: yes\n");
    let run = llmhop(&dir.0, &["--check"], &[]);
    assert_one_line_error(
        &run,
        1,
        &["models.m.headers.X-Key: value contains CR, LF or NUL"],
    );
    assert!(!run.stderr.contains("Injected"));
}

#[test]
fn relative_file_resolves_against_credentials_directory() {
    let dir = TempDir::new();
    let creds = TempDir::new();
    dir.write(
        "config.json",
        r#"{"authTokens":["${file:client_token}"],"models":{"m":{"url":"http://h"}}}"#,
    );
    // A decoy in the working directory must not be the one read.
    dir.write("client_token", "with\nnewline\n");
    creds.write("client_token", "cred-SECRET-3\r\n");
    let credentials = creds.0.to_str().unwrap();
    let run = llmhop(
        &dir.0,
        &["--check"],
        &[("CREDENTIALS_DIRECTORY", credentials)],
    );
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.contains("auth: on (1 token)"), "{}", run.stdout);

    // Without it the working directory is used, and there the decoy fails.
    let run = llmhop(&dir.0, &["--check"], &[]);
    assert_one_line_error(&run, 1, &["authTokens[0]: value contains CR, LF or NUL"]);
}

#[test]
fn no_secrets_checks_syntax_only() {
    let dir = TempDir::new();
    dir.write("config.json", FULL);
    let run = llmhop(&dir.0, &["--check", "--no-secrets"], &[]);
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    assert!(run
        .stdout
        .contains("openai-gpt-4o -> http://127.0.0.1:8443"));

    dir.write(
        "config.json",
        r#"{"models":{"m":{"url":"http://h","headers":{"A":"${vault:x}"}}}}"#,
    );
    let run = llmhop(&dir.0, &["--check", "--no-secrets"], &[]);
    assert_one_line_error(
        &run,
        1,
        &["models.m.headers.A: unknown secret reference kind `vault`"],
    );
}

#[test]
fn unknown_key_is_named() {
    let dir = TempDir::new();
    dir.write(
        "config.json",
        r#"{"models":{"m":{"url":"http://h","header":{"A":"literal-SECRET-5"}}}}"#,
    );
    let run = llmhop(&dir.0, &["--check"], &[]);
    assert_one_line_error(&run, 1, &["config.json: models.m: unknown field `header`"]);

    dir.write(
        "config.json",
        r#"{"listn":":1","models":{"m":{"url":"http://h"}}}"#,
    );
    let run = llmhop(&dir.0, &["--check"], &[]);
    assert_one_line_error(&run, 1, &["unknown field `listn`"]);
}

#[test]
fn syntax_error_names_line_and_column() {
    let dir = TempDir::new();
    dir.write(
        "config.json",
        "{\n  \"models\": {\n    \"m\": {\"url\": \"http://h\"},\n  }\n}\n",
    );
    let run = llmhop(&dir.0, &["--check"], &[]);
    assert_one_line_error(&run, 1, &["llmhop: config.json: line 4 column 3: "]);
}

/// `--check` refuses what the run would: with an https upstream, an
/// unreadable `$SSL_CERT_FILE`; `--no-secrets` (build time) does not look.
#[cfg(feature = "tls")]
#[test]
fn check_loads_the_tls_roots_the_run_needs() {
    let dir = TempDir::new();
    dir.write(
        "config.json",
        r#"{"models":{"gpt":{"url":"https://api.openai.com/"}}}"#,
    );
    let missing = dir.0.join("no-such-ca.pem");
    let env = [("SSL_CERT_FILE", missing.to_str().unwrap())];
    let run = llmhop(&dir.0, &["--check"], &env);
    assert_one_line_error(&run, 1, &["llmhop: SSL_CERT_FILE", "no-such-ca.pem"]);
    let run = llmhop(&dir.0, &["--check", "--no-secrets"], &env);
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
}

/// `https://` works with the `tls` feature; without it, startup names the
/// sidecar alternative (SPEC §5).
#[test]
fn https_depends_on_the_tls_feature() {
    let dir = TempDir::new();
    dir.write(
        "config.json",
        r#"{"models":{"gpt":{"url":"https://api.openai.com/"}}}"#,
    );
    let run = llmhop(&dir.0, &["--check"], &[]);
    if cfg!(feature = "tls") {
        assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
        assert!(
            run.stdout.contains("gpt -> https://api.openai.com\n"),
            "{}",
            run.stdout
        );
    } else {
        assert_one_line_error(
            &run,
            1,
            &["models.gpt.url: https upstreams need the tls feature; point the url at an http:// TLS-terminating sidecar instead"],
        );
    }
}

/// A config path with a newline in it still gives a one-line error.
#[test]
fn config_path_with_a_newline_stays_one_line() {
    let dir = TempDir::new();
    let run = llmhop(&dir.0, &["--check", "-c", "a\nb.json"], &[]);
    assert_one_line_error(&run, 1, &["llmhop: a\\nb.json: cannot read"]);
}

#[test]
fn missing_config_file() {
    let dir = TempDir::new();
    let run = llmhop(&dir.0, &["--check", "--config", "nope.json"], &[]);
    assert_one_line_error(
        &run,
        1,
        &["llmhop: nope.json: cannot read: No such file or directory"],
    );
}
