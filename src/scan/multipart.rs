//! Streaming scanner for the part named `model` of a multipart/form-data body.
//!
//! The body, per RFC 2046 §5.1.1 and RFC 7578:
//!
//! ```text
//! preamble CRLF? "--" boundary padding CRLF   ; first delimiter line
//!   part-headers CRLF part-body               ; one part
//! CRLF "--" boundary padding CRLF             ; next delimiter line
//!   ...
//! CRLF "--" boundary "--" epilogue            ; close delimiter
//! ```
//!
//! [`MultipartScanner`] looks for `CRLF--boundary` across feed boundaries
//! keeping only the last `delimiter - 1` bytes, so a multi-MiB audio part is
//! skipped in bounded memory at `memmem` speed. Part headers are read into a
//! buffer of at most [`MAX_PART_HEAD_BYTES`], the model part's body into one
//! of at most [`MAX_MODEL_BYTES`] plus a delimiter.
//!
//! This module does not own finding the boundary in the `Content-Type`
//! header (the caller passes it unquoted), nor the body framing.

use memchr::memmem;

use super::{Scan, ScanError, MAX_MODEL_BYTES};

/// Longest header block of one part, in bytes, its closing empty line
/// included; longer is [`ScanError::Multipart`]. Real clients send one or
/// two short lines (`Content-Disposition`, `Content-Type`).
pub const MAX_PART_HEAD_BYTES: usize = 8 * 1024;

/// Longest boundary, in bytes (RFC 2046 §5.1.1: 1 to 70 characters).
pub const MAX_BOUNDARY_BYTES: usize = 70;

/// Streaming scanner for the value of the form field `model`.
///
/// The field is the part whose `Content-Disposition` is `form-data` with
/// `name="model"` (or `name=model`) and no `filename`: a part with a filename
/// is a file upload, never the model. Header names are compared
/// case-insensitively, the field name exactly.
///
/// Feed the payload in any split; the sequence of answers (ignoring
/// `NeedMore`) is the same for every split:
///
/// - `Found(model)` exactly once, from the `feed` that saw the delimiter
///   ending the model part; `Invalid(NotString)` instead when that value is
///   longer than [`MAX_MODEL_BYTES`] or not UTF-8;
/// - the scanner keeps checking the framing after `Found`:
///   `Invalid(Duplicate)` for a second `model` part, `Invalid(Multipart)`
///   for broken framing (if within the same feed as `Found`, it is the
///   answer of the next call);
/// - `Invalid(_)` is sticky.
///
/// [`finish`](MultipartScanner::finish) at the end of the body gives
/// `Invalid(Multipart)` when the close delimiter `--boundary--` never came
/// (a truncated body, even after `Found`: the backend would refuse it too),
/// `Invalid(Missing)` for a complete body without a model part (and for an
/// empty body), else `NeedMore`.
///
/// Strictness where parsers differ, so that llmhop never routes on a body a
/// backend could read differently: a delimiter followed by anything but
/// `--`, spaces/tabs and CRLF (`--boundaryX`) is `Multipart`, as are folded
/// or colon-less header lines, bare CR or LF in part headers, two
/// `Content-Disposition` fields in one part, and a malformed one. The
/// preamble and epilogue are ignored; parts without `Content-Disposition`
/// are skipped.
///
/// # Example
///
/// ```
/// use llmhop::scan::{multipart::MultipartScanner, Scan};
///
/// let mut scanner = MultipartScanner::new(b"xyz");
/// let body = b"--xyz\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--xyz--\r\n";
/// assert_eq!(scanner.feed(&body[..60]), Scan::NeedMore);
/// assert_eq!(scanner.feed(&body[60..]), Scan::Found("whisper-1".into()));
/// assert_eq!(scanner.finish(), Scan::NeedMore);
/// ```
#[derive(Debug)]
pub struct MultipartScanner {
    /// `CRLF--boundary`, the delimiter that ends a part.
    delimiter: Vec<u8>,
    /// Finds `delimiter` at memmem speed.
    finder: memmem::Finder<'static>,
    /// What the next byte may be.
    state: State,
    /// In `Skip`: the last bytes seen (at most `delimiter.len() - 1`), which
    /// may be the start of a delimiter split across feeds. In `Head`: CRLF
    /// then the header bytes so far. In `Model`: the part's body so far.
    buf: Vec<u8>,
    /// A `model` part was seen (a second one is `Duplicate`).
    seen_model: bool,
    /// Whether any byte was fed (an empty body is `Missing`).
    fed: bool,
}

