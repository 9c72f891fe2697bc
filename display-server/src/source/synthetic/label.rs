//! A fixed-width text field that redraws only the cells whose character changed, so a
//! clock tick or a status-bar update damages a glyph or two, not the whole line.

use super::canvas::Canvas;
use super::font::TextRenderer;

pub(crate) struct Label {
    origin: (u32, u32),
    cols: usize,
    colors: (u32, u32),
    shown: Vec<char>,
}

impl Label {
    /// A label of `cols` cells at `origin`, drawn in `colors` = (text, background).
    pub(crate) fn new(origin: (u32, u32), cols: usize, colors: (u32, u32)) -> Self {
        Self {
            origin,
            cols,
            colors,
            shown: Vec::new(),
        }
    }

    /// Shows `text`, truncated or space-padded to the label's width.
    pub(crate) fn set(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer, text: &str) {
        let padded = text.chars().chain(std::iter::repeat(' ')).take(self.cols);
        for (i, c) in padded.enumerate() {
            if self.shown.get(i) == Some(&c) {
                continue;
            }
            let x = self.origin.0.saturating_add(font.columns_width(i));
            font.draw_char(canvas, (x, self.origin.1), c, self.colors);
            if i < self.shown.len() {
                self.shown[i] = c;
            } else {
                self.shown.push(c);
            }
        }
    }
}
