//! Idle upstream connections.
#[derive(Debug, Default)]
pub struct Pool {}
impl Pool {
    pub fn new() -> Pool {
        Pool {}
    }
}
