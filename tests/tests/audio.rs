//! The desktop's sound reaches the client: a chirp made with sox, played in an x11
//! desktop with paplay (into the desktop's own PulseAudio), arrives in the headless
//! client's WAV file, also across a lossy link. And back: a WAV as the client's
//! microphone is what parecord records in the desktop. A clip that flashes and beeps
//! together, played by ffplay, stays in sync on its way to the viewer.

use std::path::Path;
use std::time::Duration;

use oriel_display_server::desktop::Desktop;
use oriel_display_server::source::x11::X11Source;
use oriel_display_server::source::xserver::XSessionConfig;
use oriel_display_server::source::FrameSource;
use oriel_display_server::{DisplayServer, ServerConfig};
use oriel_e2e::sound::{
    best_match, chirp, left_channel, parecord, silent_frames, stop, windowed_match,
};
use oriel_e2e::{connect_options, temp_dir};
use oriel_netem::{LinkSpec, Relay};
use oriel_protocol::Size;
use oriel_transport::tls::Identity;

/// An x11 desktop with a sound server, served; and its `PULSE_SERVER`.
fn serve_with_sound() -> (DisplayServer, String) {
    let (server, pulse, _) = serve_sized(Size::new(320, 240));
    (server, pulse)
}

/// Like [`serve_with_sound`], of `size`; also its X display.
fn serve_sized(size: Size) -> (DisplayServer, String, String) {
    let config = XSessionConfig {
        size,
        command: Some("sleep 600".into()),
        audio: true,
        microphone: true,
        ..Default::default()
    };
    let source = X11Source::spawn_session(&config, 30).expect("Xvfb runs");
    let pulse = source
        .sound_server()
        .expect("pulseaudio runs (scripts/install-deps installs it)")
        .address;
    let display = source.display().to_owned();
    let identity = Identity::generate(&["localhost".into()]).expect("identity");
    let server_config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let desktop = Desktop::new("x", Box::new(source) as Box<dyn FrameSource>);
    let server = DisplayServer::start(server_config, &identity, vec![desktop]).unwrap();
    (server, pulse, display)
}

