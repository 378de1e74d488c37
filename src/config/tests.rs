use super::*;
use crate::route::{Scheme, Url};
use std::collections::HashMap;
use std::io;

struct Fake(HashMap<&'static str, &'static str>);

impl Lookup for Fake {
    fn env(&self, name: &str) -> Result<String, std::env::VarError> {
        self.0
            .get(name)
            .map(|v| v.to_string())
            .ok_or(std::env::VarError::NotPresent)
    }
    fn file(&self, path: &str) -> io::Result<String> {
        match self.0.get(format!("file:{path}").as_str()) {
            Some(v) => Ok(v.to_string()),
            None => Err(io::Error::from_raw_os_error(2)),
        }
    }
}

fn fake() -> Fake {
    Fake(HashMap::from([
        ("KEY", "sk-SECRET"),
        ("file:tok", "tok-SECRET\n"),
        ("file:bad", "bad\n-SECRET\n"),
        ("BLANK", " "),
    ]))
}

fn load_str(text: &str) -> Result<Config, ConfigError> {
    parse(text, SecretMode::Resolve, &fake())
}

const MIN: &str = r#"{"models":{"m":{"url":"http://localhost:30000"}}}"#;

#[test]
fn minimal_gets_defaults() {
    let c = load_str(MIN).unwrap();
    assert_eq!(c.listen, Listen::All(8080));
    assert_eq!(c.max_body_bytes, 104_857_600);
    assert!(!c.tokens.enabled());
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(c.routes.names(), ["m"]);
}

#[test]
fn full_config() {
    let text = r#"{
        "listen": "127.0.0.1:9000",
        "maxBodyBytes": 10,
        "authTokens": ["${file:tok}", "lit$$"],
        "models": {
            "b": {"url": "HTTP://api.example.com:8080/v1/", "headers": {"Authorization": "Bearer $KEY", "X-A": ""}},
            "a": {"url": "http://[::1]:8000"},
            "c": {"url": "http://10.0.0.5", "headers": {"Host": "llm.internal"}}
        },
        "timeouts": {"headSeconds": 0.25, "shutdownSeconds": 1}
    }"#;
    let c = load_str(text).unwrap();
    assert_eq!(c.listen, Listen::Addr("127.0.0.1:9000".into()));
    assert_eq!(c.max_body_bytes, 10);
    assert!(c.tokens.check(Some(b"Bearer tok-SECRET"), None));
    assert!(c.tokens.check(Some(b"Bearer lit$"), None));
    assert_eq!(c.timeouts.head, Duration::from_millis(250));
    assert_eq!(c.timeouts.shutdown, Duration::from_secs(1));
    assert_eq!(c.timeouts.idle, Duration::from_secs(60));
    let b = c.routes.get("b").unwrap();
    assert_eq!(b.origin, "http://api.example.com:8080");
    assert_eq!(b.url.prefix, "/v1");
    assert_eq!(
        b.header_block,
        b"Authorization: Bearer sk-SECRET\r\nX-A: \r\n"
    );
    assert_eq!(c.routes.get("a").unwrap().authority, "[::1]:8000");
    let vhost = c.routes.get("c").unwrap();
    assert_eq!(vhost.authority, "llm.internal");
    assert!(vhost.header_block.is_empty());

    let summary = c.summary();
    assert!(summary.contains("listen: 127.0.0.1:9000\n"), "{summary}");
    assert!(summary.contains("auth: on (2 tokens)\n"), "{summary}");
    assert!(summary.contains("  a -> http://[::1]:8000\n"), "{summary}");
    assert!(
        summary.contains("  b -> http://api.example.com:8080/v1 (headers: authorization, x-a)\n"),
        "{summary}"
    );
    assert!(
        summary.contains("  c -> http://10.0.0.5 (headers: host)\n"),
        "{summary}"
    );
    assert!(
        !summary.contains("SECRET") && !summary.contains("lit"),
        "{summary}"
    );
}

#[test]
fn syntax_only_mode() {
    let text = r#"{"authTokens": ["${env:UNSET}"],
        "models": {"m": {"url": "http://h", "headers": {"A": "${file:/nope}"}}}}"#;
    assert!(load_str(text).is_err());
    let c = parse(text, SecretMode::SyntaxOnly, &fake()).unwrap();
    assert!(c.tokens.enabled());
    let bad = r#"{"models": {"m": {"url": "http://h", "headers": {"A": "${vault:x}"}}}}"#;
    let err = parse(bad, SecretMode::SyntaxOnly, &fake()).unwrap_err();
    assert_eq!(err.path, "models.m.headers.A");
    let bad = "{\"models\": {\"m\": {\"url\": \"http://h\", \"headers\": {\"A\": \"x\\ny\"}}}}";
    let err = parse(bad, SecretMode::SyntaxOnly, &fake()).unwrap_err();
    assert_eq!(err.reason, "value contains CR, LF or NUL");
}

