//! Anti-aliased text from a real TrueType font (DejaVu Sans Mono via `fontdue`), laid out
//! on a fixed cell grid. Glyph coverage maps are rasterized once per character and cached.

use std::collections::HashMap;
use std::path::Path;

use fontdue::{Font, FontSettings};
use oriel_protocol::Rect;

use super::canvas::{blend, Canvas};
use super::error::SyntheticError;
use super::num::{to_i32, to_u32};

pub(crate) const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";
pub(crate) const FONT_PACKAGE: &str = "fonts-dejavu-core";
/// Text size in pixels per em: 9x18 px cells with DejaVu Sans Mono.
pub(crate) const FONT_PX: f32 = 15.0;

/// Printable ASCII is rasterized up front and looked up by index; anything else is
/// rasterized on first use.
const ASCII_FIRST: char = ' ';
const ASCII_LAST: char = '~';

/// A rasterized glyph: coverage bytes and where they sit relative to the cell's top-left.
struct Glyph {
    left: i64,
    top: i64,
    width: u32,
    height: u32,
    coverage: Vec<u8>,
}

impl Glyph {
    fn bounds_at(&self, x: u32, y: u32) -> (i64, i64) {
        (i64::from(x) + self.left, i64::from(y) + self.top)
    }
}

/// Monospace text renderer with a per-character glyph cache.
pub(crate) struct TextRenderer {
    font: Font,
    cell_width: u32,
    line_height: u32,
    baseline: i64,
    ascii: Vec<Glyph>,
    other: HashMap<char, Glyph>,
}

impl TextRenderer {
    /// Loads the font file, with an error naming the file and the Debian package.
    pub(crate) fn load(path: &Path) -> Result<Self, SyntheticError> {
        let bytes = std::fs::read(path).map_err(|io| SyntheticError::FontUnavailable {
            path: path.to_path_buf(),
            package: FONT_PACKAGE,
            io,
        })?;
        Self::from_bytes(bytes, path)
    }

    fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Self, SyntheticError> {
        let invalid = |reason: &str| SyntheticError::FontInvalid {
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        };
        let settings = FontSettings {
            scale: FONT_PX,
            ..FontSettings::default()
        };
        let font = Font::from_bytes(bytes, settings).map_err(invalid)?;
        let lines = font
            .horizontal_line_metrics(FONT_PX)
            .ok_or_else(|| invalid("no horizontal line metrics"))?;
        let cell_width = font.metrics('M', FONT_PX).advance_width.round();
        let line_height = (lines.ascent - lines.descent + lines.line_gap).ceil();
        if !(1.0..=256.0).contains(&cell_width) || !(1.0..=256.0).contains(&line_height) {
            return Err(invalid("implausible glyph metrics"));
        }
        let baseline = i64::from(to_i32(f64::from(lines.ascent.round())));
        let mut renderer = Self {
            font,
            cell_width: to_u32(f64::from(cell_width)),
            line_height: to_u32(f64::from(line_height)),
            baseline,
            ascii: Vec::new(),
            other: HashMap::new(),
        };
        renderer.ascii = (ASCII_FIRST..=ASCII_LAST)
            .map(|c| renderer.rasterize(c))
            .collect();
        Ok(renderer)
    }

    pub(crate) fn cell_width(&self) -> u32 {
        self.cell_width
    }

    pub(crate) fn line_height(&self) -> u32 {
        self.line_height
    }

    /// Width of `cols` cells.
    pub(crate) fn columns_width(&self, cols: usize) -> u32 {
        u32::try_from(cols)
            .unwrap_or(u32::MAX)
            .saturating_mul(self.cell_width)
    }

    fn rasterize(&self, c: char) -> Glyph {
        let (metrics, coverage) = self.font.rasterize(c, FONT_PX);
        let height = metrics.height as i64;
        Glyph {
            left: i64::from(metrics.xmin),
            top: self.baseline - (i64::from(metrics.ymin) + height),
            width: u32::try_from(metrics.width).unwrap_or(u32::MAX),
            height: u32::try_from(metrics.height).unwrap_or(u32::MAX),
            coverage,
        }
    }

    fn glyph(&mut self, c: char) -> &Glyph {
        if (ASCII_FIRST..=ASCII_LAST).contains(&c) {
            return &self.ascii[c as usize - ASCII_FIRST as usize];
        }
        if !self.other.contains_key(&c) {
            let glyph = self.rasterize(c);
            self.other.insert(c, glyph);
        }
        &self.other[&c]
    }

    /// Draws `c` in the cell at (`x`, `y`): the cell is filled with `bg`, then the glyph is
    /// blended in `fg`, clipped to the cell so neighbouring cells stay independent.
    pub(crate) fn draw_char(
        &mut self,
        canvas: &mut Canvas<'_>,
        (x, y): (u32, u32),
        c: char,
        (fg, bg): (u32, u32),
    ) {
        let cell = Rect::new(x, y, self.cell_width, self.line_height);
        let glyph = self.glyph(c);
        let (gx, gy) = glyph.bounds_at(x, y);
        canvas.paint_rows(cell, |dy, row| {
            row.fill(bg);
            blend_glyph_row(glyph, gx, gy, i64::from(x), i64::from(y + dy), fg, row);
        });
    }