/// Plays the chirp in the desktop while a headless client records; returns the
/// correlation, and the client's audio figures.
async fn play_through(link: Option<&str>, tag: &str) -> (f64, u64, u64, u64) {
    let (server, pulse) = serve_with_sound();
    let dir = temp_dir(tag);
    let (reference, recorded) = (dir.join("chirp.wav"), dir.join("client.wav"));
    chirp(&reference);
    let mut opts = connect_options(&server, "x");
    let relay = match link {
        Some(spec) => {
            let spec: LinkSpec = spec.parse().unwrap();
            let relay = Relay::start(server.local_addr().unwrap(), spec)
                .await
                .unwrap();
            opts.addr = relay.addr();
            Some(relay)
        }
        None => None,
    };
    let audio = oriel::audio::AudioOutput::to_wav(&recorded).unwrap();
    opts.audio = Some(audio.clone());
    let session = oriel::Session::connect(&opts).await.expect("connect");
    let run = tokio::spawn(session.run(
        oriel::StopWhen {
            duration: Some(Duration::from_secs(5)),
            ..Default::default()
        },
        None,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let played = tokio::process::Command::new("paplay")
        .arg(&reference)
        .env("PULSE_SERVER", &pulse)
        .status()
        .await
        .expect("paplay runs (pulseaudio-utils)");
    assert!(played.success());
    run.await.unwrap().expect("the session runs");
    audio.finish().await.unwrap();
    drop(relay);
    let recorded = left_channel(&recorded);
    let r = best_match(&left_channel(&reference), &recorded);
    // Continuous: no 20 ms of the chirp went silent.
    let gaps = silent_frames(&recorded);
    assert!(
        gaps.is_empty(),
        "silent 20 ms frames inside the chirp: {gaps:?}; figures {:?}",
        audio.figures
    );
    let f = &audio.figures;
    use std::sync::atomic::Ordering::Relaxed;
    let figures = (
        f.packets.load(Relaxed),
        f.concealed.load(Relaxed),
        f.latency_us.load(Relaxed),
    );
    eprintln!(
        "{tag}: correlation {r:.3}, packets {}, concealed {}, latency {} µs",
        figures.0, figures.1, figures.2
    );
    (r, figures.0, figures.1, figures.2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chirp_played_in_the_desktop_arrives_in_the_clients_wav() {
    let (r, packets, _, _) = play_through(None, "audio-loopback").await;
    // 1.5 s of chirp is 75 packets; silence before and after is not sent.
    assert!((70..=110).contains(&packets), "{packets} packets");
    assert!(r >= 0.9, "cross-correlation {r:.3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_percent_loss_is_concealed_and_the_sound_stays_continuous() {
    let (r, packets, concealed, _) = play_through(Some("rtt=40ms,loss=1%"), "audio-loss").await;
    assert!(packets >= 60, "{packets} packets");
    assert!(concealed <= 10, "{concealed} frames concealed");
    // A concealed frame of a sweep is audibly fine but out of phase for a few frames,
    // which a sample-by-sample correlation counts fully.
    assert!(r >= 0.5, "cross-correlation {r:.3} across 1% loss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_microphone_is_what_parecord_records_in_the_desktop() {
    let (server, pulse) = serve_with_sound();
    let dir = temp_dir("audio-microphone");
    let (said, heard) = (dir.join("said.wav"), dir.join("heard.wav"));
    chirp(&said);
    // The desktop's program records its default source, as a video call would.
    let mut parecord = tokio::process::Command::new("parecord")
        .args([
            "--rate=48000",
            "--channels=2",
            "--format=s16le",
            "--file-format=wav",
        ])
        .arg("--latency-msec=20")
        .arg(&heard)
        .env("PULSE_SERVER", &pulse)
        .kill_on_drop(true)
        .spawn()
        .expect("parecord runs (pulseaudio-utils)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut opts = connect_options(&server, "x");
    opts.microphone = Some(oriel::microphone::Microphone::from_wav(&said).unwrap());
    let session = oriel::Session::connect(&opts).await.expect("connect");
    session
        .run(
            oriel::StopWhen {
                duration: Some(Duration::from_secs(3)),
                ..Default::default()
            },
            None,
        )
        .await
        .expect("the session runs");
    // parecord completes its file on SIGINT.
    let pid = parecord.id().expect("parecord runs");
    // SAFETY: kill(2) on the child we started; it has not been waited for yet.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = parecord.wait().await.unwrap();
    assert!(
        status.success() || status.code().is_some(),
        "parecord: {status}"
    );
    let recorded = left_channel(&heard);
    let r = best_match(&left_channel(&said), &recorded);
    let peak = recorded.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    eprintln!(
        "microphone: correlation {r:.3} over {} samples, peak {peak}",
        recorded.len()
    );
    assert!(r >= 0.9, "cross-correlation {r:.3}");
}

/// Writes `wav`'s samples into the pipe of a sound server's pipe source in real time.
fn feed_pipe(pipe: std::path::PathBuf, wav: &Path) -> std::thread::JoinHandle<()> {
    let mut reader = hound::WavReader::open(wav).unwrap();
    let bytes: Vec<u8> = reader
        .samples::<i16>()
        .flat_map(|s| s.unwrap().to_le_bytes())
        .collect();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut pipe = std::fs::OpenOptions::new().write(true).open(pipe).unwrap();
        let start = std::time::Instant::now();
        for (k, frame) in bytes.chunks(3840).enumerate() {
            let due = start + Duration::from_millis(20 * k as u64);
            std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
            pipe.write_all(frame).unwrap();
        }
    })
}

/// The viewer program with real sound devices: cpal on ALSA, whose PulseAudio plugin
/// reaches a sound server standing in for the viewer machine's (a null sink as its
/// output, a pipe as its input).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_plays_on_its_output_device_and_sends_its_input_device() {
    let (server, desktop_pulse) = serve_with_sound();
    let dir = temp_dir("audio-devices");
    std::fs::create_dir_all(dir.join("local-pulse")).unwrap();
    let local = oriel_display_server::audio::SoundServer::start(dir.join("local-pulse"), true)
        .expect("pulseaudio runs");
    let access = local.access();
    let (chirp_path, heard_here, heard_there) = (
        dir.join("chirp.wav"),
        dir.join("speaker.wav"),
        dir.join("desktop-mic.wav"),
    );
    chirp(&chirp_path);
    let speaker = parecord(&access.address, Some("oriel.monitor"), &heard_here);
    let desktop_mic = parecord(&desktop_pulse, None, &heard_there);
    let viewer = tokio::process::Command::new(oriel_e2e::workspace_binary("oriel"))
        .args(["connect", &server.local_addr().unwrap().to_string()])
        .args(["--fingerprint", &server.fingerprint().to_string()])
        .args(["--desktop", "x", "--headless", "--speaker", "--microphone"])
        .args(["--duration", "5s"])
        .env("PULSE_SERVER", &access.address)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("oriel runs");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The desktop plays the chirp while the viewer's microphone hears it.
    let mic = feed_pipe(access.microphone.clone().unwrap(), &chirp_path);
    let played = tokio::process::Command::new("paplay")
        .arg(&chirp_path)
        .env("PULSE_SERVER", &desktop_pulse)
        .status()
        .await
        .unwrap();
    assert!(played.success());
    mic.join().unwrap();
    let out = viewer.wait_with_output().await.unwrap();
    assert!(out.status.success(), "the viewer failed: {out:?}");
    stop(speaker).await;
    stop(desktop_mic).await;
    let reference = left_channel(&chirp_path);
    let here = windowed_match(&reference, &left_channel(&heard_here));
    let there = windowed_match(&reference, &left_channel(&heard_there));
    eprintln!(
        "speaker: correlation {here:.3} (whole {:.3}); microphone: correlation {there:.3} (whole {:.3})",
        best_match(&reference, &left_channel(&heard_here)),
        best_match(&reference, &left_channel(&heard_there)),
    );
    assert!(
        here >= 0.9,
        "the viewer's speaker: cross-correlation {here:.3}"
    );
    assert!(
        there >= 0.9,
        "the viewer's microphone: cross-correlation {there:.3}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_that_flashes_and_beeps_together_stays_in_sync_on_its_way_to_the_viewer() {
    use oriel_e2e::av_sync::{beep_onsets, make_clip, offsets, play_in_desktop, FlashWatch};
    let (server, pulse, display) = serve_sized(Size::new(640, 480));
    let dir = temp_dir("lip-sync");
    let (clip, recorded) = (dir.join("clip.mkv"), dir.join("client.wav"));
    make_clip(&clip).expect("ffmpeg makes the clip");
    let mut opts = connect_options(&server, "x");
    let audio = oriel::audio::AudioOutput::to_wav(&recorded).unwrap();
    opts.audio = Some(audio.clone());
    let session = oriel::Session::connect(&opts).await.expect("connect");
    let flashes = std::sync::Arc::new(std::sync::Mutex::new(FlashWatch::default()));
    let run = tokio::spawn(session.run_observed(
        oriel::StopWhen {
            duration: Some(Duration::from_secs(10)),
            ..Default::default()
        },
        None,
        FlashWatch::observer(flashes.clone()),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::spawn_blocking(move || play_in_desktop(&clip, &display, &pulse))
        .await
        .unwrap()
        .expect("ffplay plays the clip");
    run.await.unwrap().expect("the session runs");
    audio.finish().await.unwrap();
    let beeps = beep_onsets(&recorded, 0, &audio.figures.packets_played()).unwrap();
    let flashes = flashes.lock().unwrap();
    let pairs = offsets(&flashes.onsets, &beeps);
    eprintln!(
        "{} flashes ({} as video), {} beeps; offsets {pairs:?}",
        flashes.onsets.len(),
        flashes.in_video,
        beeps.len()
    );
    // The player's own sync is its business; what the way to the viewer adds is ours.
    let added: Vec<f64> = pairs.iter().filter_map(|p| p.added_ms()).collect();
    assert!(
        added.len() >= 3,
        "too few flashes shown as video next to a beep: {pairs:?}"
    );
    assert!(
        added.iter().all(|a| a.abs() <= 40.0),
        "sound and picture drifted apart by more than 40 ms: {added:?}"
    );
}
