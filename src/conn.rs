//! One client connection.
