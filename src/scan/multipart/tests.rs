use super::*;

use ScanError::{Duplicate, Missing, Multipart, NotString};

/// Feeds `pieces` then finishes, returning the answers other than
/// `NeedMore`, a repeated sticky `Invalid` recorded once. Checks the
/// memory bound after every piece.
fn run<'a>(boundary: &[u8], pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<Scan> {
    let mut scanner = MultipartScanner::new(boundary);
    let bound = (MAX_MODEL_BYTES + scanner.delimiter.len()).max(MAX_PART_HEAD_BYTES + 2);
    let mut answers = Vec::new();
    for piece in pieces {
        record(&mut answers, scanner.feed(piece));
        assert!(scanner.buf.len() <= bound);
        if scanner.state == State::Skip {
            assert!(scanner.buf.len() < scanner.delimiter.len(), "carry over");
        }
    }
    record(&mut answers, scanner.finish());
    if let Some(&Scan::Invalid(error)) = answers.last() {
        assert_eq!(scanner.feed(b"--"), Scan::Invalid(error), "sticky");
        assert_eq!(scanner.finish(), Scan::Invalid(error), "sticky");
    }
    answers
}

/// The answers for `body` fed whole, byte by byte and (when
/// `all_splits`) in two pieces at every position, asserted identical.
fn every_split(boundary: &[u8], body: &[u8], all_splits: bool) -> Vec<Scan> {
    let whole = run(boundary, [body]);
    let shown = String::from_utf8_lossy(body);
    assert_eq!(
        run(boundary, body.chunks(1)),
        whole,
        "byte by byte: {shown:?}"
    );
    assert_eq!(run(boundary, body.chunks(7)), whole, "by 7: {shown:?}");
    if all_splits {
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            assert_eq!(run(boundary, [a, b]), whole, "split at {at}: {shown:?}");
        }
    }
    whole
}

use crate::scan::want::{record, Want};

use Want::{Found, FoundThen, Invalid};

