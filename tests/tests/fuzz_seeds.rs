//! The fuzzers' seed corpus, `fuzz/seeds/TARGET/`, is made here from real messages, so
//! that the fuzzers start from inputs that get deep into each decoder. The committed
//! files must be what this code makes now: when a wire format changes, this test fails
//! until they are made again with `ORIEL_WRITE_FUZZ_SEEDS=1 cargo test -p oriel-e2e
//! --test fuzz_seeds`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use oriel_protocol::codec::{palette, Encoder, EncoderConfig, FrameMeta};
use oriel_protocol::desktop_spec::DesktopSpec;
use oriel_protocol::host_link::*;
use oriel_protocol::ticket::{sign_ticket, TicketClaims};
use oriel_protocol::wire::encode_message;
use oriel_protocol::*;

type Seeds = BTreeMap<(&'static str, String), Vec<u8>>;

fn message<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    encode_message(msg, usize::MAX >> 1).unwrap()
}

/// Display-stream frames of a 320x200 desktop (the frame decoder target's size).
fn frames(seeds: &mut Seeds) {
    let size = Size::new(320, 200);
    let config = EncoderConfig {
        capabilities: Capabilities::all(),
        zstd_level: 1,
    };
    let mut enc = Encoder::new(size, config).unwrap();
    let mut screen = Framebuffer::new(size);
    let mut stream = Vec::new();
    for step in 0..5u32 {
        let rect = Rect::new(16, 16 + step * 8, 256, 120);
        screen.fill(&Rect::new(0, 0, 320, 200), 0x003366);
        for dy in 0..rect.height {
            for (x, p) in (0u32..).zip(screen.row_mut(&rect, dy).iter_mut()) {
                let y = dy + step * 8;
                *p = if (x / 6 + y / 10).is_multiple_of(3) {
                    0x202020
                } else {
                    0xf0f0f0
                };
            }
        }
        if step == 4 {
            let noise = Rect::new(200, 140, 64, 48);
            for dy in 0..noise.height {
                for (x, p) in (0u32..).zip(screen.row_mut(&noise, dy).iter_mut()) {
                    *p = (x.wrapping_mul(2_654_435_761) ^ dy.wrapping_mul(40_503)) & 0xff_ffff;
                }
            }
        }
        let frame = enc
            .encode(&screen, &TileMask::full(size), FrameMeta::default())
            .unwrap();
        if let Some(frame) = frame {
            let bytes = message(&frame.msg);
            if step == 0 {
                seeds.insert(("frame_decoder", "first-frame".into()), bytes.clone());
            }
            stream.extend(bytes);
        }
    }
    seeds.insert(("frame_decoder", "session".into()), stream);
}

fn channel_messages(seeds: &mut Seeds) {
    let mut add = |name: &str, bytes: Vec<u8>| {
        seeds.insert(("message_reader", name.into()), bytes);
    };
    add(
        "clipboard",
        [
            message(&ClipboardMsg::Policy(ClipboardPolicy::default())),
            message(&ClipboardMsg::Data {
                serial: 3,
                format: ClipFormat::Text,
                data: b"pasted".to_vec(),
            }),
            message(&ClipboardMsg::Refused {
                serial: 3,
                format: ClipFormat::Png,
                reason: "too large".into(),
            }),
        ]
        .concat(),
    );
    add(
        "hello",
        message(&Hello {
            version: PROTOCOL_VERSION,
            capabilities: Capabilities::all(),
            desktop: "desk-1".into(),
            ticket: vec![1; 120],
            desired_size: Some(Size::new(1280, 800)),
            client_name: "oriel".into(),
            held: Some(HeldScreen {
                size: Size::new(128, 100),
                tiles: vec![0x1234_5678_9abc_def0, 7, 8, 9],
            }),
        }),
    );
    add(
        "welcome",
        message(&HelloReply::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            session_id: 7,
            desktop_size: Size::new(1920, 1080),
            capabilities: Capabilities::all(),
        })),
    );
    add(
        "ack",
        message(&ClientControl::Ack {
            frame_id: 9,
            decode_us: 800,
        }),
    );
    add(
        "resize",
        message(&ClientControl::ResizeRequest {
            width: 1280,
            height: 720,
        }),
    );
    add(
        "closing",
        message(&ServerControl::Closing {
            message: "session ended".into(),
        }),
    );
    add(
        "moved",
        message(&ServerControl::Moved(MovedTo {
            address: "127.0.0.1:4433".into(),
            fingerprint: [7; 32],
            ticket: vec![1; 96],
            input_taken: 41,
        })),
    );
    let keys = [
        InputEvent::Key {
            code: 30,
            down: true,
        },
        InputEvent::PointerMove { x: 10, y: 20 },
        InputEvent::Wheel { dx: 0, dy: -1 },
    ];
    add("input", keys.iter().flat_map(message).collect());
    add(
        "cursor",
        message(&CursorMsg::Shape {
            width: 2,
            height: 2,
            hot_x: 0,
            hot_y: 0,
            pixels: vec![0xff00_0000; 4],
        }),
    );
    add(
        "video-start",
        message(&VideoMsg::Start {
            region_id: 1,
            rect: Rect::new(0, 0, 64, 48),
            after_frame: 3,
        }),
    );
}

