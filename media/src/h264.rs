//! One H.264 encoder per video region (server) and one decoder per region (client),
//! wrapping openh264 with reused YUV buffers and runtime bitrate changes.

use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, RateControlMode, UsageType,
    VuiConfig,
};
use openh264::formats::{YUVSlices, YUVSource};
use openh264::{OpenH264API, Timestamp};
use oriel_protocol::Size;

use crate::yuv::{to_rgb, I420};
use crate::MediaError;

/// openh264's largest picture.
const MAX_EDGE: u32 = 3840;
const MAX_SHORT_EDGE: u32 = 2160;
/// Bitrates the encoder accepts, bits per second.
pub(crate) const MIN_BITRATE: u32 = 100_000;
pub(crate) const MAX_BITRATE: u32 = 100_000_000;

#[derive(Debug, Clone, Copy)]
pub struct VideoEncoderConfig {
    /// Target bits per second; rate control raises the quantiser to keep to it.
    pub bitrate: u32,
    /// Highest frame rate the source produces.
    pub max_fps: f32,
}

/// One encoded picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedVideo {
    /// Annex B NAL units (start codes included); keyframes carry SPS and PPS.
    pub data: Vec<u8>,
    pub keyframe: bool,
}

fn check_size(size: Size) -> Result<(), MediaError> {
    let err = |reason| MediaError::Size {
        width: size.width,
        height: size.height,
        reason,
    };
    if size.width < 16 || size.height < 16 {
        return Err(err("smaller than 16x16"));
    }
    if !size.width.is_multiple_of(2) || !size.height.is_multiple_of(2) {
        return Err(err("4:2:0 needs even edges"));
    }
    let (long, short) = (size.width.max(size.height), size.width.min(size.height));
    if long > MAX_EDGE || short > MAX_SHORT_EDGE {
        return Err(err("larger than 3840x2160"));
    }
    Ok(())
}

fn codec_err(e: openh264::Error) -> MediaError {
    MediaError::Codec(e.to_string())
}

pub struct VideoEncoder {
    encoder: Encoder,
    size: Size,
    picture: I420,
    bitrate: u32,
}

impl VideoEncoder {
    pub fn new(size: Size, config: VideoEncoderConfig) -> Result<Self, MediaError> {
        check_size(size)?;
        let bitrate = config.bitrate.clamp(MIN_BITRATE, MAX_BITRATE);
        let codec_config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(bitrate))
            .max_frame_rate(FrameRate::from_hz(config.max_fps.max(1.0)))
            // Rate control holds the bitrate by quality, never by dropping pictures: at a
            // bitrate below what the content needs at its best, openh264 skipping showed a
            // 30 fps clip at 6 fps behind 5 Mbit/s; blurrier pictures at the full rate are
            // what a viewer prefers (and what SPICE's MJPEG does).
            .skip_frames(false)
            .complexity(Complexity::Medium)
            .adaptive_quantization(false)
            // One thread per region: a host serves many sessions, and slices cost bits.
            .num_threads(1)
            .vui(VuiConfig::bt601().full_range(true));
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), codec_config)
            .map_err(codec_err)?;
        Ok(Self {
            encoder,
            size,
            picture: I420::default(),
            bitrate,
        })
    }

    pub fn size(&self) -> Size {
        self.size
    }

    pub fn bitrate(&self) -> u32 {
        self.bitrate
    }

    /// Changes the target bitrate from the next picture on, keeping the reference
    /// pictures (no keyframe needed).
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), MediaError> {
        let bps = bps.clamp(MIN_BITRATE, MAX_BITRATE);
        if bps == self.bitrate {
            return Ok(());
        }
        // openh264 checks the layer's target against its maximum after each call: raise
        // the maximum first when going up, lower it last when going down.
        let max = |layer| (openh264_sys2::ENCODER_OPTION_MAX_BITRATE, layer);
        let target = (
            openh264_sys2::ENCODER_OPTION_BITRATE,
            openh264_sys2::SPATIAL_LAYER_ALL,
        );
        let maxes = [
            max(openh264_sys2::SPATIAL_LAYER_ALL),
            max(openh264_sys2::SPATIAL_LAYER_0),
        ];
        let order: Vec<_> = if bps > self.bitrate {
            maxes.into_iter().chain([target]).collect()
        } else {
            [target].into_iter().chain(maxes).collect()
        };
        for (option, layer) in order {
            let mut info = openh264_sys2::SBitrateInfo {
                iLayer: layer,
                iBitrate: bps as i32,
            };
            // SAFETY: the raw API of an encoder we own, used on this thread only.
            let api = unsafe { self.encoder.raw_api() };
            // SAFETY: the option takes a pointer to an SBitrateInfo that outlives the call.
            let rc = unsafe { api.set_option(option, (&raw mut info).cast()) };
            if rc != 0 {
                return Err(MediaError::Codec(format!(
                    "setting the bitrate to {bps} failed ({rc})"
                )));
            }
        }
        self.bitrate = bps;
        Ok(())
    }

    /// Makes the next picture a keyframe (IDR), e.g. for a client that lost sync.
    pub fn request_keyframe(&mut self) {
        self.encoder.force_intra_frame();
    }

    /// Encodes one picture (0x00RRGGBB, row-major, exactly the region's size) taken at
    /// `timestamp_ms`. `None` when the encoder produced no picture for it.
    pub fn encode(
        &mut self,
        pixels: &[u32],
        timestamp_ms: u64,
    ) -> Result<Option<EncodedVideo>, MediaError> {
        let (w, h) = (self.size.width as usize, self.size.height as usize);
        if pixels.len() != w * h {
            return Err(MediaError::Codec(
                "picture does not match the region".into(),
            ));
        }
        self.picture.from_rgb(pixels, w, h);
        let source = YUVSlices::new(
            (&self.picture.y, &self.picture.u, &self.picture.v),
            (w, h),
            (w, w / 2, w / 2),
        );
        let stream = self
            .encoder
            .encode_at(&source, Timestamp::from_millis(timestamp_ms))
            .map_err(codec_err)?;
        let keyframe = match stream.frame_type() {
            FrameType::Skip | FrameType::Invalid => return Ok(None),
            FrameType::IDR | FrameType::I => true,
            FrameType::P | FrameType::IPMixed => false,
        };
        let data = stream.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        Ok(Some(EncodedVideo { data, keyframe }))
    }
}

