//! The statistics overlay: a few lines of text in a dark box at the window's top-left,
//! drawn over the desktop image (DejaVu Sans Mono through fontdue, as the synthetic
//! desktops use).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use fontdue::{Font, FontSettings, Metrics};

use crate::LiveStats;

const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";
const PX: f32 = 14.0;
const LINE: usize = 18;
const PAD: usize = 6;

pub(super) struct Overlay {
    font: Option<Font>,
    glyphs: HashMap<char, (Metrics, Vec<u8>)>,
    /// The figures at the last sample, for rates; `None` until the first.
    last: Option<(Instant, u64, u64, u64)>,
    lines: Vec<String>,
}

impl Overlay {
    pub(super) fn new() -> Overlay {
        let font = std::fs::read(FONT_PATH)
            .ok()
            .and_then(|bytes| Font::from_bytes(bytes, FontSettings::default()).ok());
        if font.is_none() {
            tracing::warn!("{FONT_PATH} missing (fonts-dejavu-core): the overlay has no text");
        }
        Overlay {
            font,
            glyphs: HashMap::new(),
            last: None,
            lines: Vec::new(),
        }
    }

    /// Recomputes the text from `live` at most twice a second.
    pub(super) fn sample(&mut self, live: &LiveStats) {
        let now = (
            live.frames.load(Relaxed),
            live.pictures.load(Relaxed),
            live.bytes.load(Relaxed),
        );
        let Some((at, frames, pictures, bytes)) = self.last else {
            // Rates need two samples: start counting now.
            self.last = Some((Instant::now(), now.0, now.1, now.2));
            self.lines = vec!["measuring ...".into()];
            return;
        };
        let secs = at.elapsed().as_secs_f64();
        if secs < 0.5 {
            return;
        }
        let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs.max(1e-3);
        let regions = live.video_regions.load(Relaxed);
        self.lines = vec![
            format!(
                "{:.0} fps  {:.2} Mbit/s",
                per_s(now.0, frames) + per_s(now.1, pictures),
                per_s(now.2, bytes) * 8.0 / 1e6
            ),
            format!(
                "RTT {:.1} ms  latency {:.1} ms",
                live.rtt_us.load(Relaxed) as f64 / 1000.0,
                live.latency_us.load(Relaxed) as f64 / 1000.0
            ),
            format!(
                "in flight {}/{} frames",
                live.frames_in_flight.load(Relaxed),
                live.frame_window.load(Relaxed)
            ),
            if regions == 0 {
                "lossless (no video regions)".to_string()
            } else {
                format!(
                    "lossless + {regions} H.264 region(s), {:.1} Mbit/s",
                    live.video_bitrate.load(Relaxed) as f64 / 1e6
                )
            },
        ];
        self.last = Some((Instant::now(), now.0, now.1, now.2));
    }

    /// Draws the box and text into `out`, a `width`-pixel-wide window image.
    pub(super) fn draw(&mut self, out: &mut [u32], width: usize) {
        let height = out.len() / width.max(1);
        let box_w =
            (PAD * 2 + 9 * self.lines.iter().map(|l| l.len()).max().unwrap_or(0)).min(width);
        let box_h = (PAD * 2 + LINE * self.lines.len()).min(height);
        for row in out.chunks_exact_mut(width).take(box_h) {
            for px in &mut row[..box_w] {
                // Darkened desktop: readable text on any background.
                *px = (*px >> 2) & 0x003f_3f3f;
            }
        }
        let Some(font) = &self.font else {
            return;
        };
        for (i, line) in self.lines.iter().enumerate() {
            let mut x = small(PAD);
            let baseline = small(PAD + LINE * i + 13);
            for c in line.chars() {
                let (metrics, coverage) = self
                    .glyphs
                    .entry(c)
                    .or_insert_with(|| font.rasterize(c, PX));
                let top = baseline - small(metrics.height) - metrics.ymin;
                for gy in 0..metrics.height {
                    for gx in 0..metrics.width {
                        let (px, py) = (x + metrics.xmin + small(gx), top + small(gy));
                        if px < 0 || py < 0 || px as usize >= box_w || py as usize >= box_h {
                            continue;
                        }
                        let a = u32::from(coverage[gy * metrics.width + gx]);
                        let dst = &mut out[py as usize * width + px as usize];
                        *dst = blend_white(*dst, a);
                    }
                }
                x += advance(metrics.advance_width);
            }
        }
    }
}

/// A position or size in the overlay (a few hundred pixels at most); saturating keeps
/// the bounds checks meaningful all the same.
fn small(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// A glyph's advance in whole pixels.
#[expect(
    clippy::cast_possible_truncation,
    reason = "float to int saturates; advances of a 14 px font are a few pixels"
)]
fn advance(width: f32) -> i32 {
    width.round() as i32
}

fn blend_white(dst: u32, a: u32) -> u32 {
    let mix = |shift: u32| {
        let d = (dst >> shift) & 0xff;
        ((d * (255 - a) + 255 * a) / 255) << shift
    };
    mix(16) | mix(8) | mix(0)
}
