//! Camera-like video: drifting colour gradients, a diagonal ripple, soft-edged moving
//! blobs and per-frame film grain, so every pixel changes every tick and no frame repeats.
//! All integer maths with lookup tables; one row at a time in three channel buffers.

use std::f64::consts::TAU;

use oriel_protocol::Rect;

use super::canvas::Canvas;
use super::chrome::draw_window;
use super::font::TextRenderer;
use super::num::{low_u32, to_i32};
use super::rng::{mix64, SplitMix64};

/// Sine table: 1024 steps per turn, amplitude 4096 (12-bit fixed point).
const SINE_STEPS: usize = 1024;
const SINE_ONE: i32 = 4096;
/// Soft blob edge: weight 0..=256 indexed by (distance / radius)^2 in 1/256 steps.
const FALLOFF_STEPS: usize = 256;
const BLOB_COUNT: usize = 6;
/// Film grain (-4..=3, a camera's sensor noise): each row of each frame reads a row-wide window of a random table at a
/// pseudo-random offset below this (the table is this plus one row long).
const GRAIN_LEN: usize = 1 << 14;

struct Blob {
    color: [i32; 3],
    radius: i32,
    /// Phase speeds (fixed-point turns per tick, 2^32 = one turn) and start phases.
    speed: (u32, u32),
    phase: (u32, u32),
}

pub(crate) struct VideoPanel {
    frame: Rect,
    title: String,
    region: Rect,
    sine: Vec<i32>,
    falloff: Vec<i32>,
    blobs: Vec<Blob>,
    /// Per-tick column terms and one row of RGB accumulators, reused across ticks.
    columns: Vec<[i32; 3]>,
    pixels: Vec<[i32; 3]>,
    grain: Vec<i32>,
    seed: u64,
}

impl VideoPanel {
    /// A video playing in the client area of the window `frame` (the region must fit).
    pub(crate) fn new(frame: Rect, region: Rect, title: &str, seed: u64) -> Self {
        let sine = (0..SINE_STEPS)
            .map(|i| to_i32((TAU * i as f64 / SINE_STEPS as f64).sin() * f64::from(SINE_ONE)))
            .collect();
        let falloff = (0..FALLOFF_STEPS)
            .map(|i| {
                let s = 1.0 - i as f64 / FALLOFF_STEPS as f64;
                to_i32(s * s * 230.0) // (1 - d^2/r^2)^2 fades to zero slope at the edge
            })
            .collect();
        let mut rng = SplitMix64::new(seed);
        const PALETTE: [[i32; 3]; BLOB_COUNT] = [
            [236, 180, 140],
            [80, 170, 90],
            [90, 150, 235],
            [245, 140, 50],
            [170, 90, 200],
            [240, 230, 200],
        ];
        let base_radius = region.height.min(region.width).max(8) as i32;
        let blobs = PALETTE
            .iter()
            .map(|&color| Blob {
                color,
                radius: base_radius * (10 + rng.below_u32(14) as i32) / 100 + 2,
                speed: (
                    4_000_000 + rng.below_u32(14_000_000),
                    3_000_000 + rng.below_u32(11_000_000),
                ),
                phase: (rng.next_u32(), rng.next_u32()),
            })
            .collect();
        let width = region.width as usize;
        Self {
            frame,
            title: title.to_owned(),
            region,
            sine,
            falloff,
            blobs,
            columns: vec![[0; 3]; width],
            pixels: vec![[0; 3]; width],
            grain: (0..GRAIN_LEN + width)
                .map(|_| (rng.next_u64() >> 61) as i32 - 4)
                .collect(),
            seed,
        }
    }

    pub(crate) fn title(&self) -> &str {
        &self.title
    }

    /// The picture's screen rectangle, for tests.
    #[cfg(test)]
    pub(crate) fn region(&self) -> Rect {
        self.region
    }

    pub(crate) fn draw(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer) {
        draw_window(canvas, font, self.frame, &self.title, false);
        self.render(canvas, 0);
    }

    pub(crate) fn tick(&mut self, canvas: &mut Canvas<'_>, tick: u64) {
        self.render(canvas, tick);
    }

    fn sin(&self, phase: u32) -> i32 {
        sin(&self.sine, phase)
    }

    /// Renders frame `tick` into the region.
    fn render(&mut self, canvas: &mut Canvas<'_>, tick: u64) {
        let (w, h) = (self.region.width, self.region.height);
        if w == 0 || h == 0 {
            return;
        }
        let t = low_u32(tick);
        self.fill_column_terms(t);
        let centers = self.blob_centers(t);
        let row_terms = RowTerms::new(w, h, t);
        let Self {
            region,
            sine,
            falloff,
            blobs,
            columns,
            pixels,
            grain,
            seed,
            ..
        } = self;
        let frame_seed = mix64(*seed ^ u64::from(t).rotate_left(32));
        canvas.paint_rows(*region, |y, row| {
            let pixels = &mut pixels[..row.len()];
            row_terms.base(sine, y, columns, pixels);
            for (blob, &center) in blobs.iter().zip(&centers) {
                blob.paint_row(falloff, center, y as i32, pixels);
            }
            // Below GRAIN_LEN, so it converts back.
            let offset =
                usize::try_from(mix64(frame_seed ^ u64::from(y)) % GRAIN_LEN as u64).unwrap_or(0);
            add_grain(&grain[offset..offset + row.len()], pixels, row);
        });
    }

