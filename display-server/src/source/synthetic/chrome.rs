//! Window decorations and small shape helpers shared by every window of the desktop.

use oriel_protocol::{Rect, Size};

use super::canvas::{blend, Canvas};
use super::corpus::Corpus;
use super::font::TextRenderer;
use super::num::{right, to_u32, to_u8};

/// Window palette: light client areas with dark text, blue active title bars.
pub(crate) mod colors {
    pub(crate) const BORDER: u32 = 0x2C3036;
    pub(crate) const TITLE_ACTIVE_TOP: u32 = 0x3567B5;
    pub(crate) const TITLE_ACTIVE_BOTTOM: u32 = 0x28508F;
    pub(crate) const TITLE_INACTIVE_TOP: u32 = 0x646C78;
    pub(crate) const TITLE_INACTIVE_BOTTOM: u32 = 0x525863;
    pub(crate) const TITLE_TEXT: u32 = 0xF4F6FA;
    pub(crate) const CLIENT_BG: u32 = 0xFAFAF7;
    pub(crate) const TEXT: u32 = 0x1E1F22;
    pub(crate) const GUTTER_BG: u32 = 0xEEEEEA;
    pub(crate) const GUTTER_TEXT: u32 = 0x8A8F98;
    pub(crate) const CLOSE: u32 = 0xE0443E;
    pub(crate) const MINIMIZE: u32 = 0xDEA123;
    pub(crate) const MAXIMIZE: u32 = 0x1AAB29;
}

pub(crate) const BORDER_WIDTH: u32 = 1;
pub(crate) const TITLE_HEIGHT: u32 = 30;
/// Inner spacing between a client area's edge and its text.
pub(crate) const PADDING: u32 = 6;

/// The client area inside a window frame (empty when the frame is too small).
pub(crate) fn client_rect(frame: Rect) -> Rect {
    Rect::new(
        frame.x.saturating_add(BORDER_WIDTH),
        frame.y.saturating_add(BORDER_WIDTH + TITLE_HEIGHT),
        frame.width.saturating_sub(2 * BORDER_WIDTH),
        frame.height.saturating_sub(2 * BORDER_WIDTH + TITLE_HEIGHT),
    )
}

/// The frame size that gives a client area of `client`.
pub(crate) fn frame_size(client: Size) -> Size {
    Size::new(
        client.width.saturating_add(2 * BORDER_WIDTH),
        client
            .height
            .saturating_add(2 * BORDER_WIDTH + TITLE_HEIGHT),
    )
}

/// Draws border, title bar (title text and three buttons) and an empty client area;
/// returns the client rectangle.
pub(crate) fn draw_window(
    canvas: &mut Canvas<'_>,
    font: &mut TextRenderer,
    frame: Rect,
    title: &str,
    active: bool,
) -> Rect {
    canvas.fill(frame, colors::BORDER);
    let bar = Rect::new(
        frame.x + BORDER_WIDTH,
        frame.y + BORDER_WIDTH,
        frame.width.saturating_sub(2 * BORDER_WIDTH),
        TITLE_HEIGHT.min(frame.height.saturating_sub(2 * BORDER_WIDTH)),
    );
    let (top, bottom) = if active {
        (colors::TITLE_ACTIVE_TOP, colors::TITLE_ACTIVE_BOTTOM)
    } else {
        (colors::TITLE_INACTIVE_TOP, colors::TITLE_INACTIVE_BOTTOM)
    };
    canvas.fill_vgradient(bar, top, bottom);

    // Three round buttons at the right, 22 px apart; the title gets what is left.
    let cy = bar.y as f32 + TITLE_HEIGHT as f32 / 2.0;
    let buttons = [colors::CLOSE, colors::MAXIMIZE, colors::MINIMIZE];
    let mut buttons_left = right(&bar);
    for (i, color) in buttons.into_iter().enumerate() {
        let cx = bar.right() as f32 - 18.0 - 22.0 * i as f32;
        if cx - 8.0 > bar.x as f32 + 40.0 {
            fill_circle(canvas, (cx, cy), 6.0, color);
            buttons_left = to_u32(f64::from(cx - 14.0));
        }
    }
    let title_x = bar.x + 12;
    let room = buttons_left.saturating_sub(title_x) / font.cell_width().max(1);
    let shown: String = title.chars().take(room as usize).collect();
    let title_y = bar.y + TITLE_HEIGHT.saturating_sub(font.line_height()) / 2;
    font.draw_text_over(canvas, (title_x, title_y), &shown, colors::TITLE_TEXT);

    let client = client_rect(frame);
    canvas.fill(client, colors::CLIENT_BG);
    client
}

/// Fills `client` with lines from `corpus`, starting at the top-left padding; used for
/// windows whose text never changes.
pub(crate) fn draw_static_text(
    canvas: &mut Canvas<'_>,
    font: &mut TextRenderer,
    client: Rect,
    corpus: &mut Corpus,
) {
    let line_height = font.line_height();
    let mut y = client.y + PADDING;
    while u64::from(y) + u64::from(line_height) <= client.bottom() {
        let line = corpus.next_line();
        font.draw_text(
            canvas,
            (client.x + PADDING, y),
            &line,
            (colors::TEXT, colors::CLIENT_BG),
        );
        y += line_height;
    }
}

/// How many text columns fit in `client` with padding on both sides.
pub(crate) fn text_columns(client: Rect, font: &TextRenderer) -> usize {
    (client.width.saturating_sub(2 * PADDING) / font.cell_width().max(1)) as usize
}

/// An anti-aliased filled disc (coverage from the distance to the edge).
pub(crate) fn fill_circle(canvas: &mut Canvas<'_>, (cx, cy): (f32, f32), r: f32, color: u32) {
    let x0 = to_u32(f64::from((cx - r - 1.0).floor().max(0.0)));
    let y0 = to_u32(f64::from((cy - r - 1.0).floor().max(0.0)));
    let side = to_u32(f64::from((2.0 * r + 3.0).ceil()));
    canvas.paint_rows(Rect::new(x0, y0, side, side), |dy, row| {
        let py = (y0 + dy) as f32 + 0.5;
        for (x, px) in (x0..).zip(row.iter_mut()) {
            let dx = x as f32 + 0.5 - cx;
            let dist = (dx * dx + (py - cy) * (py - cy)).sqrt();
            let coverage = (r + 0.5 - dist).clamp(0.0, 1.0);
            if coverage > 0.0 {
                *px = blend(*px, color, to_u8(f64::from(coverage * 255.0)));
            }
        }
    });
}

/// A filled rectangle with anti-aliased round corners of `radius`.
pub(crate) fn fill_rounded(canvas: &mut Canvas<'_>, rect: Rect, radius: u32, color: u32) {
    let radius = radius.min(rect.width / 2).min(rect.height / 2);
    let (x, y, w, h) = (rect.x, rect.y, rect.width, rect.height);
    canvas.fill(Rect::new(x + radius, y, w - 2 * radius, h), color);
    canvas.fill(Rect::new(x, y + radius, w, h - 2 * radius), color);
    let r = radius as f32;
    let (left, top) = (x as f32 + r, y as f32 + r);
    let (right, bottom) = ((x + w) as f32 - r, (y + h) as f32 - r);
    for center in [(left, top), (right, top), (left, bottom), (right, bottom)] {
        fill_circle(canvas, center, r, color);
    }
}
