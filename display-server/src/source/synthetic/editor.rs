//! A text editor window that types a script two characters per tick and echoes injected
//! keys. Each keystroke redraws one glyph cell and the caret; when the page is full the
//! text scrolls up one line with a memmove.

use std::collections::VecDeque;

use oriel_protocol::Rect;

use super::canvas::Canvas;
use super::chrome::{client_rect, colors, draw_window, PADDING};
use super::corpus::Corpus;
use super::font::TextRenderer;
use super::keymap::KeyAction;
use super::label::Label;
use super::num::right;

const CARET_WIDTH: u32 = 2;
/// Line numbers are shown modulo 10^4 in a four-digit gutter.
const GUTTER_DIGITS: u32 = 4;
const STATUS_BG: u32 = 0xE9E9E4;
const STATUS_EDGE: u32 = 0xD0D0CA;
const STATUS_TEXT: u32 = 0x45484F;

pub(crate) struct Editor {
    frame: Rect,
    title: String,
    /// The rows of text including the gutter: what scrolls when the page is full.
    lines: Rect,
    gutter_width: u32,
    text_x: u32,
    cols: u32,
    rows: u32,
    row: u32,
    col: u32,
    line_no: u64,
    chars_per_tick: u32,
    script: Corpus,
    queued: VecDeque<char>,
    status: Label,
    status_bar: Rect,
}

impl Editor {
    pub(crate) fn new(
        frame: Rect,
        title: &str,
        chars_per_tick: u32,
        seed: u64,
        font: &TextRenderer,
    ) -> Self {
        let (cw, lh) = (font.cell_width(), font.line_height());
        let client = client_rect(frame);
        let status_height = (lh + PADDING).min(client.height);
        let status_bar = Rect::new(
            client.x,
            client.y + client.height - status_height,
            client.width,
            status_height,
        );
        let text_height = client.height - status_height;
        let rows = text_height.saturating_sub(2 * PADDING) / lh;
        let gutter_width = GUTTER_DIGITS * cw + 2 * PADDING;
        let text_x = client.x + gutter_width + PADDING;
        let cols = right(&client).saturating_sub(text_x + PADDING) / cw;
        let lines = Rect::new(client.x, client.y + PADDING, client.width, rows * lh);
        let status_cols = (client.width.saturating_sub(2 * PADDING) / cw) as usize;
        let status_origin = (client.x + PADDING, status_bar.y + PADDING / 2);
        Self {
            frame,
            title: title.to_owned(),
            lines,
            gutter_width,
            text_x,
            cols,
            rows,
            row: 0,
            col: 0,
            line_no: 1,
            chars_per_tick,
            // Wrap the script a little short of the window so lines end raggedly.
            script: Corpus::new(seed, cols.saturating_sub(4).max(8) as usize),
            queued: VecDeque::new(),
            status: Label::new(status_origin, status_cols, (STATUS_TEXT, STATUS_BG)),
            status_bar,
        }
    }

    pub(crate) fn title(&self) -> &str {
        &self.title
    }

    fn usable(&self) -> bool {
        self.rows > 0 && self.cols > 0
    }

    /// Window, gutter, status bar, first line number and caret.
    pub(crate) fn draw(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer) {
        let client = draw_window(canvas, font, self.frame, &self.title, true);
        let gutter_height = client.height - self.status_bar.height;
        let gutter = Rect::new(client.x, client.y, self.gutter_width, gutter_height);
        canvas.fill(gutter, colors::GUTTER_BG);
        canvas.fill(self.status_bar, STATUS_BG);
        canvas.fill(
            Rect::new(client.x, self.status_bar.y, client.width, 1),
            STATUS_EDGE,
        );
        if self.usable() {
            self.draw_line_number(canvas, font);
            self.set_caret(canvas, font, true);
        }
        self.update_status(canvas, font);
    }

