//! Streaming scanner for the part named `model` of a multipart/form-data body.

use super::Scan;

#[derive(Debug)]
pub struct MultipartScanner {
    _private: (),
}

impl MultipartScanner {
    /// `boundary` as given in the Content-Type parameter, unquoted.
    pub fn new(boundary: &[u8]) -> MultipartScanner {
        let _ = boundary;
        todo!()
    }

    pub fn feed(&mut self, payload: &[u8]) -> Scan {
        let _ = payload;
        todo!()
    }

    pub fn finish(&mut self) -> Scan {
        todo!()
    }
}
