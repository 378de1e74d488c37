//! Secret references (`${env:NAME}`, `${file:PATH}`, `$NAME`, `${NAME}`,
//! `$$`) and the [`Secret`] type that keeps their values out of every log,
//! error and panic message.

use std::fmt;

/// A value that came from a secret reference, or could have. Its `Debug` and
/// `Display` print `<redacted>`; the value is reached only via
/// [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value itself, for the one place that must write it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
