//! What the tiny test guest (`guest/tiny.asm`) draws, for tests and tools that check its
//! screen.

/// The screen's background.
pub const BACKGROUND: u32 = 0x00102040;
/// A set glyph bit.
pub const GLYPH_ON: u32 = 0x00f0f0f0;
/// A clear glyph bit.
pub const GLYPH_OFF: u32 = 0x00303030;
/// The first row of the text area where key glyphs go.
pub const CELLS_TOP: u32 = 40;
/// The four 32x16 bars along the top at y = 8: (x, colour).
pub const BARS: [(u32, u32); 4] = [
    (0, 0x00ff0000),
    (40, 0x0000ff00),
    (80, 0x000000ff),
    (120, 0x00ffff00),
];

/// The glyph drawn for set-1 key code `code` in text cell `cell` of a `width`-pixel
/// screen, as (x, y, pixel): row r is the code rotated left by r, bit c is column c.
pub fn glyph(width: u32, cell: u32, code: u8) -> Vec<(u32, u32, u32)> {
    let per_row = width / 8;
    let (x0, y0) = ((cell % per_row) * 8, CELLS_TOP + (cell / per_row) * 8);
    let mut out = Vec::with_capacity(64);
    for r in 0..8 {
        let bits = code.rotate_left(r);
        for c in 0..8 {
            let on = (bits >> c) & 1 == 1;
            out.push((x0 + c, y0 + r, if on { GLYPH_ON } else { GLYPH_OFF }));
        }
    }
    out
}