    /// Column terms of the drifting gradient for tick `t`.
    fn fill_column_terms(&mut self, t: u32) {
        let kx = turns_per_pixel(13, 10, self.region.width);
        let phases = [
            t.wrapping_mul(11_000_000),
            0x2000_0000u32.wrapping_sub(t.wrapping_mul(8_000_000)),
            0x6000_0000u32.wrapping_add(t.wrapping_mul(6_000_000)),
        ];
        const AMPLITUDES: [i32; 3] = [45, 40, 50];
        for (x, column) in (0u32..).zip(self.columns.iter_mut()) {
            let xx = x.wrapping_mul(kx);
            for c in 0..3 {
                let s = self.sine[(xx.wrapping_add(phases[c]) >> 22) as usize];
                column[c] = s * AMPLITUDES[c] / SINE_ONE;
            }
        }
    }

    /// Blob centres (region coordinates) at tick `t`: each on its own Lissajous orbit.
    fn blob_centers(&self, t: u32) -> Vec<(i32, i32)> {
        let (w, h) = (self.region.width as i32, self.region.height as i32);
        self.blobs
            .iter()
            .map(|blob| {
                let px = blob.phase.0.wrapping_add(t.wrapping_mul(blob.speed.0));
                let py = blob.phase.1.wrapping_add(t.wrapping_mul(blob.speed.1));
                let cx = w / 2 + (w * 9 / 20) * self.sin(px) / SINE_ONE;
                let cy = h / 2 + (h * 9 / 20) * self.sin(py) / SINE_ONE;
                (cx, cy)
            })
            .collect()
    }
}

/// Fixed-point phase step per pixel for `num / den` turns across `pixels`.
/// Phases count turns modulo 2^32, so a step of more than a turn keeps its low bits.
fn turns_per_pixel(num: u64, den: u64, pixels: u32) -> u32 {
    low_u32((1u64 << 32) * num / den / u64::from(pixels.max(1)))
}

fn sin(table: &[i32], phase: u32) -> i32 {
    table[(phase >> 22) as usize]
}

/// Per-frame constants of the row-dependent terms.
struct RowTerms {
    ky: u32,
    ripple_kx: u32,
    ripple_ky: u32,
    t: u32,
}

impl RowTerms {
    fn new(width: u32, height: u32, t: u32) -> Self {
        Self {
            ky: turns_per_pixel(11, 10, height),
            ripple_kx: turns_per_pixel(7, 1, width),
            ripple_ky: turns_per_pixel(5, 1, height),
            t,
        }
    }

    /// Gradient (column term + row term) plus a diagonal ripple shared by all channels.
    fn base(&self, sine: &[i32], y: u32, columns: &[[i32; 3]], pixels: &mut [[i32; 3]]) {
        let (t, yy) = (self.t, y.wrapping_mul(self.ky));
        let row = [
            sin(sine, yy.wrapping_add(t.wrapping_mul(9_000_000))) * 40 / SINE_ONE,
            sin(
                sine,
                yy.wrapping_add(0x4000_0000)
                    .wrapping_sub(t.wrapping_mul(7_000_000)),
            ) * 35
                / SINE_ONE,
            sin(sine, yy.wrapping_add(t.wrapping_mul(5_000_000))) * 45 / SINE_ONE,
        ];
        let base = [110 + row[0], 105 + row[1], 115 + row[2]];
        let mut ripple = y
            .wrapping_mul(self.ripple_ky)
            .wrapping_sub(t.wrapping_mul(60_000_000));
        for (px, column) in pixels.iter_mut().zip(columns) {
            let texture = sin(sine, ripple) * 12 / SINE_ONE;
            ripple = ripple.wrapping_add(self.ripple_kx);
            *px = [
                base[0] + column[0] + texture,
                base[1] + column[1] + texture,
                base[2] + column[2] + texture,
            ];
        }
    }
}

impl Blob {
    /// Mixes the blob colour into row `y`, weighted by the soft falloff.
    fn paint_row(&self, falloff: &[i32], (cx, cy): (i32, i32), y: i32, pixels: &mut [[i32; 3]]) {
        let dy = y - cy;
        if dy.abs() >= self.radius {
            return;
        }
        let r2 = self.radius * self.radius;
        let half = to_i32(f64::from(r2 - dy * dy).sqrt());
        let len = i32::try_from(pixels.len()).unwrap_or(i32::MAX);
        let x0 = (cx - half).clamp(0, len);
        let x1 = (cx + half + 1).clamp(x0, len);
        // (d / r)^2 in 1/256 steps through a 16-bit fixed-point reciprocal.
        let inv = i64::from((256 << 16) / r2.max(1));
        for (dx, px) in (x0 - cx..).zip(pixels[x0 as usize..x1 as usize].iter_mut()) {
            let d2 = i64::from(dx * dx + dy * dy);
            let Some(&weight) = falloff.get(((d2 * inv) >> 16) as usize) else {
                continue;
            };
            for (channel, target) in px.iter_mut().zip(self.color) {
                *channel += ((target - *channel) * weight) >> 8;
            }
        }
    }
}

/// Adds luma film grain (one value per pixel, shared by the channels), then clamps and
/// packs the accumulators into `row`.
fn add_grain(grain: &[i32], pixels: &[[i32; 3]], row: &mut [u32]) {
    for ((out, px), &noise) in row.iter_mut().zip(pixels).zip(grain) {
        let [r, g, b] = px.map(|v| (v + noise).clamp(0, 255) as u32);
        *out = (r << 16) | (g << 8) | b;
    }
}
