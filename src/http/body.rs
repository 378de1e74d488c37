//! Message body framing, sans-IO: finds where a Content-Length or chunked
//! body ends and which bytes are payload, enforcing the body cap.
//!
//! Owns: chunked grammar (RFC 9112 §7.1), the cap. Does not own: the
//! framing decision (made by [`super::head`]), what the payload means.

use std::ops::Range;

use super::head::Framing;
use super::is_tchar;

/// What one call to [`Decoder::decode`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Wire bytes of the input that belong to this body and were used.
    pub consumed: usize,
    /// Payload bytes within `input[..consumed]` (one contiguous run).
    pub payload: Range<usize>,
    /// The body ended within `input[..consumed]`.
    pub done: bool,
}

/// Why a body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Payload grew past the cap (413).
    TooLarge,
    /// Chunk-size line, extension, CRLF or trailer not per RFC 9112 §7.1 (400).
    Chunked,
    /// The connection closed before the body ended.
    Incomplete,
}

/// Longest chunk size accepted, in hex digits (leading zeros included).
/// Sixteen hex digits fill a u64, so an accepted size never overflows.
pub const MAX_CHUNK_SIZE_DIGITS: u8 = 16;

/// Most bytes of chunk extensions on one chunk-size line, in bytes: all
/// bytes between the last size digit and the CR (BWS, `;`, names, values).
/// Extensions are ignored, so a peer sending more is only wasting our time
/// (hyper bounds them for the same reason).
pub const MAX_CHUNK_EXT_BYTES: usize = 4096;

/// Most bytes of the trailer section, in bytes: every trailer field line
/// with its CRLF, the final empty line excluded.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Push-style body decoder: feed it wire bytes as they arrive, it says how
/// many belong to the body, which of them are payload, and when the body
/// ended.
///
/// Guarantees, for any split of the same wire bytes into calls: the same
/// payload bytes in the same order, the same total `consumed`, the same
/// error. Bytes after the end of the body are never consumed, so a caller
/// can parse the next pipelined message from there.
///
/// # Example
///
/// ```
/// use llmhop::http::{body::Decoder, head::Framing};
///
/// let wire = b"4\r\nRust\r\n0\r\n\r\nGET /next";
/// let mut decoder = Decoder::new(Framing::Chunked, Some(1024));
/// let (mut rest, mut payload) = (&wire[..], Vec::new());
/// while !decoder.is_done() {
///     let progress = decoder.decode(rest).unwrap();
///     payload.extend_from_slice(&rest[progress.payload.clone()]);
///     rest = &rest[progress.consumed..];
/// }
/// assert_eq!(payload, b"Rust");
/// assert_eq!(rest, b"GET /next");
/// ```
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    /// Most payload bytes allowed in total (requests), or `None` (responses).
    cap: Option<u64>,
    /// Payload bytes announced so far: chunk sizes read, or bytes passed
    /// through for `UntilClose`. Compared with `cap`.
    payload: u64,
}

/// Where the decoder is in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// `Content-Length`: `remaining` payload bytes still to come.
    Length { remaining: u64 },
    /// `Transfer-Encoding: chunked`, at `at` in the grammar.
    Chunked { at: ChunkedState },
    /// Everything is payload until the peer closes.
    UntilClose,
    /// The body ended; nothing more is consumed.
    Done,
    /// A previous call failed; every later call fails the same way.
    Failed { error: BodyError },
}

/// A position in the chunked grammar of RFC 9112 §7.1, one variant per
/// "what comes next":
///
/// ```text
/// chunked-body   = *chunk last-chunk trailer-section CRLF
/// chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-size     = 1*HEXDIG
/// last-chunk     = 1*("0") [ chunk-ext ] CRLF
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// trailer-section = *( field-line CRLF )
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkedState {
    /// Reading the hex size; `digits` read so far on this line.
    Size { size: u64, digits: u8 },
    /// After the size, inside BWS: only more SP/HTAB or `;` may follow.
    SizeWs { size: u64, ext: usize },
    /// Inside chunk extensions (`ext` bytes so far), up to the CR.
    Extension { size: u64, ext: usize },
    /// The CR ending the size line was read; LF must follow.
    SizeLf { size: u64 },
    /// Chunk data: `remaining` bytes (never 0) still to come.
    Data { remaining: u64 },
    /// After chunk data: CR must follow.
    DataCr,
    /// After chunk data and CR: LF must follow.
    DataLf,
    /// At the start of a trailer line or of the final empty line; `used`
    /// counts trailer bytes so far, here and in the next three variants.
    TrailerStart { used: usize },
    /// Inside a trailer field name.
    TrailerName { used: usize },
    /// Inside a trailer field value, up to the CR.
    TrailerValue { used: usize },
    /// The CR ending a trailer line was read; LF must follow.
    TrailerLf { used: usize },
    /// The CR of the final empty line was read; LF ends the body.
    EndLf,
    /// The final LF was read.
    End,
}

