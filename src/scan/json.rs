//! Streaming scanner for the top-level `"model"` string of a JSON object.
//!
//! [`JsonScanner`] is a push parser over the JSON grammar of RFC 8259: an
//! explicit `State` (one variant per "what comes next"), a depth counter
//! and a bit stack saying, per open container, object or array. It never
//! recurses and never builds a DOM; its memory is a fixed 128-byte stack plus
//! the model value being decoded (at most [`MAX_MODEL_BYTES`]), whatever the
//! size of the body.
//!
//! It validates enough structure to agree with `serde_json` about `model`:
//! string escapes (paired surrogates included), raw control bytes in
//! strings, numbers, `true`/`false`/`null`, commas, colons and brackets.
//! Documents `serde_json::from_slice::<Value>` rejects but this scanner
//! accepts, on purpose, because rejecting them would cost speed or memory
//! for nothing a backend cares about:
//!
//! - invalid UTF-8 inside strings other than the model value (checking it
//!   would halve the speed of skipping a multi-MiB base64 image);
//! - nesting deeper than serde_json's 128 levels, up to [`MAX_DEPTH`];
//! - numbers outside the range of `f64` (`1e400`), which RFC 8259 allows.
//!
//! This module does not own framing (it sees payload bytes, never chunk
//! headers), choosing the scanner, or what a model name routes to.

use std::num::NonZeroU16;

use memchr::memchr2;

use super::{Scan, ScanError, MAX_MODEL_BYTES};
use crate::words;

/// String bytes searched per step, in bytes: within the L1 data cache, so
/// the second pass over them (control bytes) does not go back to memory.
/// A body read arrives in pieces of up to several MiB.
const STRING_WINDOW: usize = 16 * 1024;

/// String bytes searched a word at a time ([`short_stop`]) before memchr2
/// takes over, in bytes: below this, setting up the vector search costs
/// more than it saves. (Raising it from 32 to 64, with the word tail of
/// [`has_control`], took a small chat request's scan from 2 730 to 2 460
/// instructions and 480 to 425 ns.)
const SHORT_STRING: usize = 64;

/// Deepest nesting of objects and arrays accepted, the top-level object
/// counting as 1; deeper is [`ScanError::Syntax`].
///
/// Why a limit: it keeps the bit stack a fixed 128 bytes. Python's `json`
/// (vLLM, sglang) gives up near 1000 levels and serde_json at 128, so no
/// backend would accept what this refuses. A multiple of 64.
pub const MAX_DEPTH: usize = 1024;

/// The key whose value is routed on, compared after unescaping.
const MODEL_KEY: &[u8] = b"model";

/// Streaming scanner for the string value of the top-level key `model`.
///
/// Feed the payload in any split; the sequence of answers (ignoring
/// `NeedMore`) is the same for every split:
///
/// - `Found(model)` exactly once, from the `feed` that saw the closing quote
///   of the model value;
/// - then `NeedMore` while the rest of the document stays valid, or
///   `Invalid(Duplicate)` for a second top-level `model` key, or
///   `Invalid(Syntax)` for broken JSON. If that happens within the same
///   `feed` that returned `Found`, the `Invalid` is the answer of the next
///   call (feed or finish): `Found` is never lost;
/// - `Invalid(_)` is sticky: every later call returns the same error.
///
/// [`finish`](JsonScanner::finish) at the end of the body gives
/// `Invalid(Missing)` for a complete object without `model` (and for an
/// empty or all-whitespace body), `Invalid(Syntax)` for an incomplete one,
/// otherwise `NeedMore`.
///
/// Choices where JSON leaves room: a UTF-8 byte order mark before the object
/// is `Syntax` (RFC 8259 §8.1: senders must not add one; serde_json refuses
/// it too). A lone surrogate escape (`"\uD800"`) anywhere is `Syntax`, as in
/// serde_json; it cannot be turned into UTF-8.
///
/// # Example
///
/// ```
/// use llmhop::scan::{json::JsonScanner, Scan};
///
/// let mut scanner = JsonScanner::new();
/// assert_eq!(scanner.feed(br#"{"messages":[],"mo"#), Scan::NeedMore);
/// assert_eq!(scanner.feed(br#"del":"llama"}"#), Scan::Found("llama".into()));
/// assert_eq!(scanner.finish(), Scan::NeedMore);
/// ```
#[derive(Debug)]
pub struct JsonScanner {
    /// What the next byte may be.
    state: State,
    /// Open containers; the top-level object is depth 1.
    depth: usize,
    /// Bit `d` set when the container at depth `d + 1` is an object, clear
    /// when it is an array.
    objects: [u64; MAX_DEPTH / 64],
    /// A top-level `model` key was seen (a second one is `Duplicate`).
    seen_model: bool,
    /// The model value decoded so far; empty outside of it.
    model: Vec<u8>,
}

