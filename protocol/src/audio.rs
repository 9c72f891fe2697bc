//! The audio channel: the desktop's sound as Opus packets of 20 ms at 48 kHz stereo,
//! one per QUIC datagram (a lost packet is concealed, never waited for), timestamped
//! on the clock of video pictures. Silence is not sent: an empty packet marks where it
//! starts, and the packet after it says it follows silence.
//!
//! [`JitterBuffer`] is the client's playout: packets in, one 20 ms frame out per tick,
//! at a delay that follows the path's jitter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Samples per second, per channel.
pub const AUDIO_RATE: u32 = 48_000;
pub const AUDIO_CHANNELS: usize = 2;
/// One packet's audio.
pub const AUDIO_FRAME: Duration = Duration::from_millis(20);
/// Samples per channel in one packet.
pub const AUDIO_FRAME_SAMPLES: usize = 960;
/// Largest audio datagram accepted (Opus packets are at most 1275 bytes).
pub const MAX_AUDIO_DATAGRAM: usize = 1400;

/// One 20 ms packet of the desktop's sound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioPacket {
    /// Counts 20 ms frames from the start of capture, silent ones included.
    pub seq: u64,
    /// Wall clock (µs since the Unix epoch) when its first sample was captured.
    pub capture_unix_us: u64,
    /// The frames before it were silent (not sent): play silence, not concealment.
    pub after_silence: bool,
    /// Empty: the sound stopped here; this frame and those until the next packet are
    /// silence.
    pub opus: Vec<u8>,
}

impl AudioPacket {
    /// The datagram that carries it.
    pub fn to_datagram(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    /// Reads a datagram: `None` if it is not one packet.
    pub fn from_datagram(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_AUDIO_DATAGRAM {
            return None;
        }
        let config = bincode::config::standard().with_limit::<MAX_AUDIO_DATAGRAM>();
        match bincode::serde::decode_from_slice::<Self, _>(bytes, config) {
            Ok((packet, used)) if used == bytes.len() => Some(packet),
            _ => None,
        }
    }
}

/// What to play for one 20 ms frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Nothing has arrived yet: play nothing.
    Waiting,
    /// Decode this packet.
    Packet(AudioPacket),
    /// The packet is late or lost: conceal it (Opus PLC).
    Conceal,
    /// The desktop was silent.
    Silence,
}

/// Playout delay bounds: at least two frames, at most what lip sync tolerates.
const MIN_DELAY: Duration = Duration::from_millis(40);
const MAX_DELAY: Duration = Duration::from_millis(200);
/// Packets kept ahead of playout at most (a burst after a stall is cut to this).
const MAX_QUEUED: usize = 25;
/// Missing frames concealed in a row while nothing is queued before the sound is taken
/// to have stopped (then silence is played).
const MAX_BLIND_CONCEALMENT: u32 = 3;

/// The client's playout buffer. Frame `seq` plays at `base + seq × 20 ms + delay`,
/// where `base` comes from the first packet's arrival and `delay` covers the path's
/// jitter (RFC 3550's estimate, times four).
#[derive(Debug, Default)]
pub struct JitterBuffer {
    queue: BTreeMap<u64, AudioPacket>,
    /// Arrival of frame 0, had it come on time.
    base: Option<Instant>,
    /// The next frame to play.
    next: Option<u64>,
    jitter_us: f64,
    last_transit_us: Option<f64>,
    /// Frames concealed in a row with nothing queued after them.
    blind: u32,
    /// The last frame played was sound (a packet or its concealment).
    sounding: bool,
    /// Frames concealed, for the figures.
    pub concealed: u64,
    pub late: u64,
}

impl JitterBuffer {
    pub fn push(&mut self, packet: AudioPacket, now: Instant) {
        let frame = AUDIO_FRAME.as_micros() as f64;
        let base = *self.base.get_or_insert_with(|| {
            now.checked_sub(AUDIO_FRAME * u32::try_from(packet.seq).unwrap_or(0))
                .unwrap_or(now)
        });
        // Transit relative to the schedule; its variation is the jitter.
        let transit =
            now.saturating_duration_since(base).as_micros() as f64 - packet.seq as f64 * frame;
        if let Some(last) = self.last_transit_us {
            self.jitter_us += ((transit - last).abs() - self.jitter_us) / 16.0;
        }
        self.last_transit_us = Some(transit);
        if self.next.is_some_and(|n| packet.seq < n) {
            self.late += 1;
            return;
        }
        self.next.get_or_insert(packet.seq);
        self.queue.insert(packet.seq, packet);
        while self.queue.len() > MAX_QUEUED {
            // Far behind (the path stalled): skip ahead rather than lag for good.
            if let Some((seq, _)) = self.queue.pop_first() {
                self.next = Some(seq + 1);
            }
        }
    }

    /// The playout delay now.
    pub fn delay(&self) -> Duration {
        let jitter = Duration::from_secs_f64((self.jitter_us * 4.0 / 1e6).clamp(0.0, 1.0));
        (MIN_DELAY + jitter).min(MAX_DELAY)
    }