    /// Types the next `chars_per_tick` characters of the script.
    pub(crate) fn tick(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer) {
        for _ in 0..self.chars_per_tick {
            let c = self.next_script_char();
            let action = if c == '\n' {
                KeyAction::Enter
            } else {
                KeyAction::Char(c)
            };
            self.apply(canvas, font, action);
        }
        self.update_status(canvas, font);
    }

    /// Echoes one injected key press.
    pub(crate) fn key(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer, key: KeyAction) {
        self.apply(canvas, font, key);
        self.update_status(canvas, font);
    }

    fn next_script_char(&mut self) -> char {
        loop {
            if let Some(c) = self.queued.pop_front() {
                return c;
            }
            let line = self.script.next_line();
            self.queued.extend(line.chars());
            self.queued.push_back('\n');
        }
    }

    fn apply(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer, key: KeyAction) {
        if !self.usable() {
            return;
        }
        self.set_caret(canvas, font, false);
        match key {
            KeyAction::Enter => self.newline(canvas, font),
            KeyAction::Backspace => {
                if self.col > 0 {
                    self.col -= 1;
                    canvas.fill(self.caret_cell(font), colors::CLIENT_BG);
                }
            }
            KeyAction::Char(c) => {
                let cell = self.caret_cell(font);
                font.draw_char(
                    canvas,
                    (cell.x, cell.y),
                    c,
                    (colors::TEXT, colors::CLIENT_BG),
                );
                self.col += 1;
                // Wrap as soon as the line is full, so the caret always sits in a cell.
                if self.col >= self.cols {
                    self.newline(canvas, font);
                }
            }
        }
        self.set_caret(canvas, font, true);
    }

    /// Moves to the start of the next line, scrolling the page by one line at the bottom.
    fn newline(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer) {
        let lh = font.line_height();
        if self.row + 1 < self.rows {
            self.row += 1;
        } else {
            canvas.scroll_up(self.lines, lh);
            let last = Rect::new(self.lines.x, self.row_y(lh), self.lines.width, lh);
            canvas.fill(last, colors::CLIENT_BG);
            let last_gutter = Rect::new(last.x, last.y, self.gutter_width, lh);
            canvas.fill(last_gutter, colors::GUTTER_BG);
        }
        self.col = 0;
        self.line_no += 1;
        self.draw_line_number(canvas, font);
    }

    fn row_y(&self, line_height: u32) -> u32 {
        self.lines.y + self.row * line_height
    }

    /// The cell at the caret: where the next character goes.
    pub(crate) fn caret_cell(&self, font: &TextRenderer) -> Rect {
        let (cw, lh) = (font.cell_width(), font.line_height());
        Rect::new(self.text_x + self.col * cw, self.row_y(lh), cw, lh)
    }

    /// Draws or erases the caret; the caret's cell is always empty, so erasing is a fill.
    fn set_caret(&self, canvas: &mut Canvas<'_>, font: &TextRenderer, visible: bool) {
        let cell = self.caret_cell(font);
        let caret = Rect::new(cell.x, cell.y, CARET_WIDTH, cell.height);
        let color = if visible {
            colors::TEXT
        } else {
            colors::CLIENT_BG
        };
        canvas.fill(caret, color);
    }

    fn draw_line_number(&self, canvas: &mut Canvas<'_>, font: &mut TextRenderer) {
        let number = format!("{:>4}", self.line_no % 10_000);
        let origin = (self.lines.x + PADDING, self.row_y(font.line_height()));
        font.draw_text(
            canvas,
            origin,
            &number,
            (colors::GUTTER_TEXT, colors::GUTTER_BG),
        );
    }

    fn update_status(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer) {
        let text = format!(
            "Ln {}, Col {}    Spaces: 4    UTF-8    LF    Plain Text",
            self.line_no,
            self.col + 1
        );
        self.status.set(canvas, font, &text);
    }

    /// The rectangle holding the typed text, for tests.
    #[cfg(test)]
    pub(crate) fn text_area(&self) -> Rect {
        self.lines
    }
}
