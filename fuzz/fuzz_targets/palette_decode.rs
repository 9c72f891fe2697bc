//! Palette/RLE decoding of arbitrary bytes into a rect of arbitrary size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oriel_protocol::codec::palette;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let pixels = usize::from(u16::from_le_bytes([data[0], data[1]])) % 8192;
    let mut out = vec![0u32; pixels];
    let _ = palette::decode(&data[2..], &mut out);
});