/// Where the scanner is in the body: one variant per "what comes next".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The preamble or a part that is not the model: skipped up to the next
    /// delimiter.
    Skip,
    /// The body of the model part, collected up to the next delimiter.
    Model,
    /// After a delimiter: `-` (close), transport padding or CR.
    Delimited,
    /// After `CRLF--boundary-`: the second `-`.
    CloseDash,
    /// Transport padding (spaces, tabs) after a delimiter, then CR.
    Padding,
    /// The LF ending a delimiter line.
    PaddingLf,
    /// A part's header block, up to and including its empty line.
    Head,
    /// After the close delimiter: the epilogue, ignored.
    Epilogue,
    /// The body cannot be routed; every call returns this error.
    Failed { error: ScanError },
}

/// What a part's `Content-Disposition` says about it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Disposition {
    /// The disposition type is `form-data`.
    form_data: bool,
    /// The `name` parameter, unquoted.
    name: Option<Vec<u8>>,
    /// A `filename` or `filename*` parameter is present.
    file: bool,
}

impl MultipartScanner {
    /// `boundary` as given in the Content-Type parameter, unquoted.
    ///
    /// A boundary that RFC 2046 §5.1.1 does not allow (empty, longer than
    /// [`MAX_BOUNDARY_BYTES`], a byte outside `bchars`, or ending in a
    /// space) makes every answer `Invalid(Multipart)`.
    pub fn new(boundary: &[u8]) -> MultipartScanner {
        let delimiter = [b"\r\n--", boundary].concat();
        let finder = memmem::Finder::new(&delimiter).into_owned();
        let state = match is_boundary(boundary) {
            true => State::Skip,
            false => State::Failed {
                error: ScanError::Multipart,
            },
        };
        MultipartScanner {
            delimiter,
            finder,
            state,
            // As if a CRLF came before the body, so that a delimiter right
            // at its start is found like any other.
            buf: b"\r\n".to_vec(),
            seen_model: false,
            fed: false,
        }
    }

    /// Scans the next piece of the body; see [`MultipartScanner`] for the
    /// answers.
    pub fn feed(&mut self, payload: &[u8]) -> Scan {
        if let State::Failed { error } = self.state {
            return Scan::Invalid(error);
        }
        self.fed |= !payload.is_empty();
        let mut found = None;
        let mut at = 0;
        while at < payload.len() {
            match self.step(&payload[at..], &mut found) {
                Ok(used) => at += used,
                Err(error) => {
                    self.fail(error);
                    break;
                }
            }
        }
        // Found outranks an error later in the same piece: the caller must
        // see the model exactly once, and gets the error on its next call.
        match (found, self.state) {
            (Some(model), _) => Scan::Found(model),
            (None, State::Failed { error }) => Scan::Invalid(error),
            (None, _) => Scan::NeedMore,
        }
    }

    /// The body ended: `Invalid(Multipart)` without the close delimiter,
    /// `Invalid(Missing)` without a model part, else `NeedMore`.
    pub fn finish(&mut self) -> Scan {
        match self.state {
            State::Failed { error } => Scan::Invalid(error),
            State::Epilogue if self.seen_model => Scan::NeedMore,
            State::Epilogue => self.fail(ScanError::Missing),
            State::Skip if !self.fed => self.fail(ScanError::Missing),
            _ => self.fail(ScanError::Multipart),
        }
    }

    /// Makes `error` sticky and returns it.
    fn fail(&mut self, error: ScanError) -> Scan {
        self.state = State::Failed { error };
        self.buf = Vec::new();
        Scan::Invalid(error)
    }

    /// Consumes a non-empty prefix of `input`, returning its length; sets
    /// `found` when the model part ends.
    fn step(&mut self, input: &[u8], found: &mut Option<String>) -> Result<usize, ScanError> {
        let byte = input[0];
        match self.state {
            State::Skip => return Ok(self.skip(input)),
            State::Model => return self.model(input, found),
            State::Head => return self.head(input),
            State::Epilogue => return Ok(input.len()),
            State::Delimited if byte == b'-' => self.state = State::CloseDash,
            State::CloseDash if byte == b'-' => self.state = State::Epilogue,
            // RFC 2046 §5.1.1: transport-padding := *LWSP-char, then CRLF.
            State::Delimited | State::Padding if byte == b' ' || byte == b'\t' => {
                self.state = State::Padding
            }
            State::Delimited | State::Padding if byte == b'\r' => self.state = State::PaddingLf,
            State::PaddingLf if byte == b'\n' => {
                self.state = State::Head;
                self.buf.clear();
                self.buf.extend_from_slice(b"\r\n");
            }
            State::Delimited | State::CloseDash | State::Padding | State::PaddingLf => {
                return Err(ScanError::Multipart)
            }
            State::Failed { error } => return Err(error),
        }
        Ok(1)
    }

