//! Saves a framebuffer as PNG.

use std::path::Path;

use oriel_protocol::Framebuffer;

pub fn save_png(fb: &Framebuffer, path: &Path) -> anyhow::Result<()> {
    let rgb: Vec<u8> = fb
        .pixels()
        .iter()
        .flat_map(|&p| oriel_protocol::rgb_bytes(p))
        .collect();
    image::save_buffer(path, &rgb, fb.width(), fb.height(), image::ColorType::Rgb8)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Reads a PNG back into a framebuffer (used to compare screenshots with ground truth).
pub fn load_png(path: &Path) -> anyhow::Result<Framebuffer> {
    let img = image::open(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
        .to_rgb8();
    let size = oriel_protocol::Size::new(img.width(), img.height());
    let pixels = img
        .pixels()
        .map(|p| (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2]))
        .collect();
    Framebuffer::from_pixels(size, pixels).ok_or_else(|| anyhow::anyhow!("bad image size"))
}
