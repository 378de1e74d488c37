//! The request-path error and its one status mapping.
//!
//! Owns: which status, OpenAI `type`/`code` and connection fate each failure
//! gets, decided by where it came from (pingora's rule: the client's fault
//! is a 4xx, the upstream's a 502/504). Does not own: rendering the bytes
//! ([`crate::http::respond`]) or writing them (`conn`).

use std::fmt;

use crate::http::body::BodyError;
use crate::http::head::HeadError;
use crate::scan::ScanError;

/// Whose fault a failure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client sent something llmhop refuses.
    Client,
    /// The upstream could not be reached or answered badly.
    Upstream,
    /// The router itself (shutting down).
    Local,
}

/// Everything that can end a request before its response started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    Head(HeadError),
    Body(BodyError),
    Scan(ScanError),
    /// The head did not complete within the head timeout.
    HeadTimeout,
    /// Missing or wrong bearer token.
    Unauthorized,
    /// No route for this model name.
    UnknownModel(String),
    /// A request with no body to find the model in, and no `?model=`.
    NoBody,
    /// `/route/{model}/...` with an empty or undecodable model segment.
    RoutePath,
    /// `GET /v1/models/{id}` for an id that is not configured.
    NoSuchModel(String),
    /// Connecting to the upstream failed (refused, unreachable, TLS).
    UpstreamUnreachable,
    /// The upstream reset the connection or closed it early.
    UpstreamClosed,
    /// The upstream answered something that is not an HTTP/1.x response.
    UpstreamGarbage,
    /// Connecting to the upstream took longer than the connect timeout.
    UpstreamTimeout,
    /// The router is shutting down.
    ShuttingDown,
}

impl Error {
    pub fn side(&self) -> Side {
        match self {
            Error::Head(_)
            | Error::Body(_)
            | Error::Scan(_)
            | Error::HeadTimeout
            | Error::Unauthorized
            | Error::UnknownModel(_)
            | Error::NoBody
            | Error::RoutePath
            | Error::NoSuchModel(_) => Side::Client,
            Error::UpstreamUnreachable
            | Error::UpstreamClosed
            | Error::UpstreamGarbage
            | Error::UpstreamTimeout => Side::Upstream,
            Error::ShuttingDown => Side::Local,
        }
    }

    /// The status of SPEC §4's table.
    pub fn status(&self) -> u16 {
        match self {
            Error::Head(e) => match e {
                HeadError::TooLarge | HeadError::TooManyHeaders => 431,
                HeadError::UnsupportedCoding => 501,
                HeadError::Malformed
                | HeadError::Version
                | HeadError::Target
                | HeadError::Host
                | HeadError::ContentLength
                | HeadError::FramingConflict => 400,
            },
            Error::Body(e) => match e {
                BodyError::TooLarge => 413,
                BodyError::Chunked | BodyError::Incomplete => 400,
            },
            Error::Scan(_) | Error::NoBody | Error::RoutePath => 400,
            Error::HeadTimeout => 408,
            Error::Unauthorized => 401,
            Error::UnknownModel(_) | Error::NoSuchModel(_) => 404,
            Error::UpstreamUnreachable | Error::UpstreamClosed | Error::UpstreamGarbage => 502,
            Error::UpstreamTimeout => 504,
            Error::ShuttingDown => 503,
        }
    }

