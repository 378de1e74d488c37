use super::*;
use std::path::PathBuf;

/// Runs `harness` over every file of `fuzz/corpus/<target>/`, seeds and
/// committed crash regressions alike.
fn corpus(target: &str, harness: impl Fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness(&data)));
        assert!(result.is_ok(), "{} failed", file.display());
    }
}

#[test]
fn request_head_corpus() {
    corpus("request_head", request_head);
}

#[test]
fn response_head_corpus() {
    corpus("response_head", response_head);
}

#[test]
fn body_decoder_corpus() {
    corpus("body_decoder", body_decoder);
}

#[test]
fn model_json_corpus() {
    corpus("model_json", model_json);
}

#[test]
fn multipart_corpus() {
    corpus("multipart", |d| multipart(d, &|| 0));
}

#[test]
fn rewrite_corpus() {
    corpus("rewrite", rewrite);
}

#[test]
fn secrets_corpus() {
    corpus("secrets", secrets);
}

#[test]
fn config_corpus() {
    corpus("config", config);
}

#[test]
fn reference_dechunker_agrees_on_known_bodies() {
    type Case<'a> = (&'a [u8], Option<(&'a [u8], usize)>);
    let cases: &[Case] = &[
        (b"4\r\nRust\r\n0\r\n\r\nGET", Some((b"Rust", 14))),
        (b"4 ;x=y\r\nRust\r\n0\r\nA: b\r\n\r\n", Some((b"Rust", 25))),
        (b"4\nRust\r\n0\r\n\r\n", None),
        (b"0\r\n\r", None),
        (b"00000000000000000\r\n\r\n", None),
    ];
    for (wire, want) in cases {
        let got = reference_dechunk(wire);
        assert_eq!(
            got.as_ref().map(|(p, c)| (p.as_slice(), *c)),
            *want,
            "{wire:?}"
        );
    }
}

#[test]
fn empty_and_tiny_inputs_do_not_panic() {
    for data in [&b""[..], b"\0", b"\xff\xff", b"\x01\x02\x03\x04"] {
        request_head(data);
        response_head(data);
        body_decoder(data);
        model_json(data);
        multipart(data, &|| 0);
        rewrite(data);
        secrets(data);
        config(data);
    }
}
