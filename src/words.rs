//! Byte tests eight at a time in a `u64`, for the short runs of bytes
//! (JSON strings, head lines, log values) where a vector search costs more
//! to set up than it saves.
//!
//! Owns: the bit tricks and what each one promises. Does not own: which
//! bytes a caller looks for.
//!
//! Each test returns a mask with the high bit of the bytes it marks. Load
//! words with `u64::from_le_bytes`, so that the first byte is the lowest
//! and `trailing_zeros() / 8` is the index of the first mark.

pub const ONES: u64 = u64::from_le_bytes([1; 8]);
pub const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
const LOW: u64 = u64::from_le_bytes([0x7f; 8]);

/// The bytes of `x` below `n` (`n` at most 0x80), exact up to the first
/// one: a borrow out of a marked byte may also mark bytes after it. Right
/// for "is there one" and "where is the first", not for "which".
pub fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH
}

/// The bytes of `x` equal to `byte`, exact up to the first one, as
/// [`below`].
pub fn equal(x: u64, byte: u8) -> u64 {
    below(x ^ (ONES * u64::from(byte)), 1)
}

/// The bytes of `x` equal to `byte`, every one exactly (no borrow crosses
/// bytes): for masks that are compared with each other.
pub fn each_equal(x: u64, byte: u8) -> u64 {
    let t = x ^ (ONES * u64::from(byte));
    !(((t & LOW) + LOW) | t | LOW)
}

/// `x` with its ASCII capitals made lowercase, every byte exactly; other
/// bytes (non-ASCII ones included) are unchanged.
pub fn to_lower(x: u64) -> u64 {
    // Per byte, on its low seven bits (no carry leaves a byte): the high
    // bit says ">= 'A'" in one sum and "> 'Z'" in the other.
    let low = x & LOW;
    let from_a = low + ONES * u64::from(0x80 - b'A');
    let past_z = low + ONES * u64::from(0x80 - b'Z' - 1);
    let capital = from_a & !past_z & !x & HIGH;
    x | capital >> 2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every place, alone and after a marked byte,
    /// against the byte-by-byte answers each test promises.
    #[test]
    fn masks_keep_their_promises() {
        let n = 0x20;
        for at in 0..8 {
            for b in 0..=255u8 {
                for first in [None, Some(0x00u8)] {
                    let mut word = [b'a'; 8];
                    word[at] = b;
                    if let (Some(f), true) = (first, at > 0) {
                        word[0] = f;
                    }
                    let x = u64::from_le_bytes(word);
                    let first_of = |m: u64| (m != 0).then(|| m.trailing_zeros() as usize / 8);
                    let first_where = |p: &dyn Fn(u8) -> bool| word.iter().position(|&c| p(c));
                    assert_eq!(first_of(below(x, n)), first_where(&|c| c < n), "{word:?}");
                    assert_eq!(first_of(equal(x, b)), first_where(&|c| c == b), "{word:?}");
                    let exact = word
                        .iter()
                        .enumerate()
                        .fold(0, |m, (i, &c)| m | u64::from(c == b) << (8 * i + 7));
                    assert_eq!(each_equal(x, b), exact, "{word:?}");
                    let lower = u64::from_le_bytes(word.map(|c| c.to_ascii_lowercase()));
                    assert_eq!(to_lower(x), lower, "{word:?}");
                }
            }
        }
    }
}
