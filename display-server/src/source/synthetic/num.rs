//! Number conversions of the drawing code. Float to integer `as` rounds toward zero and
//! saturates (NaN gives 0): for pixel positions, sizes and colour levels that is the
//! wanted meaning, so these helpers carry the one `expect` each instead of every call.

use oriel_protocol::Rect;

/// One past the right edge of a rect on the screen (saturated: only a rect reaching past
/// `u32::MAX` would need more).
pub(crate) fn right(rect: &Rect) -> u32 {
    u32::try_from(rect.right()).unwrap_or(u32::MAX)
}

/// One past the bottom edge of a rect on the screen (saturated like [`right`]).
pub(crate) fn bottom(rect: &Rect) -> u32 {
    u32::try_from(rect.bottom()).unwrap_or(u32::MAX)
}

/// The low 32 bits of `value`: ticks, seeds and phases wrap on purpose.
pub(crate) fn low_u32(value: u64) -> u32 {
    (value & 0xffff_ffff) as u32
}

/// `x` rounded toward zero, saturated to `0..=u32::MAX`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "float to int saturates; pixel positions and sizes, clamped at 0 and u32::MAX"
)]
pub(crate) fn to_u32(x: f64) -> u32 {
    x as u32
}

/// `x` rounded toward zero, saturated to `i32`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "float to int saturates; pixel offsets and fixed-point table entries"
)]
pub(crate) fn to_i32(x: f64) -> i32 {
    x as i32
}

/// `x` rounded toward zero, saturated to `0..=255`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "float to int saturates; colour levels and coverage in 0..=255"
)]
pub(crate) fn to_u8(x: f64) -> u8 {
    x as u8
}
