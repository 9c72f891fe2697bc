//! Opus (libopus, through the `opus` binding) for the desktop's sound: 20 ms frames of
//! 48 kHz interleaved stereo in, packets out, and back; a lost packet is concealed.

use oriel_protocol::audio::{AUDIO_CHANNELS, AUDIO_FRAME_SAMPLES, AUDIO_RATE};
use oriel_protocol::AudioPacket;

use crate::MediaError;

/// Samples (both channels) in one frame.
pub const FRAME_LEN: usize = AUDIO_FRAME_SAMPLES * AUDIO_CHANNELS;

pub struct AudioEncoder {
    inner: opus::Encoder,
    out: Vec<u8>,
}

impl AudioEncoder {
    /// An encoder for music and speech at `bitrate` bits per second.
    pub fn new(bitrate: i32) -> Result<Self, MediaError> {
        let mut inner =
            opus::Encoder::new(AUDIO_RATE, opus::Channels::Stereo, opus::Application::Audio)
                .map_err(codec)?;
        inner
            .set_bitrate(opus::Bitrate::Bits(bitrate))
            .map_err(codec)?;
        // A lost packet's audio rides, coarser, in the next one.
        inner.set_inband_fec(true).map_err(codec)?;
        inner.set_packet_loss_perc(5).map_err(codec)?;
        Ok(Self {
            inner,
            out: vec![0; 1500],
        })
    }

    /// Encodes one frame of [`FRAME_LEN`] samples.
    pub fn encode(&mut self, frame: &[i16]) -> Result<Vec<u8>, MediaError> {
        let n = self.inner.encode(frame, &mut self.out).map_err(codec)?;
        Ok(self.out[..n].to_vec())
    }
}

/// Loudest sample of a frame that is silence all the same: -72 dBFS, below hearing at any
/// sane volume, but a dithered "silence" that Opus would spend 40 kbit/s on (its DTX
/// only takes digital zeros in the mode music uses).
const INAUDIBLE: u16 = 8;

/// Turns a sound's 20 ms frames into packets. Silence (digital, or inaudible) is not
/// sent: one empty packet marks where it starts, and the first packet after it says it
/// follows silence.
pub struct Packetizer {
    encoder: AudioEncoder,
    /// The next frame's number (silent frames count).
    seq: u64,
    silent: bool,
}

impl Packetizer {
    pub fn new(bitrate: i32) -> Result<Self, MediaError> {
        Ok(Self {
            encoder: AudioEncoder::new(bitrate)?,
            seq: 0,
            silent: true,
        })
    }

    /// The packet for the next frame of [`FRAME_LEN`] samples, whose first sample was
    /// captured at `capture_unix_us`, if one goes.
    pub fn frame(
        &mut self,
        samples: &[i16],
        capture_unix_us: u64,
    ) -> Result<Option<AudioPacket>, MediaError> {
        let seq = self.seq;
        self.seq += 1;
        let after_silence = self.silent;
        self.silent = samples.iter().all(|&s| s.unsigned_abs() <= INAUDIBLE);
        let opus = match (self.silent, after_silence) {
            (true, true) => return Ok(None),
            (true, false) => Vec::new(),
            (false, _) => self.encoder.encode(samples)?,
        };
        Ok(Some(AudioPacket {
            seq,
            capture_unix_us,
            after_silence: after_silence && !self.silent,
            opus,
        }))
    }
}

pub struct AudioDecoder {
    inner: opus::Decoder,
}

impl AudioDecoder {
    pub fn new() -> Result<Self, MediaError> {
        Ok(Self {
            inner: opus::Decoder::new(AUDIO_RATE, opus::Channels::Stereo).map_err(codec)?,
        })
    }

    /// One frame of [`FRAME_LEN`] samples: `packet` decoded, or with `None` the
    /// concealment of a lost one.
    pub fn decode(&mut self, packet: Option<&[u8]>) -> Result<Vec<i16>, MediaError> {
        let mut pcm = vec![0i16; FRAME_LEN];
        let n = self
            .inner
            .decode(packet.unwrap_or(&[]), &mut pcm, false)
            .map_err(codec)?;
        pcm.truncate(n * AUDIO_CHANNELS);
        pcm.resize(FRAME_LEN, 0);
        Ok(pcm)
    }
}

fn codec(e: opus::Error) -> MediaError {
    MediaError::Codec(format!("opus: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the tone stays within ±8000"
    )]
    fn a_tone_survives_the_round_trip_and_a_loss_is_concealed() {
        let mut enc = AudioEncoder::new(64_000).unwrap();
        let mut dec = AudioDecoder::new().unwrap();
        let tone: Vec<i16> = (0..FRAME_LEN * 10)
            .map(|i| {
                let t = (i / 2) as f64 / f64::from(AUDIO_RATE);
                ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
            })
            .collect();
        let mut out = Vec::new();
        for (k, frame) in tone.chunks(FRAME_LEN).enumerate() {
            let packet = enc.encode(frame).unwrap();
            assert!(packet.len() < 400, "{} bytes for 20 ms", packet.len());
            let lost = k == 6;
            out.extend(dec.decode((!lost).then_some(&packet[..])).unwrap());
        }
        // The codec's delay is a few ms: compare energy, not samples.
        let energy =
            |s: &[i16]| s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64;
        let (a, b) = (
            energy(&tone[FRAME_LEN * 2..]),
            energy(&out[FRAME_LEN * 2..]),
        );
        assert!((b / a - 1.0).abs() < 0.3, "energy {a} in, {b} out");
    }

    #[test]
    fn silence_is_not_sent_and_its_start_and_end_are_marked() {
        let mut p = Packetizer::new(64_000).unwrap();
        let (quiet, sound) = (vec![0i16; FRAME_LEN], vec![100i16; FRAME_LEN]);
        // Dither a player leaves when it plays nothing: silence too.
        let dither: Vec<i16> = (0..FRAME_LEN).map(|i| [3, -2, 0, -3][i % 4]).collect();
        let frames = [&quiet, &sound, &sound, &dither, &quiet, &sound];
        let sent: Vec<AudioPacket> = frames
            .iter()
            .enumerate()
            .filter_map(|(k, f)| p.frame(f, k as u64).unwrap())
            .collect();
        let summary: Vec<(u64, bool, bool)> = sent
            .iter()
            .map(|s| (s.seq, s.after_silence, s.opus.is_empty()))
            .collect();
        assert_eq!(
            summary,
            [
                (1, true, false),
                (2, false, false),
                (3, false, true),
                (5, true, false)
            ]
        );
    }
}
