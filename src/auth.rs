//! Client bearer tokens, compared in constant time.
//!
//! Owns: the comparison. Does not own: which requests need it (`conn`
//! checks every request except `/health`).

use subtle::ConstantTimeEq;

use crate::secrets::Secret;

/// The accepted client tokens; empty means auth is off.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    tokens: Vec<Secret>,
}

impl Tokens {
    pub fn new(tokens: Vec<Secret>) -> Tokens {
        Tokens { tokens }
    }

    /// Whether any token is configured.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Whether a request carries one of the tokens, as `Authorization:
    /// Bearer <token>` or as `x-api-key: <token>` (Anthropic's SDK and
    /// Claude Code send that one); `None` for an absent field. Always true
    /// when auth is off.
    ///
    /// Every token is compared with both fields, each comparison in
    /// constant time, so the time taken says nothing about which token came
    /// close.
    ///
    /// ```
    /// use llmhop::{auth::Tokens, secrets::Secret};
    /// let tokens = Tokens::new(vec![Secret::new("s3cret".into())]);
    /// assert!(tokens.check(Some(b"Bearer s3cret"), None));
    /// assert!(tokens.check(Some(b"bearer s3cret"), None));
    /// assert!(tokens.check(None, Some(b"s3cret")));
    /// assert!(!tokens.check(Some(b"Bearer s3cre"), None));
    /// assert!(!tokens.check(Some(b"s3cret"), None));
    /// assert!(!tokens.check(None, None));
    /// ```
    pub fn check(&self, authorization: Option<&[u8]>, api_key: Option<&[u8]>) -> bool {
        if self.tokens.is_empty() {
            return true;
        }
        let bearer = authorization.and_then(bearer_token);
        let api_key = api_key.map(trim);
        let mut ok = subtle::Choice::from(0);
        for token in &self.tokens {
            let token = token.expose().as_bytes();
            if let Some(given) = bearer {
                ok |= token.ct_eq(given);
            }
            if let Some(given) = api_key {
                ok |= token.ct_eq(given);
            }
        }
        ok.into()
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// The token of `Bearer <token>`. RFC 9110 §11.1: the scheme is
/// case-insensitive; RFC 6750 §2.1: `Bearer 1*SP b64token`.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| trim(&value[7..]))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}
