//! Router-made responses, as bytes: OpenAI-shaped JSON errors, `100
//! Continue`, `/health` and `/v1/models` bodies (rendered once at startup by
//! [`crate::route::Table::new`]).
//!
//! Owns: the bytes. Does not own: writing them (only `conn` does that) or
//! deciding which one applies ([`crate::error::Error`]).

use crate::error::Error;

/// The interim response to `Expect: 100-continue` (RFC 9110 §10.1.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Appends a complete response with a JSON body: status line,
/// `Content-Type: application/json`, `Content-Length`, `extra` header lines
/// (each ending in CRLF), `Connection: close` when `close`.
pub fn json(out: &mut Vec<u8>, status: u16, extra: &[u8], body: &[u8], close: bool) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Appends the answer for `err`:
/// `{"error":{"message":..,"type":..,"param":null,"code":..}}`.
pub fn error(out: &mut Vec<u8>, err: &Error, close: bool) {
    let mut body = Vec::with_capacity(160);
    body.extend_from_slice(b"{\"error\":{\"message\":");
    json_string(&mut body, &err.to_string());
    body.extend_from_slice(b",\"type\":");
    json_string(&mut body, err.kind());
    body.extend_from_slice(b",\"param\":null,\"code\":");
    json_string(&mut body, err.code());
    body.extend_from_slice(b"}}");
    let extra: &[u8] = match err {
        Error::Unauthorized => b"WWW-Authenticate: Bearer\r\n",
        _ => b"",
    };
    json(out, err.status(), extra, &body, close);
}

/// `/v1/models/{id}` body for one model.
pub fn model_object(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(80 + name.len());
    write_model(&mut out, name);
    out
}

/// `/v1/models` body: every name, in the order given (sorted by the caller).
pub fn model_list(names: &[String]) -> Vec<u8> {
    let mut out = b"{\"object\":\"list\",\"data\":[".to_vec();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_model(&mut out, name);
    }
    out.extend_from_slice(b"]}");
    out
}

/// `/health` body.
pub fn health(models: usize) -> Vec<u8> {
    format!("{{\"status\":\"ok\",\"models\":{models}}}").into_bytes()
}

fn write_model(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b"{\"id\":");
    json_string(out, name);
    out.extend_from_slice(b",\"object\":\"model\",\"created\":0,\"owned_by\":\"llmhop\"}");
}

/// Appends `s` as a JSON string literal (RFC 8259 §7).
pub fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Reason phrases for the statuses llmhop itself sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_openai_shaped_json() {
        let mut out = Vec::new();
        error(&mut out, &Error::UnknownModel("a\"b".into()), false);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], serde_json::Value::Null);
        assert_eq!(v["error"]["message"], "The model `a\"b` does not exist");
    }

    #[test]
    fn model_list_is_openai_shaped() {
        let v: serde_json::Value =
            serde_json::from_slice(&model_list(&["a".into(), "b/c".into()])).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][1]["id"], "b/c");
        assert_eq!(v["data"][0]["owned_by"], "llmhop");
    }
}
