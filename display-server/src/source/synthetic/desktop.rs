//! The desktop itself: a gradient backdrop with icons, the taskbar and its clock.
//!
//! Everything that never changes below a moving window lives in the backdrop buffer, so
//! an area a window uncovers is restored with a row copy instead of a repaint.

use oriel_protocol::{Framebuffer, Rect, Size};

use super::canvas::{lerp_color, Canvas};
use super::chrome::fill_rounded;
use super::font::TextRenderer;
use super::label::Label;

pub(crate) const TASKBAR_HEIGHT: u32 = 40;

const GRADIENT_TOP_LEFT: u32 = 0x1D3B5C;
const GRADIENT_TOP_RIGHT: u32 = 0x2B2F63;
const GRADIENT_BOTTOM_LEFT: u32 = 0x16605F;
const GRADIENT_BOTTOM_RIGHT: u32 = 0x3C2752;
const TASKBAR_BG: u32 = 0x1B1F27;
const TASKBAR_EDGE: u32 = 0x343B48;
const TASK_BUTTON_BG: u32 = 0x2A303C;
const TASK_ACTIVE_MARK: u32 = 0x60A5FA;
const TASKBAR_TEXT: u32 = 0xE5E7EB;
const START_BUTTON: u32 = 0x3B82F6;
const ICON_LABEL: u32 = 0xF2F4F8;
const ICONS: &[(&str, u32)] = &[
    ("Home", 0x4F9DDE),
    ("Projects", 0xE7A33E),
    ("Terminal", 0x3A3F4B),
    ("Trash", 0x8C96A5),
];

/// The clock starts at 09:41:00 and advances one second every `fps` ticks.
const CLOCK_START_SECONDS: u64 = 9 * 3600 + 41 * 60;
const CLOCK_COLS: usize = 8;

/// The screen above the taskbar, where windows go.
pub(crate) fn work_area(size: Size) -> Rect {
    let taskbar_height = TASKBAR_HEIGHT.min(size.height);
    Rect::new(0, 0, size.width, size.height - taskbar_height)
}

pub(crate) struct Desktop {
    backdrop: Framebuffer,
    taskbar: Rect,
    fps: u32,
    titles: Vec<String>,
    clock: Label,
    clock_x: u32,
}

impl Desktop {
    /// A desktop of `size` whose taskbar lists `titles` (the first is the active one);
    /// icons that `windows` would cover are left out.
    pub(crate) fn new(
        size: Size,
        fps: u32,
        titles: Vec<String>,
        windows: &[Rect],
        font: &mut TextRenderer,
    ) -> Self {
        let work = work_area(size);
        let taskbar_height = size.height - work.height;
        let taskbar = Rect::new(0, work.height, size.width, taskbar_height);
        let clock_x = size
            .width
            .saturating_sub(font.columns_width(CLOCK_COLS) + 16);
        let clock_y = taskbar.y + taskbar_height.saturating_sub(font.line_height()) / 2;
        let mut desktop = Self {
            backdrop: Framebuffer::new(size),
            taskbar,
            fps: fps.max(1),
            titles,
            clock: Label::new((clock_x, clock_y), CLOCK_COLS, (TASKBAR_TEXT, TASKBAR_BG)),
            clock_x,
        };
        desktop.paint_backdrop(windows, font);
        desktop
    }

