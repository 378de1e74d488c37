//! The field names llmhop acts on, recognised once per field when a head is
//! indexed: the passes over a head's fields (the framing summary, both
//! rewrites) then match on a [`Name`] instead of comparing each name with
//! every name they know, ignoring case, again and again.
//!
//! Owns: which names are known and how a name is recognised. Does not own:
//! what a field means (`head`, `rewrite`).

use crate::words;

/// A field name llmhop knows, or [`Name::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    Host,
    ContentLength,
    TransferEncoding,
    ContentType,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    Upgrade,
    ProxyAuthorization,
    Expect,
    Authorization,
    XApiKey,
    XForwardedFor,
    XAccelBuffering,
    Other,
}

impl Name {
    /// The name `name` is, compared ignoring ASCII case (RFC 9110 §5.1).
    ///
    /// One candidate per length (two where a length is shared, told apart
    /// by the first letter), then one comparison.
    pub fn of(name: &[u8]) -> Name {
        let first = name.first().map_or(0, |b| b.to_ascii_lowercase());
        let (spelling, known): (&[u8], Name) = match (name.len(), first) {
            (2, _) => (b"te", Name::Te),
            (4, _) => (b"host", Name::Host),
            (6, _) => (b"expect", Name::Expect),
            (7, b't') => (b"trailer", Name::Trailer),
            (7, _) => (b"upgrade", Name::Upgrade),
            (9, _) => (b"x-api-key", Name::XApiKey),
            (10, b'c') => (b"connection", Name::Connection),
            (10, _) => (b"keep-alive", Name::KeepAlive),
            (12, _) => (b"content-type", Name::ContentType),
            (13, _) => (b"authorization", Name::Authorization),
            (14, _) => (b"content-length", Name::ContentLength),
            (15, _) => (b"x-forwarded-for", Name::XForwardedFor),
            (16, _) => (b"proxy-connection", Name::ProxyConnection),
            (17, b't') => (b"transfer-encoding", Name::TransferEncoding),
            (17, _) => (b"x-accel-buffering", Name::XAccelBuffering),
            (19, _) => (b"proxy-authorization", Name::ProxyAuthorization),
            _ => return Name::Other,
        };
        if lower_eq(name, spelling) {
            known
        } else {
            Name::Other
        }
    }

    /// Fields that describe one connection, never the message (RFC 9110
    /// §7.6.1), plus the ones llmhop consumes itself: `Proxy-Authorization`
    /// is for this hop, `Expect` is answered by llmhop (RFC 9110 §10.1.1).
    /// The same set as [`super::rewrite::HOP_BY_HOP`].
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Name::Connection
                | Name::KeepAlive
                | Name::ProxyConnection
                | Name::Te
                | Name::Trailer
                | Name::Upgrade
                | Name::ProxyAuthorization
                | Name::Expect
        )
    }
}

/// Whether `name` is `lower` (lowercase ASCII, same length) ignoring ASCII
/// case: eight bytes at a time, the last word overlapping the one before.
fn lower_eq(name: &[u8], lower: &[u8]) -> bool {
    debug_assert_eq!(name.len(), lower.len());
    if name.len() < 8 {
        return name.eq_ignore_ascii_case(lower);
    }
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let last = name.len() - 8;
    let mut at = 0;
    while at < last {
        if words::to_lower(word(name, at)) != word(lower, at) {
            return false;
        }
        at += 8;
    }
    words::to_lower(word(name, last)) == word(lower, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::rewrite::HOP_BY_HOP;

    const KNOWN: &[(&[u8], Name)] = &[
        (b"host", Name::Host),
        (b"content-length", Name::ContentLength),
        (b"transfer-encoding", Name::TransferEncoding),
        (b"content-type", Name::ContentType),
        (b"connection", Name::Connection),
        (b"keep-alive", Name::KeepAlive),
        (b"proxy-connection", Name::ProxyConnection),
        (b"te", Name::Te),
        (b"trailer", Name::Trailer),
        (b"upgrade", Name::Upgrade),
        (b"proxy-authorization", Name::ProxyAuthorization),
        (b"expect", Name::Expect),
        (b"authorization", Name::Authorization),
        (b"x-api-key", Name::XApiKey),
        (b"x-forwarded-for", Name::XForwardedFor),
        (b"x-accel-buffering", Name::XAccelBuffering),
    ];

    /// Every known name in every case mix of each letter is recognised,
    /// and changing any one byte of it to any other (the same letter in
    /// the other case aside) makes it `Other`.
    #[test]
    fn known_names_in_any_case_and_nothing_else() {
        for &(spelling, known) in KNOWN {
            assert_eq!(Name::of(spelling), known);
            assert_eq!(Name::of(&spelling.to_ascii_uppercase()), known);
            for at in 0..spelling.len() {
                let mut name = spelling.to_vec();
                name[at] = name[at].to_ascii_uppercase();
                assert_eq!(
                    Name::of(&name),
                    known,
                    "{:?}",
                    String::from_utf8_lossy(&name)
                );
                for b in 0..=255u8 {
                    if b.eq_ignore_ascii_case(&spelling[at]) {
                        continue;
                    }
                    name[at] = b;
                    assert_eq!(Name::of(&name), Name::Other, "{name:?}");
                }
            }
            let mut longer = spelling.to_vec();
            longer.push(b'x');
            assert_eq!(Name::of(&longer), Name::Other);
            assert_eq!(Name::of(&spelling[1..]), Name::Other);
        }
        assert_eq!(Name::of(b""), Name::Other);
        assert_eq!(Name::of(b"user-agent"), Name::Other);
    }

    #[test]
    fn hop_by_hop_is_the_rewrite_set() {
        for &(spelling, known) in KNOWN {
            assert_eq!(
                known.is_hop_by_hop(),
                HOP_BY_HOP.contains(&spelling),
                "{:?}",
                String::from_utf8_lossy(spelling)
            );
        }
        for name in HOP_BY_HOP {
            assert!(Name::of(name).is_hop_by_hop());
        }
    }
}
