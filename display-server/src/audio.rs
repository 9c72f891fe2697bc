//! A desktop's sound: a PulseAudio server of its own (started with its X server, a null
//! sink as the only output, so nothing reaches the host's sound), and the capture that
//! reads the sink's monitor in 20 ms frames, encodes them as Opus and hands the packets
//! to the desktop's sessions. Digital silence is not sent: one empty packet marks where it
//! starts.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libpulse_binding::sample::{Format, Spec};
use libpulse_binding::stream::Direction;
use libpulse_simple_binding::Simple;
use oriel_media::{AudioEncoder, AUDIO_FRAME_LEN};
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

/// A PulseAudio server for one desktop; stopped when dropped.
pub struct SoundServer {
    process: Child,
    dir: PathBuf,
}

impl SoundServer {
    /// Starts `pulseaudio` on a socket in a private directory `dir`.
    pub fn start(dir: PathBuf) -> anyhow::Result<SoundServer> {
        let socket = dir.join("native");
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
                "-L",
                &format!("module-native-protocol-unix socket={} auth-anonymous=1", socket.display()),
                "-L",
                "module-null-sink sink_name=oriel rate=48000 channels=2 sink_properties=device.description=Oriel",
            ])
            // Its state and cookie stay in the private directory, away from the user's.
            .env("HOME", &dir)
            .env("XDG_RUNTIME_DIR", &dir)
            .env("XDG_CONFIG_HOME", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start pulseaudio (scripts/install-deps installs it): {e}"))?;
        let mut server = SoundServer { process, dir };
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

    /// What `PULSE_SERVER` is for the desktop's programs.
    pub fn address(&self) -> String {
        format!("unix:{}", self.dir.join("native").display())
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
}

impl DesktopAudio {
    /// Captures the null sink of the sound server at `address`.
    pub fn start(address: &str, desktop: &str) -> anyhow::Result<DesktopAudio> {
        let spec = Spec {
            format: Format::S16le,
            channels: 2,
            rate: AUDIO_RATE,
        };
        let record = Simple::new(
            Some(address),
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
        let mut encoder = AudioEncoder::new(AUDIO_BITRATE)?;
        let (packets, _) = broadcast::channel(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, stopped, name) = (packets.clone(), stop.clone(), desktop.to_owned());
        std::thread::Builder::new()
            .name("audio-capture".into())
            .spawn(move || {
                let mut bytes = vec![0u8; AUDIO_FRAME_LEN * 2];
                let mut seq = 0u64;
                let mut silent = true;
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
                    let after_silence = silent;
                    silent = samples.iter().all(|&s| s == 0);
                    if silent && !after_silence {
                        // The sound stopped: say so in a packet without audio, so that
                        // the client plays silence instead of concealing a loss.
                        let _ = tx.send(Arc::new(AudioPacket {
                            seq,
                            capture_unix_us: captured,
                            after_silence: false,
                            opus: Vec::new(),
                        }));
                    } else if !silent {
                        match encoder.encode(&samples) {
                            Ok(opus) => {
                                let _ = tx.send(Arc::new(AudioPacket {
                                    seq,
                                    capture_unix_us: captured,
                                    after_silence,
                                    opus,
                                }));
                            }
                            Err(e) => tracing::warn!(desktop = name, "audio: {e}"),
                        }
                    }
                    seq += 1;
                }
            })?;
        Ok(DesktopAudio { packets, stop })
    }

    /// The packets from now on, for one session.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AudioPacket>> {
        self.packets.subscribe()
    }
}

impl Drop for DesktopAudio {
    fn drop(&mut self) {
        // The thread ends at its next read, or when the sound server goes.
        self.stop.store(true, Ordering::Relaxed);
    }
}
