//! Video frames that say which they are. The `video-window` clip carries its frame
//! number in a black strip at its top left: ten blocks, white for a set bit (bit 0
//! first). Reading it off the desktop's screen and off the viewer's window tells which
//! frame each shows, so every frame the viewer presented is scored against the frame the
//! desktop's screen showed with the same number (luma PSNR), and the viewer's lag is
//! the desktop's newest frame number minus the one shown.

use std::collections::HashMap;

use oriel::percentile;
use oriel_media::{luma, luma_psnr};
use oriel_protocol::Rect;
use serde_json::json;

/// Frames in the clip (20 s at 30 fps); it loops, so numbers wrap here.
pub(crate) const CLIP_FRAMES: u32 = 600;
const BITS: u32 = 10;
const BLOCK_PITCH: u32 = 32;
/// The strip: where the number is read, at the clip's top left.
pub(crate) const STRIP: Rect = Rect::new(0, 0, BITS * BLOCK_PITCH + 32, 24);
/// Desktop frames kept for scoring (the viewer shows a frame at most this far behind).
const KEPT: u32 = 120;

/// The ffmpeg filters that draw the strip on each frame (`n` is the frame number).
pub(crate) fn strip_filters() -> String {
    let mut f = format!(
        "drawbox=x=0:y=0:w={}:h={}:color=black:t=fill",
        STRIP.width, STRIP.height
    );
    for bit in 0..BITS {
        f.push_str(&format!(
            ",drawbox=x={}:y=4:w=24:h=16:color=white:t=fill:enable='gt(bitand(n\\,{})\\,0)'",
            bit * BLOCK_PITCH + 8,
            1u32 << bit
        ));
    }
    f
}

/// The frame number in `pixels` (rows of `width` 0x00RRGGBB pixels whose top left is
/// the clip's), or `None` when no strip is there (not yet playing, or torn).
pub(crate) fn read_number(pixels: &[u32], width: usize) -> Option<u32> {
    let mean = |x0: u32, y0: u32, w: u32, h: u32| {
        let mut sum = 0u32;
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                sum += u32::from(luma(*pixels.get(y as usize * width + x as usize)?));
            }
        }
        Some(sum / (w * h))
    };
    let mut number = 0;
    for bit in 0..BITS {
        let x = bit * BLOCK_PITCH;
        // The gap before each block is black, or this is not the strip.
        if mean(x + 1, 6, 4, 12)? > 64 {
            return None;
        }
        match mean(x + 12, 8, 16, 8)? {
            0..=63 => {}
            192.. => number |= 1 << bit,
            _ => return None, // neither: a blend of two frames
        }
    }
    (number < CLIP_FRAMES).then_some(number)
}

/// Frames seen on the desktop's screen and in the viewer's window, by number.
#[derive(Default)]
pub(crate) struct FrameScores {
    desktop: HashMap<u32, Vec<u32>>,
    newest_on_desktop: Option<u32>,
    desktop_frames: u32,
    shown_frames: u32,
    last_shown: Option<u32>,
    psnr_db: Vec<f64>,
    lag_frames: Vec<u32>,
    unscored: u32,
}

impl FrameScores {
    /// The desktop's screen shows frame `number` (`pixels` of the clip's rect).
    pub(crate) fn on_desktop(&mut self, number: u32, pixels: Vec<u32>) {
        if self.newest_on_desktop == Some(number) {
            return;
        }
        self.desktop_frames += 1;
        self.newest_on_desktop = Some(number);
        self.desktop.insert(number, pixels);
        let oldest = (number + CLIP_FRAMES - KEPT) % CLIP_FRAMES;
        self.desktop.remove(&oldest);
    }

    /// The viewer shows frame `number` (`pixels` of the same rect in its window).
    pub(crate) fn shown(&mut self, number: u32, pixels: &[u32]) {
        if self.last_shown == Some(number) {
            return;
        }
        self.last_shown = Some(number);
        self.shown_frames += 1;
        match self.desktop.get(&number) {
            Some(truth) if truth.len() == pixels.len() => {
                self.psnr_db.push(luma_psnr(truth, pixels))
            }
            _ => self.unscored += 1,
        }
        if let Some(newest) = self.newest_on_desktop {
            let lag = (newest + CLIP_FRAMES - number) % CLIP_FRAMES;
            self.lag_frames.push(lag);
        }
    }

    pub(crate) fn figures(&self) -> serde_json::Value {
        json!({
            // Frames whose number was read, on each screen (sampling may miss some).
            "numbered_desktop_frames": self.desktop_frames,
            "numbered_shown_frames": self.shown_frames,
            "shown_psnr_db_p10": nearest_rank(&self.psnr_db, 0.1),
            "shown_psnr_db_p50": nearest_rank(&self.psnr_db, 0.5),
            "shown_frames_scored": self.psnr_db.len(),
            "shown_frames_unscored": self.unscored,
            "lag_frames_p50": percentile(&self.lag_frames, 0.5),
            "lag_frames_p90": percentile(&self.lag_frames, 0.9),
        })
    }
}

/// The value at quantile `q` (0..=1) of `samples`, nearest rank; 0 when empty.
fn nearest_rank(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "float to int saturates; the rank is clamped right after"
    )]
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strip as the filters draw it, `width` pixels wide.
    fn strip(number: u32, width: usize) -> Vec<u32> {
        let mut pixels = vec![0x808080; width * STRIP.height as usize];
        for y in 0..STRIP.height {
            for x in 0..STRIP.width {
                let bit = x / BLOCK_PITCH;
                let in_block = x % BLOCK_PITCH >= 8 && (4..20).contains(&y);
                let on = bit < BITS && number & (1 << bit) != 0 && in_block;
                pixels[y as usize * width + x as usize] = if on { 0xffffff } else { 0 };
            }
        }
        pixels
    }

    #[test]
    fn numbers_read_back_and_anything_else_is_none() {
        for n in [0, 1, 37, 512, 599] {
            assert_eq!(read_number(&strip(n, 400), 400), Some(n));
        }
        assert_eq!(read_number(&strip(700, 400), 400), None, "past the clip");
        assert_eq!(
            read_number(&vec![0x808080; 400 * 24], 400),
            None,
            "no strip"
        );
        assert_eq!(
            read_number(&strip(3, 400)[..400 * 10], 400),
            None,
            "cut short"
        );
    }

    #[test]
    fn shown_frames_are_scored_against_the_desktops_and_lag_wraps() {
        let mut scores = FrameScores::default();
        scores.on_desktop(598, vec![0x101010; 4]);
        scores.on_desktop(599, vec![0x202020; 4]);
        scores.on_desktop(0, vec![0x303030; 4]);
        scores.shown(598, &[0x101010; 4]);
        scores.shown(599, &[0x202021; 4]);
        // Never seen on the desktop (sampling missed it): shown, not scored.
        scores.shown(597, &[0; 4]);
        let f = scores.figures();
        assert_eq!(f["shown_frames_scored"], 2);
        assert_eq!(f["shown_frames_unscored"], 1);
        assert_eq!(f["numbered_shown_frames"], 3);
        // Lags 2, 1 (599 is one behind 0: the clip looped) and 3.
        assert_eq!(f["lag_frames_p50"], 2);
        assert_eq!(f["lag_frames_p90"], 3);
    }
}
