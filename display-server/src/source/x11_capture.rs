//! How the X11 source reads screen pixels, cheapest first: out of Xvfb's own mapped
//! framebuffer file (a server we started), through MIT-SHM (a local server), or with
//! GetImage over the socket (a remote one, or when the others are refused).

use std::path::Path;

use oriel_protocol::{Framebuffer, Rect, Size, TILE};
use x11rb::protocol::xproto::{self, ConnectionExt as _, ImageFormat};
use x11rb::rust_connection::RustConnection;

use super::x11_error::{request, x11_rect, X11Error};
use super::x11_shm::ShmSegment;
use super::xvfb_file::XvfbFramebuffer;

pub(super) enum Capture {
    XvfbFile(XvfbFramebuffer),
    Shm(ShmSegment),
    GetImage,
}

impl Capture {
    /// The cheapest way to read a `size` screen: Xvfb's framebuffer file if there is one
    /// (and it holds that screen), else MIT-SHM if the server shares memory, else GetImage.
    pub(super) fn choose(
        conn: &RustConnection,
        size: Size,
        xvfb_file: Option<&Path>,
    ) -> Result<Self, X11Error> {
        if let Some(path) = xvfb_file {
            match XvfbFramebuffer::open(path, size) {
                Ok(file) => return Ok(Self::XvfbFile(file)),
                Err(e) => tracing::warn!("cannot read Xvfb's screen from its file ({e})"),
            }
        }
        Self::shared_or_get_image(conn, size)
    }

    /// MIT-SHM with a segment for a `size` screen, or GetImage.
    pub(super) fn shared_or_get_image(conn: &RustConnection, size: Size) -> Result<Self, X11Error> {
        Ok(
            match ShmSegment::attach(conn, size.pixel_count().saturating_mul(4))? {
                Some(segment) => Self::Shm(segment),
                None => Self::GetImage,
            },
        )
    }

    /// What figures and logs call it.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::XvfbFile(_) => "Xvfb framebuffer file",
            Self::Shm(_) => "MIT-SHM",
            Self::GetImage => "GetImage",
        }
    }

    /// Whether it still fits a screen of `size` (a file or segment sized for a smaller
    /// one does not).
    pub(super) fn fits(&self, size: Size) -> bool {
        match self {
            Self::XvfbFile(file) => file.size() == size,
            Self::Shm(segment) => segment.len() >= size.pixel_count().saturating_mul(4),
            Self::GetImage => true,
        }
    }

    /// Lets go of what the X server shares with us (before choosing again).
    pub(super) fn release(&self, conn: &RustConnection) {
        if let Self::Shm(segment) = self {
            segment.detach(conn);
        }
    }

    /// Copies `rect` of `root` into the same place of `screen` and returns the parts
    /// that changed there, as pieces of the screen's tiles.
    pub(super) fn fetch(
        &self,
        conn: &RustConnection,
        root: xproto::Window,
        rect: &Rect,
        screen: &mut Framebuffer,
    ) -> Result<Vec<Rect>, X11Error> {
        let owned;
        let (data, stride) = match self {
            Self::XvfbFile(file) => file.rows(rect)?,
            Self::Shm(segment) => checked(segment.get_image(conn, root, rect)?, rect)?,
            Self::GetImage => {
                let (x, y, width, height) = x11_rect(rect)?;
                let reply = conn
                    .get_image(ImageFormat::Z_PIXMAP, root, x, y, width, height, !0)
                    .map_err(request)?
                    .reply()
                    .map_err(request)?;
                owned = reply.data;
                checked((owned.as_slice(), reply.depth), rect)?
            }
        };
        Ok(copy_changed(data, stride, rect, screen))
    }
}

/// An image the X server wrote: packed rows of `rect`, if its depth is one we read.
fn checked<'a>((data, depth): (&'a [u8], u8), rect: &Rect) -> Result<(&'a [u8], usize), X11Error> {
    if depth != 24 && depth != 32 {
        return Err(X11Error::Request(format!(
            "screen depth {depth} is not supported (24 or 32 bits only)"
        )));
    }
    if data.len() < rect.pixel_count().saturating_mul(4) {
        return Err(X11Error::Request("short GetImage reply".into()));
    }
    Ok((data, rect.width as usize * 4))
}

