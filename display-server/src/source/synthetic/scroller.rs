//! A text viewer that scrolls up continuously: each tick the viewport's rows move up by
//! exactly `dy` pixels (a memmove, which a codec sees as a copy) and only the `dy` new rows
//! at the bottom are drawn, copied from pre-rendered line strips.
//!
//! With a speed of 0 it is simply a static document window (the idle desktop).

use std::collections::VecDeque;

use oriel_protocol::{Framebuffer, Rect, Size};

use super::canvas::Canvas;
use super::chrome::{client_rect, colors, draw_window, text_columns, PADDING};
use super::corpus::Corpus;
use super::font::TextRenderer;
use super::num::low_u32;

/// Line numbers are shown modulo 10^5 in a five-digit gutter.
const GUTTER_DIGITS: usize = 5;

pub(crate) struct ScrollView {
    frame: Rect,
    title: String,
    view: Rect,
    px_per_tick: u32,
    /// Content pixels scrolled past the top of the viewport.
    offset: u64,
    corpus: Corpus,
    /// Rendered lines `first_line..first_line + strips.len()`, each one line tall.
    strips: VecDeque<Framebuffer>,
    first_line: u64,
    gutter_width: u32,
}

impl ScrollView {
    pub(crate) fn new(
        frame: Rect,
        title: &str,
        px_per_tick: u32,
        seed: u64,
        font: &TextRenderer,
    ) -> Self {
        let view = client_rect(frame);
        let gutter_width = font.columns_width(GUTTER_DIGITS) + 2 * PADDING;
        let text_cols = text_columns(view, font).saturating_sub(GUTTER_DIGITS + 1);
        Self {
            frame,
            title: title.to_owned(),
            view,
            px_per_tick,
            offset: 0,
            corpus: Corpus::new(seed, text_cols.max(1)),
            strips: VecDeque::new(),
            first_line: 0,
            gutter_width,
        }
    }

    pub(crate) fn title(&self) -> &str {
        &self.title
    }

    pub(crate) fn draw(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer) {
        draw_window(canvas, font, self.frame, &self.title, true);
        self.fill_rows(canvas, font, 0, self.view.height);
    }

    pub(crate) fn tick(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer) {
        let dy = self.px_per_tick.min(self.view.height);
        if dy == 0 {
            return;
        }
        canvas.scroll_up(self.view, dy);
        self.offset += u64::from(dy);
        self.fill_rows(canvas, font, self.view.height - dy, self.view.height);
        // Lines wholly above the viewport are never needed again.
        let top_line = self.offset / u64::from(font.line_height());
        while self.first_line < top_line && self.strips.pop_front().is_some() {
            self.first_line += 1;
        }
    }

    /// Draws viewport rows `from..to` from the line strips at the current offset.
    fn fill_rows(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer, from: u32, to: u32) {
        let lh = font.line_height();
        let (view_x, view_y) = (self.view.x, self.view.y);
        let mut y = from;
        while y < to {
            let content_row = self.offset + u64::from(y);
            let line = content_row / u64::from(lh);
            // Below `lh`, so its low 32 bits are all of it.
            let row_in_line = low_u32(content_row % u64::from(lh));
            let rows = (lh - row_in_line).min(to - y);
            let strip = self.strip(line, font);
            let src = Rect::new(0, row_in_line, strip.width(), rows);
            canvas.copy_from(strip, src, view_x, view_y + y);
            y += rows;
        }
    }

    /// The rendered strip of `line`, rendering lines up to it as needed.
    fn strip(&mut self, line: u64, font: &mut TextRenderer) -> &Framebuffer {
        while self.first_line + self.strips.len() as u64 <= line {
            let number = self.first_line + self.strips.len() as u64 + 1;
            let strip = self.render_line(number, font);
            self.strips.push_back(strip);
        }
        // `line >= first_line` because strips are only dropped above the viewport.
        &self.strips[usize::try_from(line - self.first_line).unwrap_or(usize::MAX)]
    }

    fn render_line(&mut self, number: u64, font: &mut TextRenderer) -> Framebuffer {
        let lh = font.line_height();
        let mut strip = Framebuffer::new(Size::new(self.view.width, lh));
        let mut canvas = Canvas::offscreen(&mut strip);
        canvas.fill(Rect::new(0, 0, self.view.width, lh), colors::CLIENT_BG);
        canvas.fill(Rect::new(0, 0, self.gutter_width, lh), colors::GUTTER_BG);
        let label = format!("{:>5}", number % 100_000);
        let gutter_colors = (colors::GUTTER_TEXT, colors::GUTTER_BG);
        font.draw_text(&mut canvas, (PADDING, 0), &label, gutter_colors);
        let text = self.corpus.next_line();
        let text_x = self.gutter_width + PADDING;
        font.draw_text(
            &mut canvas,
            (text_x, 0),
            &text,
            (colors::TEXT, colors::CLIENT_BG),
        );
        strip
    }

    /// The scrolling viewport, for tests.
    #[cfg(test)]
    pub(crate) fn viewport(&self) -> Rect {
        self.view
    }
}
