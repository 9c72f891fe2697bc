//! Sound for the tests: a chirp made with sox, WAV files read back, how well a
//! recording matches what was played, and parecord on a sound server.

use std::path::Path;
use std::process::Command;

/// Writes a 1.5 s stereo chirp (300 to 3000 Hz, half scale) at 48 kHz to `path`.
pub fn chirp(path: &Path) {
    let status = Command::new("sox")
        .args(["-n", "-r", "48000", "-c", "2", "-b", "16"])
        .arg(path)
        .args(["synth", "1.5", "sine", "300-3000", "vol", "0.5"])
        .status()
        .expect("sox runs (scripts/install-deps installs it)");
    assert!(status.success());
}

/// The left channel of a 48 kHz 16-bit WAV file.
pub fn left_channel(path: &Path) -> Vec<f64> {
    let mut reader = hound::WavReader::open(path).unwrap();
    assert_eq!(reader.spec().sample_rate, 48_000);
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    samples.chunks(2).map(|c| f64::from(c[0])).collect()
}

/// Leaves out the first and last 100 ms of a reference: a sound server may cut or fade
/// in the first milliseconds of a stream.
const EDGE: usize = 4800;

/// A signal to look for in a recording, its norm worked out once.
struct Pattern<'a> {
    samples: &'a [f64],
    norm: f64,
}

impl<'a> Pattern<'a> {
    fn new(samples: &'a [f64]) -> Self {
        let norm = samples.iter().map(|v| v * v).sum::<f64>().sqrt();
        Self { samples, norm }
    }

    /// The normalised correlation with `other` (as long as the pattern).
    fn correlation(&self, other: &[f64]) -> f64 {
        let dot: f64 = self.samples.iter().zip(other).map(|(x, y)| x * y).sum();
        let other_norm = other.iter().map(|v| v * v).sum::<f64>().sqrt();
        dot / (self.norm * other_norm).max(1e-9)
    }

    /// Of the offsets `lags` into `recorded` that leave room for the pattern, the one
    /// where it matches best, and how well.
    fn best_in(&self, recorded: &[f64], lags: impl Iterator<Item = usize>) -> Option<(usize, f64)> {
        lags.filter_map(|lag| {
            let r = recorded.get(lag..lag + self.samples.len())?;
            Some((lag, self.correlation(r)))
        })
        .fold(None, |best, c| match best {
            Some(b) if b.1 >= c.1 => Some(b),
            _ => Some(c),
        })
    }
}

/// Where `part` sits in `recorded` (its best normalised correlation): first over every
/// 8th sample of both, then sample by sample near the best. Searching everywhere, not
/// near the loud start, because a device path may cut or fade in a stream's start.
fn locate(part: &[f64], recorded: &[f64]) -> usize {
    const STEP: usize = 8;
    let coarse: Vec<f64> = part.iter().step_by(STEP).copied().collect();
    let coarse_rec: Vec<f64> = recorded.iter().step_by(STEP).copied().collect();
    let Some((coarse_best, _)) = Pattern::new(&coarse).best_in(&coarse_rec, 0..coarse_rec.len())
    else {
        return 0;
    };
    let near = coarse_best * STEP;
    Pattern::new(part)
        .best_in(recorded, near.saturating_sub(2 * STEP)..=near + 2 * STEP)
        .map_or(near, |(lag, _)| lag)
}

/// Where `reference` starts in `recorded`, as far as its middle shows (its start may be
/// cut off: then 0).
pub fn locate_reference(reference: &[f64], recorded: &[f64]) -> usize {
    locate(&reference[EDGE..reference.len() - EDGE], recorded).saturating_sub(EDGE)
}

/// The best normalised cross-correlation of the middle of `reference` within
/// `recorded`.
pub fn best_match(reference: &[f64], recorded: &[f64]) -> f64 {
    let middle = &reference[EDGE..reference.len() - EDGE];
    let at = locate(middle, recorded);
    Pattern::new(middle)
        .best_in(recorded, at..=at)
        .map_or(0.0, |(_, r)| r.max(0.0))
}

/// The mean over 100 ms windows of the reference's middle of each one's best
/// correlation near where the whole matched: a real-time device path may slip a few
/// milliseconds once (which a whole-signal correlation counts as half lost), but every
/// window must still be the chirp.
pub fn windowed_match(reference: &[f64], recorded: &[f64]) -> f64 {
    const WINDOW: usize = 4800;
    let middle = &reference[EDGE..reference.len() - EDGE];
    let start = locate(middle, recorded);
    let windows: Vec<f64> = middle
        .chunks_exact(WINDOW)
        .enumerate()
        .map(|(k, window)| {
            let guess = start + k * WINDOW;
            Pattern::new(window)
                .best_in(recorded, guess.saturating_sub(2400)..=guess + 2400)
                .map_or(0.0, |(_, r)| r.max(0.0))
        })
        .collect();
    windows.iter().sum::<f64>() / windows.len().max(1) as f64
}

/// The 20 ms frames of `recorded` that are silent (no sample over 1000) between its
/// first and last loud one, with each one's peak: where a sound broke off.
pub fn silent_frames(recorded: &[f64]) -> Vec<(usize, f64)> {
    let peaks: Vec<f64> = recorded
        .chunks(960)
        .map(|c| c.iter().fold(0.0f64, |m, v| m.max(v.abs())))
        .collect();
    let loud = |p: &f64| *p > 1000.0;
    let Some(first) = peaks.iter().position(loud) else {
        return Vec::new();
    };
    let last = peaks.iter().rposition(loud).unwrap_or(first);
    (first..=last)
        .filter(|&i| !loud(&peaks[i]))
        .map(|i| (i, peaks[i]))
        .collect()
}

/// Records what the sound server at `pulse` plays (its sink's monitor) or its default
/// source, into `path`, until SIGINT.
pub fn parecord(pulse: &str, device: Option<&str>, path: &Path) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new("parecord");
    cmd.args([
        "--rate=48000",
        "--channels=2",
        "--format=s16le",
        "--file-format=wav",
    ])
    .arg("--latency-msec=20");
    if let Some(device) = device {
        cmd.arg(format!("--device={device}"));
    }
    cmd.arg(path)
        .env("PULSE_SERVER", pulse)
        .kill_on_drop(true)
        .spawn()
        .expect("parecord runs (pulseaudio-utils)")
}

/// Stops a parecord (SIGINT: it completes its file) and waits for it.
pub async fn stop(mut child: tokio::process::Child) {
    let pid = child.id().expect("still running");
    // SAFETY: kill(2) on a child we started and have not waited for.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    child.wait().await.unwrap();
}