/// Copies `rect` from `data` (rows of 32-bit little-endian X pixels, `stride` bytes
/// apart, the first at `rect`'s top left) into `screen`, and returns the pieces of
/// screen tiles whose pixels changed, runs of neighbours in a tile row merged. The
/// comparison rides on the copy (the pixels are in registers anyway), so what follows
/// (each session's copy, the encoder's diff) sees only what changed: a scrolling
/// terminal damages its whole window, though the blank part of each line stays.
fn copy_changed(data: &[u8], stride: usize, rect: &Rect, screen: &mut Framebuffer) -> Vec<Rect> {
    if rect.is_empty() {
        return Vec::new();
    }
    // Inside the screen, so this fits.
    let rect_right = rect.x + rect.width;
    // The rect's columns in each tile column it crosses, screen coordinates.
    let spans: Vec<(u32, u32)> = (rect.x / TILE..=(rect_right - 1) / TILE)
        .map(|col| ((col * TILE).max(rect.x), ((col + 1) * TILE).min(rect_right)))
        .collect();
    let mut changed = Vec::new();
    let mut span_changed = vec![false; spans.len()];
    let mut band_top = rect.y;
    for dy in 0..rect.height {
        let y = rect.y + dy;
        let src = &data[dy as usize * stride..][..rect.width as usize * 4];
        let dst = screen.row_mut(rect, dy);
        for (flag, &(left, right)) in span_changed.iter_mut().zip(&spans) {
            let (l, r) = ((left - rect.x) as usize, (right - rect.x) as usize);
            *flag |= copy_pixels_changed(&src[l * 4..r * 4], &mut dst[l..r]);
        }
        // At the end of a tile row (or of the rect), its changed tiles become rects.
        if (y + 1).is_multiple_of(TILE) || dy + 1 == rect.height {
            let mut i = 0;
            while i < spans.len() {
                if !span_changed[i] {
                    i += 1;
                    continue;
                }
                let left = spans[i].0;
                while i < spans.len() && span_changed[i] {
                    i += 1;
                }
                let right = spans[i - 1].1;
                changed.push(Rect::new(left, band_top, right - left, y + 1 - band_top));
            }
            span_changed.fill(false);
            band_top = y + 1;
        }
    }
    changed
}

/// Little-endian 32-bit X pixels into framebuffer pixels, the unused top byte cleared;
/// true when any differed from what was there.
fn copy_pixels_changed(src: &[u8], dst: &mut [u32]) -> bool {
    // SAFETY: any 4 bytes are a valid u32; the rest goes through the byte path.
    let (head, words, tail) = unsafe { src.align_to::<u32>() };
    if head.is_empty() && tail.is_empty() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { copy_words_changed_avx2(words, dst) };
        }
        return copy_words_changed(words, dst);
    }
    let mut diff = 0u32;
    for (px, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
        let value = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x00ff_ffff;
        diff |= *px ^ value;
        *px = value;
    }
    diff != 0
}

/// [`copy_pixels_changed`] on aligned words. Compared first and written only from the
/// first difference on: most of a damaged area is often unchanged (the blank part of
/// a scrolled terminal), and reading it is cheaper than writing it back. Both loops
/// are written so the compiler turns them into vector code.
#[inline(always)]
fn copy_words_changed(src: &[u32], dst: &mut [u32]) -> bool {
    const MASK: u32 = 0x00ff_ffff;
    const STEP: usize = 16;
    let first_difference = src.chunks(STEP).zip(dst.chunks(STEP)).position(|(s, d)| {
        let diff = s
            .iter()
            .zip(d)
            .fold(0, |acc, (&w, &p)| acc | ((u32::from_le(w) & MASK) ^ p));
        diff != 0
    });
    let Some(chunk) = first_difference else {
        return false;
    };
    let from = chunk * STEP;
    for (px, &word) in dst[from..].iter_mut().zip(&src[from..]) {
        *px = u32::from_le(word) & MASK;
    }
    true
}

/// The same, compiled for AVX2 (eight pixels a step instead of SSE2's four).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn copy_words_changed_avx2(src: &[u32], dst: &mut [u32]) -> bool {
    copy_words_changed(src, dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `screen`'s pixels of `rect` as X would send them (alpha set, to be cleared).
    fn x_image(screen: &Framebuffer, rect: &Rect) -> Vec<u8> {
        (0..rect.height)
            .flat_map(|dy| screen.row(rect, dy).to_vec())
            .flat_map(|p| (p | 0xff00_0000).to_le_bytes())
            .collect()
    }

    #[test]
    fn only_the_tiles_that_changed_come_back_merged_along_rows() {
        let size = Size::new(300, 200);
        let mut ours = Framebuffer::new(size);
        let mut theirs = Framebuffer::new(size);
        // Changes in tiles (0,0), (1,0) (neighbours) and (3,2); none elsewhere.
        theirs.fill(&Rect::new(10, 10, 80, 5), 0x123456);
        theirs.fill(&Rect::new(200, 150, 1, 1), 0x000001);
        let rect = Rect::new(5, 3, 290, 190);
        let changed = copy_changed(&x_image(&theirs, &rect), 290 * 4, &rect, &mut ours);
        assert_eq!(
            changed,
            vec![Rect::new(5, 3, 123, 61), Rect::new(192, 128, 64, 64)]
        );
        assert_eq!(ours, theirs, "copied whole, alpha cleared");
        // The same pixels again: nothing changed.
        let again = copy_changed(&x_image(&theirs, &rect), 290 * 4, &rect, &mut ours);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_stride_wider_than_the_rect_is_followed() {
        let size = Size::new(64, 4);
        let mut theirs = Framebuffer::new(size);
        theirs.fill(&Rect::new(0, 3, 1, 1), 0xabcdef);
        let full = size.full_rect();
        let image = x_image(&theirs, &full);
        let rect = Rect::new(0, 2, 2, 2);
        let mut ours = Framebuffer::new(size);
        let changed = copy_changed(&image[2 * 64 * 4..], 64 * 4, &rect, &mut ours);
        assert_eq!(changed, vec![rect]);
        assert_eq!(ours.row(&rect, 1)[0], 0xabcdef);
    }
}
