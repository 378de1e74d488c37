use super::*;
use std::collections::HashMap;

struct Fake {
    env: HashMap<&'static str, &'static str>,
    files: HashMap<&'static str, &'static str>,
}

impl Lookup for Fake {
    fn env(&self, name: &str) -> Result<String, std::env::VarError> {
        self.env
            .get(name)
            .map(|v| v.to_string())
            .ok_or(std::env::VarError::NotPresent)
    }
    fn file(&self, path: &str) -> io::Result<String> {
        match self.files.get(path) {
            Some(v) => Ok(v.to_string()),
            None => Err(io::Error::from_raw_os_error(2)),
        }
    }
}

fn fake() -> Fake {
    Fake {
        env: HashMap::from([("KEY", "sk-env-SECRET"), ("A_1", "a-SECRET"), ("EMPTY", "")]),
        files: HashMap::from([
            ("tok", "file-SECRET\n"),
            ("crlf", "crlf-SECRET\r\n"),
            ("two", "two-SECRET\n\n"),
            ("inner", "in\nner-SECRET\n"),
            ("bare", "bare-SECRET"),
        ]),
    }
}

#[test]
fn expands() {
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        ("", ""),
        ("plain", "plain"),
        ("${env:KEY}", "sk-env-SECRET"),
        ("Bearer ${env:KEY}", "Bearer sk-env-SECRET"),
        ("${KEY}", "sk-env-SECRET"),
        ("$KEY", "sk-env-SECRET"),
        ("$KEY-x", "sk-env-SECRET-x"),
        ("$A_1.", "a-SECRET."),
        ("x${A_1}y", "xa-SECRETy"),
        ("${EMPTY}", ""),
        ("${file:tok}", "file-SECRET"),
        ("${file:crlf}", "crlf-SECRET"),
        ("${file:two}", "two-SECRET\n"),
        ("${file:inner}", "in\nner-SECRET"),
        ("${file:bare}", "bare-SECRET"),
        ("$$", "$"),
        ("$$KEY", "$KEY"),
        ("$$$KEY", "$sk-env-SECRET"),
        ("$", "$"),
        ("a$", "a$"),
        ("$ x", "$ x"),
        ("$-", "$-"),
        ("$}", "$}"),
        ("5$/€$", "5$/€$"),
        ("€$KEY€", "€sk-env-SECRET€"),
        ("${env:KEY}${file:tok}", "sk-env-SECRETfile-SECRET"),
    ];
    for (template, want) in cases {
        let got = expand(template, &fake()).map(|s| s.expose().to_owned());
        assert_eq!(got.as_deref(), Ok(*want), "template: {template:?}");
        assert_eq!(check_syntax(template), Ok(()), "template: {template:?}");
    }
}

#[test]
fn refuses() {
    use SecretError::*;
    let unset = |name: &str| EnvUnset { name: name.into() };
    let nofile = |path: &str| FileUnreadable {
        path: path.into(),
        reason: "No such file or directory".into(),
    };
    #[rustfmt::skip]
    let cases: &[(&str, SecretError, bool)] = &[
        // (template, error, whether check_syntax accepts it)
        ("${env:NOPE}", unset("NOPE"), true),
        ("${NOPE}", unset("NOPE"), true),
        ("$NOPE", unset("NOPE"), true),
        ("x $KEY $NOPE", unset("NOPE"), true),
        ("${file:missing}", nofile("missing"), true),
        ("${file:/abs/missing}", nofile("/abs/missing"), true),
        ("${vault:x}", UnknownKind { kind: "vault".into() }, false),
        ("${ENV:KEY}", UnknownKind { kind: "ENV".into() }, false),
        ("${", Unterminated { at: 0 }, false),
        ("ab${env:KEY", Unterminated { at: 2 }, false),
        ("${}", BadName { at: 0 }, false),
        ("${env:}", BadName { at: 0 }, false),
        ("${file:}", BadName { at: 0 }, false),
        ("${env:1X}", BadName { at: 0 }, false),
        ("${env:A-B}", BadName { at: 0 }, false),
        ("${A B}", BadName { at: 0 }, false),
        ("${:x}", BadName { at: 0 }, false),
        ("pa$5word", BadName { at: 2 }, false),
    ];
    for (template, want, syntax_ok) in cases {
        assert_eq!(
            expand(template, &fake()).as_ref(),
            Err(want),
            "{template:?}"
        );
        assert_eq!(check_syntax(template).is_ok(), *syntax_ok, "{template:?}");
    }
}

/// No error message, for any template over the fake, contains a value
/// the fake could resolve, nor the template's literal text.
#[test]
fn errors_never_show_values() {
    let templates = [
        "sk-literal-SECRET ${env:NOPE}",
        "${KEY} ${NOPE}",
        "${file:tok}${file:missing}",
        "${file:tok}${vault:x}",
        "sk-literal-SECRET${",
        "sk-literal-SECRET$5",
        "${A_1}${env:}",
    ];
    for template in templates {
        let err = expand(template, &fake()).unwrap_err().to_string();
        assert!(!err.contains("SECRET"), "{template:?} → {err}");
    }
}

#[test]
fn file_path_with_control_characters_stays_on_one_line() {
    // Fuzz finding (secrets target, seed file_path_newline): a
    // `${file:...}` path holding a newline (a JSON `\n` in the config)
    // made the unreadable-file error two lines.
    let err = expand("${file:ab\ncd\u{1b}}", &fake()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read file ab\\ncd\\u{1b}: No such file or directory"
    );
}

#[test]
fn io_reason_drops_os_error_number() {
    let err = io::Error::from_raw_os_error(2);
    assert_eq!(io_reason(&err), "No such file or directory");
    let err = io::Error::new(io::ErrorKind::InvalidData, "not UTF-8");
    assert_eq!(io_reason(&err), "not UTF-8");
}

#[test]
fn secret_is_redacted() {
    let s = Secret::new("sk-SECRET".into());
    assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
}
