//! Streaming scanner for the top-level `"model"` string of a JSON object.

use super::Scan;

#[derive(Debug, Default)]
pub struct JsonScanner {
    _private: (),
}

impl JsonScanner {
    pub fn new() -> JsonScanner {
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