fn palettes(seeds: &mut Seeds) {
    let pixels: Vec<u32> = (0..256u32)
        .map(|i| [0xffffff, 0x000000, 0x3366cc][(i / 7 % 3) as usize])
        .collect();
    let mut out = Vec::new();
    palette::encode(&pixels, &[0xffffff, 0x000000, 0x3366cc], &mut out);
    let mut seed = u16::try_from(pixels.len()).unwrap().to_le_bytes().to_vec();
    seed.extend(out);
    seeds.insert(("palette_decode", "three-colours".into()), seed);
}

fn i8042(seeds: &mut Seeds) {
    // (op, value) pairs: see the target. Enable the keyboard and the mouse port, set
    // scan code set 2, type a key, stream the mouse.
    let pairs: [(u8, u8); 10] = [
        (1, 0xae),
        (1, 0xa8),
        (0, 0xf0),
        (0, 0x02),
        (4, 0x1e),
        (4 | 0x80, 0x1e),
        (1, 0xd4),
        (0, 0xf4),
        (5, 0x10),
        (2, 0),
    ];
    seeds.insert(
        ("i8042_guest", "keyboard-and-mouse".into()),
        pairs.iter().flat_map(|(o, v)| [*o, *v]).collect(),
    );
}

fn host_link(seeds: &mut Seeds) {
    let report = DesktopReport {
        name: "desk-1".into(),
        running: true,
        failure: None,
        sessions: 1,
        idle_s: 3,
        generation: 4,
        viewer: Some(ViewerFigures {
            session: 1_796_000_000_000_000,
            from: "127.0.0.1:50000".into(),
            fps_tenths: 300,
            kbit_per_s: 4000,
            rtt_us: 900,
            video_regions: 1,
        }),
    };
    let mut add = |name: &str, bytes: Vec<u8>| {
        seeds.insert(("host_link", name.into()), bytes);
    };
    add(
        "register",
        message(&HostMsg::Register(Register {
            join_token: Some("0".repeat(64)),
            credential: None,
            name: "host-1".into(),
            display_address: "127.0.0.1:4433".into(),
            fingerprint: "ab".repeat(32),
            web_address: Some("127.0.0.1:4434".into()),
            web_fingerprints: vec!["cd".repeat(32), "ef".repeat(32)],
            capacity: 16,
            desktops: vec![report.clone()],
        })),
    );
    add(
        "heartbeat",
        message(&HostMsg::Heartbeat {
            capacity: 16,
            load: HostLoad {
                cpu_permille: 250,
                cpus: 2,
                memory_used: 1 << 30,
                memory_total: 24 << 30,
            },
            desktops: vec![report],
        }),
    );
    add(
        "session",
        message(&HostMsg::Session {
            desktop: "desk-1".into(),
            user: "u-1".into(),
            session: 1_796_000_000_000_000,
            event: SessionEvent::Connected {
                from: "127.0.0.1:50000".into(),
            },
        }),
    );
    add(
        "command",
        message(&BrokerMsg::Command {
            id: 3,
            command: HostCommand::Create {
                desktop: "desk-1".into(),
                spec: DesktopSpec::parse("synthetic", r#"{"workload":"idle"}"#).unwrap(),
                generation: 1,
            },
        }),
    );
    add(
        "thumbnail",
        message(&BrokerMsg::Command {
            id: 5,
            command: HostCommand::Thumbnail {
                desktop: "desk-1".into(),
                max_width: 320,
                max_height: 200,
            },
        }),
    );
    add(
        "migrate-out",
        message(&BrokerMsg::Command {
            id: 6,
            command: HostCommand::MigrateOut {
                desktop: "desk-1".into(),
                to: "127.0.0.1:4433".into(),
                fingerprint: [7; 32],
                ticket: vec![2; 128],
                viewer_ticket: Some(vec![3; 96]),
            },
        }),
    );
    add(
        "suspend",
        message(&BrokerMsg::Command {
            id: 7,
            command: HostCommand::Suspend {
                desktop: "desk-1".into(),
            },
        }),
    );
    add(
        "resume",
        message(&BrokerMsg::Command {
            id: 8,
            command: HostCommand::Resume {
                desktop: "desk-1".into(),
                spec: DesktopSpec::parse("kvm", r#"{"image":"tiny"}"#).unwrap(),
                generation: 4,
            },
        }),
    );
    add(
        "migrated",
        message(&HostMsg::CommandDone {
            id: 6,
            error: None,
            output: Some(CommandOutput::Migrated(MigrationFigures {
                downtime_us: 1500,
                total_ms: 20,
                bytes: 3 << 20,
                rounds: 2,
            })),
        }),
    );
    add(
        "thumbnail-done",
        message(&HostMsg::CommandDone {
            id: 5,
            error: None,
            output: Some(CommandOutput::Png(vec![0x89, b'P', b'N', b'G'])),
        }),
    );
    add(
        "revoke",
        message(&BrokerMsg::Command {
            id: 4,
            command: HostCommand::Disconnect {
                desktop: "desk-1".into(),
                generation: 5,
            },
        }),
    );
}

fn tickets(seeds: &mut Seeds) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let claims = |desktop: &str, issued: u64| TicketClaims {
        user: "u-1".into(),
        desktop: desktop.into(),
        issued_unix: issued,
        expires_unix: issued + 30,
        nonce: [3; 16],
        generation: 2,
    };
    let now = 1_800_000_000;
    for (name, c) in [
        ("valid", claims("desk-1", now - 10)),
        ("other-desktop", claims("desk-2", now - 10)),
        ("expired", claims("desk-1", now - 600)),
    ] {
        seeds.insert(("ticket", name.into()), sign_ticket(&c, &key));
    }
}

fn api_input(seeds: &mut Seeds) {
    for (name, text) in [
        (
            "synthetic",
            r#"{"workload":"typing","width":800,"height":600,"fps":30.0}"#,
        ),
        (
            "x11",
            r#"{"width":1280,"height":800,"command":"xterm","layout":"de","server":"xorg"}"#,
        ),
        ("kvm", r#"{"image":"debian","memory_mib":1024,"vcpus":2}"#),
        ("login", r#"{"user":"alice","password":"correct horse"}"#),
    ] {
        seeds.insert(("api_input", name.into()), text.as_bytes().to_vec());
    }
}

/// Scripts for the server session core: records of `[op, len, payload…]` (see
/// `fuzz/fuzz_targets/server_session.rs`).
fn server_session(seeds: &mut Seeds) {
    let record = |op: u8, payload: &[u8]| {
        let mut r = vec![op, u8::try_from(payload.len()).expect("short payload")];
        r.extend_from_slice(payload);
        r
    };
    let hello = message(&Hello {
        version: PROTOCOL_VERSION,
        capabilities: Capabilities::all(),
        desktop: "d".into(),
        ticket: vec![],
        desired_size: None,
        client_name: "fuzz".into(),
        held: None,
    });
    let mut input = vec![1, Channel::Input as u8];
    input.extend(message(&InputEvent::PointerMove { x: 10, y: 10 }));
    let ack = message(&ClientControl::Ack {
        frame_id: 1,
        decode_us: 5,
    });
    let running = [
        record(0, &hello),
        record(3, &[0, 10, 10, 33]),
        record(4, &[]),
    ]
    .concat();
    let session = [
        running.clone(),
        record(5, &[0b0010_0111, 1, 10, 10, 4, 50]),
        record(0, &ack),
        record(1, &input),
        record(6, &[0xf4, 0x01]),
        record(9, &[1, 20, 20]),
        record(9, &[2]),
        record(7, &[]),
    ]
    .concat();
    seeds.insert(("server_session", "session".into()), session);
    let video = [
        running,
        record(5, &[0b0010_1110, 2, 10, 10, 1]),
        record(
            0,
            &message(&ClientControl::VideoAck {
                region_id: 2,
                frame_no: 1,
                decode_us: 3,
            }),
        ),
        record(
            0,
            &message(&ClientControl::KeyframeRequest { region_id: 2 }),
        ),
        record(4, &[]),
        record(5, &[0b0001_0001, 2]),
        record(8, &[]),
    ]
    .concat();
    seeds.insert(("server_session", "video".into()), video);
    let mut clip = vec![2, Channel::Clipboard as u8];
    clip.extend(message(&ClipboardMsg::Offer {
        selection: Selection::Clipboard,
        serial: 1,
        formats: vec![ClipFormat::Text, ClipFormat::Png],
    }));
    clip.extend(message(&ClipboardMsg::Request {
        serial: 4,
        format: ClipFormat::Text,
    }));
    let clipboard = [
        record(0, &hello),
        // Admitted with a clipboard both ways, capped at 4080 bytes.
        record(3, &[0, 10, 10, 33, 0b110, 255]),
        record(1, &clip),
        record(7, &[1, 4, 0]),
        record(7, &[1, 4, 2, 9]),
        record(7, &[1, 1, 1]),
    ]
    .concat();
    seeds.insert(("server_session", "clipboard".into()), clipboard);
}

/// Scripts for the client session core: records of `[op, len, payload…]` (see
/// `fuzz/fuzz_targets/client_session.rs`).
fn client_session(seeds: &mut Seeds) {
    let record = |op: u8, payload: &[u8]| {
        let mut r = vec![op, u8::try_from(payload.len()).expect("short payload")];
        r.extend_from_slice(payload);
        r
    };
    let welcome = message(&HelloReply::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        session_id: 1,
        desktop_size: Size::new(640, 480),
        capabilities: Capabilities::all(),
    }));
    let stream = |id: u8, tag: Channel, body: &[u8]| {
        let mut b = vec![id, tag as u8];
        b.extend_from_slice(body);
        record(1, &b)
    };
    let frame = message(&FrameMsg {
        frame_id: 1,
        source_seq: 1,
        capture_unix_us: 0,
        resize: None,
        copies: vec![],
        video_ended: vec![],
        updates: vec![],
        payload: vec![],
    });
    let start = message(&VideoMsg::Start {
        region_id: 3,
        rect: Rect::new(0, 0, 64, 64),
        after_frame: 1,
    });
    let picture = message(&VideoMsg::Frame(VideoFrame {
        frame_no: 1,
        source_seq: 1,
        capture_unix_us: 0,
        keyframe: true,
        data: vec![0, 0, 0, 1],
    }));
    let session = [
        record(0, &welcome),
        stream(0, Channel::Display, &frame),
        stream(1, Channel::Cursor, &[]),
        stream(2, Channel::Video, &start),
        record(1, &[&[2][..], &picture].concat()),
        record(3, &[]),
        record(4, &[2]),
        record(
            0,
            &message(&ServerControl::Closing {
                message: "bye".into(),
            }),
        ),
        record(2, &[0]),
    ]
    .concat();
    seeds.insert(("client_session", "session".into()), session);
    let clipboard = [
        record(0, &welcome),
        stream(0, Channel::Display, &frame),
        stream(1, Channel::Cursor, &[]),
        stream(
            3,
            Channel::Clipboard,
            &[
                message(&ClipboardMsg::Policy(ClipboardPolicy::default())),
                message(&ClipboardMsg::Offer {
                    selection: Selection::Clipboard,
                    serial: 5,
                    formats: vec![ClipFormat::Png],
                }),
            ]
            .concat(),
        ),
        record(7, &[5, 0, 1]),
        record(7, &[5, 1, 1, 3]),
    ]
    .concat();
    seeds.insert(("client_session", "clipboard".into()), clipboard);
}

fn all_seeds() -> Seeds {
    let mut seeds = Seeds::new();
    frames(&mut seeds);
    channel_messages(&mut seeds);
    palettes(&mut seeds);
    i8042(&mut seeds);
    host_link(&mut seeds);
    tickets(&mut seeds);
    api_input(&mut seeds);
    server_session(&mut seeds);
    client_session(&mut seeds);
    seeds
}

#[test]
fn the_committed_fuzz_seeds_are_current() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let seeds = all_seeds();
    if std::env::var_os("ORIEL_WRITE_FUZZ_SEEDS").is_some() {
        for ((target, name), bytes) in &seeds {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for ((target, name), bytes) in &seeds {
        let path = root.join(target).join(name);
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; make the seeds with ORIEL_WRITE_FUZZ_SEEDS=1",
                path.display()
            )
        });
        assert!(
            &committed == bytes,
            "{} is stale; make the seeds again with ORIEL_WRITE_FUZZ_SEEDS=1",
            path.display()
        );
    }
}