    /// Skips `input` up to and including the next delimiter, or all of it,
    /// carrying its last `delimiter - 1` bytes over to the next call.
    fn skip(&mut self, input: &[u8]) -> usize {
        let keep = self.delimiter.len() - 1;
        // A delimiter that starts in the bytes carried over: look at them
        // followed by just enough of `input` to complete one.
        let carried = self.buf.len();
        self.buf.extend_from_slice(&input[..keep.min(input.len())]);
        let straddling = self.finder.find(&self.buf);
        self.buf.truncate(carried);
        let end = match straddling {
            Some(start) => Some(start + self.delimiter.len() - carried),
            None => self
                .finder
                .find(input)
                .map(|start| start + self.delimiter.len()),
        };
        if let Some(end) = end {
            self.buf.clear();
            self.state = State::Delimited;
            return end;
        }
        if input.len() >= keep {
            self.buf.clear();
            self.buf.extend_from_slice(&input[input.len() - keep..]);
        } else {
            self.buf.extend_from_slice(input);
            let excess = self.buf.len().saturating_sub(keep);
            self.buf.drain(..excess);
        }
        input.len()
    }

    /// Collects the model part's body up to the next delimiter.
    fn model(&mut self, input: &[u8], found: &mut Option<String>) -> Result<usize, ScanError> {
        let limit = MAX_MODEL_BYTES + self.delimiter.len();
        let before = self.buf.len();
        let take = input.len().min(limit - before);
        self.buf.extend_from_slice(&input[..take]);
        let from = before.saturating_sub(self.delimiter.len() - 1);
        let Some(start) = self.finder.find(&self.buf[from..]).map(|at| from + at) else {
            // No delimiter starts within the first MAX_MODEL_BYTES + 1
            // bytes: the value is too long.
            if self.buf.len() == limit {
                return Err(ScanError::NotString);
            }
            return Ok(take);
        };
        self.buf.truncate(start);
        let model = std::mem::take(&mut self.buf);
        *found = Some(String::from_utf8(model).map_err(|_| ScanError::NotString)?);
        self.state = State::Delimited;
        Ok(start + self.delimiter.len() - before)
    }

    /// Collects a part's header block and decides what the part is.
    fn head(&mut self, input: &[u8]) -> Result<usize, ScanError> {
        // `buf` starts with the CRLF of the delimiter line, so an empty
        // header block is CRLF CRLF like the end of any other.
        let limit = MAX_PART_HEAD_BYTES + 2;
        let before = self.buf.len();
        let take = input.len().min(limit - before);
        self.buf.extend_from_slice(&input[..take]);
        let from = before.saturating_sub(3);
        let Some(end) = memmem::find(&self.buf[from..], b"\r\n\r\n").map(|at| from + at) else {
            if self.buf.len() == limit {
                return Err(ScanError::Multipart);
            }
            return Ok(take);
        };
        let lines = self.buf.get(2..end).unwrap_or_default();
        let disposition = disposition(lines)?;
        let model = disposition.form_data
            && !disposition.file
            && disposition.name.as_deref() == Some(b"model");
        self.state = if model {
            if self.seen_model {
                return Err(ScanError::Duplicate);
            }
            self.seen_model = true;
            State::Model
        } else {
            State::Skip
        };
        self.buf.clear();
        Ok(end + 4 - before)
    }
}

/// Whether `boundary` is valid per RFC 2046 §5.1.1:
/// `boundary := 0*69<bchars> bcharsnospace`,
/// `bchars := bcharsnospace / " "`,
/// `bcharsnospace := DIGIT / ALPHA / "'" / "(" / ")" / "+" / "_" / "," / "-" / "." / "/" / ":" / "=" / "?"`.
fn is_boundary(boundary: &[u8]) -> bool {
    let bchar = |b: &u8| b.is_ascii_alphanumeric() || b" '()+_,-./:=?".contains(b);
    (1..=MAX_BOUNDARY_BYTES).contains(&boundary.len())
        && boundary.iter().all(bchar)
        && boundary.last() != Some(&b' ')
}