/// Where the scanner is in the grammar: one variant per "what comes next".
/// Whitespace is allowed wherever a variant's doc says "then".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the document: whitespace, then `{`.
    Start,
    /// After `{`: a key or `}`.
    FirstKey,
    /// After `,` in an object: a key.
    NextKey,
    /// After a key: `:`. `model` when the key was the top-level `model`.
    Colon { model: bool },
    /// After `[`: a value or `]`.
    FirstItem,
    /// After `:`, or `,` in an array: a value. `model` as in `Colon`.
    Value { model: bool },
    /// Inside a string, after its opening quote or a complete escape.
    Str { text: Text },
    /// After a backslash inside a string.
    Escape { text: Text },
    /// Inside `\uXXXX`: `digits` hex digits read, worth `unit` so far.
    /// `high` is the leading surrogate this escape must complete
    /// (`NonZeroU16`: a surrogate is never zero, and `State` stays at
    /// eight bytes).
    Unicode {
        text: Text,
        high: Option<NonZeroU16>,
        digits: u8,
        unit: u16,
    },
    /// After a leading surrogate escape: the `\` of its trailing half.
    LowBackslash { text: Text, high: u16 },
    /// After the `\` following a leading surrogate: `u`.
    LowU { text: Text, high: u16 },
    /// Inside a number, `at` the given point of its grammar.
    Number { at: Num },
    /// Inside `true`, `false` or `null`: the bytes still expected, the
    /// next one lowest, as [`literal`] packs them.
    Literal { rest: u32 },
    /// After a value inside a container: `,` or the container's close.
    AfterValue,
    /// After the top-level object: whitespace only.
    Trailing,
    /// The document cannot be routed; every call returns this error.
    Failed { error: ScanError },
}

/// What a string is to the scanner, deciding what its decoded bytes feed and
/// what follows its closing quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Text {
    /// A top-level key whose first `matched` decoded bytes agree with
    /// `model`.
    TopKey { matched: u8 },
    /// Any other key: nested, or top-level but already not `model`.
    OtherKey,
    /// The value of the top-level `model`, decoded into `JsonScanner::model`.
    Model,
    /// Any other string value.
    OtherValue,
}

/// A point in the number grammar of RFC 8259 §6:
/// `number = [ minus ] int [ frac ] [ exp ]`,
/// `int = zero / ( digit1-9 *DIGIT )`, `frac = "." 1*DIGIT`,
/// `exp = ( "e" / "E" ) [ "-" / "+" ] 1*DIGIT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    /// After `-`.
    Minus,
    /// After an integer part `0` (no more digits may follow).
    Zero,
    /// Inside an integer part starting with 1-9.
    Int,
    /// After `.`.
    Dot,
    /// Inside the fraction digits.
    Frac,
    /// After `e` or `E`.
    Exp,
    /// After the exponent's sign.
    ExpSign,
    /// Inside the exponent digits.
    ExpInt,
}

impl Num {
    /// Whether a number may end here.
    fn is_complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpInt)
    }

    /// The point after `byte`, or `None` when `byte` does not continue the
    /// number.
    fn next(self, byte: u8) -> Option<Num> {
        let digit = byte.is_ascii_digit();
        match self {
            Num::Minus if byte == b'0' => Some(Num::Zero),
            Num::Minus | Num::Int if digit => Some(Num::Int),
            Num::Zero | Num::Int if byte == b'.' => Some(Num::Dot),
            Num::Zero | Num::Int | Num::Frac if byte == b'e' || byte == b'E' => Some(Num::Exp),
            Num::Dot | Num::Frac if digit => Some(Num::Frac),
            Num::Exp if byte == b'+' || byte == b'-' => Some(Num::ExpSign),
            Num::Exp | Num::ExpSign | Num::ExpInt if digit => Some(Num::ExpInt),
            _ => None,
        }
    }
}

impl Default for JsonScanner {
    fn default() -> JsonScanner {
        JsonScanner::new()
    }
}