    /// Paints into the backdrop: for windows that never change, so they can sit below a
    /// dragged window and be restored by copy.
    pub(crate) fn bake(&mut self, paint: impl FnOnce(&mut Canvas<'_>)) {
        paint(&mut Canvas::offscreen(&mut self.backdrop));
    }

    /// Copies the backdrop of `rect` to the screen.
    pub(crate) fn restore(&self, canvas: &mut Canvas<'_>, rect: Rect) {
        canvas.copy_from(&self.backdrop, rect, rect.x, rect.y);
    }

    /// Draws the backdrop and the taskbar (state at tick 0).
    pub(crate) fn draw(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer) {
        let full = self.backdrop.size().full_rect();
        self.restore(canvas, full);
        self.draw_taskbar(canvas, font);
        self.update_clock(canvas, font, 0);
    }

    pub(crate) fn tick(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer, tick: u64) {
        self.update_clock(canvas, font, tick);
    }

    fn update_clock(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer, tick: u64) {
        let seconds = CLOCK_START_SECONDS + tick / u64::from(self.fps);
        let text = format!(
            "{:02}:{:02}:{:02}",
            seconds / 3600 % 24,
            seconds / 60 % 60,
            seconds % 60
        );
        self.clock.set(canvas, font, &text);
    }

    /// Bilinear gradient between four corner colours, then the icon column.
    fn paint_backdrop(&mut self, windows: &[Rect], font: &mut TextRenderer) {
        let size = self.backdrop.size();
        let (w_steps, h_steps) = (size.width.saturating_sub(1), size.height.saturating_sub(1));
        let full = size.full_rect();
        for y in 0..size.height {
            let left = lerp_color(GRADIENT_TOP_LEFT, GRADIENT_BOTTOM_LEFT, y, h_steps);
            let right = lerp_color(GRADIENT_TOP_RIGHT, GRADIENT_BOTTOM_RIGHT, y, h_steps);
            for (x, px) in (0..).zip(self.backdrop.row_mut(&full, y).iter_mut()) {
                *px = lerp_color(left, right, x, w_steps);
            }
        }
        let work_bottom = u64::from(self.taskbar.y);
        let mut canvas = Canvas::offscreen(&mut self.backdrop);
        for (i, &(name, color)) in (0u32..).zip(ICONS.iter()) {
            let icon = Rect::new(28, 20 + 96 * i, 52, 52);
            let label_width = font.columns_width(name.chars().count());
            let label_x = (icon.x + icon.width / 2).saturating_sub(label_width / 2);
            let label = Rect::new(label_x, icon.y + 56, label_width, font.line_height());
            let whole = icon.union(&label);
            if whole.bottom() > work_bottom {
                break;
            }
            if windows.iter().any(|w| !w.intersect(&whole).is_empty()) {
                continue;
            }
            fill_rounded(&mut canvas, icon, 10, color);
            font.draw_text_over(&mut canvas, (label.x, label.y), name, ICON_LABEL);
        }
    }

    fn draw_taskbar(&self, canvas: &mut Canvas<'_>, font: &mut TextRenderer) {
        let bar = self.taskbar;
        canvas.fill(bar, TASKBAR_BG);
        canvas.fill(Rect::new(bar.x, bar.y, bar.width, 1), TASKBAR_EDGE);
        if bar.height < 36 {
            return;
        }
        // Start button: a rounded square with a 2x2 grid of white tiles.
        let start = Rect::new(8, bar.y + 6, 28, 28);
        fill_rounded(canvas, start, 6, START_BUTTON);
        for (dx, dy) in [(7, 7), (15, 7), (7, 15), (15, 15)] {
            canvas.fill(Rect::new(start.x + dx, start.y + dy, 6, 6), 0xFFFFFF);
        }
        // One button per window, as long as they do not run into the clock.
        let mut x = 48;
        for (i, title) in self.titles.iter().enumerate() {
            let button = Rect::new(x, bar.y + 4, 200, 32);
            if button.right() + 8 > u64::from(self.clock_x) {
                break;
            }
            fill_rounded(canvas, button, 4, TASK_BUTTON_BG);
            if i == 0 {
                let mark = Rect::new(button.x + 8, button.y + button.height - 3, 184, 2);
                canvas.fill(mark, TASK_ACTIVE_MARK);
            }
            let shown: String = title.chars().take(20).collect();
            let text_y = button.y + button.height.saturating_sub(font.line_height()) / 2;
            font.draw_text_over(canvas, (button.x + 10, text_y), &shown, TASKBAR_TEXT);
            x += 208;
        }
    }
}