pub struct VideoDecoder {
    decoder: Decoder,
    size: Size,
}

impl VideoDecoder {
    pub fn new(size: Size) -> Result<Self, MediaError> {
        check_size(size)?;
        Ok(Self {
            decoder: Decoder::new().map_err(codec_err)?,
            size,
        })
    }

    pub fn size(&self) -> Size {
        self.size
    }

    /// Decodes one encoded picture into `out` (0x00RRGGBB, the region's size, rows
    /// `out_stride` pixels apart: a framebuffer can be written in place). Returns false
    /// when the data held no picture (e.g. parameter sets only); `out` is then untouched.
    /// An error means the stream is broken until the next keyframe.
    pub fn decode(
        &mut self,
        data: &[u8],
        out: &mut [u32],
        out_stride: usize,
    ) -> Result<bool, MediaError> {
        let (w, h) = (self.size.width as usize, self.size.height as usize);
        if out_stride < w || out.len() < (h - 1) * out_stride + w {
            return Err(MediaError::Codec("output does not fit the region".into()));
        }
        let Some(picture) = self.decoder.decode(data).map_err(codec_err)? else {
            return Ok(false);
        };
        let (pw, ph) = picture.dimensions();
        if (pw, ph) != (w, h) {
            return Err(MediaError::WrongSize {
                got_w: u32::try_from(pw).unwrap_or(u32::MAX),
                got_h: u32::try_from(ph).unwrap_or(u32::MAX),
                want_w: self.size.width,
                want_h: self.size.height,
            });
        }
        to_rgb(
            (picture.y(), picture.u(), picture.v()),
            picture.strides(),
            (w, h),
            out,
            out_stride,
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::luma_psnr;

    /// A moving soft gradient: content a video encoder handles well.
    fn picture(w: usize, h: usize, t: usize) -> Vec<u32> {
        (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let channel = |v: usize| u32::try_from(v).expect("a small channel value");
                let r = channel((x + 3 * t) * 255 / (w + 60));
                let g = channel((y + 2 * t) * 255 / (h + 40));
                let b = channel(((x + y) / 2 + t) % 256);
                (r << 16) | (g << 8) | b
            })
            .collect()
    }

    #[test]
    fn encodes_and_decodes_a_clip_at_good_quality() {
        let size = Size::new(160, 96);
        let config = VideoEncoderConfig {
            bitrate: 2_000_000,
            max_fps: 30.0,
        };
        let mut enc = VideoEncoder::new(size, config).unwrap();
        let mut dec = VideoDecoder::new(size).unwrap();
        let mut out = vec![0u32; 160 * 96];
        let mut decoded = 0;
        for t in 0..20 {
            let pic = picture(160, 96, t);
            let Some(frame) = enc.encode(&pic, t as u64 * 33).unwrap() else {
                continue;
            };
            assert_eq!(
                frame.keyframe,
                t == 0,
                "only the first picture is a keyframe"
            );
            assert!(dec.decode(&frame.data, &mut out, 160).unwrap());
            let psnr = luma_psnr(&pic, &out);
            assert!(psnr > 35.0, "frame {t}: {psnr:.1} dB");
            decoded += 1;
        }
        assert!(decoded >= 15);
        enc.request_keyframe();
        enc.set_bitrate(500_000).unwrap();
        let frame = enc.encode(&picture(160, 96, 21), 21 * 33).unwrap().unwrap();
        assert!(frame.keyframe);
        // A fresh decoder can join at a keyframe.
        let mut late = VideoDecoder::new(size).unwrap();
        assert!(late.decode(&frame.data, &mut out, 160).unwrap());
    }

    #[test]
    fn bad_sizes_and_garbage_are_errors() {
        assert!(VideoEncoder::new(
            Size::new(15, 16),
            VideoEncoderConfig {
                bitrate: 1_000_000,
                max_fps: 30.0
            }
        )
        .is_err());
        assert!(VideoDecoder::new(Size::new(4000, 4000)).is_err());
        let mut dec = VideoDecoder::new(Size::new(64, 64)).unwrap();
        let mut out = vec![0u32; 64 * 64];
        for garbage in [
            &[][..],
            &[0, 0, 0, 1, 0x65, 0xff, 0x12][..],
            &[7u8; 300][..],
        ] {
            // Either an error or no picture: never a panic, never a wrong-size write.
            let _ = dec.decode(garbage, &mut out, 64);
        }
    }
}

#[cfg(test)]
mod rate_tests {
    use super::*;

