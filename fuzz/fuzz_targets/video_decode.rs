//! H.264 from the network: arbitrary pictures into a region's decoder must give an error
//! or a picture of the region's size, never a crash or an out-of-bounds write.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oriel_media::VideoDecoder;
use oriel_protocol::Size;

fuzz_target!(|data: &[u8]| {
    let mut decoder = VideoDecoder::new(Size::new(64, 48)).expect("valid size");
    let mut out = vec![0u32; 64 * 48];
    // Split into several pictures so decoder state carries from one to the next.
    for chunk in data.chunks(512) {
        let _ = decoder.decode(chunk, &mut out);
    }
});
