use super::*;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// Feeds `pieces` then finishes, returning the answers other than
/// `NeedMore`, a repeated sticky `Invalid` recorded once.
fn run<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<Scan> {
    let mut scanner = JsonScanner::new();
    let mut answers = Vec::new();
    for piece in pieces {
        record(&mut answers, scanner.feed(piece));
    }
    record(&mut answers, scanner.finish());
    if let Some(&Scan::Invalid(error)) = answers.last() {
        assert_eq!(scanner.feed(b"{}"), Scan::Invalid(error), "sticky");
        assert_eq!(scanner.finish(), Scan::Invalid(error), "sticky");
    }
    answers
}

/// The answers for `doc` fed whole, byte by byte and in two pieces at
/// every position (when `all_splits`), asserted identical.
fn every_split(doc: &[u8], all_splits: bool) -> Vec<Scan> {
    let whole = run([doc]);
    assert_eq!(
        run(doc.chunks(1)),
        whole,
        "byte by byte: {:?}",
        String::from_utf8_lossy(doc)
    );
    if all_splits {
        for at in 0..=doc.len() {
            let (a, b) = doc.split_at(at);
            assert_eq!(
                run([a, b]),
                whole,
                "split at {at}: {:?}",
                String::from_utf8_lossy(doc)
            );
        }
    }
    whole
}

use crate::scan::want::{record, Want};

use ScanError::{Duplicate, Missing, NotString, Syntax};
use Want::{Found, FoundThen, Invalid};