impl JsonScanner {
    /// A scanner before the first byte of the body.
    pub fn new() -> JsonScanner {
        JsonScanner {
            state: State::Start,
            depth: 0,
            objects: [0; MAX_DEPTH / 64],
            seen_model: false,
            model: Vec::new(),
        }
    }

    /// Scans the next piece of the body; see [`JsonScanner`] for the answers.
    pub fn feed(&mut self, payload: &[u8]) -> Scan {
        if let State::Failed { error } = self.state {
            return Scan::Invalid(error);
        }
        let mut found = None;
        if let Err(error) = self.tokens(payload, &mut found) {
            self.fail(error);
        }
        // Found outranks an error later in the same piece: the caller must
        // see the model exactly once, and gets the error on its next call.
        match (found, self.state) {
            (Some(model), _) => Scan::Found(model),
            (None, State::Failed { error }) => Scan::Invalid(error),
            (None, _) => Scan::NeedMore,
        }
    }

    /// The body ended: `Invalid(Missing)` when the object had no `model` (or
    /// the body was empty), `Invalid(Syntax)` when the document is
    /// incomplete, else `NeedMore` (the model was already `Found`).
    pub fn finish(&mut self) -> Scan {
        match self.state {
            State::Failed { error } => Scan::Invalid(error),
            // Nothing but whitespace: tell the client what it forgot.
            State::Start => self.fail(ScanError::Missing),
            State::Trailing if self.seen_model => Scan::NeedMore,
            State::Trailing => self.fail(ScanError::Missing),
            _ => self.fail(ScanError::Syntax),
        }
    }

    /// Makes `error` sticky and returns it.
    fn fail(&mut self, error: ScanError) -> Scan {
        self.state = State::Failed { error };
        self.model = Vec::new();
        Scan::Invalid(error)
    }

    /// Reads all of `input`, setting `found` when the model value closes.
    ///
    /// Why a loop of its own before [`step`](Self::step): a chat request is
    /// mostly short keys, short values and the bytes between them, and
    /// going through `self.state` and `step` for each of those cost more
    /// than the bytes themselves. Here the state is a local, a plain string
    /// that closes within [`SHORT_STRING`] bytes is one token
    /// ([`short_token`]), and whatever else (escapes, long strings,
    /// literals, errors, a token cut by the end of `input`) goes to `step`
    /// with `self.state` as `step` would have left it. (A small compact
    /// chat request, 163 bytes in one piece: 2 470 to 1 790 instructions;
    /// one with a space after each colon and comma: 3 220 to 2 950. An
    /// inlined run of `}` `]` `,` after a value, tried too, cost 260 more.)
    fn tokens(&mut self, input: &[u8], found: &mut Option<String>) -> Result<(), ScanError> {
        let mut state = self.state;
        let mut at = 0;
        while let Some(&byte) = input.get(at) {
            let whitespace = matches!(byte, b' ' | b'\t' | b'\n' | b'\r');
            state = match state {
                State::Start
                | State::FirstKey
                | State::NextKey
                | State::Colon { .. }
                | State::FirstItem
                | State::Value { .. }
                | State::AfterValue
                    if whitespace =>
                {
                    at += 1;
                    continue;
                }
                State::FirstKey | State::NextKey if byte == b'"' => {
                    self.members(input, &mut at, found)?
                }
                State::Colon { model } if byte == b':' => {
                    at += 1;
                    State::Value { model }
                }
                State::Value { model: true } if byte == b'"' => {
                    self.short_token(Text::Model, input, &mut at, found)?
                }
                State::Value { model: false } | State::FirstItem if byte == b'"' => {
                    self.short_token(Text::OtherValue, input, &mut at, found)?
                }
                State::AfterValue if byte == b',' => {
                    at += 1;
                    match self.in_object() {
                        true if input.get(at) == Some(&b'"') => {
                            self.members(input, &mut at, found)?
                        }
                        true => State::NextKey,
                        false => State::Value { model: false },
                    }
                }
                State::AfterValue | State::FirstKey if byte == b'}' => {
                    at += 1;
                    self.close(true)?
                }
                State::AfterValue | State::FirstItem if byte == b']' => {
                    at += 1;
                    self.close(false)?
                }
                State::Start | State::Value { model: false } | State::FirstItem if byte == b'{' => {
                    at += 1;
                    self.open(true)?;
                    match input.get(at) {
                        Some(b'"') => self.members(input, &mut at, found)?,
                        _ => State::FirstKey,
                    }
                }
                // An integer (`max_tokens`, `n`): its digits at once. A byte
                // after them that would continue the number leaves the rest
                // to the `Number` arm.
                State::Value { model: false } | State::FirstItem if matches!(byte, b'1'..=b'9') => {
                    let digits = input[at + 1..].iter().position(|b| !b.is_ascii_digit());
                    match digits.map(|n| (n, input[at + 1 + n])) {
                        Some((n, next)) if !matches!(next, b'.' | b'e' | b'E') => {
                            at += 1 + n;
                            State::AfterValue
                        }
                        _ => {
                            at += 1;
                            State::Number { at: Num::Int }
                        }
                    }
                }
                State::Value { model: false } | State::FirstItem => {
                    at += 1;
                    self.value(byte)?
                }
                State::Number { at: num } => match num.next(byte) {
                    Some(next) => {
                        at += 1;
                        State::Number { at: next }
                    }
                    // The byte ends the number; read it again as what
                    // follows a value.
                    None if num.is_complete() => State::AfterValue,
                    None => return Err(ScanError::Syntax),
                },
                _ => {
                    self.state = state;
                    at = self.step(input, at, found)?;
                    self.state
                }
            };
        }
        self.state = state;
        Ok(())
    }

