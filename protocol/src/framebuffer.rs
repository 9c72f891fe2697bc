//! A 32-bit framebuffer: one `u32` per pixel as `0x00RRGGBB` (BGRX in memory).

use crate::geometry::{Rect, Size};

/// The red, green and blue bytes of a `0x00RRGGBB` pixel, in that order (as RGB images
/// store them).
pub fn rgb_bytes(pixel: u32) -> [u8; 3] {
    let [b, g, r, _] = pixel.to_le_bytes();
    [r, g, b]
}

/// Pixels of a desktop or of a client's copy of it, row-major, no padding.
#[derive(Clone, PartialEq, Eq)]
pub struct Framebuffer {
    size: Size,
    pixels: Vec<u32>,
}

impl std::fmt::Debug for Framebuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Framebuffer({}x{})", self.size.width, self.size.height)
    }
}

impl Framebuffer {
    /// A black framebuffer.
    pub fn new(size: Size) -> Self {
        Self {
            size,
            pixels: vec![0; size.pixel_count()],
        }
    }

    /// Wraps existing pixels; `None` when the length does not match the size.
    pub fn from_pixels(size: Size, pixels: Vec<u32>) -> Option<Self> {
        (pixels.len() as u64 == size.area()).then_some(Self { size, pixels })
    }

    pub fn size(&self) -> Size {
        self.size
    }

    pub fn width(&self) -> u32 {
        self.size.width
    }

    pub fn height(&self) -> u32 {
        self.size.height
    }

    pub fn pixels(&self) -> &[u32] {
        &self.pixels
    }

    pub fn pixels_mut(&mut self) -> &mut [u32] {
        &mut self.pixels
    }

    pub fn pixel(&self, x: u32, y: u32) -> u32 {
        self.pixels[(y * self.size.width + x) as usize]
    }

    pub fn set_pixel(&mut self, x: u32, y: u32, value: u32) {
        let w = self.size.width;
        self.pixels[(y * w + x) as usize] = value;
    }

    /// One row of `rect` (which must fit).
    pub fn row(&self, rect: &Rect, dy: u32) -> &[u32] {
        let start = ((rect.y + dy) * self.size.width + rect.x) as usize;
        &self.pixels[start..start + rect.width as usize]
    }

    pub fn row_mut(&mut self, rect: &Rect, dy: u32) -> &mut [u32] {
        let start = ((rect.y + dy) * self.size.width + rect.x) as usize;
        &mut self.pixels[start..start + rect.width as usize]
    }

    /// Fills `rect` (clipped to the framebuffer) with one colour.
    pub fn fill(&mut self, rect: &Rect, color: u32) {
        let r = rect.intersect(&self.size.full_rect());
        for dy in 0..r.height {
            self.row_mut(&r, dy).fill(color);
        }
    }

    /// Copies the pixels of `rect` out, row by row.
    pub fn read_rect(&self, rect: &Rect, out: &mut Vec<u32>) {
        out.clear();
        out.reserve(rect.pixel_count());
        for dy in 0..rect.height {
            out.extend_from_slice(self.row(rect, dy));
        }
    }

    /// Writes row-major `pixels` into `rect` (which must fit).
    pub fn write_rect(&mut self, rect: &Rect, pixels: &[u32]) {
        let w = rect.width as usize;
        for (dy, src) in (0..rect.height).zip(pixels.chunks_exact(w)) {
            self.row_mut(rect, dy).copy_from_slice(src);
        }
    }

    /// Copies `rect` from another framebuffer of the same size.
    pub fn copy_rect_from(&mut self, other: &Framebuffer, rect: &Rect) {
        for dy in 0..rect.height {
            self.row_mut(rect, dy).copy_from_slice(other.row(rect, dy));
        }
    }

    /// True when `rect` holds exactly `pixels` (row-major, the rect's size).
    pub fn rect_holds(&self, rect: &Rect, pixels: &[u32]) -> bool {
        let w = rect.width as usize;
        pixels.len() as u64 == rect.area()
            && (0..rect.height).all(|dy| self.row(rect, dy) == &pixels[dy as usize * w..][..w])
    }

    /// True when `rect` holds the same pixels in both framebuffers.
    pub fn rect_eq(&self, other: &Framebuffer, rect: &Rect) -> bool {
        (0..rect.height).all(|dy| self.row(rect, dy) == other.row(rect, dy))
    }
}
