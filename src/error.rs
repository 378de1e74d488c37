//! The request-path error.