    /// The frame to play at `now`, if one is due (call every 20 ms or more often).
    pub fn pop(&mut self, now: Instant) -> Option<Playout> {
        let (Some(base), Some(next)) = (self.base, self.next) else {
            return Some(Playout::Waiting);
        };
        let due = base + AUDIO_FRAME * u32::try_from(next).unwrap_or(u32::MAX) + self.delay();
        if now < due {
            return None;
        }
        self.next = Some(next + 1);
        if let Some(packet) = self.queue.remove(&next) {
            self.blind = 0;
            self.sounding = !packet.opus.is_empty();
            return Some(if self.sounding {
                Playout::Packet(packet)
            } else {
                Playout::Silence
            });
        }
        // Missing: silence if the next packet that came says so; lost if one came
        // without saying so, or if the sound was playing and nothing came yet (the
        // packet after a loss may still be on its way), for a few frames.
        let silent = match self.queue.first_key_value() {
            Some((_, p)) => p.after_silence,
            None => {
                self.blind += 1;
                !self.sounding || self.blind > MAX_BLIND_CONCEALMENT
            }
        };
        if silent {
            self.sounding = false;
            Some(Playout::Silence)
        } else {
            self.concealed += 1;
            Some(Playout::Conceal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u64, after_silence: bool) -> AudioPacket {
        AudioPacket {
            seq,
            capture_unix_us: seq * 20_000,
            after_silence,
            opus: seq.to_le_bytes()[..3].to_vec(),
        }
    }

    #[test]
    fn datagrams_round_trip_and_junk_is_refused() {
        let p = packet(7, true);
        assert_eq!(AudioPacket::from_datagram(&p.to_datagram()), Some(p));
        assert_eq!(AudioPacket::from_datagram(&[0xff; 40]), None);
        assert_eq!(AudioPacket::from_datagram(&vec![0; 5000]), None);
    }

    #[test]
    fn frames_play_in_order_after_the_delay_and_a_lost_one_is_concealed() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        assert_eq!(jb.pop(t0), Some(Playout::Waiting));
        for seq in [0, 1, 3] {
            jb.push(
                packet(seq, false),
                t0 + AUDIO_FRAME * u32::try_from(seq).unwrap(),
            );
        }
        // Nothing before the delay.
        assert_eq!(jb.pop(t0 + Duration::from_millis(10)), None);
        let mut played = Vec::new();
        let mut t = t0;
        while played.len() < 4 {
            t += Duration::from_millis(5);
            if let Some(p) = jb.pop(t) {
                played.push(p);
            }
        }
        assert_eq!(played[0], Playout::Packet(packet(0, false)));
        assert_eq!(played[1], Playout::Packet(packet(1, false)));
        assert_eq!(played[2], Playout::Conceal);
        assert_eq!(played[3], Playout::Packet(packet(3, false)));
        assert_eq!(jb.concealed, 1);
    }

    #[test]
    fn a_gap_before_a_packet_after_silence_is_silence_and_late_packets_are_dropped() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        jb.push(packet(0, false), t0);
        jb.push(packet(2, true), t0 + AUDIO_FRAME * 2);
        let mut t = t0;
        let mut played = Vec::new();
        while played.len() < 3 {
            t += Duration::from_millis(5);
            if let Some(p) = jb.pop(t) {
                played.push(p);
            }
        }
        assert_eq!(played[1], Playout::Silence);
        jb.push(packet(1, false), t);
        assert_eq!(jb.late, 1);
    }

    #[test]
    fn the_end_of_the_sound_is_silence_without_concealment() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        jb.push(packet(0, false), t0);
        let mut end = packet(1, false);
        end.opus.clear();
        jb.push(end, t0 + AUDIO_FRAME);
        let mut t = t0;
        let mut played = Vec::new();
        while played.len() < 5 {
            t += Duration::from_millis(5);
            if let Some(p) = jb.pop(t) {
                played.push(p);
            }
        }
        assert_eq!(played[0], Playout::Packet(packet(0, false)));
        assert!(
            played[1..].iter().all(|p| *p == Playout::Silence),
            "{played:?}"
        );
        assert_eq!(jb.concealed, 0);
    }

    #[test]
    fn a_loss_with_nothing_queued_yet_is_concealed_and_a_long_quiet_is_silence() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        jb.push(packet(0, false), t0);
        let mut t = t0;
        let mut played = Vec::new();
        while played.len() < 8 {
            t += Duration::from_millis(5);
            if let Some(p) = jb.pop(t) {
                played.push(p);
            }
        }
        assert_eq!(
            played[1..4],
            [Playout::Conceal, Playout::Conceal, Playout::Conceal]
        );
        assert_eq!(
            played[4..],
            [
                Playout::Silence,
                Playout::Silence,
                Playout::Silence,
                Playout::Silence
            ]
        );
    }

    #[test]
    fn jitter_grows_the_delay_within_its_bounds() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        for seq in 0..50u32 {
            let wobble = Duration::from_millis(if seq % 2 == 0 { 0 } else { 30 });
            jb.push(
                packet(u64::from(seq), false),
                t0 + AUDIO_FRAME * seq + wobble,
            );
        }
        assert!(jb.delay() > MIN_DELAY, "{:?}", jb.delay());
        assert!(jb.delay() <= MAX_DELAY);
    }
}
