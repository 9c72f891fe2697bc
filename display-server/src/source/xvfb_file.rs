//! Capture straight from Xvfb's screen memory. Started with `-fbdir DIR`, Xvfb keeps its
//! framebuffer in a memory-mapped file (`DIR/Xvfb_screen0`, in xwd format) that we map
//! too: a capture is then a copy out of shared memory, with no request, no reply and no
//! copy made by the X server (ShmGetImage had Xvfb copy every damaged pixel once more,
//! more than doubling its CPU on a scrolling terminal).
//!
//! The X server keeps drawing while we read. That is safe for the picture: damage is
//! repaired (DamageSubtract) before the read, so whatever is drawn during it is
//! reported again and read at the next capture.

use std::path::Path;

use oriel_protocol::{Rect, Size};

use super::x11_error::X11Error;

/// The xwd file header: 25 big-endian 32-bit fields.
const HEADER_BYTES: usize = 100;
/// One colormap entry after the header (pixel, r, g, b, flags, pad).
const XWD_COLOR_BYTES: usize = 12;
const XWD_FILE_VERSION: u32 = 7;
const Z_PIXMAP: u32 = 2;
const LSB_FIRST: u32 = 0;
const TRUE_COLOR: u32 = 4;

/// The pixel layout the header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub size: Size,
    /// Where the first row starts in the file.
    pub offset: usize,
    pub bytes_per_line: usize,
}

/// Reads and checks the header of an xwd file: 32-bit little-endian true colour of
/// `expected` size, rows inside the `file_len` bytes.
pub(super) fn parse_header(head: &[u8], file_len: usize, expected: Size) -> Result<Layout, String> {
    if head.len() < HEADER_BYTES {
        return Err(format!("{} bytes, shorter than an xwd header", head.len()));
    }
    let field = |i: usize| {
        u32::from_be_bytes([
            head[i * 4],
            head[i * 4 + 1],
            head[i * 4 + 2],
            head[i * 4 + 3],
        ])
    };
    let (header_size, version, format, depth) = (field(0), field(1), field(2), field(3));
    let (width, height, byte_order, bits_per_pixel) = (field(4), field(5), field(7), field(11));
    let (bytes_per_line, visual_class, ncolors) = (field(12), field(13), field(19));
    let masks = (field(14), field(15), field(16));
    if version != XWD_FILE_VERSION || format != Z_PIXMAP {
        return Err(format!(
            "xwd version {version}, format {format}: not a ZPixmap v7 file"
        ));
    }
    if depth != 24 || bits_per_pixel != 32 || byte_order != LSB_FIRST || visual_class != TRUE_COLOR
    {
        return Err(format!(
            "depth {depth}, {bits_per_pixel} bits per pixel, byte order {byte_order}, visual \
             class {visual_class}: only 24-bit true colour in 32-bit little-endian pixels"
        ));
    }
    if masks != (0x00ff_0000, 0x0000_ff00, 0x0000_00ff) {
        return Err(format!("colour masks {masks:x?} are not 0x00RRGGBB"));
    }
    let size = Size::new(width, height);
    if size != expected {
        return Err(format!(
            "{width}x{height}, but the screen is {}x{}",
            expected.width, expected.height
        ));
    }
    let bytes_per_line = bytes_per_line as usize;
    if bytes_per_line < width as usize * 4 || (header_size as usize) < HEADER_BYTES {
        return Err(format!(
            "row stride {bytes_per_line} or header size {header_size} too small"
        ));
    }
    let offset = (header_size as usize)
        .checked_add(
            (ncolors as usize)
                .checked_mul(XWD_COLOR_BYTES)
                .ok_or("colour count")?,
        )
        .ok_or("header size")?;
    let end = (height as usize)
        .checked_mul(bytes_per_line)
        .and_then(|rows| rows.checked_add(offset))
        .ok_or("image size")?;
    if size.area() == 0 || end > file_len {
        return Err(format!(
            "the image needs {end} bytes, the file has {file_len}"
        ));
    }
    Ok(Layout {
        size,
        offset,
        bytes_per_line,
    })
}