    /// Reads `"key":"value",` runs from the opening quote of a key at
    /// `input[*at]`, returning the state before the first byte that is not
    /// part of one (a value other than a plain short string, whitespace,
    /// the end of the object): no dispatch on the state between them, and
    /// no look at the container stack for the comma, since the container
    /// is the object whose key was just read.
    #[inline(always)]
    fn members(
        &mut self,
        input: &[u8],
        at: &mut usize,
        found: &mut Option<String>,
    ) -> Result<State, ScanError> {
        let key = match self.depth {
            1 => Text::TopKey { matched: 0 },
            _ => Text::OtherKey,
        };
        loop {
            let model = match self.short_token(key, input, at, found)? {
                State::Colon { model } => model,
                state => return Ok(state),
            };
            if input.get(*at) != Some(&b':') {
                return Ok(State::Colon { model });
            }
            *at += 1;
            if input.get(*at) != Some(&b'"') {
                return Ok(State::Value { model });
            }
            let text = match model {
                true => Text::Model,
                false => Text::OtherValue,
            };
            let state = self.short_token(text, input, at, found)?;
            if state != State::AfterValue || input.get(*at) != Some(&b',') {
                return Ok(state);
            }
            *at += 1;
            if input.get(*at) != Some(&b'"') {
                return Ok(State::NextKey);
            }
        }
    }

    /// Reads the string whose opening quote is `input[*at]` as one token
    /// when it is plain (no escape, no control byte) and closes within
    /// [`SHORT_STRING`] bytes, returning the state after its closing quote;
    /// otherwise consumes only the quote and returns the `Str` state that
    /// [`string`](Self::string) takes from there.
    #[inline(always)]
    fn short_token(
        &mut self,
        text: Text,
        input: &[u8],
        at: &mut usize,
        found: &mut Option<String>,
    ) -> Result<State, ScanError> {
        let start = *at + 1;
        let rest = &input[start..];
        let n = match short_stop(&rest[..rest.len().min(SHORT_STRING)]) {
            Some(n) if rest[n] == b'"' => n,
            _ => {
                *at = start;
                return Ok(State::Str { text });
            }
        };
        let plain = &rest[..n];
        *at = start + n + 1;
        Ok(match text {
            Text::TopKey { .. } if plain == MODEL_KEY => self.model_key()?,
            Text::TopKey { .. } | Text::OtherKey => State::Colon { model: false },
            Text::Model => {
                if plain.len() > MAX_MODEL_BYTES {
                    return Err(ScanError::NotString);
                }
                let model = std::str::from_utf8(plain).map_err(|_| ScanError::NotString)?;
                *found = Some(model.to_owned());
                State::AfterValue
            }
            Text::OtherValue => State::AfterValue,
        })
    }