impl Decoder {
    /// A decoder for `framing`; `cap` bounds the total payload, in bytes.
    ///
    /// `Empty` and `Length(0)` are done at once. A `Length` over `cap`
    /// makes the first [`decode`](Decoder::decode) fail with
    /// [`BodyError::TooLarge`] (the caller should have answered 413
    /// already; this is the safety net).
    pub fn new(framing: Framing, cap: Option<u64>) -> Decoder {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) if cap.is_some_and(|cap| n > cap) => State::Failed {
                error: BodyError::TooLarge,
            },
            Framing::Length(remaining) => State::Length { remaining },
            Framing::Chunked => State::Chunked {
                at: ChunkedState::Size { size: 0, digits: 0 },
            },
            Framing::UntilClose => State::UntilClose,
        };
        Decoder {
            state,
            cap,
            payload: 0,
        }
    }

    /// Consumes a prefix of `input`. Call again with the rest until
    /// `done` or the input is used up.
    ///
    /// Guarantees: `consumed <= input.len()`; `payload` lies within
    /// `input[..consumed]` and is one contiguous run (chunked input may
    /// need several calls for one `input`); `consumed > 0` whenever `input`
    /// is non-empty and the body is not done; once `done`, later calls
    /// consume nothing. Errors are final: every later call repeats them.
    pub fn decode(&mut self, input: &[u8]) -> Result<Progress, BodyError> {
        let result = self.step(input);
        if let Err(error) = result {
            self.state = State::Failed { error };
        }
        result
    }

    /// The peer closed: fine for `UntilClose`, an error otherwise unless done.
    pub fn eof(&self) -> Result<(), BodyError> {
        match self.state {
            State::Done | State::UntilClose => Ok(()),
            State::Failed { error } => Err(error),
            State::Length { .. } | State::Chunked { .. } => Err(BodyError::Incomplete),
        }
    }

    /// The body ended (never true for `UntilClose`, which ends at
    /// [`eof`](Decoder::eof)).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn step(&mut self, input: &[u8]) -> Result<Progress, BodyError> {
        match self.state {
            State::Done => Ok(Progress {
                consumed: 0,
                payload: 0..0,
                done: true,
            }),
            State::Failed { error } => Err(error),
            State::Length { remaining } => {
                // `take <= input.len()`, so it fits a usize.
                let take = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
                let remaining = remaining - take as u64;
                self.state = if remaining == 0 {
                    State::Done
                } else {
                    State::Length { remaining }
                };
                Ok(Progress {
                    consumed: take,
                    payload: 0..take,
                    done: remaining == 0,
                })
            }
            State::UntilClose => {
                self.announce(input.len() as u64)?;
                Ok(Progress {
                    consumed: input.len(),
                    payload: 0..input.len(),
                    done: false,
                })
            }
            State::Chunked { at } => self.chunked(at, input),
        }
    }

    /// Runs the chunked grammar over `input` from `at`, stopping after the
    /// first run of chunk data (one payload range per call), at the end of
    /// the body, or at the end of `input`.
    fn chunked(&mut self, mut at: ChunkedState, input: &[u8]) -> Result<Progress, BodyError> {
        let mut pos = 0;
        while pos < input.len() && at != ChunkedState::End {
            if let ChunkedState::Data { remaining } = at {
                let available = input.len() - pos;
                let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
                let remaining = remaining - take as u64;
                at = if remaining == 0 {
                    ChunkedState::DataCr
                } else {
                    ChunkedState::Data { remaining }
                };
                self.state = State::Chunked { at };
                return Ok(Progress {
                    consumed: pos + take,
                    payload: pos..pos + take,
                    done: false,
                });
            }
            at = self.chunked_byte(at, input[pos])?;
            pos += 1;
        }
        let done = at == ChunkedState::End;
        self.state = if done {
            State::Done
        } else {
            State::Chunked { at }
        };
        Ok(Progress {
            consumed: pos,
            payload: pos..pos,
            done,
        })
    }

    /// One byte of chunked framing (anything but chunk data), RFC 9112 §7.1.
    fn chunked_byte(&mut self, at: ChunkedState, b: u8) -> Result<ChunkedState, BodyError> {
        use ChunkedState::*;
        let bad = Err(BodyError::Chunked);
        match at {
            Size { size, digits } => match hex_value(b) {
                Some(d) => {
                    if digits >= MAX_CHUNK_SIZE_DIGITS {
                        return bad;
                    }
                    let size = size.checked_mul(16).and_then(|s| s.checked_add(d));
                    let size = size.ok_or(BodyError::Chunked)?;
                    Ok(Size {
                        size,
                        digits: digits + 1,
                    })
                }
                // chunk-size = 1*HEXDIG: nothing else may come first.
                None if digits == 0 => bad,
                // The size line ended: an oversized chunk is refused before
                // any of its data is read. (Checked here, not per digit, so
                // that an overflowing size stays a framing error.)
                None if matches!(b, b'\r' | b' ' | b'\t' | b';')
                    && self.check_cap(size).is_err() =>
                {
                    Err(BodyError::TooLarge)
                }
                None => match b {
                    b'\r' => Ok(SizeLf { size }),
                    // RFC 9112 §7.1.1: BWS is allowed only before `;`.
                    b' ' | b'\t' => Ok(SizeWs { size, ext: 1 }),
                    b';' => Ok(Extension { size, ext: 1 }),
                    _ => bad,
                },
            },
            SizeWs { size, ext } => match b {
                _ if ext >= MAX_CHUNK_EXT_BYTES => bad,
                b' ' | b'\t' => Ok(SizeWs { size, ext: ext + 1 }),
                b';' => Ok(Extension { size, ext: ext + 1 }),
                // Whitespace then CRLF (or anything else) is not chunk-ext.
                _ => bad,
            },
            Extension { size, ext } => match b {
                b'\r' => Ok(SizeLf { size }),
                _ if ext >= MAX_CHUNK_EXT_BYTES => bad,
                // Extensions are ignored, so only their byte class is
                // checked: HTAB, SP, VCHAR, obs-text. A bare LF or any other
                // control byte is refused (a lenient LF here is how chunked
                // smuggling through extensions works).
                b'\t' | b' '..=b'~' | 0x80..=0xff => Ok(Extension { size, ext: ext + 1 }),
                _ => bad,
            },
            SizeLf { size } => match b {
                b'\n' if size == 0 => Ok(TrailerStart { used: 0 }),
                b'\n' => {
                    self.payload = self.payload.saturating_add(size);
                    Ok(Data { remaining: size })
                }
                _ => bad,
            },
            // Data is handled by the caller, in bulk.
            Data { .. } | End => unreachable!("no framing byte in {at:?}"),
            DataCr => match b {
                b'\r' => Ok(DataLf),
                _ => bad,
            },
            DataLf => match b {
                b'\n' => Ok(Size { size: 0, digits: 0 }),
                _ => bad,
            },
            TrailerStart { used } => match b {
                b'\r' => Ok(EndLf),
                // A field line starts with a field-name (RFC 9112 §5): a
                // leading SP/HTAB (obs-fold) or a bare LF is refused.
                _ if is_tchar(b) => trailer(used, TrailerName { used: used + 1 }),
                _ => bad,
            },
            TrailerName { used } => match b {
                b':' => trailer(used, TrailerValue { used: used + 1 }),
                // No whitespace between name and colon (RFC 9112 §5.1).
                _ if is_tchar(b) => trailer(used, TrailerName { used: used + 1 }),
                _ => bad,
            },
            TrailerValue { used } => match b {
                b'\r' => trailer(used, TrailerLf { used: used + 1 }),
                // field-value bytes of RFC 9110 §5.5: HTAB, SP, VCHAR, obs-text.
                b'\t' | b' '..=b'~' | 0x80..=0xff => trailer(used, TrailerValue { used: used + 1 }),
                _ => bad,
            },
            TrailerLf { used } => match b {
                b'\n' => trailer(used, TrailerStart { used: used + 1 }),
                _ => bad,
            },
            EndLf => match b {
                b'\n' => Ok(End),
                _ => bad,
            },
        }
    }

    /// Refuses a body whose payload would exceed the cap once `more`
    /// further bytes arrive (TooLarge). Does not record them.
    fn check_cap(&self, more: u64) -> Result<(), BodyError> {
        match self.cap {
            Some(cap)
                if self
                    .payload
                    .checked_add(more)
                    .is_none_or(|total| total > cap) =>
            {
                Err(BodyError::TooLarge)
            }
            Some(_) | None => Ok(()),
        }
    }

    /// Records `more` payload bytes after checking them against the cap.
    fn announce(&mut self, more: u64) -> Result<(), BodyError> {
        self.check_cap(more)?;
        self.payload = self.payload.saturating_add(more);
        Ok(())
    }
}

/// The next trailer state, unless the trailer section (`used` bytes so far,
/// this byte not counted) would exceed [`MAX_TRAILER_BYTES`].
fn trailer(used: usize, next: ChunkedState) -> Result<ChunkedState, BodyError> {
    if used >= MAX_TRAILER_BYTES {
        return Err(BodyError::Chunked);
    }
    Ok(next)
}

/// `HEXDIG` (RFC 5234 B.1, case-insensitive) as its value.
fn hex_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
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
}