    /// OpenAI's `error.type`.
    pub fn kind(&self) -> &'static str {
        match self.side() {
            Side::Client if self.status() == 401 => "authentication_error",
            Side::Client => "invalid_request_error",
            Side::Upstream => "upstream_error",
            Side::Local => "server_error",
        }
    }

    /// OpenAI's `error.code`: stable, machine-readable.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Head(e) => match e {
                HeadError::TooLarge | HeadError::TooManyHeaders => "headers_too_large",
                HeadError::UnsupportedCoding => "unsupported_transfer_coding",
                HeadError::Malformed | HeadError::Version | HeadError::Target | HeadError::Host => {
                    "bad_request"
                }
                HeadError::ContentLength | HeadError::FramingConflict => "bad_framing",
            },
            Error::Body(e) => match e {
                BodyError::TooLarge => "request_too_large",
                BodyError::Chunked | BodyError::Incomplete => "bad_framing",
            },
            Error::Scan(e) => match e {
                ScanError::Syntax => "invalid_json",
                ScanError::Missing => "model_missing",
                ScanError::NotString => "invalid_model",
                ScanError::Duplicate => "duplicate_model",
                ScanError::Multipart => "invalid_multipart",
            },
            Error::NoBody => "model_missing",
            Error::RoutePath => "invalid_route",
            Error::HeadTimeout => "request_timeout",
            Error::Unauthorized => "invalid_api_key",
            Error::UnknownModel(_) | Error::NoSuchModel(_) => "model_not_found",
            Error::UpstreamUnreachable | Error::UpstreamClosed => "upstream_unavailable",
            Error::UpstreamGarbage => "upstream_bad_response",
            Error::UpstreamTimeout => "upstream_timeout",
            Error::ShuttingDown => "shutting_down",
        }
    }

    /// Whether the client connection must close after the answer: framing
    /// errors leave the byte stream at an unknown place (SPEC §3.4–5).
    pub fn closes_connection(&self) -> bool {
        match self {
            Error::Head(_) | Error::Body(_) | Error::HeadTimeout | Error::ShuttingDown => true,
            Error::Scan(_)
            | Error::Unauthorized
            | Error::UnknownModel(_)
            | Error::NoBody
            | Error::RoutePath
            | Error::NoSuchModel(_)
            | Error::UpstreamUnreachable
            | Error::UpstreamClosed
            | Error::UpstreamGarbage
            | Error::UpstreamTimeout => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Head(e) => f.write_str(match e {
                HeadError::TooLarge => "request head is larger than 64 KiB",
                HeadError::TooManyHeaders => "request has more than 100 header fields",
                HeadError::Malformed => "malformed request head",
                HeadError::Version => "unsupported HTTP version",
                HeadError::Target => "request target must be origin-form or absolute-form",
                HeadError::Host => "an HTTP/1.1 request needs exactly one Host field",
                HeadError::ContentLength => "invalid Content-Length",
                HeadError::FramingConflict => "conflicting Content-Length and Transfer-Encoding",
                HeadError::UnsupportedCoding => "only the chunked transfer coding is supported",
            }),
            Error::Body(e) => f.write_str(match e {
                BodyError::TooLarge => "request body is larger than maxBodyBytes",
                BodyError::Chunked => "malformed chunked body",
                BodyError::Incomplete => "request body ended early",
            }),
            Error::Scan(e) => f.write_str(match e {
                ScanError::Syntax => {
                    "request body is not a valid JSON object (or nests deeper than 1024 levels)"
                }
                ScanError::Missing => {
                    "request body has no \"model\" (a top-level JSON key, or a multipart part)"
                }
                ScanError::NotString => "\"model\" must be a UTF-8 string of at most 4096 bytes",
                ScanError::Duplicate => "\"model\" appears more than once",
                ScanError::Multipart => "malformed multipart/form-data body",
            }),
            Error::NoBody => f.write_str(
                "request has no body to read \"model\" from and no ?model= in its query",
            ),
            Error::RoutePath => f.write_str("expected /route/{model}/path with a non-empty model"),
            Error::HeadTimeout => f.write_str("request head not received in time"),
            Error::Unauthorized => f.write_str("missing or invalid bearer token"),
            Error::UnknownModel(m) => write!(f, "The model `{m}` does not exist"),
            Error::NoSuchModel(m) => write!(f, "The model `{m}` does not exist"),
            Error::UpstreamUnreachable => f.write_str("could not connect to the upstream"),
            Error::UpstreamClosed => f.write_str("upstream closed the connection"),
            Error::UpstreamGarbage => f.write_str("upstream sent an invalid response"),
            Error::UpstreamTimeout => f.write_str("upstream connect timed out"),
            Error::ShuttingDown => f.write_str("llmhop is shutting down"),
        }
    }
}

impl From<HeadError> for Error {
    fn from(e: HeadError) -> Error {
        Error::Head(e)
    }
}

impl From<BodyError> for Error {
    fn from(e: BodyError) -> Error {
        Error::Body(e)
    }
}

impl From<ScanError> for Error {
    fn from(e: ScanError) -> Error {
        Error::Scan(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §4, one row per line.
    #[test]
    fn status_table() {
        let cases: &[(Error, u16)] = &[
            (Error::Head(HeadError::Malformed), 400),
            (Error::Head(HeadError::FramingConflict), 400),
            (Error::Scan(ScanError::Syntax), 400),
            (Error::Scan(ScanError::Missing), 400),
            (Error::Scan(ScanError::Duplicate), 400),
            (Error::Unauthorized, 401),
            (Error::UnknownModel("x".into()), 404),
            (Error::HeadTimeout, 408),
            (Error::Body(BodyError::TooLarge), 413),
            (Error::Head(HeadError::TooLarge), 431),
            (Error::Head(HeadError::TooManyHeaders), 431),
            (Error::Head(HeadError::UnsupportedCoding), 501),
            (Error::UpstreamUnreachable, 502),
            (Error::UpstreamClosed, 502),
            (Error::UpstreamGarbage, 502),
            (Error::UpstreamTimeout, 504),
            (Error::ShuttingDown, 503),
        ];
        for (err, status) in cases {
            assert_eq!(err.status(), *status, "{err:?}");
        }
        assert_eq!(Error::UnknownModel("x".into()).code(), "model_not_found");
    }
}
