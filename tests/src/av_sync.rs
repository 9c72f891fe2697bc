//! Lip sync as the viewer shows and plays it: a clip of moving grain (video, as the
//! display server sees it) that flashes white and beeps at the same instants, once a
//! second (made with ffmpeg), played in the desktop by ffplay. The viewer's screen, looked at after every frame it shows, dates each flash;
//! the sound it played (its WAV, dated from its first frame) dates each beep. Their
//! difference is the audio/video offset (positive: the sound is late).

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use oriel::audio::PlayedPacket;
use oriel_protocol::Framebuffer;

/// Flashes (and beeps) in the clip, one a second.
pub const FLASHES: u32 = 6;

/// Writes the clip (640x480, 30 fps MJPEG, 48 kHz PCM) to `path`.
pub fn make_clip(path: &Path) -> anyhow::Result<()> {
    // Grain on dark grey changes every frame, as a film does; a flash is near white.
    // Each comes half a second into its second: the first after the display server
    // has found the video.
    let video = format!(
        "color=c=0x303030:s=640x480:r=30:d={FLASHES},noise=alls=30:allf=t,\
         drawbox=x=0:y=0:w=iw:h=ih:color=0xf0f0f0:t=fill:enable='between(mod(t,1),0.5,0.6)'"
    );
    // A soundtrack is never digital silence: a faint hiss (a quarter of a percent)
    // under the beeps.
    let channel = "0.25*between(mod(t,1),0.5,0.6)*sin(2*PI*1000*t)+0.0025*(2*random(0)-1)";
    let audio = format!("aevalsrc='{channel}|{channel}':s=48000:d={FLASHES}");
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
pub fn play_in_desktop(clip: &Path, display: &str, pulse: &str) -> anyhow::Result<()> {
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

/// A flash shown or a beep heard by the viewer, and when the desktop captured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Onset {
    pub at_unix_us: u64,
    pub captured_unix_us: Option<u64>,
    /// A flash that came as a video picture (lip sync holds those, not lossless
    /// updates).
    pub in_video: bool,
}

/// Dates the flashes on the viewer's screen.
#[derive(Debug, Default)]
pub struct FlashWatch {
    bright: bool,
    pub onsets: Vec<Onset>,
    /// Flashes that came as a video picture (the rest came as lossless updates).
    pub in_video: usize,
}

impl FlashWatch {
    /// A session observer that shows every frame and picture to `watch`.
    pub fn observer(
        watch: std::sync::Arc<std::sync::Mutex<FlashWatch>>,
    ) -> impl FnMut(oriel::Shown, &Framebuffer) + Send + 'static {
        move |shown, fb| {
            let (picture, captured) = match shown {
                oriel::Shown::Picture {
                    capture_unix_us, ..
                } => (true, capture_unix_us),
                oriel::Shown::Frame {
                    capture_unix_us, ..
                } => (false, capture_unix_us),
            };
            watch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .shown(fb, picture, captured);
        }
    }

    /// Looks at the screen's middle after a frame (or, `picture`, a video picture)
    /// captured at `captured_unix_us` was shown.
    pub fn shown(&mut self, fb: &Framebuffer, picture: bool, captured_unix_us: u64) {
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
            self.onsets.push(Onset {
                at_unix_us: oriel_transport::unix_micros(),
                captured_unix_us: Some(captured_unix_us),
                in_video: picture,
            });
            self.in_video += usize::from(picture);
        }
        self.bright = bright;
    }
}

/// The beeps' starts in the viewer's WAV (left channel), after `after_unix_us`, dated
/// by when their packet was played and when the desktop captured it.
pub fn beep_onsets(
    wav: &Path,
    after_unix_us: u64,
    played: &[PlayedPacket],
) -> anyhow::Result<Vec<Onset>> {
    const LOUD: i32 = 3000;
    const QUIET_BEFORE: usize = 48 * 300; // 300 ms
    const FRAME: u64 = 960;
    let mut reader = hound::WavReader::open(wav)?;
    let samples: Vec<i16> = reader.samples::<i16>().collect::<Result<_, _>>()?;
    let mut onsets = Vec::new();
    let mut quiet = QUIET_BEFORE;
    for (i, s) in samples.chunks(2).map(|c| i32::from(c[0])).enumerate() {
        let i = i as u64;
        if s.abs() > LOUD {
            let packet = played
                .binary_search_by_key(&(i / FRAME), |p| p.frame)
                .ok()
                .map(|k| played[k]);
            let into_frame = (i % FRAME) * 1_000_000 / 48_000;
            match packet {
                Some(p) if quiet >= QUIET_BEFORE && p.written_unix_us > after_unix_us => {
                    onsets.push(Onset {
                        at_unix_us: p.written_unix_us + into_frame,
                        captured_unix_us: Some(p.capture_unix_us + into_frame),
                        in_video: false,
                    });
                }
                _ => {}
            }
            quiet = 0;
        } else {
            quiet += 1;
        }
    }
    Ok(onsets)
}

/// One beep against the flash nearest to it, in ms (positive: the sound is late).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offset {
    /// As the viewer showed and played them.
    pub viewer_ms: f64,
    /// As the desktop captured them (the player's own sync and the capture's).
    pub desktop_ms: Option<f64>,
}

impl Offset {
    /// What the way from the desktop to the viewer added.
    pub fn added_ms(&self) -> Option<f64> {
        self.desktop_ms.map(|d| self.viewer_ms - d)
    }
}

/// Each beep's offset from the flash nearest to it (within half a second), of the
/// flashes that came as video pictures.
pub fn offsets(flashes: &[Onset], beeps: &[Onset]) -> Vec<Offset> {
    let ms = |a: u64, b: u64| (a as f64 - b as f64) / 1000.0;
    beeps
        .iter()
        .filter_map(|beep| {
            let flash = flashes
                .iter()
                .filter(|f| f.in_video)
                .min_by_key(|f| f.at_unix_us.abs_diff(beep.at_unix_us))?;
            let viewer_ms = ms(beep.at_unix_us, flash.at_unix_us);
            let desktop_ms = beep
                .captured_unix_us
                .zip(flash.captured_unix_us)
                .map(|(b, f)| ms(b, f));
            (viewer_ms.abs() < 500.0).then_some(Offset {
                viewer_ms,
                desktop_ms,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beeps_pair_with_the_nearest_flash() {
        let onset = |at: u64, captured: Option<u64>| Onset {
            at_unix_us: at,
            captured_unix_us: captured,
            in_video: true,
        };
        let mut flashes =
            [1_000_000, 2_000_000, 3_000_000, 1_040_000].map(|t| onset(t, Some(t - 70_000)));
        flashes[3].in_video = false;
        let beeps = [
            onset(1_050_000, Some(950_000)),
            onset(1_990_000, None),
            onset(9_000_000, None),
        ];
        let found = offsets(&flashes, &beeps);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].viewer_ms, 50.0);
        assert_eq!(found[0].desktop_ms, Some(20.0));
        assert_eq!(found[0].added_ms(), Some(30.0));
        assert_eq!(found[1].viewer_ms, -10.0);
        assert_eq!(found[1].added_ms(), None);
    }
}