/// Reads the `Content-Disposition` of a part from its header `lines` (CRLF
/// separated, without the empty line); the default when there is none.
/// A bare CR or LF, a line without a colon or a folded line is an error.
fn disposition(lines: &[u8]) -> Result<Disposition, ScanError> {
    let mut found = None;
    if lines.is_empty() {
        return Ok(Disposition::default());
    }
    let mut rest = lines;
    loop {
        let (line, next) = match memmem::find(rest, b"\r\n") {
            Some(at) => (&rest[..at], Some(&rest[at + 2..])),
            None => (rest, None),
        };
        if line.contains(&b'\r') || line.contains(&b'\n') {
            return Err(ScanError::Multipart);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(ScanError::Multipart)?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        // RFC 9112 §5.2: obs-fold (a line starting with space) is refused,
        // as is whitespace before the colon (§5.1).
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(ScanError::Multipart);
        }
        if name.eq_ignore_ascii_case(b"content-disposition") {
            if found.is_some() {
                return Err(ScanError::Multipart);
            }
            found = Some(parse_disposition(value)?);
        }
        match next {
            Some(next) => rest = next,
            None => return Ok(found.unwrap_or_default()),
        }
    }
}

/// Parses a `Content-Disposition` value (RFC 6266 §4.1, RFC 7578 §4.2):
/// `disposition-type *( OWS ";" OWS disp-ext-parm )`, each parameter
/// `token "=" ( token / quoted-string )`.
fn parse_disposition(value: &[u8]) -> Result<Disposition, ScanError> {
    let mut rest = trim_ows(value);
    let kind_len = rest
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(rest.len());
    let mut disposition = Disposition {
        form_data: rest[..kind_len].eq_ignore_ascii_case(b"form-data"),
        name: None,
        file: false,
    };
    if kind_len == 0 {
        return Err(ScanError::Multipart);
    }
    rest = trim_ows(&rest[kind_len..]);
    while let Some(after) = rest.strip_prefix(b";") {
        rest = trim_ows(after);
        if rest.is_empty() {
            break; // A trailing `;`, as some clients send.
        }
        let key_len = rest
            .iter()
            .position(|&b| !is_tchar(b))
            .unwrap_or(rest.len());
        let key = &rest[..key_len];
        rest = trim_ows(&rest[key_len..]);
        rest = trim_ows(rest.strip_prefix(b"=").ok_or(ScanError::Multipart)?);
        let (value, after) = param_value(rest)?;
        rest = trim_ows(after);
        if key.is_empty() {
            return Err(ScanError::Multipart);
        }
        if key.eq_ignore_ascii_case(b"name") {
            if disposition.name.is_some() {
                return Err(ScanError::Multipart);
            }
            disposition.name = Some(value);
        } else if key.eq_ignore_ascii_case(b"filename") || key.eq_ignore_ascii_case(b"filename*") {
            disposition.file = true;
        }
    }
    if !rest.is_empty() {
        return Err(ScanError::Multipart);
    }
    Ok(disposition)
}

/// Reads a parameter value at the start of `input`: a token, or a
/// quoted-string with its quoted-pairs undone (RFC 9110 §5.6.4). Returns the
/// value and what follows it.
fn param_value(input: &[u8]) -> Result<(Vec<u8>, &[u8]), ScanError> {
    let Some(mut rest) = input.strip_prefix(b"\"") else {
        let len = input
            .iter()
            .position(|&b| !is_tchar(b))
            .unwrap_or(input.len());
        if len == 0 {
            return Err(ScanError::Multipart);
        }
        return Ok((input[..len].to_vec(), &input[len..]));
    };
    let mut value = Vec::new();
    loop {
        match rest {
            [b'"', after @ ..] => return Ok((value, after)),
            [b'\\', escaped, after @ ..] => {
                value.push(*escaped);
                rest = after;
            }
            [byte, after @ ..] => {
                value.push(*byte);
                rest = after;
            }
            [] => return Err(ScanError::Multipart),
        }
    }
}

/// `tchar` of RFC 9110 §5.6.2, the bytes of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Strips optional whitespace (spaces and tabs) from both ends.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |at| at + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests;
