//! Lip sync as the viewer shows and plays it: a clip that flashes white and beeps at
//! the same instants, once a second (made with ffmpeg), played in the desktop by
//! ffplay. The viewer's screen, looked at after every frame it shows, dates each flash;
//! the sound it played (its WAV, dated from its first frame) dates each beep. Their
//! difference is the audio/video offset (positive: the sound is late).

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use oriel_protocol::Framebuffer;

/// Flashes (and beeps) in the clip, one a second.
pub(crate) const FLASHES: u32 = 6;

/// Writes the clip (640x480, 30 fps MJPEG, 48 kHz PCM) to `path`.
pub(crate) fn make_clip(path: &Path) -> anyhow::Result<()> {
    let video = format!(
        "color=c=black:s=640x480:r=30:d={FLASHES},\
         drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t,1),0.1)'"
    );
    let audio =
        format!("sine=f=1000:r=48000:d={FLASHES},volume=volume=0:enable='gte(mod(t,1),0.1)'");
    let status = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-f", "lavfi", "-i", &video])
        .args(["-f", "lavfi", "-i", &audio])
        .args([
            "-c:v",
            "mjpeg",
            "-q:v",
            "3",
            "-c:a",
            "pcm_s16le",
            "-shortest",
        ])
        .arg(path)
        .status()
        .context("ffmpeg runs (scripts/install-deps --bench installs it)")?;
    anyhow::ensure!(status.success(), "ffmpeg could not make the clip");
    Ok(())
}

/// Plays `clip` full-screen on X display `display`, its sound into `pulse`.
pub(crate) fn play_in_desktop(clip: &Path, display: &str, pulse: &str) -> anyhow::Result<()> {
    let status = Command::new("ffplay")
        .args(["-autoexit", "-noborder", "-left", "0", "-top", "0"])
        .args(["-x", "640", "-y", "480", "-loglevel", "error"])
        .arg(clip)
        .env("DISPLAY", display)
        .env("PULSE_SERVER", pulse)
        .env("SDL_AUDIODRIVER", "pulseaudio")
        .status()
        .context("ffplay runs (scripts/install-deps --bench installs ffmpeg)")?;
    anyhow::ensure!(status.success(), "ffplay failed");
    Ok(())
}

/// Dates the flashes on the viewer's screen.
#[derive(Debug, Default)]
pub(crate) struct FlashWatch {
    bright: bool,
    pub(crate) onsets_unix_us: Vec<u64>,
}

impl FlashWatch {
    /// Looks at the screen's middle after a frame or picture was shown.
    pub(crate) fn shown(&mut self, fb: &Framebuffer) {
        let size = fb.size();
        let (w, h) = (size.width, size.height);
        let mut luma = 0u32;
        for i in 1..=4 {
            for j in 1..=4 {
                let p = fb.pixel(w * i / 5, h * j / 5);
                let (r, g, b) = ((p >> 16) & 0xff, (p >> 8) & 0xff, p & 0xff);
                luma += (2 * r + 5 * g + b) / 8;
            }
        }
        let bright = luma / 16 > 128;
        if bright && !self.bright {
            self.onsets_unix_us.push(oriel_transport::unix_micros());
        }
        self.bright = bright;
    }
}

/// The beeps' starts in the viewer's WAV (left channel), dated from its first frame's
/// time, counting only those after `after_unix_us`.
pub(crate) fn beep_onsets(
    wav: &Path,
    first_played_unix_us: u64,
    after_unix_us: u64,
) -> anyhow::Result<Vec<u64>> {
    const LOUD: i32 = 3000;
    const QUIET_BEFORE: usize = 48 * 300; // 300 ms
    let mut reader = hound::WavReader::open(wav)?;
    let samples: Vec<i16> = reader.samples::<i16>().collect::<Result<_, _>>()?;
    let mut onsets = Vec::new();
    let mut quiet = QUIET_BEFORE;
    for (i, s) in samples.chunks(2).map(|c| i32::from(c[0])).enumerate() {
        if s.abs() > LOUD {
            let at = first_played_unix_us + i as u64 * 1_000_000 / 48_000;
            if quiet >= QUIET_BEFORE && at > after_unix_us {
                onsets.push(at);
            }
            quiet = 0;
        } else {
            quiet += 1;
        }
    }
    Ok(onsets)
}

/// Each beep's offset from the flash nearest to it (within half a second), in ms.
pub(crate) fn offsets_ms(flashes: &[u64], beeps: &[u64]) -> Vec<f64> {
    beeps
        .iter()
        .filter_map(|&beep| {
            let flash = flashes.iter().min_by_key(|&&f| f.abs_diff(beep))?;
            let ms = (beep as f64 - *flash as f64) / 1000.0;
            (ms.abs() < 500.0).then_some(ms)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beeps_pair_with_the_nearest_flash() {
        let flashes = [1_000_000, 2_000_000, 3_000_000];
        let beeps = [1_050_000, 1_990_000, 9_000_000];
        assert_eq!(offsets_ms(&flashes, &beeps), [50.0, -10.0]);
    }
}