/// Xvfb's screen, mapped read-only.
pub(super) struct XvfbFramebuffer {
    map: memmap2::Mmap,
    layout: Layout,
}

impl XvfbFramebuffer {
    /// Maps `path` (Xvfb's `Xvfb_screen0`) and checks it holds a `size` screen.
    pub(super) fn open(path: &Path, size: Size) -> Result<Self, X11Error> {
        let fail = |why: String| X11Error::Request(format!("{}: {why}", path.display()));
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        // SAFETY: the file is Xvfb's screen in a directory only this user can enter; it
        // changes while mapped (that is the point) but never shrinks: Xvfb sizes it once.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| fail(e.to_string()))?;
        let layout = parse_header(&map, map.len(), size).map_err(fail)?;
        Ok(Self { map, layout })
    }

    pub(super) fn size(&self) -> Size {
        self.layout.size
    }

    /// The screen's pixels from `rect`'s top left on, and the bytes from one row to the
    /// next.
    pub(super) fn rows(&self, rect: &Rect) -> Result<(&[u8], usize), X11Error> {
        let full = self.layout.size.full_rect();
        if rect.intersect(&full) != *rect {
            return Err(X11Error::Request(format!(
                "{rect:?} is outside the {}x{} Xvfb screen",
                full.width, full.height
            )));
        }
        let start =
            self.layout.offset + rect.y as usize * self.layout.bytes_per_line + rect.x as usize * 4;
        Ok((&self.map[start..], self.layout.bytes_per_line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An xwd header as Xvfb writes it for a `w`x`h` screen (256 colormap entries).
    fn header(w: u32, h: u32) -> Vec<u8> {
        let fields: [u32; 25] = [
            160,
            7,
            2,
            24,
            w,
            h,
            0,
            0,
            32,
            0,
            32,
            32,
            w * 4,
            4,
            0xff0000,
            0xff00,
            0xff,
            8,
            256,
            256,
            w,
            h,
            0,
            0,
            0,
        ];
        fields.iter().flat_map(|f| f.to_be_bytes()).collect()
    }

    #[test]
    fn xvfbs_header_gives_the_rows_after_the_colormap() {
        let size = Size::new(1920, 1080);
        let len = 160 + 256 * 12 + 1920 * 4 * 1080;
        let layout = parse_header(&header(1920, 1080), len, size).unwrap();
        assert_eq!(layout.offset, 160 + 256 * 12);
        assert_eq!(layout.bytes_per_line, 1920 * 4);
    }

    #[test]
    fn a_header_that_does_not_fit_is_refused() {
        let size = Size::new(64, 32);
        let len = 160 + 256 * 12 + 64 * 4 * 32;
        assert!(
            parse_header(&header(64, 32), len - 1, size).is_err(),
            "short file"
        );
        assert!(
            parse_header(&header(64, 32), len, Size::new(64, 33)).is_err(),
            "size"
        );
        assert!(
            parse_header(&header(64, 32)[..99], len, size).is_err(),
            "short header"
        );
        let mut wide = header(64, 32);
        wide[48..52].copy_from_slice(&u32::MAX.to_be_bytes()); // bytes_per_line
        assert!(
            parse_header(&wide, len, size).is_err(),
            "stride past the file"
        );
        let mut colors = header(64, 32);
        colors[76..80].copy_from_slice(&u32::MAX.to_be_bytes()); // ncolors
        assert!(
            parse_header(&colors, len, size).is_err(),
            "colormap past the file"
        );
        let mut depth = header(64, 32);
        depth[44..48].copy_from_slice(&16u32.to_be_bytes()); // bits_per_pixel
        assert!(
            parse_header(&depth, len, size).is_err(),
            "16 bits per pixel"
        );
    }
}
