//! The server session core fed random client bytes and driver events: records of
//! `[op, len, payload…]`. Whatever comes, it must not panic, must never have two encodes
//! outstanding, and must never let more frames in flight than its window.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use oriel_protocol::session::server::*;
use oriel_protocol::{
    Capabilities, ClipFormat, ClipboardMsg, ClipboardPolicy, CursorMsg, Rect, Reject, RejectCode,
    Size,
};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let config = ServerSessionConfig {
        capabilities: Capabilities::all(),
        handshake_timeout: Duration::from_secs(10),
        frame_window: 4,
        max_video_bitrate: 8_000_000,
    };
    let mut s = ServerSession::new(config, now);
    let mut encoding = false;
    let mut closed = false;
    let mut may_send_frame = false;
    let mut next_frame = 1u64;
    let mut next_picture = 1u64;
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, after) = tail.split_at(len);
        rest = after;
        let byte = |i: usize| payload.get(i).copied().unwrap_or(0);
        match op % 11 {
            0 => s.handle(now, ServerEvent::ControlBytes(payload)),
            1 => s.handle(
                now,
                ServerEvent::StreamBytes {
                    stream: u64::from(byte(0) % 4),
                    bytes: payload.get(1..).unwrap_or_default(),
                },
            ),
            2 => s.handle(now, ServerEvent::StreamFinished { stream: u64::from(byte(0) % 4) }),
            3 if byte(0) % 2 == 0 => s.handle(
                now,
                ServerEvent::Admitted(Admitted {
                    session_id: 1,
                    desktop_size: Size::new(64 + u32::from(byte(1)) * 8, 64 + u32::from(byte(2)) * 8),
                    frame_interval: Duration::from_millis(u64::from(byte(3)).max(1)),
                    // Half the sessions share a small clipboard, with any policy.
                    clipboard: (byte(4) & 1 == 0).then(|| ClipboardPolicy {
                        to_desktop: byte(4) & 2 != 0,
                        to_client: byte(4) & 4 != 0,
                        max_bytes: u32::from(byte(5)) * 16,
                    }),
                    microphone: byte(4) & 8 != 0,
                }),
            ),
            3 => s.handle(
                now,
                ServerEvent::Refused(Reject {
                    code: RejectCode::BadTicket,
                    message: "no".into(),
                }),
            ),
            4 => s.handle(now, ServerEvent::Damage),
            5 if encoding => {
                encoding = false;
                let region = u64::from(byte(1) % 4);
                let mut e = Encoded {
                    lossless_due: byte(0) & 1 != 0,
                    ..Default::default()
                };
                if byte(0) & 2 != 0 && may_send_frame {
                    e.frame = Some(FrameReady {
                        frame_id: next_frame,
                        size: Size::new(64 + u32::from(byte(2)) * 8, 64 + u32::from(byte(3)) * 8),
                        message: vec![0; usize::from(byte(4)) * 64],
                    });
                    next_frame += 1;
                }
                if byte(0) & 4 != 0 {
                    e.started.push(VideoStart {
                        region_id: region,
                        rect: Rect::new(0, 0, 16, 16),
                        after_frame: next_frame,
                    });
                }
                if byte(0) & 8 != 0 {
                    e.pictures.push(PictureReady {
                        region_id: region,
                        frame_no: next_picture,
                        message: vec![1; 16],
                    });
                    next_picture += 1;
                }
                if byte(0) & 16 != 0 {
                    e.ended.push(region);
                }
                if byte(0) & 32 != 0 {
                    e.video_due.push(region);
                }
                if byte(0) & 64 != 0 {
                    e.deadline = Some(now + Duration::from_millis(u64::from(byte(5))));
                }
                s.handle(now, ServerEvent::Encoded(e));
            }
            5 => {}
            6 => {
                now += Duration::from_millis(u64::from(u16::from_le_bytes([byte(0), byte(1)])));
                if s.next_deadline().is_some_and(|d| d <= now) {
                    s.handle_timeout(now);
                }
            }
            7 if byte(0) & 1 == 0 => s.handle(now, ServerEvent::Evicted("gone".into())),
            // The desktop's side of the clipboard.
            7 => {
                let (serial, format) = (u64::from(byte(1)), ClipFormat::Text);
                let msg = match byte(2) % 4 {
                    0 => ClipboardMsg::Offer {
                        selection: oriel_protocol::Selection::Clipboard,
                        serial,
                        formats: vec![format],
                    },
                    1 => ClipboardMsg::Request { serial, format },
                    2 => ClipboardMsg::Data {
                        serial,
                        format,
                        data: vec![0; usize::from(byte(3)) * 8],
                    },
                    _ => ClipboardMsg::Refused {
                        serial,
                        format,
                        reason: "no".into(),
                    },
                };
                s.handle(now, ServerEvent::Clipboard(msg));
            }
            8 if byte(0) & 1 == 0 => s.handle(now, ServerEvent::ControlFinished),
            // A datagram from the client (a microphone packet, or junk).
            8 => s.handle(now, ServerEvent::Datagram(payload.get(1..).unwrap_or_default())),
            9 => {
                let event = match byte(0) % 3 {
                    0 => ServerEvent::CursorShape {
                        serial: u64::from(byte(1)),
                        shape: CursorMsg::Shape {
                            width: 1,
                            height: 1,
                            hot_x: 0,
                            hot_y: 0,
                            pixels: vec![0],
                        },
                    },
                    1 => ServerEvent::CursorPosition {
                        x: u32::from(byte(1)),
                        y: u32::from(byte(2)),
                        visible: true,
                    },
                    _ => ServerEvent::CursorWritten,
                };
                s.handle(now, event);
            }
            _ => s.handle(
                now,
                ServerEvent::Path {
                    rtt: Duration::from_micros(u64::from(u16::from_le_bytes([byte(0), byte(1)])) * 10),
                    cwnd: u64::from(byte(2)) * 4096,
                    lost_packets: u64::from(byte(3)),
                },
            ),
        }
        while let Some(action) = s.poll_action() {
            assert!(!closed, "{action:?} after the close");
            closed = matches!(action, ServerAction::Close { .. });
            if let ServerAction::Encode(order) = action {
                assert!(!encoding, "two encodes outstanding");
                encoding = true;
                may_send_frame = order.lossless;
            }
        }
        let (in_flight, window, _) = s.pacing();
        // The window may shrink under frames already sent; it never grows past them.
        assert!(in_flight <= 4, "{in_flight} frames in flight, window {window}");
    }
});
