//! Access and startup lines.
