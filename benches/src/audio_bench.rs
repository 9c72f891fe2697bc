//! `oriel-bench --source x11 --workload audio`: the desktop's sound, end to end. An x11
//! desktop with its own PulseAudio plays a music-like signal (sox: band-limited pink
//! noise with a tremolo, over a chord: hard to compress, never silent) with paplay; a
//! client records it through the playout buffer, as a speaker would play it. Figures:
//! audio kbit/s on the wire, latency from capture in the desktop to playout on the
//! client (p50/p99), and glitches (concealed frames, late packets, gaps in the sound),
//! optionally through an emulated link. Then a clip that flashes and beeps together
//! plays (ffplay): the audio/video offset as the viewer shows and plays it
//! ([`oriel_e2e::av_sync`]).

use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context;
use oriel::{percentile, Session, StopWhen};
use oriel_display_server::source::x11::X11Source;
use oriel_display_server::source::xserver::XSessionConfig;
use oriel_display_server::source::FrameSource;
use oriel_netem::LinkSpec;
use oriel_protocol::Size;
use serde_json::json;

use crate::rig::{merged_line, Rig};
use oriel_e2e::av_sync::{beep_onsets, make_clip, offsets, play_in_desktop, FlashWatch, FLASHES};

pub(crate) fn run(seconds: u64, link: Option<LinkSpec>) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("oriel-bench-audio-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (music, recorded) = (dir.join("music.wav"), dir.join("client.wav"));
    let clip = dir.join("flash-beep.mkv");
    make_clip(&clip)?;
    let status = Command::new("sox")
        .args(["-n", "-r", "48000", "-c", "2", "-b", "16"])
        .arg(&music)
        .args(["synth", &seconds.to_string(), "pinknoise", "sine", "220"])
        .args(["tremolo", "3", "60", "vol", "0.4"])
        .status()
        .context("sox runs (scripts/install-deps installs it)")?;
    anyhow::ensure!(status.success(), "sox could not make the signal");

    let config = XSessionConfig {
        size: Size::new(640, 480),
        command: Some("sleep 1000000".into()),
        audio: true,
        ..Default::default()
    };
    let source = X11Source::spawn_session(&config, 30)?;
    let display = source.display().to_owned();
    let pulse = source
        .sound_server()
        .context("the desktop has no sound server (is pulseaudio installed?)")?
        .address;
    let link_text = link.map_or_else(|| "loopback".to_string(), |l| l.to_string());
    let mut rig = Rig::start(Box::new(source), 4, 16_000, link)?;
    let audio = rig
        .client_rt
        .block_on(async { oriel::audio::AudioOutput::to_wav(&recorded) })?;
    rig.opts.audio = Some(audio.clone());
    let session = rig.client_rt.block_on(Session::connect(&rig.opts))?;
    let flashes = std::sync::Arc::new(std::sync::Mutex::new(FlashWatch::default()));
    let watch = flashes.clone();
    let client = rig.client_rt.spawn(session.run_observed(
        StopWhen {
            duration: Some(Duration::from_secs(seconds + u64::from(FLASHES) + 5)),
            ..Default::default()
        },
        None,
        FlashWatch::observer(watch),
    ));
    std::thread::sleep(Duration::from_millis(500));
    let played = Command::new("paplay")
        .arg(&music)
        .env("PULSE_SERVER", &pulse)
        .status()
        .context("paplay runs (pulseaudio-utils)")?;
    anyhow::ensure!(played.success(), "paplay failed");
    let music_end = oriel_transport::unix_micros();
    play_in_desktop(&clip, &display, &pulse)?;
    rig.client_rt.block_on(client)??;
    rig.client_rt.block_on(audio.finish())?;
    let done = rig.finish();

    let f = &audio.figures;
    let latency = f.latencies_us();
    let ms = |q: f64| f64::from(percentile(&latency, q)) / 1000.0;
    let first_played = f.first_played_unix_us.load(Relaxed);
    let music_frames = (music_end.saturating_sub(first_played) / 20_000) as usize;
    let gaps = silent_frames_inside(&recorded, music_frames)?;
    let beeps = beep_onsets(&recorded, music_end, &f.packets_played())?;
    let (flashes, flashes_in_video) = {
        let mut watch = flashes.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut watch.onsets), watch.in_video)
    };
    let offsets = offsets(&flashes, &beeps);
    let viewer: Vec<f64> = offsets.iter().map(|o| o.viewer_ms).collect();
    let desktop: Vec<f64> = offsets.iter().filter_map(|o| o.desktop_ms).collect();
    let added: Vec<f64> = offsets.iter().filter_map(|o| o.added_ms()).collect();
    // Nearest-rank percentiles (None when empty), of the values and of their sizes.
    let at = |v: &[f64], percent: usize| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get((v.len().saturating_sub(1) * percent).div_ceil(100))
            .copied()
    };
    let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    let bytes = done.stats.audio_bytes.load(Relaxed);
    let packets = done.stats.audio_packets.load(Relaxed);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(merged_line([json!({
            "workload": "audio",
            "source": "x11",
            "seconds": seconds,
            "link": link_text,
            "audio_packets": packets,
            // Opus payload and its framing, over the time sound played.
            "audio_kbit_s": bytes as f64 * 8.0 / (packets.max(1) as f64 * 0.02) / 1000.0,
            "audio_latency_ms_p50": ms(0.5),
            "audio_latency_ms_p99": ms(0.99),
            "concealed_frames": f.concealed.load(Relaxed),
            "late_packets": f.late.load(Relaxed),
            "gaps": gaps,
            // Sound minus picture of each beep and its flash (positive: sound late).
            "av_flashes_seen": flashes.len(),
            "av_flashes_in_video": flashes_in_video,
            "av_beeps_heard": beeps.len(),
            "av_pairs": offsets.len(),
            "av_offset_ms_p50": at(&viewer, 50),
            "av_offset_abs_ms_p99": at(&abs(&viewer), 99),
            // The same, as the desktop captured them (its player's own offset)...
            "av_desktop_offset_ms_p50": at(&desktop, 50),
            // ...and what the way to the viewer added to it.
            "av_added_offset_ms_p50": at(&added, 50),
            "av_added_offset_abs_ms_p99": at(&abs(&added), 99),
    })]))
}

/// 20 ms frames that went silent between the first and the last sound, among the
/// first `frames`.
fn silent_frames_inside(wav: &std::path::Path, frames: usize) -> anyhow::Result<usize> {
    let mut reader = hound::WavReader::open(wav)?;
    let samples: Vec<i16> = reader.samples::<i16>().collect::<Result<_, _>>()?;
    let loud: Vec<bool> = samples
        .chunks(1920)
        .take(frames)
        .map(|c| c.iter().any(|v| v.unsigned_abs() > 200))
        .collect();
    let (Some(first), Some(last)) = (loud.iter().position(|l| *l), loud.iter().rposition(|l| *l))
    else {
        anyhow::bail!("no sound arrived");
    };
    Ok(loud[first..=last].iter().filter(|l| !**l).count())
}
