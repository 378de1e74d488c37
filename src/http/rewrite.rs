//! Upstream request head and client response head.