/// Bad configs: (text, error path, start of the reason).
#[test]
fn errors_name_their_path() {
    let m = |model: &str| format!(r#"{{"models":{{"m":{model}}}}}"#);
    let h = |headers: &str| m(&format!(r#"{{"url":"http://h","headers":{headers}}}"#));
    let u = |url: &str| m(&format!(r#"{{"url":{url:?}}}"#));
    let top = |extra: &str| format!(r#"{{{extra},"models":{{"m":{{"url":"http://h"}}}}}}"#);
    #[rustfmt::skip]
    let cases: Vec<(String, &str, &str)> = vec![
        // serde stage
        ("".into(), "line 1 column 0", "EOF while parsing"),
        ("{".into(), "line 1 column 1", "EOF while parsing"),
        ("{\"models\": {,}}".into(), "line 1 column 13", "key must be a string"),
        ("[]".into(), "", "invalid type: sequence, expected an object"),
        ("\"x\"".into(), "", "invalid type: string, expected an object"),
        (m(r#"["http://h"]"#), "models.m", "invalid type: sequence, expected an object"),
        (top(r#""timeouts":[1]"#), "timeouts", "invalid type: sequence"),
        (top(r#""lisen":":1""#), "", "unknown field `lisen`, expected one of"),
        (top(r#""listen":80"#), "listen", "invalid type: integer, expected a string"),
        (top(r#""maxBodyBytes":-1"#), "maxBodyBytes", "invalid value: integer, expected"),
        (top(r#""maxBodyBytes":1.5"#), "maxBodyBytes", "invalid type: floating point"),
        (top(r#""authTokens":"x""#), "authTokens", "invalid type: string"),
        // null is not "the default": it would turn auth off unnoticed.
        (top(r#""authTokens":null"#), "authTokens", "invalid type: null"),
        (top(r#""maxBodyBytes":null"#), "maxBodyBytes", "invalid type: null"),
        (top(r#""listen":null"#), "listen", "invalid type: null"),
        (top(r#""timeouts":null"#), "timeouts", "invalid type: null"),
        (top(r#""timeouts":{"headSeconds":null}"#), "timeouts.headSeconds", "invalid type: null"),
        (h("null"), "models.m.headers", "invalid type: null"),
        ("{\"models\":null}".into(), "models", "invalid type: null"),
        (top(r#""authTokens":["a",3]"#), "authTokens[1]", "invalid type: integer, expected"),
        (top(r#""timeouts":{"headSecs":1}"#), "timeouts", "unknown field `headSecs`"),
        (top(r#""timeouts":{"idleSeconds":"1"}"#), "timeouts.idleSeconds", "invalid type: string"),
        (m(r#"{"url":"http://h","header":{}}"#), "models.m", "unknown field `header`"),
        (m(r#"{"headers":{}}"#), "models.m", "missing field `url`"),
        ("{\n  \"models\": {\n    \"m\": {\"url\": 5}\n  }\n}".into(), "models.m.url", "invalid type"),
        ("{\r\n\"models\":{\"é€\":{\"url\":\"http://h\"},\r\n \"m\":{\"url\":[]}}}".into(), "models.m.url", "invalid type: sequence"),
        (r#"{"models":{"\u00e9":{"url":"http://h","x":1}}}"#.into(), "models.é", "unknown field `x`"),
        (r#"{"models":{"m":{"url":"http://h"}},"authTokens":["a" , 7]}"#.into(), "authTokens[1]", "invalid type: integer"),
        (m(r#"{"headers":{"a":"b"} }"#), "models.m", "missing field `url`"),
        (m(r#"{"url":5}"#), "models.m.url", "invalid type: integer, expected"),
        (m(r#"{"url":{"a":1}}"#), "models.m.url", "invalid type: map"),
        (m(r#""http://h""#), "models.m", "invalid type: string"),
        (h(r#"{"A":1}"#), "models.m.headers.A", "invalid type: integer, expected"),
        (h(r#"{"A":"1","B":"2","A":"3"}"#), "models.m.headers", "duplicate key \"A\""),
        (r#"{"models":{"m":{"url":"http://h"},"m":{"url":"http://h"}}}"#.into(), "models", "duplicate key \"m\""),
        (r#"{"models":{"m":{"url":"http://h"}},"models":{}}"#.into(), "", "duplicate field `models`"),
        // validation stage
        (top(r#""listen":"8080""#), "listen", "expected \":PORT\""),
        (top(r#""listen":":""#), "listen", "invalid port"),
        (top(r#""listen":":+80""#), "listen", "invalid port"),
        (top(r#""listen":":65536""#), "listen", "invalid port"),
        (top(r#""listen":"::1:80""#), "listen", "IPv6 addresses need brackets"),
        (top(r#""listen":"[zz]:80""#), "listen", "\"zz\" is not an IPv6 address"),
        (top(r#""maxBodyBytes":0"#), "maxBodyBytes", "must be greater than 0"),
        (top(r#""authTokens":[]"#), "authTokens", "empty list"),
        (top(r#""authTokens":["ok",""]"#), "authTokens[1]", "token is empty"),
        (top(r#""authTokens":["$BLANK"]"#), "authTokens[0]", "token starts or ends"),
        (top(r#""authTokens":["${env:NOPE}"]"#), "authTokens[0]", "env var NOPE is not set"),
        (top(r#""authTokens":["${file:bad}"]"#), "authTokens[0]", "value contains CR, LF or NUL"),
        (top(r#""timeouts":{"idleSeconds":0}"#), "timeouts.idleSeconds", "must be greater than 0"),
        (top(r#""timeouts":{"headSeconds":-1}"#), "timeouts.headSeconds", "must be greater than 0"),
        (top(r#""timeouts":{"connectSeconds":1e300}"#), "timeouts.connectSeconds", "too large"),
        (r#"{"models":{}}"#.into(), "models", "at least one model"),
        ("{}".into(), "models", "at least one model"),
        (r#"{"models":{"":{"url":"http://h"}}}"#.into(), "models", "a model name is empty"),
        (r#"{"models":{"a\nb":{"url":"http://h"}}}"#.into(), "models", "model name \"a\\nb\" contains"),
        (u("localhost:8000"), "models.m.url", "expected http://"),
        (u("ftp://h"), "models.m.url", "unsupported scheme \"ftp\""),
        (u("unix://run/x.sock"), "models.m.url", "expected unix:///ABSOLUTE/PATH.sock"),
        (u("http://"), "models.m.url", "empty host"),
        (u("http:///x"), "models.m.url", "empty host"),
        (u("http://h?a=1"), "models.m.url", "a query"),
        (u("http://h/#x"), "models.m.url", "a fragment"),
        (u("http://u:p@h"), "models.m.url", "user-info"),
        (u("http://h:0"), "models.m.url", "invalid port \"0\""),
        (u("http://h:"), "models.m.url", "invalid port \"\""),
        (u("http://h:99999"), "models.m.url", "invalid port"),
        (u("http://h:8a"), "models.m.url", "invalid port"),
        (u("http://[::1"), "models.m.url", "unclosed `[`"),
        (u("http://[xyz]"), "models.m.url", "\"xyz\" is not an IPv6"),
        (u("http://[::1]x"), "models.m.url", "unexpected text after `]`"),
        (u("http://::1:80"), "models.m.url", "IPv6 addresses need brackets"),
        (top(r#""listen":"http://127.0.0.1:1""#), "listen", "expected \":PORT\""),
        (u("http://h h"), "models.m.url", "invalid host"),
        (u("http://1.2.3.400"), "models.m.url", "\"1.2.3.400\" is not an IPv4"),
        (u("http://h/a b"), "models.m.url", "the path contains"),
        (u("http://h/%zz"), "models.m.url", "the path has a `%` not followed"),
        (u("http://h/a%2"), "models.m.url", "the path has a `%` not followed"),
        (u("http://h/a\r\nX: y"), "models.m.url", "the path contains"),
        (h(r#"{"Bad Name":"x"}"#), "models.m.headers", "\"Bad Name\" is not a valid header name"),
        (h(r#"{"":"x"}"#), "models.m.headers", "\"\" is not a valid header name"),
        (h(r#"{"Content-Length":"1"}"#), "models.m.headers.Content-Length", "this header is managed by llmhop"),
        (h(r#"{"transfer-encoding":"x"}"#), "models.m.headers.transfer-encoding", "this header is managed"),
        (h(r#"{"X-A":"1","x-a":"2"}"#), "models.m.headers.x-a", "set twice"),
        (h(r#"{"Authorization":"Bearer ${env:OPENAI_KEY}"}"#), "models.m.headers.Authorization", "env var OPENAI_KEY is not set"),
        (h(r#"{"A":"${file:tok}${file:missing}"}"#), "models.m.headers.A", "cannot read file missing: No such file or directory"),
        (h(r#"{"A":"${file:bad}"}"#), "models.m.headers.A", "value contains CR, LF or NUL"),
        (h(r#"{"A":"x\u0000"}"#), "models.m.headers.A", "value contains CR, LF or NUL"),
        (h(r#"{"A":"${oops"}"#), "models.m.headers.A", "unterminated `${`"),
    ];
    for (text, path, reason) in &cases {
        let err = match load_str(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(err) => err,
        };
        assert_eq!(err.path, *path, "{text} → {err}");
        assert!(err.reason.starts_with(reason), "{text} → {err}");
        let line = err.to_string();
        assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
        assert!(!line.contains("SECRET"), "{line}");
    }
}

#[test]
fn urls() {
    let url = |scheme, host: &str, port, prefix: &str| Url {
        scheme,
        host: host.into(),
        port,
        prefix: prefix.into(),
    };
    #[rustfmt::skip]
    let cases = [
        ("http://localhost", url(Scheme::Http, "localhost", 80, "")),
        ("http://localhost/", url(Scheme::Http, "localhost", 80, "")),
        ("HTTP://Localhost:30000//", url(Scheme::Http, "Localhost", 30000, "")),
        ("http://10.0.0.1:8000/v1", url(Scheme::Http, "10.0.0.1", 8000, "/v1")),
        ("http://[::1]", url(Scheme::Http, "::1", 80, "")),
        ("http://[fe80::1]:65535/a/b/", url(Scheme::Http, "fe80::1", 65535, "/a/b")),
        ("https://openrouter.ai/api", url(Scheme::Https, "openrouter.ai", 443, "/api")),
        ("https://h:8443/%7Euser", url(Scheme::Https, "h", 8443, "/%7Euser")),
    ];
    for (text, want) in cases {
        if want.scheme == Scheme::Https && !cfg!(feature = "tls") {
            assert!(parse_url(text)
                .unwrap_err()
                .contains("TLS-terminating sidecar"));
            continue;
        }
        assert_eq!(parse_url(text), Ok(want), "{text}");
    }
}

#[test]
fn listen() {
    assert_eq!(parse_listen(":0"), Ok(Listen::All(0)));
    assert_eq!(parse_listen(":8080"), Ok(Listen::All(8080)));
    assert_eq!(
        parse_listen("[::1]:80"),
        Ok(Listen::Addr("[::1]:80".into()))
    );
    assert_eq!(parse_listen("[::]:80"), Ok(Listen::Addr("[::]:80".into())));
    assert_eq!(
        parse_listen("localhost:1"),
        Ok(Listen::Addr("localhost:1".into()))
    );
    assert!(parse_listen("").is_err());
    assert!(parse_listen(" :80").is_err());
    assert!(parse_listen("[::1]").is_err());
    assert!(parse_listen("::1:80")
        .unwrap_err()
        .contains("need brackets"));
    assert!(parse_listen("http://127.0.0.1:1")
        .unwrap_err()
        .contains("not a url"));
}

#[test]
fn unreadable_file_is_one_line() {
    let err = load(Path::new("/nonexistent/llmhop.json"), SecretMode::Resolve).unwrap_err();
    assert_eq!(err.to_string(), "cannot read: No such file or directory");
}

#[test]
fn keys_with_control_characters_stay_on_one_line() {
    // Fuzz finding (config target, seeds newline_in_key,
    // unknown_key_newline): a key written with a JSON escape put a raw
    // newline into the key path or serde's message, splitting the
    // one-line startup error.
    let cases = [
        (
            r#"{"models":{"a\nb":{"url":5}}}"#,
            "models.a\\nb.url: invalid type: integer, expected a string",
        ),
        (
            r#"{"bogus\r\nkey\u001b[31m":1}"#,
            "unknown field `bogus\\r\\nkey\\u{1b}[31m`, expected one of \
             `listen`, `maxBodyBytes`, `authTokens`, `models`, `timeouts`",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(load_str(text).unwrap_err().to_string(), want, "{text}");
    }
}
