//! Where each workload's windows go, derived from the work area (the screen above the
//! taskbar) and clamped so that every size from the minimum up gives a sane desktop.
//! Windows that change never overlap, so no window ever has to be recomposited.

use oriel_protocol::{Rect, Size};

use super::chrome::frame_size;
use super::config::Workload;
use super::num;

/// Gap between windows and from the screen edges.
const MARGIN: u32 = 24;
/// Native size of the video workload's picture.
const VIDEO: Size = Size::new(1280, 720);
/// Width of the mixed workload's smaller video.
const MIXED_VIDEO_WIDTH: u32 = 640;
/// Smallest drag zone worth animating a window in.
const MIN_DRAG_ZONE: Size = Size::new(160, 120);

/// A window moving within `zone`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DragPlan {
    pub(crate) zone: Rect,
    pub(crate) window: Size,
}

/// Frames (outer rectangles) of the windows of one workload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) editor: Option<Rect>,
    pub(crate) document: Option<Rect>,
    /// A static window baked into the backdrop, so a dragged window can pass over it.
    pub(crate) backdrop_window: Option<Rect>,
    /// The video window's frame and its picture (the client area).
    pub(crate) video: Option<(Rect, Rect)>,
    pub(crate) drag: Option<DragPlan>,
}

pub(crate) fn layout(workload: Workload, work: Rect) -> Layout {
    let inner = inset(work, MARGIN);
    match workload {
        Workload::Idle => Layout {
            document: Some(centered(inner, Size::new(900, 640))),
            ..Layout::default()
        },
        Workload::Typing => Layout {
            editor: Some(centered(inner, Size::new(1240, 880))),
            ..Layout::default()
        },
        Workload::Scroll => Layout {
            document: Some(centered(inner, Size::new(1000, 900))),
            ..Layout::default()
        },
        Workload::Drag => Layout {
            backdrop_window: Some(Rect::new(
                inner.x + inner.width / 8,
                inner.y + inner.height / 10,
                inner.width.min(720),
                inner.height.min(520),
            )),
            drag: Some(DragPlan {
                zone: inner,
                window: Size::new(600, 400),
            }),
            ..Layout::default()
        },
        Workload::Video => {
            let picture = fit_16_9(shrink_by_frame(inner), VIDEO.width);
            let frame = centered(inner, frame_size(picture));
            Layout {
                video: Some((frame, super::chrome::client_rect(frame))),
                ..Layout::default()
            }
        }
        Workload::Mixed => mixed(inner),
    }
}

/// Editor on the left; video top right; the drag zone below the video.
fn mixed(inner: Rect) -> Layout {
    let left_width = (inner.width * 45 / 100).saturating_sub(MARGIN / 2);
    let editor = Rect::new(inner.x, inner.y, left_width, inner.height);
    let right_x = inner.x + left_width + MARGIN;
    let right = Rect::new(
        right_x,
        inner.y,
        num::right(&inner).saturating_sub(right_x),
        inner.height,
    );
    let picture = fit_16_9(shrink_by_frame(right), MIXED_VIDEO_WIDTH);
    let frame_size = frame_size(picture);
    // Keep the video within 60% of the column's height so the drag zone has room.
    let frame = Rect::new(right.x, right.y, frame_size.width, frame_size.height);
    let video =
        (frame.height * 5 <= right.height * 3).then(|| (frame, super::chrome::client_rect(frame)));
    let zone_y = match video {
        Some((frame, _)) => frame.y + frame.height + MARGIN,
        None => right.y,
    };
    let zone = Rect::new(
        right.x,
        zone_y,
        right.width,
        num::bottom(&right).saturating_sub(zone_y),
    );
    let drag =
        (zone.width >= MIN_DRAG_ZONE.width && zone.height >= MIN_DRAG_ZONE.height).then(|| {
            DragPlan {
                zone,
                window: Size::new(
                    (zone.width * 2 / 3).min(400),
                    (zone.height * 2 / 3).min(260),
                ),
            }
        });
    Layout {
        editor: Some(editor),
        video,
        drag,
        ..Layout::default()
    }
}

fn inset(rect: Rect, by: u32) -> Rect {
    let by_x = by.min(rect.width / 2);
    let by_y = by.min(rect.height / 2);
    Rect::new(
        rect.x + by_x,
        rect.y + by_y,
        rect.width - 2 * by_x,
        rect.height - 2 * by_y,
    )
}

/// A rectangle of at most `size`, centred in `area`.
fn centered(area: Rect, size: Size) -> Rect {
    let width = size.width.min(area.width);
    let height = size.height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

/// The largest client area a window frame fitting in `area` can have.
fn shrink_by_frame(area: Rect) -> Size {
    let frame = frame_size(Size::new(0, 0));
    Size::new(
        area.width.saturating_sub(frame.width),
        area.height.saturating_sub(frame.height),
    )
}

/// The largest 16:9 size no wider than `max_width` that fits in `room`.
fn fit_16_9(room: Size, max_width: u32) -> Size {
    let width = max_width.min(room.width).min(room.height * 16 / 9);
    Size::new(width, width * 9 / 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_video_is_native_720p() {
        let work = Rect::new(0, 0, 1920, 1040);
        let Some((frame, picture)) = layout(Workload::Video, work).video else {
            panic!("video workload has a video");
        };
        assert_eq!((picture.width, picture.height), (1280, 720));
        assert!(frame.fits_in(Size::new(1920, 1040)));
    }

    #[test]
    fn mixed_windows_do_not_overlap() {
        for size in [(640, 440), (1920, 1040), (3840, 2120), (8192, 500)] {
            let work = Rect::new(0, 0, size.0, size.1);
            let l = layout(Workload::Mixed, work);
            let editor = l.editor.unwrap_or_default();
            let video = l.video.map(|v| v.0).unwrap_or_default();
            let zone = l.drag.map(|d| d.zone).unwrap_or_default();
            for (a, b) in [(editor, video), (editor, zone), (video, zone)] {
                assert!(a.intersect(&b).is_empty(), "{size:?}: {a:?} / {b:?}");
            }
            for r in [editor, video, zone] {
                assert!(r.fits_in(Size::new(size.0, size.1)), "{size:?}: {r:?}");
            }
        }
    }
}