    /// Consumes at least the byte at `input[at]`, returning the index of the
    /// next unread byte; sets `found` when the model value closes.
    fn step(
        &mut self,
        input: &[u8],
        at: usize,
        found: &mut Option<String>,
    ) -> Result<usize, ScanError> {
        let byte = input[at];
        let whitespace = matches!(byte, b' ' | b'\t' | b'\n' | b'\r');
        match self.state {
            State::Str { text } => return self.string(text, input, at, found),
            State::Escape { text } => self.escape(text, byte)?,
            State::Unicode {
                text,
                high,
                digits,
                unit,
            } => self.unicode(text, high, digits, unit, byte)?,
            State::LowBackslash { text, high } if byte == b'\\' => {
                self.state = State::LowU { text, high }
            }
            State::LowU { text, high } if byte == b'u' => {
                self.state = State::Unicode {
                    text,
                    high: NonZeroU16::new(high),
                    digits: 0,
                    unit: 0,
                }
            }
            // RFC 8259 §7: a leading surrogate must be followed by the
            // escape of a trailing one; serde_json refuses a lone one too.
            State::LowBackslash { .. } | State::LowU { .. } => return Err(ScanError::Syntax),
            State::Number { at: num } => match num.next(byte) {
                Some(next) => self.state = State::Number { at: next },
                None if num.is_complete() => {
                    // The byte ends the number; read it again as what
                    // follows a value.
                    self.state = State::AfterValue;
                    return Ok(at);
                }
                None => return Err(ScanError::Syntax),
            },
            State::Literal { rest } if u32::from(byte) == rest & 0xff => {
                self.state = match rest >> 8 {
                    0 => State::AfterValue,
                    rest => State::Literal { rest },
                }
            }
            State::Literal { .. } => return Err(ScanError::Syntax),
            _ if whitespace => {}
            State::Start if byte == b'{' => self.state = self.open(true)?,
            // Top level not an object (a UTF-8 BOM included).
            State::Start => return Err(ScanError::Syntax),
            State::FirstKey | State::NextKey if byte == b'"' => {
                let text = match self.depth {
                    1 => Text::TopKey { matched: 0 },
                    _ => Text::OtherKey,
                };
                self.state = State::Str { text };
            }
            State::FirstKey if byte == b'}' => self.state = self.close(true)?,
            State::Colon { model } if byte == b':' => self.state = State::Value { model },
            State::FirstItem if byte == b']' => self.state = self.close(false)?,
            State::Value { model: true } => match byte {
                b'"' => self.state = State::Str { text: Text::Model },
                b'{' | b'[' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                    return Err(ScanError::NotString)
                }
                _ => return Err(ScanError::Syntax),
            },
            State::Value { model: false } | State::FirstItem => self.state = self.value(byte)?,
            State::AfterValue => match byte {
                b',' if self.in_object() => self.state = State::NextKey,
                b',' => self.state = State::Value { model: false },
                b'}' => self.state = self.close(true)?,
                b']' => self.state = self.close(false)?,
                _ => return Err(ScanError::Syntax),
            },
            State::FirstKey | State::NextKey | State::Colon { .. } | State::Trailing => {
                return Err(ScanError::Syntax)
            }
            State::Failed { error } => return Err(error),
        }
        Ok(at + 1)
    }

    /// Starts a value (not the model's) at `byte`, returning the state
    /// after it.
    fn value(&mut self, byte: u8) -> Result<State, ScanError> {
        Ok(match byte {
            b'"' => State::Str {
                text: Text::OtherValue,
            },
            b'{' => return self.open(true),
            b'[' => return self.open(false),
            b'-' => State::Number { at: Num::Minus },
            b'0' => State::Number { at: Num::Zero },
            b'1'..=b'9' => State::Number { at: Num::Int },
            b't' => State::Literal {
                rest: literal(b"rue"),
            },
            b'f' => State::Literal {
                rest: literal(b"alse"),
            },
            b'n' => State::Literal {
                rest: literal(b"ull"),
            },
            _ => return Err(ScanError::Syntax),
        })
    }

    /// Reads string bytes from `input[at]` up to and including the next `"`
    /// or `\`, or to the end of `input`.
    ///
    /// Why memchr2: strings are where the bytes are (a base64 image can be
    /// tens of MiB), and between two quotes or backslashes only the raw
    /// control bytes need checking, which a vectorised min does at memory
    /// speed.
    fn string(
        &mut self,
        text: Text,
        input: &[u8],
        at: usize,
        found: &mut Option<String>,
    ) -> Result<usize, ScanError> {
        let rest = &input[at..];
        // RFC 8259 §7: control characters U+0000 to U+001F must be escaped.
        // Short strings (the keys and most values of a chat request) a word
        // at a time, everything checked in one pass. A top-level key is
        // compared with `model` as a whole (`emit`), not byte by byte.
        let (plain, stop) = match short_stop(&rest[..rest.len().min(SHORT_STRING)]) {
            Some(n) if rest[n] < 0x20 => return Err(ScanError::Syntax),
            Some(n) => (&rest[..n], Some(rest[n])),
            None if rest.len() <= SHORT_STRING => (rest, None),
            // A window at a time, so that the control-byte pass reads what
            // memchr2 has just brought into the cache.
            None => {
                let window = &rest[..rest.len().min(STRING_WINDOW)];
                let (plain, stop) = match memchr2(b'"', b'\\', window) {
                    Some(n) => (&rest[..n], Some(rest[n])),
                    None => (window, None),
                };
                if has_control(plain) {
                    return Err(ScanError::Syntax);
                }
                (plain, stop)
            }
        };
        let text = self.emit(text, plain)?;
        self.state = State::Str { text };
        let next = at + plain.len();
        match stop {
            None => return Ok(next),
            Some(b'"') => self.close_string(text, found)?,
            Some(_) => self.state = State::Escape { text },
        }
        Ok(next + 1)
    }

    /// Handles the byte after a backslash (RFC 8259 §7 escape set).
    fn escape(&mut self, text: Text, byte: u8) -> Result<(), ScanError> {
        let decoded = match byte {
            b'"' | b'\\' | b'/' => byte,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                self.state = State::Unicode {
                    text,
                    high: None,
                    digits: 0,
                    unit: 0,
                };
                return Ok(());
            }
            _ => return Err(ScanError::Syntax),
        };
        let text = self.emit(text, &[decoded])?;
        self.state = State::Str { text };
        Ok(())
    }

    /// Handles a hex digit of `\uXXXX`, decoding the escape (or surrogate
    /// pair) after its last digit.
    fn unicode(
        &mut self,
        text: Text,
        high: Option<NonZeroU16>,
        digits: u8,
        unit: u16,
        byte: u8,
    ) -> Result<(), ScanError> {
        let nibble = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            _ => return Err(ScanError::Syntax),
        };
        let (digits, unit) = (digits + 1, unit << 4 | u16::from(nibble));
        if digits < 4 {
            self.state = State::Unicode {
                text,
                high,
                digits,
                unit,
            };
            return Ok(());
        }
        let scalar = match (high.map(NonZeroU16::get), unit) {
            (None, 0xD800..=0xDBFF) => {
                self.state = State::LowBackslash { text, high: unit };
                return Ok(());
            }
            (Some(high), 0xDC00..=0xDFFF) => {
                0x1_0000 + ((u32::from(high) - 0xD800) << 10 | (u32::from(unit) - 0xDC00))
            }
            // A trailing surrogate alone, or a leading one followed by
            // something else than a trailing one.
            (_, 0xDC00..=0xDFFF) | (Some(_), _) => return Err(ScanError::Syntax),
            (None, _) => u32::from(unit),
        };
        let decoded = char::from_u32(scalar).ok_or(ScanError::Syntax)?;
        let text = self.emit(text, decoded.encode_utf8(&mut [0; 4]).as_bytes())?;
        self.state = State::Str { text };
        Ok(())
    }

    /// Gives decoded string bytes to whoever `text` says wants them,
    /// returning what the string is now (a top-level key may stop being a
    /// `model` candidate).
    fn emit(&mut self, text: Text, bytes: &[u8]) -> Result<Text, ScanError> {
        match text {
            Text::TopKey { matched } => {
                let mut matched = usize::from(matched);
                for &byte in bytes {
                    if MODEL_KEY.get(matched) != Some(&byte) {
                        return Ok(Text::OtherKey);
                    }
                    matched += 1;
                }
                Ok(Text::TopKey {
                    matched: matched as u8,
                })
            }
            Text::Model => {
                if self.model.len() + bytes.len() > MAX_MODEL_BYTES {
                    return Err(ScanError::NotString);
                }
                self.model.extend_from_slice(bytes);
                Ok(text)
            }
            Text::OtherKey | Text::OtherValue => Ok(text),
        }
    }

    /// The top-level `model` key just closed: the state after it, or
    /// `Duplicate` for a second one.
    #[inline]
    fn model_key(&mut self) -> Result<State, ScanError> {
        if self.seen_model {
            return Err(ScanError::Duplicate);
        }
        self.seen_model = true;
        Ok(State::Colon { model: true })
    }

    /// Handles a string's closing quote.
    fn close_string(&mut self, text: Text, found: &mut Option<String>) -> Result<(), ScanError> {
        self.state = match text {
            Text::TopKey { matched } if usize::from(matched) == MODEL_KEY.len() => {
                self.model_key()?
            }
            Text::TopKey { .. } | Text::OtherKey => State::Colon { model: false },
            Text::Model => {
                let model = std::mem::take(&mut self.model);
                *found = Some(String::from_utf8(model).map_err(|_| ScanError::NotString)?);
                State::AfterValue
            }
            Text::OtherValue => State::AfterValue,
        };
        Ok(())
    }

    /// Opens an object (`{`) or array (`[`), returning the state after it.
    fn open(&mut self, object: bool) -> Result<State, ScanError> {
        if self.depth == MAX_DEPTH {
            return Err(ScanError::Syntax);
        }
        let (word, bit) = (self.depth / 64, self.depth % 64);
        if object {
            self.objects[word] |= 1 << bit;
        } else {
            self.objects[word] &= !(1 << bit);
        }
        self.depth += 1;
        Ok(match object {
            true => State::FirstKey,
            false => State::FirstItem,
        })
    }

    /// Closes an object (`}`) or array (`]`), which must match what is
    /// open, returning the state after it.
    fn close(&mut self, object: bool) -> Result<State, ScanError> {
        if self.depth == 0 || self.in_object() != object {
            return Err(ScanError::Syntax);
        }
        self.depth -= 1;
        Ok(match self.depth {
            0 => State::Trailing,
            _ => State::AfterValue,
        })
    }

    /// Whether the innermost open container is an object.
    fn in_object(&self) -> bool {
        let top = self.depth.wrapping_sub(1);
        self.depth > 0 && self.objects[top / 64] >> (top % 64) & 1 == 1
    }
}

