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
mod tests {
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

    fn record(answers: &mut Vec<Scan>, scan: Scan) {
        match (answers.last(), scan) {
            (Some(Scan::Invalid(before)), now) => assert_eq!(now, Scan::Invalid(*before), "sticky"),
            (_, Scan::NeedMore) => {}
            (_, Scan::Found(model)) => {
                assert!(
                    !answers.iter().any(|a| matches!(a, Scan::Found(_))),
                    "found twice"
                );
                answers.push(Scan::Found(model));
            }
            (_, invalid) => answers.push(invalid),
        }
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

    /// What a table case expects.
    #[derive(Clone, Copy, Debug)]
    enum Want {
        Found(&'static str),
        /// Found, then this error at a later call.
        FoundThen(&'static str, ScanError),
        Invalid(ScanError),
    }

    impl Want {
        fn answers(self) -> Vec<Scan> {
            match self {
                Want::Found(model) => vec![Scan::Found(model.into())],
                Want::FoundThen(model, error) => {
                    vec![Scan::Found(model.into()), Scan::Invalid(error)]
                }
                Want::Invalid(error) => vec![Scan::Invalid(error)],
            }
        }
    }

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
        let fixed =
            "X-Filler: \r\n".len() + "Content-Disposition: form-data; name=model\r\n\r\n".len();
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
                        Some(Scan::Found(_)) if want.len() == 1 => {
                            want.push(Scan::Invalid(Duplicate))
                        }
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
}
