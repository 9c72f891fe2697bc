//! The client's H.264 decoders, one per video region the session core started.

use std::collections::HashMap;

use oriel_media::VideoDecoder;
use oriel_protocol::session::client::PictureResult;
use oriel_protocol::Rect;

#[derive(Default)]
pub struct VideoDecoders {
    decoders: HashMap<u64, VideoDecoder>,
}

impl VideoDecoders {
    /// A region starts: its decoder, sized to its rect.
    pub fn start(&mut self, region: u64, rect: Rect) -> Result<(), String> {
        let decoder = VideoDecoder::new(rect.size()).map_err(|e| format!("video region: {e}"))?;
        self.decoders.insert(region, decoder);
        Ok(())
    }

    pub fn end(&mut self, region: u64) {
        self.decoders.remove(&region);
    }

    /// Decodes one picture of `region` into `target` (a framebuffer window of `stride`).
    pub fn decode(
        &mut self,
        region: u64,
        data: &[u8],
        target: &mut [u32],
        stride: usize,
    ) -> PictureResult {
        let Some(decoder) = self.decoders.get_mut(&region) else {
            return PictureResult::Skipped;
        };
        match decoder.decode(data, target, stride) {
            Ok(true) => PictureResult::Shown,
            Ok(false) => PictureResult::Skipped,
            Err(e) => {
                tracing::warn!(region, "video picture not decodable: {e}");
                PictureResult::Broken
            }
        }
    }
}
