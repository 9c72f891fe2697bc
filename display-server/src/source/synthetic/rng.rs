//! A tiny seeded PRNG: the synthetic desktop must be reproducible from its config alone,
//! so it never touches thread-local or OS randomness.

/// SplitMix64: one add and three xor-shift-multiplies per draw; plenty for picking
/// paragraphs and seeding noise.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// A value in `0..n` (0 when `n` is 0). The modulo bias is irrelevant here.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// The low 32 bits of the next draw.
    pub(crate) fn next_u32(&mut self) -> u32 {
        low_u32(self.next_u64())
    }

    /// [`below`](Self::below) for a `u32` bound: the value is below `n`, so its low 32
    /// bits are all of it.
    pub(crate) fn below_u32(&mut self, n: u32) -> u32 {
        low_u32(self.below(u64::from(n)))
    }

    /// [`below`](Self::below) for a `usize` bound (the value is below `n`, so it
    /// converts back).
    pub(crate) fn below_usize(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }
}

use super::num::low_u32;

/// Stateless 64-bit finaliser: turns structured inputs (tick, row) into unrelated seeds.
pub(crate) fn mix64(value: u64) -> u64 {
    let mut z = value;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
