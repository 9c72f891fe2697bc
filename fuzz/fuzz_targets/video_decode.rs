//! H.264 from the network: pictures into a region's decoder must give an error or a
//! picture of the region's size, never a crash or an out-of-bounds write. The input
//! corrupts a real stream (a keyframe and two P pictures from our encoder), so the
//! decoder gets past the parameter sets into slice decoding; raw input comes after.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oriel_media::{VideoDecoder, VideoEncoder, VideoEncoderConfig};
use oriel_protocol::Size;

const SIZE: Size = Size::new(64, 48);

fn clip() -> &'static Vec<Vec<u8>> {
    static CLIP: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CLIP.get_or_init(|| {
        let config = VideoEncoderConfig {
            bitrate: 1_000_000,
            max_fps: 30.0,
        };
        let mut enc = VideoEncoder::new(SIZE, config).expect("encoder");
        (0..3u32)
            .filter_map(|t| {
                let pixels: Vec<u32> = (0..64 * 48u32)
                    .map(|i| ((i % 64 + 3 * t) * 3) << 16 | ((i / 64 + t) * 5) << 8 | (i * 7 % 256))
                    .collect();
                enc.encode(&pixels, u64::from(t) * 33).expect("encode")
            })
            .map(|v| v.data)
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let mut decoder = VideoDecoder::new(SIZE).expect("valid size");
    let mut out = vec![0u32; 64 * 48];
    let (mask, raw) = data.split_at(data.len() / 2);
    for picture in clip() {
        let mut corrupted = picture.clone();
        // Keep the start code; flip bits elsewhere as the input says.
        for (i, m) in mask.iter().enumerate() {
            let at = 4 + (i * 7919) % corrupted.len().saturating_sub(4).max(1);
            if let Some(b) = corrupted.get_mut(at) {
                *b ^= m;
            }
        }
        let _ = decoder.decode(&corrupted, &mut out, 64);
    }
    for chunk in raw.chunks(512) {
        let _ = decoder.decode(chunk, &mut out, 64);
    }
});
