//! The client session core fed random server bytes and driver answers: records of
//! `[op, len, payload…]`. Whatever comes, it must not panic, must answer every frame
//! and picture the driver hands back, and must fall silent once it has ended.
#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use oriel_protocol::session::client::*;
use oriel_protocol::{Capabilities, ClientControl, Hello, PROTOCOL_VERSION};

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        capabilities: Capabilities::all(),
        desktop: "d".into(),
        ticket: vec![],
        desired_size: None,
        client_name: "fuzz".into(),
        held: None,
    };
    let mut s = ClientSession::new(
        ClientSessionConfig {
            hello,
            handshake_timeout: Duration::from_secs(15),
        },
        now,
    );
    let mut frames = VecDeque::new();
    let mut pictures = VecDeque::new();
    let mut ended = false;
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, after) = tail.split_at(len);
        rest = after;
        let byte = |i: usize| payload.get(i).copied().unwrap_or(0);
        match op % 8 {
            0 => s.handle(now, ClientEvent::ControlBytes(payload)),
            1 => s.handle(
                now,
                ClientEvent::StreamBytes {
                    stream: u64::from(byte(0) % 6),
                    bytes: payload.get(1..).unwrap_or_default(),
                },
            ),
            2 => s.handle(now, ClientEvent::StreamFinished { stream: u64::from(byte(0) % 6) }),
            3 => {
                if let Some(frame_id) = frames.pop_front() {
                    s.handle(now, ClientEvent::FrameApplied { frame_id, decode_us: 1 });
                }
            }
            4 => {
                if let Some((region_id, frame_no)) = pictures.pop_front() {
                    let result = match byte(0) % 3 {
                        0 => PictureResult::Shown,
                        1 => PictureResult::Skipped,
                        _ => PictureResult::Broken,
                    };
                    s.handle(
                        now,
                        ClientEvent::PictureDecoded { region_id, frame_no, decode_us: 1, result },
                    );
                }
            }
            5 => {
                now += Duration::from_millis(u64::from(u16::from_le_bytes([byte(0), byte(1)])));
                s.handle_timeout(now);
            }
            6 => s.handle(now, ClientEvent::ControlFinished),
            // A datagram (an audio packet, or junk).
            _ if byte(2) & 3 == 2 => s.handle(now, ClientEvent::Datagram(payload)),
            // The local microphone.
            _ if byte(2) & 7 == 5 => s.handle(
                now,
                ClientEvent::Microphone(&oriel_protocol::AudioPacket {
                    seq: u64::from(byte(0)),
                    capture_unix_us: 0,
                    after_silence: byte(1) & 1 != 0,
                    opus: payload.get(3..).unwrap_or_default().to_vec(),
                }),
            ),
            // The local clipboard's side.
            _ if byte(2) & 1 == 1 => {
                let (serial, format) = (u64::from(byte(0)), oriel_protocol::ClipFormat::Png);
                let msg = match byte(1) % 3 {
                    0 => oriel_protocol::ClipboardMsg::Request { serial, format },
                    1 => oriel_protocol::ClipboardMsg::Data {
                        serial,
                        format,
                        data: vec![0; usize::from(byte(3)) * 64],
                    },
                    _ => oriel_protocol::ClipboardMsg::Offer {
                        selection: oriel_protocol::Selection::Primary,
                        serial,
                        formats: vec![format],
                    },
                };
                s.handle(now, ClientEvent::Clipboard(msg));
            }
            _ => s.handle(
                now,
                ClientEvent::Request(ClientControl::ResizeRequest {
                    width: u32::from(byte(0)) * 16,
                    height: u32::from(byte(1)) * 16,
                }),
            ),
        }
        while let Some(action) = s.poll_action() {
            assert!(!ended, "an action after the session ended: {action:?}");
            match action {
                ClientAction::ApplyFrame(f) => frames.push_back(f.frame_id),
                ClientAction::DecodePicture { region_id, frame, .. } => {
                    pictures.push_back((region_id, frame.frame_no))
                }
                ClientAction::Ended | ClientAction::Fail(_) => ended = true,
                _ => {}
            }
        }
        assert_eq!(ended, s.is_closed());
    }
});
