//! Listeners and the accept loop.
