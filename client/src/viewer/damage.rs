//! What changed on the desktop since the window last drew it. The session thread copies
//! only those pixels for the UI thread, and the window redraws and presents only them:
//! a typed character costs a few kilobytes of copying, not three full-screen copies.

use std::time::Instant;

use oriel_protocol::{Framebuffer, Rect, Size};

/// Beyond this many rectangles their bounding box is drawn instead: one larger copy
/// costs less than many small requests to the window system.
pub(crate) const MAX_RECTS: usize = 16;

/// The newest decoded screen, handed from the session to the UI thread.
pub(super) struct Latest {
    pub fb: Framebuffer,
    /// When the session finished decoding it.
    pub decoded: Instant,
    /// The UI has not drawn it yet.
    pub fresh: bool,
    changed: Changed,
}

/// The part of [`Latest`] the window has not drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Changed {
    Nothing,
    Rects(Vec<Rect>),
    All,
}

impl Latest {
    pub(super) fn new(size: Size) -> Self {
        Self {
            fb: Framebuffer::new(size),
            decoded: Instant::now(),
            fresh: false,
            changed: Changed::All,
        }
    }

    /// Takes the pixels of `rects` from the session's framebuffer (all of them when
    /// the desktop changed size).
    pub(super) fn update(&mut self, fb: &Framebuffer, rects: &[Rect]) {
        if self.fb.size() == fb.size() {
            let screen = fb.size().full_rect();
            for r in rects {
                let r = r.intersect(&screen);
                for dy in 0..r.height {
                    self.fb.row_mut(&r, dy).copy_from_slice(fb.row(&r, dy));
                }
                self.changed.add(r);
            }
        } else {
            self.fb = fb.clone();
            self.changed = Changed::All;
        }
        (self.decoded, self.fresh) = (Instant::now(), true);
    }

    /// What changed since the last call.
    pub(super) fn take_changed(&mut self) -> Changed {
        std::mem::replace(&mut self.changed, Changed::Nothing)
    }
}

impl Changed {
    fn add(&mut self, r: Rect) {
        if r.is_empty() {
            return;
        }
        match self {
            Changed::All => {}
            Changed::Nothing => *self = Changed::Rects(vec![r]),
            Changed::Rects(rects) => {
                if rects.iter().any(|have| have.intersect(&r) == r) {
                    return;
                }
                rects.push(r);
                if rects.len() > MAX_RECTS {
                    let bounds = rects.iter().fold(r, |a, b| a.union(b));
                    *rects = vec![bounds];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(size: Size, base: u32) -> Framebuffer {
        let pixels = (0..size.width * size.height).map(|i| base + i).collect();
        Framebuffer::from_pixels(size, pixels).unwrap()
    }

    #[test]
    fn only_the_changed_rects_are_copied_and_reported() {
        let size = Size::new(8, 4);
        let mut latest = Latest::new(size);
        assert_eq!(
            latest.take_changed(),
            Changed::All,
            "a new window draws everything"
        );
        let fb = numbered(size, 100);
        latest.update(&fb, &[Rect::new(1, 1, 2, 2), Rect::new(6, 3, 5, 5)]);
        assert!(latest.fresh);
        assert_eq!(
            latest.take_changed(),
            // The second is clipped to the screen.
            Changed::Rects(vec![Rect::new(1, 1, 2, 2), Rect::new(6, 3, 2, 1)])
        );
        assert_eq!(latest.take_changed(), Changed::Nothing);
        for y in 0..4 {
            for x in 0..8 {
                let inside = (1..3).contains(&x) && (1..3).contains(&y) || x >= 6 && y == 3;
                let want = if inside { fb.pixel(x, y) } else { 0 };
                assert_eq!(latest.fb.pixel(x, y), want, "({x},{y})");
            }
        }
    }

    #[test]
    fn many_rects_become_their_bounding_box_and_a_new_size_everything() {
        let size = Size::new(64, 64);
        let mut latest = Latest::new(size);
        latest.take_changed();
        let fb = numbered(size, 1);
        let rects: Vec<Rect> = (0..17).map(|i| Rect::new(i * 3, i, 1, 1)).collect();
        latest.update(&fb, &rects);
        assert_eq!(
            latest.take_changed(),
            Changed::Rects(vec![Rect::new(0, 0, 49, 17)])
        );
        latest.update(&numbered(Size::new(32, 32), 1), &[]);
        assert_eq!(latest.take_changed(), Changed::All);
        assert_eq!(latest.fb.size(), Size::new(32, 32));
    }
}