    /// Busy content: a moving gradient with per-frame noise, so bits track the bitrate.
    fn noisy(w: usize, h: usize, t: u64) -> Vec<u32> {
        let mut s = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..w * h)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let n = (s % 32) as u32;
                let (x, y) = (i % w, i / w);
                let r = ((x as u64 + 4 * t) % 200) as u32 + n;
                let g = ((y as u64 + 3 * t) % 200) as u32 + n;
                let b = (((x + y) as u64 + t) % 200) as u32 + n;
                (r << 16) | (g << 8) | b
            })
            .collect()
    }

    /// Bytes the encoder produced for 30 pictures starting at `t0`.
    fn run(enc: &mut VideoEncoder, t0: u64) -> usize {
        (t0..t0 + 30)
            .filter_map(|t| enc.encode(&noisy(320, 240, t), t * 33).unwrap())
            .map(|v| v.data.len())
            .sum()
    }

    #[test]
    fn bitrate_changes_take_effect_both_ways() {
        let config = VideoEncoderConfig {
            bitrate: 3_000_000,
            max_fps: 30.0,
        };
        let mut enc = VideoEncoder::new(Size::new(320, 240), config).unwrap();
        let high = run(&mut enc, 0);
        enc.set_bitrate(300_000).unwrap();
        let _settle = run(&mut enc, 30);
        let low = run(&mut enc, 60);
        enc.set_bitrate(3_000_000).unwrap();
        let _settle = run(&mut enc, 90);
        let high_again = run(&mut enc, 120);
        eprintln!("high {high} low {low} high again {high_again}");
        // Above the bitrate the encoder was made with, too.
        let mut enc = VideoEncoder::new(
            Size::new(320, 240),
            VideoEncoderConfig {
                bitrate: 300_000,
                max_fps: 30.0,
            },
        )
        .unwrap();
        let start_low = run(&mut enc, 0);
        enc.set_bitrate(3_000_000).unwrap();
        let _settle = run(&mut enc, 30);
        let raised = run(&mut enc, 60);
        eprintln!("made low {start_low} raised {raised}");
        assert!(
            raised > start_low * 3,
            "raising above the start: {start_low} → {raised}"
        );
        assert!(low * 3 < high, "lowering the bitrate: {high} → {low}");
        assert!(
            high_again > low * 3,
            "raising it again: {low} → {high_again}"
        );
    }

    /// Noise: every pixel changes every picture, as in film grain.
    fn noise(w: usize, h: usize, seed: u32) -> Vec<u32> {
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        (0..w * h)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x & 0x00ff_ffff
            })
            .collect()
    }

    #[test]
    fn a_bitrate_too_low_for_the_content_costs_quality_not_pictures() {
        // 300 kbit/s for 30 pictures a second of noise: far below what it needs.
        let config = VideoEncoderConfig {
            bitrate: 300_000,
            max_fps: 30.0,
        };
        let mut enc = VideoEncoder::new(Size::new(320, 240), config).unwrap();
        let mut pictures = 0;
        let mut bytes = 0;
        for t in 0..60u32 {
            if let Some(frame) = enc.encode(&noise(320, 240, t), u64::from(t) * 33).unwrap() {
                pictures += 1;
                bytes += frame.data.len();
            }
        }
        assert_eq!(pictures, 60, "every picture is encoded");
        // What the quantiser can do: far below raw, if above the target.
        assert!(bytes < 60 * 320 * 240, "{bytes} bytes");
    }
}