/// Every case uses the boundary `XyZ`; `M` stands for
/// `Content-Disposition: form-data; name="model"`.
#[rustfmt::skip]
const CASES: &[(&str, Want)] = &[
    ("--XyZ\r\nM\r\n\r\nwhisper-1\r\n--XyZ--\r\n", Found("whisper-1")),
    ("--XyZ\r\nM\r\n\r\nwhisper-1\r\n--XyZ--", Found("whisper-1")),
    ("--XyZ\r\nM\r\n\r\n\r\n--XyZ--\r\n", Found("")),
    ("--XyZ\r\nM\r\n\r\na\r\nb\r\n--XyZ--\r\n", Found("a\r\nb")),
    ("--XyZ\r\nM\r\n\r\n--XyZ\r\n--XyZ--\r\n", Found("--XyZ")),
    ("--XyZ\r\nM\r\n\r\nm\r\n--XyZ--\r\nepilogue --XyZ\r\n\r\n", Found("m")),
    ("preamble\r\n--XyZ nope\r\n--XyZ\r\nM\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("preamble --XyZ\r\n\r\n--XyZ\r\nM\r\n\r\nm\r\n--XyZ--\r\n", Found("m")),
    ("\r\n--XyZ\r\nM\r\n\r\nm\r\n--XyZ--\r\n", Found("m")),
    ("--XyZ \t \r\nM\r\n\r\nm\r\n--XyZ  \r\n\r\nx\r\n--XyZ--\r\n", Found("m")),
    // naming the part
    ("--XyZ\r\nContent-Disposition: form-data; name=model\r\n\r\nm\r\n--XyZ--\r\n", Found("m")),
    ("--XyZ\r\ncontent-disposition:FORM-DATA;NAME=\"model\"\r\n\r\nm\r\n--XyZ--\r\n", Found("m")),
    ("--XyZ\r\nContent-Disposition: form-data ; name = \"model\" ;\r\n\r\nm\r\n--XyZ--\r\n", Found("m")),
    ("--XyZ\r\nContent-Type: text/plain\r\nM\r\nX-Other: \"\r\n\r\nm\r\n--XyZ--\r\n", Found("m")),
    ("--XyZ\r\nContent-Disposition: form-data; name=\"mod\\el\"\r\n\r\nm\r\n--XyZ--\r\n", Found("m")),
    ("--XyZ\r\nContent-Disposition: form-data; name=\"Model\"\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Missing)),
    ("--XyZ\r\nContent-Disposition: form-data; name=\"models\"\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Missing)),
    ("--XyZ\r\nContent-Disposition: attachment; name=\"model\"\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Missing)),
    ("--XyZ\r\nContent-Disposition: form-data; name=\"model\"; filename=\"m.txt\"\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Missing)),
    ("--XyZ\r\nContent-Disposition: form-data; filename*=utf-8''m; name=model\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Missing)),
    ("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"model\"\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Missing)),
    ("--XyZ\r\nX-Name: model\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Missing)),
    ("--XyZ\r\n\r\nno headers\r\n--XyZ\r\nM\r\n\r\nm\r\n--XyZ--\r\n", Found("m")),
    ("--XyZ--\r\n", Invalid(Missing)),
    ("", Invalid(Missing)),
    // duplicates and truncation
    ("--XyZ\r\nM\r\n\r\na\r\n--XyZ\r\nM\r\n\r\nb\r\n--XyZ--\r\n", FoundThen("a", Duplicate)),
    ("--XyZ\r\nM\r\n\r\na\r\n--XyZ\r\nM\r\n\r\na\r\n--XyZ--\r\n", FoundThen("a", Duplicate)),
    ("--XyZ\r\nM\r\n\r\na\r\n--XyZ\r\n", FoundThen("a", Multipart)),
    ("--XyZ\r\nM\r\n\r\na\r\n--XyZ", FoundThen("a", Multipart)),
    ("--XyZ\r\nM\r\n\r\na\r\n--XyZ-", FoundThen("a", Multipart)),
    ("--XyZ\r\nM\r\n\r\na\r\n--XyZ\r\nX-A: b\r\n", FoundThen("a", Multipart)),
    ("--XyZ\r\nM\r\n\r\na\r\n--XyZ-x", FoundThen("a", Multipart)),
    ("--XyZ\r\nM\r\n\r\na\r\n--XyZx\r\n", FoundThen("a", Multipart)),
    ("--XyZ\r\nM\r\n\r\na\r\n--XyZ\r\nbroken\r\n\r\n", FoundThen("a", Multipart)),
    ("--XyZ\r\nM\r\n\r\na", Invalid(Multipart)),
    ("--XyZ\r\nM\r\n\r\n", Invalid(Multipart)),
    ("--XyZ\r\nM\r\n", Invalid(Multipart)),
    ("no delimiter at all", Invalid(Multipart)),
    ("--XyZ", Invalid(Multipart)),
    // broken framing and headers
    ("--XyZx\r\nM\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\nM\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\rM\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nM\nX: y\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nM\rX: y\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nno colon\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nX: y\r\n folded\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nContent-Disposition : form-data; name=model\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nM\r\nM\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nContent-Disposition: form-data; name=\"model\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nContent-Disposition: form-data; name=a; name=model\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nContent-Disposition: form-data; name\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nContent-Disposition: form-data; name=\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nContent-Disposition: form-data name=model\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nContent-Disposition: ; name=model\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
    ("--XyZ\r\nContent-Disposition: form-data; name=\"model\"x\r\n\r\nm\r\n--XyZ--\r\n", Invalid(Multipart)),
];

#[test]
fn table_every_split() {
    const M: &str = "Content-Disposition: form-data; name=\"model\"";
    for &(body, want) in CASES {
        let body = body
            .replace("\r\nM\r\n", &format!("\r\n{M}\r\n"))
            .into_bytes();
        assert_eq!(
            every_split(b"XyZ", &body, true),
            want.answers(),
            "{:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn boundaries() {
    let body = |b: &str| {
        format!("--{b}\r\nContent-Disposition: form-data; name=model\r\n\r\nm\r\n--{b}--\r\n")
    };
    let longest = "b".repeat(MAX_BOUNDARY_BYTES);
    for boundary in [
        "a",
        "0",
        "----WebKitFormBoundary7MA4YWxkTrZu0gW",
        "a b",
        "'()+_,-./:=?",
        longest.as_str(),
    ] {
        assert_eq!(
            every_split(boundary.as_bytes(), body(boundary).as_bytes(), false),
            vec![Scan::Found("m".into())]
        );
    }
    let too_long = "b".repeat(MAX_BOUNDARY_BYTES + 1);
    for boundary in ["", "a ", "a\r\nb", "a\"b", "é", too_long.as_str()] {
        assert_eq!(
            run(boundary.as_bytes(), [body(boundary).as_bytes()]),
            vec![Scan::Invalid(Multipart)],
            "{boundary:?}"
        );
    }
}

#[test]
fn model_value_limits() {
    let body = |value: &str| {
        format!("--b\r\nContent-Disposition: form-data; name=model\r\n\r\n{value}\r\n--b--\r\n")
    };
    let longest = "m".repeat(MAX_MODEL_BYTES);
    assert_eq!(
        every_split(b"b", body(&longest).as_bytes(), false),
        vec![Scan::Found(longest.clone())]
    );
    let too_long = format!("{longest}m");
    assert_eq!(
        every_split(b"b", body(&too_long).as_bytes(), false),
        vec![Scan::Invalid(NotString)]
    );
    let not_utf8 =
        b"--b\r\nContent-Disposition: form-data; name=model\r\n\r\nwhisper\xff\r\n--b--\r\n";
    assert_eq!(
        every_split(b"b", not_utf8, true),
        vec![Scan::Invalid(NotString)]
    );
    // Too long even before the end of the body is known.
    let mut scanner = MultipartScanner::new(b"b");
    let head = b"--b\r\nContent-Disposition: form-data; name=model\r\n\r\n";
    assert_eq!(scanner.feed(head), Scan::NeedMore);
    assert_eq!(
        scanner.feed(&vec![b'm'; MAX_MODEL_BYTES + 100]),
        Scan::Invalid(NotString)
    );
}

#[test]
fn part_head_limit() {
    let body = |filler: usize| {
        let line = format!("X-Filler: {}\r\n", "f".repeat(filler));
        format!("--b\r\n{line}Content-Disposition: form-data; name=model\r\n\r\nm\r\n--b--\r\n")
    };
    // The head is the filler line, the disposition line and CRLF.
    let fixed = "X-Filler: \r\n".len() + "Content-Disposition: form-data; name=model\r\n\r\n".len();
    let fits = MAX_PART_HEAD_BYTES - fixed;
    assert_eq!(
        every_split(b"b", body(fits).as_bytes(), false),
        vec![Scan::Found("m".into())]
    );
    assert_eq!(
        every_split(b"b", body(fits + 1).as_bytes(), false),
        vec![Scan::Invalid(Multipart)]
    );
}

/// Audio-like bytes full of what could confuse a delimiter search:
/// CRLFs, `--`, prefixes of the boundary, and every byte value.
fn audio(len: usize, boundary: &str, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut audio = Vec::with_capacity(len);
    let tricks: [&[u8]; 5] = [
        b"\r\n",
        b"--",
        b"\r\n--",
        &format!("\r\n--{}", &boundary[..boundary.len() - 1]).into_bytes(),
        &format!("--{boundary}").into_bytes(),
    ];
    while audio.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        match state % 16 {
            0..=4 => audio.extend_from_slice(tricks[(state >> 8) as usize % tricks.len()]),
            _ => audio.push((state >> 16) as u8),
        }
    }
    // Everything but the delimiter itself, which a part cannot contain.
    let delimiter = format!("\r\n--{boundary}");
    let hits: Vec<usize> = memmem::find_iter(&audio, delimiter.as_bytes()).collect();
    for at in hits {
        audio[at] = b'x';
    }
    audio
}

/// What the openai Python SDK (httpx) sends for
/// `client.audio.transcriptions.create(model=..., file=...)`: data fields
/// first, then the file.
fn openai_sdk_body(boundary: &str, audio: &[u8]) -> Vec<u8> {
    [
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n").as_bytes(),
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\njson\r\n").as_bytes(),
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"speech.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n").as_bytes(),
        audio,
        format!("\r\n--{boundary}--\r\n").as_bytes(),
    ]
    .concat()
}

/// What `curl -F file=@speech.mp3 -F model=whisper-1` sends: parts in
/// command-line order, the file first.
fn curl_body(boundary: &str, audio: &[u8]) -> Vec<u8> {
    [
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"speech.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n").as_bytes(),
        audio,
        format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n").as_bytes(),
        format!("--{boundary}--\r\n").as_bytes(),
    ]
    .concat()
}

#[test]
fn realistic_clients() {
    let httpx = "9f3c2a4b1e0d4c7a8b6e5f4d3c2b1a09";
    let curl = "------------------------d74496d66958873e";
    let found = vec![Scan::Found("whisper-1".into())];
    for seed in 1..=4 {
        let small = audio(600, httpx, seed);
        assert_eq!(
            every_split(httpx.as_bytes(), &openai_sdk_body(httpx, &small), seed == 1),
            found
        );
        let small = audio(600, curl, seed);
        assert_eq!(
            every_split(curl.as_bytes(), &curl_body(curl, &small), seed == 1),
            found
        );
    }
    // A MiB of audio, in socket-sized and odd-sized pieces; the memory
    // bound is checked by `run` after every piece.
    let big = audio(1 << 20, curl, 7);
    let body = curl_body(curl, &big);
    for size in [1 << 16, 8191, 71] {
        assert_eq!(
            run(curl.as_bytes(), body.chunks(size)),
            found,
            "pieces of {size}"
        );
    }
    let body = openai_sdk_body(httpx, &big);
    assert_eq!(run(httpx.as_bytes(), body.chunks(4099)), found);
    // Found from the piece that completes the delimiter after the value.
    let mut scanner = MultipartScanner::new(httpx.as_bytes());
    let end = body
        .windows(11)
        .position(|w| w == b"whisper-1\r\n")
        .unwrap()
        + 11
        + 2
        + httpx.len();
    assert_eq!(scanner.feed(&body[..end - 1]), Scan::NeedMore);
    assert_eq!(
        scanner.feed(&body[end - 1..end]),
        Scan::Found("whisper-1".into())
    );
    assert_eq!(scanner.feed(&body[end..]), Scan::NeedMore);
    assert_eq!(scanner.finish(), Scan::NeedMore);
}

/// Measures the skip speed; run with
/// `cargo test --release --lib scan::multipart -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_model_after_20_mib_file() {
    let curl = "------------------------d74496d66958873e";
    // Compressed audio looks like noise: random bytes.
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let noise: Vec<u8> = (0..20 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let body = curl_body(curl, &noise);
    let mut best = f64::MAX;
    for _ in 0..20 {
        let start = std::time::Instant::now();
        let mut scanner = MultipartScanner::new(curl.as_bytes());
        let mut found = None;
        for piece in body.chunks(64 << 10) {
            if let Scan::Found(model) = scanner.feed(piece) {
                found = Some(model);
            }
        }
        assert_eq!(scanner.finish(), Scan::NeedMore);
        assert_eq!(found.as_deref(), Some("whisper-1"));
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "multipart scan, 20 MiB file then model: {:.1} GB/s",
        body.len() as f64 / best / 1e9
    );
}

/// Generated bodies: random parts (names, filenames, contents built to
/// look like delimiters) whose answer is known by construction.
#[test]
fn generated_bodies() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let names = [
        "model",
        "file",
        "language",
        "prompt",
        "Model",
        "models",
        "temperature",
    ];
    for n in 0..3000 {
        let boundary = ["b", "XyZ", "----x-", "9f3c2a4b1e0d"][(next() % 4) as usize];
        let mut body = Vec::new();
        let mut want = vec![];
        for _ in 0..next() % 5 {
            let name = names[(next() % names.len() as u64) as usize];
            let file = next() % 3 == 0;
            let content = audio((next() % 40) as usize, boundary, next() | 1);
            let quoted = if next() % 2 == 0 {
                format!("\"{name}\"")
            } else {
                name.to_string()
            };
            let filename = if file { "; filename=\"a.mp3\"" } else { "" };
            body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name={quoted}{filename}\r\n\r\n").as_bytes());
            body.extend(&content);
            body.extend(b"\r\n");
            if name == "model" && !file {
                let answer = match String::from_utf8(content) {
                    Ok(model) => Scan::Found(model),
                    Err(_) => Scan::Invalid(NotString),
                };
                match want.first() {
                    None => want.push(answer),
                    Some(Scan::Found(_)) if want.len() == 1 => want.push(Scan::Invalid(Duplicate)),
                    Some(_) => {}
                }
            }
        }
        body.extend(format!("--{boundary}--\r\n").as_bytes());
        if want.is_empty() {
            want.push(Scan::Invalid(Missing));
        }
        let answers = every_split(boundary.as_bytes(), &body, n % 50 == 0);
        assert_eq!(answers, want, "{:?}", String::from_utf8_lossy(&body));
    }
}
