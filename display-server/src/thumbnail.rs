//! Small PNGs of desktop screens for the broker's console. Scaled down while the
//! source is locked (reading the screen once, keeping only the small copy), and kept a
//! moment: however many consoles ask, a desktop is rendered at most once a second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::ImageEncoder;
use oriel_protocol::framebuffer::rgb_bytes;
use oriel_protocol::host_link::MAX_THUMBNAIL_SIDE;
use oriel_protocol::Framebuffer;

use crate::desktop::{lock, Desktop};

/// How long a rendered thumbnail is handed out again instead of rendering anew.
const REUSE_FOR: Duration = Duration::from_secs(1);

struct Shot {
    at: Instant,
    max: (u32, u32),
    png: Arc<Vec<u8>>,
}

/// The thumbnails rendered lately, by desktop.
#[derive(Default)]
pub struct Thumbnails(Mutex<HashMap<String, Shot>>);

impl Thumbnails {
    /// A PNG of `desktop`'s screen that fits `max_width` x `max_height`.
    pub fn of(
        &self,
        desktop: &Desktop,
        max_width: u32,
        max_height: u32,
    ) -> anyhow::Result<Arc<Vec<u8>>> {
        let max = (
            max_width.clamp(1, MAX_THUMBNAIL_SIDE),
            max_height.clamp(1, MAX_THUMBNAIL_SIDE),
        );
        let now = Instant::now();
        {
            let mut shots = lock(&self.0);
            shots.retain(|_, s| now.duration_since(s.at) < REUSE_FOR);
            if let Some(s) = shots.get(desktop.name()).filter(|s| s.max == max) {
                return Ok(s.png.clone());
            }
        }
        let (width, height, rgb) = scale_down(desktop.source().pixels(), max.0, max.1);
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png).write_image(
            &rgb,
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )?;
        let png = Arc::new(png);
        let shot = Shot {
            at: now,
            max,
            png: png.clone(),
        };
        lock(&self.0).insert(desktop.name().to_string(), shot);
        Ok(png)
    }
}

/// The screen scaled to fit `max_w` x `max_h` (never up), each output pixel the mean of
/// the screen pixels it covers; RGB bytes.
fn scale_down(fb: &Framebuffer, max_w: u32, max_h: u32) -> (u32, u32, Vec<u8>) {
    let (w, h) = (u64::from(fb.width().max(1)), u64::from(fb.height().max(1)));
    let (max_w, max_h) = (u64::from(max_w.max(1)), u64::from(max_h.max(1)));
    let narrow = |x: u64| u32::try_from(x).unwrap_or(u32::MAX).max(1);
    // The side that limits the scale is fit exactly; the other follows, rounded.
    let (out_w, out_h) = if w * max_h >= h * max_w {
        let out_w = w.min(max_w);
        (out_w, (h * out_w + w / 2) / w)
    } else {
        let out_h = h.min(max_h);
        ((w * out_h + h / 2) / h, out_h)
    };
    let (out_w, out_h) = (narrow(out_w), narrow(out_h));
    let mut rgb = Vec::with_capacity(out_w as usize * out_h as usize * 3);
    if fb.width() == 0 || fb.height() == 0 {
        rgb.resize(out_w as usize * out_h as usize * 3, 0);
        return (out_w, out_h, rgb);
    }
    // The screen pixels [from, to) that output pixel `i` of `out` covers along `len`.
    let span = |i: u32, out: u32, len: u64| {
        let from = u64::from(i) * len / u64::from(out);
        let to = (u64::from(i + 1) * len / u64::from(out)).max(from + 1);
        let side = |x: u64| u32::try_from(x.min(len)).unwrap_or(u32::MAX);
        (side(from), side(to))
    };
    for oy in 0..out_h {
        let (y0, y1) = span(oy, out_h, h);
        for ox in 0..out_w {
            let (x0, x1) = span(ox, out_w, w);
            let mut sum = [0u64; 3];
            for y in y0..y1 {
                for x in x0..x1 {
                    for (s, c) in sum.iter_mut().zip(rgb_bytes(fb.pixel(x, y))) {
                        *s += u64::from(c);
                    }
                }
            }
            let n = u64::from((y1 - y0) * (x1 - x0)).max(1);
            rgb.extend(sum.map(|s| u8::try_from(s / n).unwrap_or(u8::MAX)));
        }
    }
    (out_w, out_h, rgb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oriel_protocol::{Rect, Size};

    #[test]
    fn a_screen_is_scaled_to_fit_keeping_its_aspect_and_colours() {
        let mut fb = Framebuffer::new(Size::new(1920, 1080));
        fb.fill(&Rect::new(0, 0, 960, 1080), 0x00ff_0000);
        let (w, h, rgb) = scale_down(&fb, 320, 320);
        assert_eq!((w, h), (320, 180));
        assert_eq!(&rgb[..3], &[255, 0, 0], "left half red");
        assert_eq!(&rgb[rgb.len() - 3..], &[0, 0, 0], "right half black");
        // Never scaled up.
        let small = Framebuffer::new(Size::new(100, 50));
        assert_eq!(scale_down(&small, 640, 640).0, 100);
    }

    #[test]
    fn a_thumbnail_is_a_png_reused_for_a_moment() {
        let source = crate::source::SourceConfig::Synthetic(Default::default())
            .open(std::path::Path::new("/nonexistent"))
            .unwrap();
        let desktop = Desktop::new("d", source);
        let thumbnails = Thumbnails::default();
        let png = thumbnails.of(&desktop, 200, 150).unwrap();
        let image = image::load_from_memory(&png).unwrap();
        assert!(image.width() <= 200 && image.height() <= 150);
        assert!(Arc::ptr_eq(
            &png,
            &thumbnails.of(&desktop, 200, 150).unwrap()
        ));
        let other = thumbnails.of(&desktop, 100, 100).unwrap();
        assert!(!Arc::ptr_eq(&png, &other), "another size is rendered");
    }
}