    /// Blends the glyph of `c` over whatever is on the canvas (for text on gradients and
    /// title bars); only the glyph's own bitmap counts as damaged.
    pub(crate) fn draw_char_over(
        &mut self,
        canvas: &mut Canvas<'_>,
        (x, y): (u32, u32),
        c: char,
        fg: u32,
    ) {
        let glyph = self.glyph(c);
        let (gx, gy) = glyph.bounds_at(x, y);
        // Glyph pixels left of or above the screen are dropped by starting at 0.
        let (x0, y0) = (gx.max(0), gy.max(0));
        let right = gx + i64::from(glyph.width);
        let bottom = gy + i64::from(glyph.height);
        if right <= x0 || bottom <= y0 {
            return;
        }
        // A glyph beyond the coordinate space is not drawn.
        let (Ok(ax), Ok(ay), Ok(aw), Ok(ah)) = (
            u32::try_from(x0),
            u32::try_from(y0),
            u32::try_from(right - x0),
            u32::try_from(bottom - y0),
        ) else {
            return;
        };
        let area = Rect::new(ax, ay, aw, ah);
        canvas.paint_rows(area, |dy, row| {
            blend_glyph_row(glyph, gx, gy, x0, y0 + i64::from(dy), fg, row);
        });
    }

    /// Draws `text` cell by cell (see [`Self::draw_char`]); returns the x after the text.
    pub(crate) fn draw_text(
        &mut self,
        canvas: &mut Canvas<'_>,
        (x, y): (u32, u32),
        text: &str,
        colors: (u32, u32),
    ) -> u32 {
        let mut cx = x;
        for c in text.chars() {
            self.draw_char(canvas, (cx, y), c, colors);
            cx = cx.saturating_add(self.cell_width);
        }
        cx
    }

    /// Blends `text` over the canvas (see [`Self::draw_char_over`]).
    pub(crate) fn draw_text_over(
        &mut self,
        canvas: &mut Canvas<'_>,
        (x, y): (u32, u32),
        text: &str,
        fg: u32,
    ) {
        let mut cx = x;
        for c in text.chars() {
            self.draw_char_over(canvas, (cx, y), c, fg);
            cx = cx.saturating_add(self.cell_width);
        }
    }
}

/// Blends one glyph row into `row`, whose first pixel is at (`row_x`, `row_y`) on screen.
/// Only the overlap of the glyph and the row is touched.
fn blend_glyph_row(
    glyph: &Glyph,
    gx: i64,
    gy: i64,
    row_x: i64,
    row_y: i64,
    fg: u32,
    row: &mut [u32],
) {
    let gr = row_y - gy;
    if gr < 0 || gr >= i64::from(glyph.height) {
        return;
    }
    let start = gx.max(row_x);
    let end = (gx + i64::from(glyph.width)).min(row_x + row.len() as i64);
    if start >= end {
        return;
    }
    // All three are offsets inside the glyph or the row, so never negative.
    let (Ok(src_start), Ok(len), Ok(dst_start)) = (
        usize::try_from(gr * i64::from(glyph.width) + (start - gx)),
        usize::try_from(end - start),
        usize::try_from(start - row_x),
    ) else {
        return;
    };
    let coverage = &glyph.coverage[src_start..src_start + len];
    let dst = &mut row[dst_start..dst_start + len];
    for (px, &a) in dst.iter_mut().zip(coverage) {
        if a != 0 {
            *px = blend(*px, fg, a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oriel_protocol::{Framebuffer, Size};

    #[test]
    fn missing_font_names_file_and_package() {
        let err = match TextRenderer::load(Path::new("/nonexistent/DejaVuSansMono.ttf")) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("loading a missing font must fail"),
        };
        assert!(err.contains("/nonexistent/DejaVuSansMono.ttf"), "{err}");
        assert!(err.contains(FONT_PACKAGE), "{err}");
    }

    #[test]
    fn garbage_font_is_rejected() {
        let err = TextRenderer::from_bytes(vec![1, 2, 3], Path::new("x.ttf"));
        assert!(matches!(err, Err(SyntheticError::FontInvalid { .. })));
    }

    #[test]
    fn glyphs_are_antialiased_and_stay_in_their_cell() {
        let Ok(mut font) = TextRenderer::load(Path::new(FONT_PATH)) else {
            panic!("{FONT_PATH} must be installed ({FONT_PACKAGE})");
        };
        assert_eq!((font.cell_width(), font.line_height()), (9, 18));
        let mut fb = Framebuffer::new(Size::new(40, 40));
        fb.fill(&fb.size().full_rect(), 0x123456);
        let mut canvas = Canvas::offscreen(&mut fb);
        font.draw_char(&mut canvas, (10, 10), 'g', (0x000000, 0xFFFFFF));
        font.draw_char(&mut canvas, (19, 10), 'é', (0x000000, 0xFFFFFF));
        let mut grey_levels = std::collections::BTreeSet::new();
        for y in 0..40 {
            for x in 0..40 {
                let p = fb.pixel(x, y);
                let inside = (10..28).contains(&x) && (10..28).contains(&y);
                if !inside {
                    assert_eq!(p, 0x123456, "pixel ({x},{y}) outside the cells changed");
                } else {
                    grey_levels.insert(p & 0xFF);
                }
            }
        }
        // Anti-aliasing leaves intermediate grey levels, not just black and white.
        assert!(grey_levels.len() > 5, "{grey_levels:?}");
    }
}
