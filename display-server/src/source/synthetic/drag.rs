//! A window dragged along a smooth Lissajous path. Its pixels live in a backing surface
//! drawn once, so every move is a copy of identical content; the strips it uncovers are
//! restored from the desktop backdrop.

use std::f64::consts::TAU;

use oriel_protocol::{Framebuffer, Rect, Size};

use super::canvas::Canvas;
use super::chrome::{draw_static_text, draw_window, text_columns};
use super::corpus::Corpus;
use super::damage::subtract;
use super::desktop::Desktop;
use super::font::TextRenderer;
use super::num::to_u32;

/// When the window moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DragSchedule {
    /// Every tick.
    Continuous,
    /// The first `moving` ticks of every `period`.
    Occasional { moving: u64, period: u64 },
}

impl DragSchedule {
    fn moves_at(self, tick: u64) -> bool {
        match self {
            DragSchedule::Continuous => true,
            DragSchedule::Occasional { moving, period } => tick % period.max(1) < moving,
        }
    }
}

pub(crate) struct DragWindow {
    title: String,
    surface: Framebuffer,
    zone: Rect,
    schedule: DragSchedule,
    /// Ticks spent moving so far: the path parameter.
    travelled: u64,
    position: (u32, u32),
    period: (f64, f64),
}

impl DragWindow {
    /// A window of `size` (clamped to `zone`) moving within `zone`.
    pub(crate) fn new(
        zone: Rect,
        size: Size,
        title: &str,
        schedule: DragSchedule,
        seed: u64,
        font: &mut TextRenderer,
    ) -> Self {
        let size = Size::new(size.width.min(zone.width), size.height.min(zone.height));
        let mut surface = Framebuffer::new(size);
        let mut canvas = Canvas::offscreen(&mut surface);
        let client = draw_window(&mut canvas, font, size.full_rect(), title, true);
        let mut corpus = Corpus::new(seed, text_columns(client, font));
        draw_static_text(&mut canvas, font, client, &mut corpus);
        // Periods chosen for about 8 px/tick horizontally and 5 px/tick vertically on
        // average (a sine covers twice its range per period), never faster than a
        // 90-tick cycle.
        let (range_x, range_y) = (zone.width - size.width, zone.height - size.height);
        let period = (
            (f64::from(range_x) / 4.0).max(90.0),
            (f64::from(range_y) / 2.5).max(90.0),
        );
        let mut window = Self {
            title: title.to_owned(),
            surface,
            zone,
            schedule,
            travelled: 0,
            position: (zone.x, zone.y),
            period,
        };
        window.position = window.path(0);
        window
    }

    pub(crate) fn title(&self) -> &str {
        &self.title
    }

    /// Position after `t` ticks of movement: it starts at the zone's centre.
    fn path(&self, t: u64) -> (u32, u32) {
        let size = self.surface.size();
        let range_x = f64::from(self.zone.width - size.width);
        let range_y = f64::from(self.zone.height - size.height);
        let t = t as f64;
        let fx = 0.5 + 0.5 * (TAU * t / self.period.0).sin();
        let fy = 0.5 + 0.5 * (TAU * t / self.period.1).sin();
        (
            self.zone.x + to_u32((range_x * fx).round()),
            self.zone.y + to_u32((range_y * fy).round()),
        )
    }

    fn rect_at(&self, (x, y): (u32, u32)) -> Rect {
        Rect::new(x, y, self.surface.width(), self.surface.height())
    }

    pub(crate) fn draw(&self, canvas: &mut Canvas<'_>) {
        let (x, y) = self.position;
        canvas.copy_from(&self.surface, self.surface.size().full_rect(), x, y);
    }

    pub(crate) fn tick(&mut self, canvas: &mut Canvas<'_>, desktop: &Desktop, tick: u64) {
        if !self.schedule.moves_at(tick) {
            return;
        }
        self.travelled += 1;
        let next = self.path(self.travelled);
        if next == self.position {
            return;
        }
        let old = self.rect_at(self.position);
        self.position = next;
        self.draw(canvas);
        for uncovered in subtract(&old, &self.rect_at(next)) {
            desktop.restore(canvas, uncovered);
        }
    }

    /// The window's current screen rectangle, for tests.
    #[cfg(test)]
    pub(crate) fn rect(&self) -> Rect {
        self.rect_at(self.position)
    }
}
