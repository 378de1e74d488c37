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

    /// Whether an `Authorization` field value (`None` when absent) is
    /// `Bearer <token>` for one of the tokens. Always true when auth is off.
    ///
    /// Every token is compared, each in constant time, so the time taken
    /// says nothing about which token came close.
    ///
    /// ```
    /// use llmhop::{auth::Tokens, secrets::Secret};
    /// let tokens = Tokens::new(vec![Secret::new("s3cret".into())]);
    /// assert!(tokens.check(Some(b"Bearer s3cret")));
    /// assert!(tokens.check(Some(b"bearer s3cret")));
    /// assert!(!tokens.check(Some(b"Bearer s3cre")));
    /// assert!(!tokens.check(None));
    /// ```
    pub fn check(&self, authorization: Option<&[u8]>) -> bool {
        if self.tokens.is_empty() {
            return true;
        }
        let Some(value) = authorization else {
            return false;
        };
        // RFC 9110 §11.1: the scheme is case-insensitive; RFC 6750 §2.1:
        // `Bearer 1*SP b64token`.
        let Some(scheme) = value.get(..7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        let given = trim(&value[7..]);
        let mut ok = subtle::Choice::from(0);
        for token in &self.tokens {
            ok |= token.expose().as_bytes().ct_eq(given);
        }
        ok.into()
    }
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
