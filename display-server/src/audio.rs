//! A desktop's sound: a PulseAudio server of its own (started with its X server, a null
//! sink as the only output, so nothing reaches the host's sound; a source the viewer's
//! microphone feeds), and the capture that reads the sink's monitor in 20 ms frames,
//! encodes them as Opus and hands the packets to the desktop's sessions.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libpulse_binding::sample::{Format, Spec};
use libpulse_binding::stream::Direction;
use libpulse_simple_binding::Simple;
use oriel_media::{Packetizer, AUDIO_FRAME_LEN};
use oriel_protocol::audio::AUDIO_RATE;
use oriel_protocol::AudioPacket;
use tokio::sync::broadcast;

/// Opus bitrate of the desktop's sound: transparent for stereo music, and with the
/// datagrams' framing within 96 kbit/s on the wire.
const AUDIO_BITRATE: i32 = 88_000;
/// How long the sound server may take to accept clients.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Packets queued per session before the oldest are dropped (a second of sound).
const QUEUE: usize = 50;

/// What a desktop's programs and the display server need of its sound server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoundAccess {
    /// `PULSE_SERVER` for the desktop's programs.
    pub address: String,
    /// The pipe that feeds the desktop's default source, if the viewer's microphone is
    /// its microphone.
    pub microphone: Option<PathBuf>,
}

/// A PulseAudio server for one desktop; stopped when dropped.
pub struct SoundServer {
    process: Child,
    dir: PathBuf,
    microphone: Option<PathBuf>,
}

impl SoundServer {
    /// Starts `pulseaudio` on a socket in a private directory `dir`: a null sink as the
    /// default output, and with `microphone` a source fed through a pipe (the viewer's
    /// microphone).
    pub fn start(dir: PathBuf, microphone: bool) -> anyhow::Result<SoundServer> {
        let socket = dir.join("native");
        let mut script = format!(
            "load-module module-native-protocol-unix socket={} auth-anonymous=1\n\
             load-module module-null-sink sink_name=oriel rate=48000 channels=2 \
             sink_properties=device.description=Oriel\n\
             set-default-sink oriel\n",
            socket.display()
        );
        let microphone = microphone.then(|| dir.join("microphone"));
        if let Some(pipe) = &microphone {
            script += &format!(
                "load-module module-pipe-source source_name=oriel_microphone file={} \
                 format=s16le rate=48000 channels=2 \
                 source_properties=device.description=Oriel-microphone\n\
                 set-default-source oriel_microphone\n",
                pipe.display()
            );
        }
        let script_path = dir.join("default.pa");
        std::fs::write(&script_path, script)?;
        let process = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--system=no",
                "--disable-shm=yes",
                "--log-target=stderr",
                "--log-level=error",
                "-F",
            ])
            .arg(&script_path)
            // Its state and cookie stay in the private directory, away from the user's.
            .env("HOME", &dir)
            .env("XDG_RUNTIME_DIR", &dir)
            .env("XDG_CONFIG_HOME", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("cannot start pulseaudio (scripts/install-deps installs it): {e}")
            })?;
        let mut server = SoundServer {
            process,
            dir,
            microphone,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Some(status) = server.process.try_wait()? {
                anyhow::bail!("pulseaudio exited at start ({status})");
            }
            if Instant::now() > deadline {
                anyhow::bail!("pulseaudio did not open its socket within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub fn access(&self) -> SoundAccess {
        SoundAccess {
            address: format!("unix:{}", self.dir.join("native").display()),
            microphone: self.microphone.clone(),
        }
    }
}

impl Drop for SoundServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The capture of one desktop's sound, shared by its sessions.
pub struct DesktopAudio {
    packets: broadcast::Sender<Arc<AudioPacket>>,
    stop: Arc<AtomicBool>,
    microphone: Option<crate::microphone::DesktopMicrophone>,
}

impl DesktopAudio {
    /// Captures the null sink of the sound server at `address`.
    pub fn start(access: &SoundAccess, desktop: &str) -> anyhow::Result<DesktopAudio> {
        let spec = Spec {
            format: Format::S16le,
            channels: 2,
            rate: AUDIO_RATE,
        };
        let record = Simple::new(
            Some(&access.address),
            "oriel-display-server",
            Direction::Record,
            Some("oriel.monitor"),
            "desktop sound",
            &spec,
            None,
            Some(&libpulse_binding::def::BufferAttr {
                maxlength: u32::MAX,
                tlength: u32::MAX,
                prebuf: u32::MAX,
                minreq: u32::MAX,
                // Small fragments: the capture adds 10 ms at most.
                fragsize: 3840, // one 20 ms frame of s16 stereo
            }),
        )
        .map_err(|e| anyhow::anyhow!("cannot record the desktop's sound: {e}"))?;
        let mut packetizer = Packetizer::new(AUDIO_BITRATE)?;
        let (packets, _) = broadcast::channel(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, stopped, name) = (packets.clone(), stop.clone(), desktop.to_owned());
        std::thread::Builder::new()
            .name("audio-capture".into())
            .spawn(move || {
                let mut bytes = vec![0u8; AUDIO_FRAME_LEN * 2];
                while !stopped.load(Ordering::Relaxed) {
                    if let Err(e) = record.read(&mut bytes) {
                        tracing::warn!(desktop = name, "the desktop's sound ended: {e}");
                        return;
                    }
                    let captured = oriel_transport::unix_micros().saturating_sub(20_000); // the frame's first sample
                    let samples: Vec<i16> = bytes
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    match packetizer.frame(&samples, captured) {
                        Ok(Some(packet)) => {
                            let _ = tx.send(Arc::new(packet));
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(desktop = name, "audio: {e}"),
                    }
                }
            })?;
        let microphone = match &access.microphone {
            Some(pipe) => Some(crate::microphone::DesktopMicrophone::start(pipe, desktop)?),
            None => None,
        };
        Ok(DesktopAudio {
            packets,
            stop,
            microphone,
        })
    }

    /// The packets from now on, for one session.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AudioPacket>> {
        self.packets.subscribe()
    }

    /// Where the viewers' microphone goes, if the desktop takes one.
    pub fn microphone(&self) -> Option<crate::microphone::MicrophoneFeed> {
        self.microphone.as_ref().map(|m| m.feed())
    }
}

impl Drop for DesktopAudio {
    fn drop(&mut self) {
        // The thread ends at its next read, or when the sound server goes.
        self.stop.store(true, Ordering::Relaxed);
    }
}
