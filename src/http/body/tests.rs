use super::*;

/// What feeding a whole body did: payload, total consumed, done.
type Outcome = Result<(Vec<u8>, usize, bool), BodyError>;

/// Feeds `pieces` in order the way a caller does (loop on each piece
/// until it is used up or the body is done), checking the per-call
/// guarantees of [`Decoder::decode`] on the way.
fn feed(framing: Framing, cap: Option<u64>, pieces: &[&[u8]]) -> Outcome {
    let mut decoder = Decoder::new(framing, cap);
    let (mut payload, mut consumed) = (Vec::new(), 0);
    for piece in pieces {
        let mut rest = *piece;
        while !decoder.is_done() && !rest.is_empty() {
            let p = decoder.decode(rest)?;
            assert!(p.consumed <= rest.len(), "consumed past the input");
            assert!(p.payload.start <= p.payload.end && p.payload.end <= p.consumed);
            assert!(p.consumed > 0 || p.done, "no progress on non-empty input");
            assert_eq!(p.done, decoder.is_done());
            payload.extend_from_slice(&rest[p.payload]);
            consumed += p.consumed;
            rest = &rest[p.consumed..];
        }
    }
    Ok((payload, consumed, decoder.is_done()))
}

/// The same input fed whole, cut in two at every position, and byte by
/// byte must give the same outcome. (Inputs over 512 bytes, the limit
/// tests, are cut at 512 evenly spaced positions plus the last one, to
/// keep the test quadratic in 512 rather than in the input.)
fn split_invariant(framing: Framing, cap: Option<u64>, input: &[u8]) -> Outcome {
    let whole = feed(framing, cap, &[input]);
    let step = input.len().div_ceil(512).max(1);
    for cut in (0..=input.len()).step_by(step).chain([input.len()]) {
        let (a, b) = input.split_at(cut);
        assert_eq!(
            feed(framing, cap, &[a, b]),
            whole,
            "{} cut at {cut}",
            input.escape_ascii()
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(
        feed(framing, cap, &bytes),
        whole,
        "{} byte by byte",
        input.escape_ascii()
    );
    whole
}

/// Valid bodies: (framing, cap, wire, payload, left unconsumed, done).
#[test]
fn decodes() {
    use Framing::*;
    const NO: Option<u64> = None;
    type Cases<'a> = &'a [(Framing, Option<u64>, &'a [u8], &'a [u8], &'a [u8], bool)];
    #[rustfmt::skip]
    let cases: Cases = &[
        (Empty, NO, b"GET / HTTP/1.1", b"", b"GET / HTTP/1.1", true),
        (Length(0), Some(0), b"next", b"", b"next", true),
        (Length(5), NO, b"hello", b"hello", b"", true),
        (Length(5), Some(5), b"helloGET /", b"hello", b"GET /", true),
        (Length(5), NO, b"hel", b"hel", b"", false),
        (UntilClose, NO, b"any\r\nthing", b"any\r\nthing", b"", false),
        (Chunked, NO, b"4\r\nRust\r\n0\r\n\r\n", b"Rust", b"", true),
        (Chunked, Some(4), b"4\r\nRust\r\n0\r\n\r\nGET /", b"Rust", b"GET /", true),
        (Chunked, NO, b"0\r\n\r\n", b"", b"", true),
        (Chunked, NO, b"000\r\n\r\n0\r\n\r\n", b"", b"0\r\n\r\n", true),
        (Chunked, NO, b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde", b"", true),
        (Chunked, NO, b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", b"", true),
        (Chunked, NO, b"a\r\n\r\n\r\n\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n\r\n\r\n\r\n", b"", true),
        (Chunked, NO, b"0000000000000004\r\nRust\r\n0\r\n\r\n", b"Rust", b"", true),
        (Chunked, NO, b"4;a=b\r\nRust\r\n0;last\r\n\r\n", b"Rust", b"", true),
        (Chunked, NO, b"4 ;a\r\nRust\r\n0\r\n\r\n", b"Rust", b"", true),
        (Chunked, NO, b"4\t ;a = \"x;y\"\r\nRust\r\n0\r\n\r\n", b"Rust", b"", true),
        (Chunked, NO, b"4\r\nRust\r\n0\r\nX-A: b\r\nX-C:\r\n\r\n", b"Rust", b"", true),
        (Chunked, NO, b"4\r\nRust\r\n0\r\nX-A: b\r\n\r\nPOST", b"Rust", b"POST", true),
        (Chunked, NO, b"4\r\nRu", b"Ru", b"", false),
        (Chunked, NO, b"4\r\nRust\r\n0\r\n\r", b"Rust", b"", false),
        (Chunked, NO, b"ffffffffffffffff\r\nabc", b"abc", b"", false),
    ];
    for (framing, cap, input, payload, left, done) in cases {
        let got = split_invariant(*framing, *cap, input);
        let want = Ok((payload.to_vec(), input.len() - left.len(), *done));
        assert_eq!(got, want, "{framing:?} {}", input.escape_ascii());
    }
}

/// Refused bodies: (framing, cap, wire, error).
#[test]
fn refuses() {
    use Framing::*;
    const NO: Option<u64> = None;
    const BAD: BodyError = BodyError::Chunked;
    const BIG: BodyError = BodyError::TooLarge;
    let long_ext = [
        &b"4;"[..],
        &[b'a'; MAX_CHUNK_EXT_BYTES],
        b"\r\nRust\r\n0\r\n\r\n",
    ]
    .concat();
    let long_bws = [
        &b"4"[..],
        &[b' '; MAX_CHUNK_EXT_BYTES],
        b";\r\nRust\r\n0\r\n\r\n",
    ]
    .concat();
    let field = format!("X: {}\r\n", "v".repeat(100));
    let long_trailer = format!(
        "0\r\n{}\r\n",
        field.repeat(MAX_TRAILER_BYTES / field.len() + 1)
    );
    #[rustfmt::skip]
    let cases: &[(Framing, Option<u64>, &[u8], BodyError)] = &[
        // The cap.
        (Length(10), Some(5), b"0123456789", BIG),
        (Chunked, Some(3), b"4\r\nRust\r\n0\r\n\r\n", BIG),
        (Chunked, Some(4), b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n", BIG),
        (Chunked, Some(1 << 20), b"ffffffffffffffff\r\n", BIG),
        (Chunked, Some(u64::MAX), b"1\r\na\r\nffffffffffffffff\r\n", BIG),
        (UntilClose, Some(3), b"abcd", BIG),
        // Sizes.
        (Chunked, NO, b"00000000000000004\r\nRust\r\n0\r\n\r\n", BAD),
        (Chunked, NO, b"10000000000000000\r\n", BAD),
        (Chunked, NO, b"\r\n", BAD),
        (Chunked, NO, b" 4\r\nRust\r\n0\r\n\r\n", BAD),
        (Chunked, NO, b"+4\r\nRust\r\n0\r\n\r\n", BAD),
        (Chunked, NO, b"-4\r\nRust\r\n0\r\n\r\n", BAD),
        (Chunked, NO, b"0x4\r\nRust\r\n0\r\n\r\n", BAD),
        (Chunked, NO, b"g\r\n", BAD),
        (Chunked, NO, b";a\r\n", BAD),
        // Whitespace only before `;`.
        (Chunked, NO, b"4 \r\nRust\r\n0\r\n\r\n", BAD),
        (Chunked, NO, b"4 x\r\nRust\r\n0\r\n\r\n", BAD),
        // Line ends: CRLF only.
        (Chunked, NO, b"4\nRust\r\n0\r\n\r\n", BAD),
        (Chunked, NO, b"4\rRust\r\n0\r\n\r\n", BAD),
        (Chunked, NO, b"4\r\nRust\n0\r\n\r\n", BAD),
        (Chunked, NO, b"4\r\nRust0\r\n\r\n", BAD),
        (Chunked, NO, b"4\r\nRustX\r\n0\r\n\r\n", BAD),
        (Chunked, NO, b"4\r\nRust\r\n0\r\n\n", BAD),
        (Chunked, NO, b"4\r\nRust\r\n0\n\r\n", BAD),
        (Chunked, NO, b"4\r\nRust\r\n0\r\n\rX", BAD),
        // Extensions.
        (Chunked, NO, b"4;a\nb\r\nRust\r\n0\r\n\r\n", BAD),
        (Chunked, NO, b"4;a\x00\r\nRust\r\n0\r\n\r\n", BAD),
        (Chunked, NO, &long_ext, BAD),
        (Chunked, NO, &long_bws, BAD),
        // Trailers.
        (Chunked, NO, b"0\r\nX: a\n\r\n", BAD),
        (Chunked, NO, b"0\r\nX: a\rb\r\n\r\n", BAD),
        (Chunked, NO, b"0\r\n X: a\r\n\r\n", BAD),
        (Chunked, NO, b"0\r\nX: a\r\n\tb\r\n\r\n", BAD),
        (Chunked, NO, b"0\r\nX : a\r\n\r\n", BAD),
        (Chunked, NO, b"0\r\nX\r\n\r\n", BAD),
        (Chunked, NO, b"0\r\n: a\r\n\r\n", BAD),
        (Chunked, NO, b"0\r\nX: \x00\r\n\r\n", BAD),
        (Chunked, NO, long_trailer.as_bytes(), BAD),
    ];
    for (framing, cap, input, want) in cases {
        let got = split_invariant(*framing, *cap, input);
        assert_eq!(got, Err(*want), "{framing:?} {}", input.escape_ascii());
    }
}

#[test]
fn limits_are_inclusive() {
    let ext = [
        &b"4;"[..],
        &[b'a'; MAX_CHUNK_EXT_BYTES - 1],
        b"\r\nRust\r\n0\r\n\r\n",
    ]
    .concat();
    assert_eq!(
        feed(Framing::Chunked, None, &[&ext]),
        Ok((b"Rust".to_vec(), ext.len(), true))
    );
    let value = "v".repeat(MAX_TRAILER_BYTES - "X: \r\n".len());
    let body = format!("0\r\nX: {value}\r\n\r\n");
    assert_eq!(
        feed(Framing::Chunked, None, &[body.as_bytes()]),
        Ok((vec![], body.len(), true))
    );
    let over = format!("0\r\nX: {value}v\r\n\r\n");
    assert_eq!(
        feed(Framing::Chunked, None, &[over.as_bytes()]),
        Err(BodyError::Chunked)
    );
}

#[test]
fn eof_and_sticky_errors() {
    #[rustfmt::skip]
    let cases: &[(Framing, &[u8], Result<(), BodyError>)] = &[
        (Framing::Empty, b"", Ok(())),
        (Framing::UntilClose, b"abc", Ok(())),
        (Framing::Length(3), b"abc", Ok(())),
        (Framing::Length(3), b"ab", Err(BodyError::Incomplete)),
        (Framing::Chunked, b"0\r\n\r\n", Ok(())),
        (Framing::Chunked, b"0\r\n", Err(BodyError::Incomplete)),
        (Framing::Chunked, b"x", Err(BodyError::Chunked)),
    ];
    for (framing, input, want) in cases {
        let mut decoder = Decoder::new(*framing, None);
        let mut rest = *input;
        while !rest.is_empty() && !decoder.is_done() {
            match decoder.decode(rest) {
                Ok(p) => rest = &rest[p.consumed..],
                Err(_) => break,
            }
        }
        assert_eq!(decoder.eof(), *want, "{framing:?} {}", input.escape_ascii());
    }
    let mut over = Decoder::new(Framing::Length(10), Some(5));
    assert_eq!(over.decode(b""), Err(BodyError::TooLarge));
    assert_eq!(over.eof(), Err(BodyError::TooLarge));
    let mut decoder = Decoder::new(Framing::Chunked, None);
    assert_eq!(decoder.decode(b"z"), Err(BodyError::Chunked));
    assert_eq!(decoder.decode(b"0\r\n\r\n"), Err(BodyError::Chunked));
    let mut done = Decoder::new(Framing::Length(1), None);
    assert!(done.decode(b"ab").unwrap().done);
    assert_eq!(
        done.decode(b"b"),
        Ok(Progress {
            consumed: 0,
            payload: 0..0,
            done: true
        })
    );
}

/// xorshift64 (Marsaglia 2003): enough randomness for test inputs,
/// seeded, so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

/// The reference de-chunker: obviously right on well-formed input, no
/// limits, no streaming.
fn naive_dechunk(mut wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = wire.windows(2).position(|w| w == b"\r\n").unwrap();
        let line = std::str::from_utf8(&wire[..eol]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        wire = &wire[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&wire[..size]);
        wire = &wire[size + 2..];
    }
}

/// A random well-formed chunked body (random sizes, hex case, leading
/// zeros, extensions, trailers; data bytes include CR and LF).
fn random_body(rng: &mut Rng) -> Vec<u8> {
    const EXTENSIONS: [&[u8]; 5] = [b"", b";a", b";a=b", b" \t;n=\"q;\\\"x\"", b";a;b=c"];
    const TRAILERS: [&[u8]; 3] = [b"", b"X-A: b\r\n", b"Digest: sha=1\r\nX:\r\n"];
    let mut wire = Vec::new();
    for _ in 0..rng.below(6) {
        let size = 1 + rng.below(40);
        let hex = format!("{}{size:x}", "0".repeat(rng.below(3)));
        let hex = if rng.below(2) == 0 {
            hex
        } else {
            hex.to_uppercase()
        };
        wire.extend_from_slice(hex.as_bytes());
        wire.extend_from_slice(EXTENSIONS[rng.below(5)]);
        wire.extend_from_slice(b"\r\n");
        wire.extend((0..size).map(|_| [b'\r', b'\n', b'0', rng.next() as u8][rng.below(4)]));
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(&b"000"[..1 + rng.below(3)]);
    wire.extend_from_slice(EXTENSIONS[rng.below(5)]);
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(TRAILERS[rng.below(3)]);
    wire.extend_from_slice(b"\r\n");
    wire
}

#[test]
fn chunked_matches_naive_dechunker() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..2000 {
        let body = random_body(&mut rng);
        let want = naive_dechunk(&body);
        let mut wire = body.clone();
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n"); // pipelined, not ours
                                                       // Random cuts, each piece possibly empty.
        let mut cuts: Vec<usize> = (0..rng.below(5))
            .map(|_| rng.below(wire.len() as u64 + 1))
            .collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([wire.len()]) {
            pieces.push(&wire[from..cut]);
            from = cut;
        }
        let got = feed(Framing::Chunked, Some(want.len() as u64), &pieces);
        assert_eq!(
            got,
            Ok((want, body.len(), true)),
            "round {round}: {}",
            body.escape_ascii()
        );
    }
}
