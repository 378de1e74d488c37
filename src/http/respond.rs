//! Router-made responses, as bytes.
pub fn model_object(name: &str) -> Vec<u8> {
    let _ = name;
    Vec::new()
}
pub fn model_list(names: &[String]) -> Vec<u8> {
    let _ = names;
    Vec::new()
}
pub fn health(models: usize) -> Vec<u8> {
    let _ = models;
    Vec::new()
}