#[rustfmt::skip]
const CASES: &[(&[u8], Want)] = &[
    // found
    (br#"{"model":"llama"}"#, Found("llama")),
    (b" \t\r\n{ \"model\" :\n\"llama\" } \r\n", Found("llama")),
    (br#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"model":"gpt-4o"}"#, Found("gpt-4o")),
    (br#"{"model":""}"#, Found("")),
    (br#"{"model":"org/name:tag"}"#, Found("org/name:tag")),
    (br#"{"a":{"model":"nested"},"model":"top"}"#, Found("top")),
    (br#"{"a":[{"model":1},["model"]],"model":"top"}"#, Found("top")),
    (br#"{"model":"top","a":{"model":"nested","model":"again"}}"#, Found("top")),
    (br#"{"a":[0,-0,1.5,-2e10,3E+2,4e-2,0.0e0,10,true,false,null,{},[],""],"model":"m"}"#, Found("m")),
    // escapes, in keys and in the value
    (br#"{"m\u006fdel":"a"}"#, Found("a")),
    (br#"{"\u006D\u006F\u0064\u0065\u006C":"a"}"#, Found("a")),
    (br#"{"model":"a\/b\u00e9\uD83D\uDE00\"\\\b\f\n\r\t"}"#, Found("a/b\u{e9}\u{1F600}\"\\\u{8}\u{c}\n\r\t")),
    (br#"{"model":"\u0000"}"#, Found("\0")),
    (br#"{"model":"\ud83d\ude00"}"#, Found("\u{1F600}")),
    (br#"{"x":"\"model\"","model":"a"}"#, Found("a")),
    // not the key
    (br#"{"Model":"a"}"#, Invalid(Missing)),
    (br#"{"models":"a"}"#, Invalid(Missing)),
    (br#"{"mode":"a"}"#, Invalid(Missing)),
    (br#"{"model ":"a"}"#, Invalid(Missing)),
    (br#"{"model\u0000":"a"}"#, Invalid(Missing)),
    (br#"{"mod\u00e9l":"a"}"#, Invalid(Missing)),
    (br#"{"a":{"model":"nested"}}"#, Invalid(Missing)),
    (br#"{"a":["model","x"]}"#, Invalid(Missing)),
    (br#"{"a":"model"}"#, Invalid(Missing)),
    (b"{}", Invalid(Missing)),
    (b"", Invalid(Missing)),
    (b" \n ", Invalid(Missing)),
    // not a string
    (br#"{"model":1}"#, Invalid(NotString)),
    (br#"{"model":-1}"#, Invalid(NotString)),
    (br#"{"model":null}"#, Invalid(NotString)),
    (br#"{"model":true}"#, Invalid(NotString)),
    (br#"{"model":{"name":"a"}}"#, Invalid(NotString)),
    (br#"{"model":["a"]}"#, Invalid(NotString)),
    (b"{\"model\":\"\xff\"}", Invalid(NotString)),
    (b"{\"model\":\"\xc3\"}", Invalid(NotString)),
    // duplicates
    (br#"{"model":"a","model":"b"}"#, FoundThen("a", Duplicate)),
    (br#"{"model":"a","model":"a"}"#, FoundThen("a", Duplicate)),
    (br#"{"model":"a","m\u006fdel":{}}"#, FoundThen("a", Duplicate)),
    (br#"{"model":"a","x":1,"model":[1,2]}"#, FoundThen("a", Duplicate)),
    (br#"{"model":1,"model":"a"}"#, Invalid(NotString)),
    // top level not an object
    (br#"[{"model":"a"}]"#, Invalid(Syntax)),
    (br#""model""#, Invalid(Syntax)),
    (b"1", Invalid(Syntax)),
    (b"null", Invalid(Syntax)),
    (b"\xef\xbb\xbf{\"model\":\"a\"}", Invalid(Syntax)),
    // structure
    (br#"{"a":[}"#, Invalid(Syntax)),
    (br#"{"a":{]}"#, Invalid(Syntax)),
    (br#"{"a":[1,2]]}"#, Invalid(Syntax)),
    (br#"{"a":[1,]}"#, Invalid(Syntax)),
    (br#"{"a":1,}"#, Invalid(Syntax)),
    (br#"{,}"#, Invalid(Syntax)),
    (br#"{"a":1 "b":2}"#, Invalid(Syntax)),
    (br#"{"a" 1}"#, Invalid(Syntax)),
    (br#"{"a"::1}"#, Invalid(Syntax)),
    (br#"{"a":1,,"b":2}"#, Invalid(Syntax)),
    (br#"{1:2}"#, Invalid(Syntax)),
    (br#"{a:1}"#, Invalid(Syntax)),
    (br#"{'model':'a'}"#, Invalid(Syntax)),
    (br#"{"model":}"#, Invalid(Syntax)),
    (br#"{"model":'a'}"#, Invalid(Syntax)),
    (br#"{"model""a"}"#, Invalid(Syntax)),
    (br#"{"model":"a"} x"#, FoundThen("a", Syntax)),
    (br#"{"model":"a"}{}"#, FoundThen("a", Syntax)),
    (br#"{"model":"a"}]"#, FoundThen("a", Syntax)),
    (br#"{"model":"a""#, FoundThen("a", Syntax)),
    (br#"{"model":"a","#, FoundThen("a", Syntax)),
    (br#"{"model":"a",}"#, FoundThen("a", Syntax)),
    (br#"{"model":"a" "b":1}"#, FoundThen("a", Syntax)),
    (br#"{"model":"a"#, Invalid(Syntax)),
    (br#"{"mo"#, Invalid(Syntax)),
    (b"{", Invalid(Syntax)),
    (b"}", Invalid(Syntax)),
    // numbers and literals
    (br#"{"a":01}"#, Invalid(Syntax)),
    (br#"{"a":1.}"#, Invalid(Syntax)),
    (br#"{"a":.5}"#, Invalid(Syntax)),
    (br#"{"a":1e}"#, Invalid(Syntax)),
    (br#"{"a":1e+}"#, Invalid(Syntax)),
    (br#"{"a":-}"#, Invalid(Syntax)),
    (br#"{"a":--1}"#, Invalid(Syntax)),
    (br#"{"a":+1}"#, Invalid(Syntax)),
    (br#"{"a":0x10}"#, Invalid(Syntax)),
    (br#"{"a":1.5.2}"#, Invalid(Syntax)),
    (br#"{"a":NaN}"#, Invalid(Syntax)),
    (br#"{"a":tru}"#, Invalid(Syntax)),
    (br#"{"a":truex}"#, Invalid(Syntax)),
    (br#"{"a":True}"#, Invalid(Syntax)),
    (br#"{"a":nul}"#, Invalid(Syntax)),
    (br#"{"a":1}"#, Invalid(Missing)),
    // strings
    (br#"{"a":"\x"}"#, Invalid(Syntax)),
    (br#"{"a":"\'"}"#, Invalid(Syntax)),
    (br#"{"a":"\u12G4"}"#, Invalid(Syntax)),
    (br#"{"a":"\u123"}"#, Invalid(Syntax)),
    (b"{\"a\":\"x\x01y\"}", Invalid(Syntax)),
    (b"{\"a\x1f\":1}", Invalid(Syntax)),
    (b"{\"mo\ndel\":1}", Invalid(Syntax)),
    (b"{\"model\":\"a\tb\"}", Invalid(Syntax)),
    (b"{\"a\":\"\x7f\"}", Invalid(Missing)),
    // surrogates: paired only, as serde_json
    (br#"{"model":"\uD800"}"#, Invalid(Syntax)),
    (br#"{"a":"\uDC00"}"#, Invalid(Syntax)),
    (br#"{"a":"\uD800\n"}"#, Invalid(Syntax)),
    (br#"{"a":"\uD800x"}"#, Invalid(Syntax)),
    (br#"{"a":"\uD800\u0041"}"#, Invalid(Syntax)),
    (br#"{"a":"\uD800\uD800"}"#, Invalid(Syntax)),
    (br#"{"m\uD800":"a"}"#, Invalid(Syntax)),
    // accepted on purpose (see the module docs): UTF-8 of other strings
    (b"{\"a\":\"\xff\",\"model\":\"m\"}", Found("m")),
];

#[test]
fn table_every_split() {
    for &(doc, want) in CASES {
        assert_eq!(
            every_split(doc, true),
            want.answers(),
            "{:?}",
            String::from_utf8_lossy(doc)
        );
    }
}

#[test]
fn found_from_the_feed_of_the_closing_quote() {
    for doc in [
        &br#"{"model":"llama","messages":[]}"#[..],
        br#"{"a":{"model":"x"},"m\u006fdel" : "llama"}"#,
        br#"{"model":"ll\u0061ma"} "#,
    ] {
        let quote = doc.windows(2).rposition(|w| w == b"a\"").unwrap() + 1;
        let mut scanner = JsonScanner::new();
        for (at, byte) in doc.iter().enumerate() {
            let want = if at == quote {
                Scan::Found("llama".into())
            } else {
                Scan::NeedMore
            };
            assert_eq!(
                scanner.feed(&[*byte]),
                want,
                "byte {at} of {:?}",
                String::from_utf8_lossy(doc)
            );
        }
        assert_eq!(scanner.finish(), Scan::NeedMore);
    }
}

#[test]
fn model_length_limit_counts_decoded_bytes() {
    let doc = |value: &str| format!(r#"{{"model":"{value}"}}"#).into_bytes();
    let longest = "m".repeat(MAX_MODEL_BYTES);
    assert_eq!(
        every_split(&doc(&longest), false),
        vec![Scan::Found(longest.clone())]
    );
    assert_eq!(
        every_split(&doc(&format!("{longest}m")), false),
        vec![Scan::Invalid(NotString)]
    );
    // Six escaped bytes decode to two.
    let escaped = "\\u00e9".repeat(MAX_MODEL_BYTES / 2);
    let decoded = "\u{e9}".repeat(MAX_MODEL_BYTES / 2);
    assert_eq!(
        every_split(&doc(&escaped), false),
        vec![Scan::Found(decoded)]
    );
    assert_eq!(
        every_split(&doc(&format!("{escaped}m")), false),
        vec![Scan::Invalid(NotString)]
    );
}

#[test]
fn nesting_up_to_max_depth() {
    let doc = |levels: usize| {
        let mut doc = br#"{"a":"#.to_vec();
        doc.extend(std::iter::repeat_n(b'[', levels - 1));
        doc.extend(std::iter::repeat_n(b']', levels - 1));
        doc.extend(br#","model":"m"}"#);
        doc
    };
    assert_eq!(
        every_split(&doc(MAX_DEPTH), true),
        vec![Scan::Found("m".into())]
    );
    assert_eq!(
        every_split(&doc(MAX_DEPTH + 1), false),
        vec![Scan::Invalid(Syntax)]
    );
    // Alternating kinds across the 64-bit words of the stack.
    let mut deep = b"{".to_vec();
    for level in 1..MAX_DEPTH {
        deep.extend(if level % 3 == 0 {
            &br#"{"k":"#[..]
        } else {
            b"["
        });
    }
    deep.push(b'0');
    for level in (1..MAX_DEPTH).rev() {
        deep.push(if level % 3 == 0 { b'}' } else { b']' });
    }
    deep.extend(b"}");
    assert_eq!(
        every_split(&deep, false),
        vec![Scan::Invalid(Syntax)],
        "a nested value needs a key first"
    );
    let deep = [&br#"{"model":"m","k":"#[..], &deep[1..]].concat();
    assert_eq!(every_split(&deep, false), vec![Scan::Found("m".into())]);
}

#[test]
fn big_string_before_the_key() {
    let image = base64ish(1 << 20);
    let doc =
        format!(r#"{{"messages":[{{"image_url":"data:image/png;base64,{image}"}}],"model":"vl"}}"#);
    let answers = run(doc.as_bytes().chunks(8192));
    assert_eq!(answers, vec![Scan::Found("vl".into())]);
    assert_eq!(run(doc.as_bytes().chunks(8191)), answers);
}

/// The control-byte check finds one at every position, whichever of its
/// block sizes (1 KiB, 128 bytes, 8-byte words, the bytewise tail) covers
/// it, and takes no byte from 0x20 up for one.
#[test]
fn control_bytes_found_in_every_block_size() {
    for len in [
        0, 1, 7, 8, 9, 127, 128, 129, 135, 136, 137, 1023, 1024, 1025, 1151, 1152, 1153, 2300,
    ] {
        let mut bytes = vec![b'A'; len];
        assert!(!has_control(&bytes), "len {len}");
        for at in 0..len {
            for byte in [0x00, 0x1f] {
                bytes[at] = byte;
                assert!(has_control(&bytes), "len {len}, {byte:#x} at {at}");
            }
            for byte in [0x20, 0x80, 0x9f, 0xff] {
                bytes[at] = byte;
                assert!(!has_control(&bytes), "len {len}, {byte:#x} at {at}");
            }
            bytes[at] = b'A';
        }
    }
}

/// Strings longer than the search window: a control byte or an escape on
/// either side of each window boundary is seen, fed whole or in pieces
/// that straddle the boundaries differently.
#[test]
fn strings_longer_than_the_search_window() {
    let len = 3 * STRING_WINDOW + 5;
    let key_last = |string: &[u8]| [br#"{"image":""#, string, br#"","model":"vl"}"#].concat();
    let plain = base64ish(len).into_bytes();
    let mut cases = vec![(key_last(&plain), vec![Scan::Found("vl".into())])];
    for at in [
        STRING_WINDOW - 1,
        STRING_WINDOW,
        2 * STRING_WINDOW + 1,
        len - 1,
    ] {
        let mut control = plain.clone();
        control[at] = b'\n';
        cases.push((key_last(&control), vec![Scan::Invalid(ScanError::Syntax)]));
        let mut escaped = plain.clone();
        escaped[at - 1..=at].copy_from_slice(br#"\""#);
        cases.push((key_last(&escaped), vec![Scan::Found("vl".into())]));
    }
    for (doc, want) in cases {
        match oracle(&doc) {
            Ok(answers) => assert_eq!(answers, want, "serde_json"),
            Err(_) => assert_eq!(want, [Scan::Invalid(ScanError::Syntax)], "serde_json"),
        }
        for piece in [doc.len(), STRING_WINDOW + 3, 4097] {
            assert_eq!(run(doc.chunks(piece)), want, "pieces of {piece}");
        }
    }
}

/// Strings around the byte-at-a-time limit, as values and as the model: a
/// quote, an escape or a control byte at every position, including each
/// eight-byte word boundary of `short_stop`, agrees with serde_json.
#[test]
fn short_strings_stop_at_every_position() {
    for len in 0..=SHORT_STRING + 9 {
        for at in 0..len.max(1) {
            // ASCII only: like serde_json's `from_str`, the scanner leaves
            // UTF-8 checking of other strings to the upstream.
            for byte in [b'"', b'\\', 0x00, 0x1f, 0x20, b'!', b'[', 0x7f] {
                let mut string = vec![b'a'; len];
                if at < len {
                    string[at] = byte;
                }
                for doc in [
                    [br#"{"x":""#, &string[..], br#"","model":"m"}"#].concat(),
                    [br#"{"model":""#, &string[..], br#""}"#].concat(),
                ] {
                    let want = match oracle(&doc) {
                        Ok(answers) => answers,
                        Err(_) => vec![Scan::Invalid(ScanError::Syntax)],
                    };
                    let got = run([&doc[..]]);
                    // The scanner may name a more precise error than
                    // serde_json's syntax error (a non-string model, a
                    // missing one); whether it refuses must agree.
                    let refused = |s: &[Scan]| s.iter().any(|a| matches!(a, Scan::Invalid(_)));
                    assert_eq!(
                        refused(&got),
                        refused(&want),
                        "len {len}, {byte:#x} at {at}: {got:?} vs serde_json {want:?}"
                    );
                    if !refused(&want) {
                        assert_eq!(got, want, "len {len}, {byte:#x} at {at}");
                    }
                }
            }
        }
    }
}

/// `len` bytes of base64-looking text, `/` and `+` included.
fn base64ish(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    (0..len)
        .map(|_| ALPHABET[rng.below(ALPHABET.len())] as char)
        .collect()
}

/// Measures the skip speed; run with
/// `cargo test --release --lib scan::json -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_key_last_after_20_mib_string() {
    let image = base64ish(20 << 20);
    let doc = format!(
        r#"{{"messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{image}"}}}}]}}],"model":"vl"}}"#
    );
    let mut best = f64::MAX;
    for _ in 0..20 {
        let start = std::time::Instant::now();
        let mut scanner = JsonScanner::new();
        let mut found = None;
        for piece in doc.as_bytes().chunks(64 << 10) {
            if let Scan::Found(model) = scanner.feed(piece) {
                found = Some(model);
            }
        }
        assert_eq!(scanner.finish(), Scan::NeedMore);
        assert_eq!(found.as_deref(), Some("vl"));
        best = best.min(start.elapsed().as_secs_f64());
    }
    let start = std::time::Instant::now();
    let value: Value = serde_json::from_slice(doc.as_bytes()).unwrap();
    let serde = start.elapsed().as_secs_f64();
    assert_eq!(value["model"], "vl");
    println!(
        "json scan, 20 MiB string then model: {:.1} GB/s (serde_json::Value: {:.2} GB/s)",
        doc.len() as f64 / best / 1e9,
        doc.len() as f64 / serde / 1e9,
    );
}

/// xorshift64: a seeded, dependency-free source for generated documents.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Spellings of the key `model`.
const MODEL_SPELLINGS: &[&str] = &[
    "model",
    "model",
    "m\\u006fdel",
    "\\u006d\\u006f\\u0064\\u0065\\u006c",
    "mod\\u0065l",
    "\\u006Dodel",
];

/// Keys other than `model` (decoded spellings are all distinct).
const OTHER_KEYS: &[&str] = &[
    "a",
    "messages",
    "mode",
    "models",
    "Model",
    "modeL",
    "model ",
    "temperature",
    "m\\u00f6del",
    "x\\ny",
    "",
    "\\u00e9",
    "stream",
    "\\uD83D\\uDE00",
];

/// Pieces of string bodies, escapes and multi-byte UTF-8 included.
const STRING_PIECES: &[&str] = &[
    "a",
    "llama",
    " ",
    "-",
    "/",
    "\\n",
    "\\\"",
    "\\\\",
    "\\/",
    "\\b\\f\\r\\t",
    "\\u00e9",
    "\\u00E9",
    "\\uD83D\\uDE00",
    "\\ud83d\\ude00",
    "\u{e9}",
    "\u{1F600}",
    "model",
    "\\u0000",
    "{",
    "}",
    "[",
    ":",
    ",",
];

/// Bytes a mutation may insert.
const MUTATION_BYTES: &[u8] = b"{}[]:,\"\\ 0-.eEtnu9\x01\xff";

/// Random JSON documents for the differential test.
struct Gen {
    rng: Rng,
    out: Vec<u8>,
}

impl Gen {
    fn text(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }

    fn ws(&mut self) {
        if self.rng.chance(25) {
            let ws = *self.rng.pick(&[" ", "\n  ", "\t", "\r\n", "  "]);
            self.text(ws);
        }
    }

    fn string(&mut self) {
        self.text("\"");
        for _ in 0..self.rng.below(6) {
            let piece = *self.rng.pick(STRING_PIECES);
            self.text(piece);
        }
        self.text("\"");
    }

    fn number(&mut self) {
        if self.rng.chance(30) {
            self.text("-");
        }
        if self.rng.chance(20) {
            self.text("0");
        } else {
            let int = 1 + self.rng.below(99_999);
            self.text(&int.to_string());
        }
        if self.rng.chance(30) {
            let frac = self.rng.below(1000);
            self.text(&format!(".{frac}"));
        }
        if self.rng.chance(20) {
            let e = *self.rng.pick(&["e", "E", "e+", "e-", "E-"]);
            let exp = self.rng.below(99);
            self.text(&format!("{e}{exp}"));
        }
    }

    fn value(&mut self, depth: usize) {
        let kinds = if depth >= 5 { 3 } else { 5 };
        match self.rng.below(kinds) {
            0 => self.string(),
            1 => self.number(),
            2 => {
                let literal = *self.rng.pick(&["true", "false", "null"]);
                self.text(literal);
            }
            3 => self.object(depth + 1, None),
            _ => {
                self.text("[");
                self.ws();
                for item in 0..self.rng.below(4) {
                    if item > 0 {
                        self.text(",");
                        self.ws();
                    }
                    self.value(depth + 1);
                    self.ws();
                }
                self.text("]");
            }
        }
    }

    fn non_string(&mut self, depth: usize) {
        match self.rng.below(4) {
            0 => self.number(),
            1 => self.text("null"),
            2 => self.object(depth + 1, None),
            _ => self.text("[\"model\"]"),
        }
    }

    /// An object; `model` says what the top-level `model` entry is
    /// (`Some(true)` a string, `Some(false)` something else).
    fn object(&mut self, depth: usize, model: Option<bool>) {
        let mut keys: Vec<&str> = OTHER_KEYS.to_vec();
        if depth > 1 {
            keys.extend(MODEL_SPELLINGS);
        }
        let entries = self.rng.below(5);
        let model_at = model.map(|_| self.rng.below(entries + 1));
        self.text("{");
        self.ws();
        for entry in 0..=entries {
            if entry > 0 {
                self.text(",");
                self.ws();
            }
            if model_at == Some(entry) {
                let key = *self.rng.pick(MODEL_SPELLINGS);
                self.text(&format!("\"{key}\""));
            } else if entry < entries && !keys.is_empty() {
                let key = keys.swap_remove(self.rng.below(keys.len()));
                self.text(&format!("\"{key}\""));
            } else {
                // No entry here: undo the comma.
                if entry > 0 {
                    while self.out.last() != Some(&b',') {
                        self.out.pop();
                    }
                    self.out.pop();
                }
                break;
            }
            self.ws();
            self.text(":");
            self.ws();
            match (model_at == Some(entry), model) {
                (true, Some(true)) => self.string(),
                (true, _) => self.non_string(depth),
                (false, _) => self.value(depth),
            }
            self.ws();
        }
        self.text("}");
    }

    fn document(&mut self) -> Vec<u8> {
        self.out.clear();
        self.ws();
        if self.rng.chance(8) {
            self.value(1);
        } else {
            let model = *self
                .rng
                .pick(&[None, Some(true), Some(true), Some(true), Some(false)]);
            self.object(1, model);
        }
        self.ws();
        if self.rng.chance(25) {
            for _ in 0..1 + self.rng.below(2) {
                self.mutate();
            }
        }
        self.out.clone()
    }

    fn mutate(&mut self) {
        let at = self.rng.below(self.out.len() + 1);
        match self.rng.below(4) {
            0 if at < self.out.len() => {
                self.out.remove(at);
            }
            1 if at < self.out.len() => self.out[at] = *self.rng.pick(MUTATION_BYTES),
            2 => self.out.truncate(at),
            _ => {
                let byte = *self.rng.pick(MUTATION_BYTES);
                self.out.insert(at, byte);
            }
        }
    }
}

/// Top-level entries in document order, duplicates kept: what
/// `serde_json::Value` cannot tell (it keeps the last duplicate).
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Entries, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// The answers serde_json implies for `doc`, or its error.
fn oracle(doc: &[u8]) -> Result<Vec<Scan>, serde_json::Error> {
    let value: Value = serde_json::from_slice(doc)?;
    if !value.is_object() {
        return Ok(vec![Scan::Invalid(Syntax)]);
    }
    let Entries(entries) = serde_json::from_slice(doc)?;
    let models: Vec<&Value> = entries
        .iter()
        .filter(|(k, _)| k == "model")
        .map(|(_, v)| v)
        .collect();
    Ok(match models[..] {
        [] => vec![Scan::Invalid(Missing)],
        [Value::String(model)] => vec![Scan::Found(model.clone())],
        [Value::String(model), ..] => {
            vec![Scan::Found(model.clone()), Scan::Invalid(Duplicate)]
        }
        [_, ..] => vec![Scan::Invalid(NotString)],
    })
}

/// Differential test against `serde_json::from_slice::<Value>`.
#[test]
fn agrees_with_serde_json() {
    const DOCUMENTS: usize = 20_000;
    let mut gen = Gen {
        rng: Rng(0x9E37_79B9_7F4A_7C15),
        out: Vec::new(),
    };
    let (mut valid, mut rejected, mut accepted_invalid) = (0, 0, 0);
    // Valid documents per expected answer: Found, Missing, NotString, Syntax.
    let mut kinds = [0; 4];
    for n in 0..DOCUMENTS {
        let doc = gen.document();
        let answers = every_split(&doc, n % 16 == 0);
        let shown = String::from_utf8_lossy(&doc);
        match oracle(&doc) {
            Ok(want) => {
                valid += 1;
                kinds[match want[0] {
                    Scan::Found(_) => 0,
                    Scan::Invalid(Missing) => 1,
                    Scan::Invalid(NotString) => 2,
                    _ => 3,
                }] += 1;
                assert_eq!(answers, want, "{shown:?}");
            }
            Err(_) if matches!(answers.last(), Some(Scan::Invalid(_))) => rejected += 1,
            Err(error) => {
                // Only the documented exception: UTF-8 outside the model.
                assert!(
                    error.to_string().contains("invalid unicode code point"),
                    "{shown:?}: {error}"
                );
                assert!(std::str::from_utf8(&doc).is_err(), "{shown:?}");
                accepted_invalid += 1;
            }
        }
    }
    assert!(
        valid > DOCUMENTS / 2 && rejected > DOCUMENTS / 20,
        "{valid} valid, {rejected} rejected"
    );
    assert!(kinds.iter().all(|&n| n > DOCUMENTS / 50), "{kinds:?}");
    println!(
        "{valid} valid {kinds:?}, {rejected} rejected, {accepted_invalid} invalid UTF-8 accepted"
    );
}

#[test]
fn duplicate_top_level_keys_agree_with_serde_json() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..2000 {
        let mut gen = Gen {
            rng: Rng(rng.next() | 1),
            out: Vec::new(),
        };
        let mut doc = b"{".to_vec();
        for entry in 0..2 + rng.below(3) {
            if entry > 0 {
                doc.push(b',');
            }
            let key = if rng.chance(60) {
                *rng.pick(MODEL_SPELLINGS)
            } else {
                *rng.pick(OTHER_KEYS)
            };
            doc.extend(format!("\"{key}\":").as_bytes());
            if rng.chance(50) {
                gen.string();
            } else {
                gen.value(2);
            }
            doc.append(&mut gen.out);
        }
        doc.push(b'}');
        let answers = every_split(&doc, false);
        assert_eq!(
            Ok(answers),
            oracle(&doc).map_err(|e| e.to_string()),
            "{:?}",
            String::from_utf8_lossy(&doc)
        );
    }
}

/// The token fast path (`tokens`, `members`, `short_token`): documents
/// whose runs of members, brackets and integers break at every kind of
/// byte, each fed whole, byte by byte and in two pieces at every position
/// (`every_split`: the byte-by-byte answers come from `step` alone), and
/// agreeing with serde_json where it accepts; then every byte of each
/// replaced by a byte that ends or breaks a token, the same way.
#[test]
fn token_runs_agree_with_byte_by_byte() {
    let long = "k".repeat(SHORT_STRING + 3);
    let corpus: Vec<String> = vec![
        r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}],"model":"m1","max_tokens":16}"#.into(),
        r#"{"a":"b","c":"d","model":"m","e":"f"}"#.into(),
        r#"{"a":{"b":"c","d":{"e":"f"}},"model":"m"}"#.into(),
        r#"{"a":[{"b":"c"},{"d":"e"},[{"f":"g"}]],"model":"m"}"#.into(),
        r#"{"a":1,"b":23,"c":0,"d":-4,"e":5.5,"f":6e7,"g":8E+9,"model":"m","h":10}"#.into(),
        r#"{"a":[1,22,333],"b":[4.0],"c":[5e1],"model":"m"}"#.into(),
        r#"{"a":true,"b":false,"c":null,"model":"m","d":[true,null]}"#.into(),
        r#"{"m\u006fdel":"x","a":"\n","b\"":"c","model":"dup"}"#.into(),
        r#"{"model":"m","model":"n"}"#.into(),
        r#"{"model":"m","a":{"model":"n"},"b":"c"}"#.into(),
        r#"{"model":1,"a":"b"}"#.into(),
        r#"{"model":"a\u00e9","b":"c"}"#.into(),
        r#"{ "a" : "b" , "model" : "m" , "c" : [ 1 , 2 ] }"#.into(),
        format!(r#"{{"{long}":"{long}","model":"{long}","x":1}}"#),
        r#"{"a":{},"b":[],"c":[{}],"model":"m"}"#.into(),
    ];
    let breakers = [
        b'"', b'\\', b':', b',', b'{', b'}', b'[', b']', b' ', b'1', b'0', b'.', b'e', b'-', 0x01,
        0xc3,
    ];
    for doc in &corpus {
        let doc = doc.as_bytes();
        let got = every_split(doc, true);
        if let Ok(want) = oracle(doc) {
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(doc));
        }
        for at in 0..doc.len() {
            for &byte in &breakers {
                let mut mutated = doc.to_vec();
                mutated[at] = byte;
                let got = every_split(&mutated, at % 3 == 0);
                if let Ok(want) = oracle(&mutated) {
                    assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&mutated));
                }
            }
        }
    }
}