/// `rest` (one to four nonzero bytes) packed into a `u32`, first byte
/// lowest: a `State` of eight bytes stays in a register.
const fn literal(rest: &[u8]) -> u32 {
    let mut packed = 0;
    let mut at = rest.len();
    while at > 0 {
        at -= 1;
        packed = packed << 8 | rest[at] as u32;
    }
    packed
}

/// The index of the first `"`, `\` or control byte of `bytes`, eight bytes
/// at a time in a `u64` (no vector set-up for a short string).
fn short_stop(bytes: &[u8]) -> Option<usize> {
    let mut rest = bytes;
    let mut at = 0;
    while let Some(chunk) = rest.first_chunk::<8>() {
        let x = u64::from_le_bytes(*chunk);
        // Each mask is exact up to its first byte, which is all `at` needs.
        let hits = words::equal(x, b'"') | words::equal(x, b'\\') | words::below(x, 0x20);
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize / 8);
        }
        rest = &rest[8..];
        at += 8;
    }
    rest.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|n| at + n)
}

/// Whether `bytes` holds a byte below 0x20.
///
/// Written as a min over fixed-size blocks so the compiler vectorises it;
/// a plain `any` would stop to branch on every byte. Large blocks first:
/// the horizontal min at the end of a block costs as much as folding 64
/// bytes (on a 16 KiB window in L1: 1 KiB blocks 71 GB/s, 128-byte blocks
/// alone 44 GB/s); then 128-byte blocks, so that a string of a few hundred
/// bytes is not left to the bytewise tail; then 8-byte words, so that the
/// tail is at most 7 bytes.
fn has_control(bytes: &[u8]) -> bool {
    fn below(block: &[u8]) -> bool {
        block.iter().fold(u8::MAX, |min, &b| min.min(b)) < 0x20
    }
    let mut large = bytes.chunks_exact(1024);
    if large.any(below) {
        return true;
    }
    let mut small = large.remainder().chunks_exact(128);
    if small.any(below) {
        return true;
    }
    let mut words = small.remainder().chunks_exact(8);
    if words.any(|w| words::below(u64::from_le_bytes(w.try_into().unwrap()), 0x20) != 0) {
        return true;
    }
    words.remainder().iter().any(|&b| b < 0x20)
}

#[cfg(test)]
mod tests;
