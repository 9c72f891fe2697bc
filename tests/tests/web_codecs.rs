//! The browser client's protocol and lossless decoding (broker/src/web/assets/wire.js
//! and decoder.js) against the Rust ones, in node: frames made by the real encoder from
//! synthetic desktops (typing, scrolling with copy-rects, tile cache hits and evictions,
//! resizes, a tiny first zstd chunk, lossless video) must leave the JS decoder with
//! exactly the Rust decoder's pixels and the same tile keys; server messages decode to
//! what they hold, client messages encoded in JS decode in Rust; corrupted input throws
//! (tests/web/decode_check.mjs has those checks). The page's playout buffer for sound
//! runs on arrival traces (tests/web/playout_check.mjs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oriel_display_server::source::synthetic::{SyntheticConfig, SyntheticSource, Workload};
use oriel_display_server::source::FrameSource;
use oriel_protocol::codec::{Decoder, Encoder, EncoderConfig, FrameMeta};
use oriel_protocol::wire::{encode_message, MessageReader};
use oriel_protocol::*;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

const LOSSLESS: u32 = CAP_SOLID | CAP_PALETTE | CAP_ZSTD | CAP_COPY_RECT | CAP_TILE_CACHE;
const NODE_TIMEOUT: Duration = Duration::from_secs(300);

fn caps(flags: u32, tile_cache_entries: u32) -> Capabilities {
    Capabilities {
        flags,
        tile_cache_entries,
    }
}

/// Frames of one workload: encoded as the display server does, applied to the Rust
/// decoder, and kept as the display stream's bytes.
struct Case {
    name: &'static str,
    caps: Capabilities,
    start: Size,
    enc: Encoder,
    dec: Decoder,
    stream: Vec<u8>,
    frames: u32,
    copies: u32,
    cache_hits: u32,
    first_payload: Option<usize>,
}

impl Case {
    fn new(name: &'static str, start: Size, caps: Capabilities) -> Self {
        let config = EncoderConfig {
            capabilities: caps,
            zstd_level: 1,
        };
        Self {
            name,
            caps,
            start,
            enc: Encoder::new(start, config).expect("encoder"),
            dec: Decoder::new(start, caps).expect("decoder"),
            stream: Vec::new(),
            frames: 0,
            copies: 0,
            cache_hits: 0,
            first_payload: None,
        }
    }

    /// Sends what changed in `damage` of `screen` (a new size resizes first).
    fn send(&mut self, screen: &Framebuffer, damage: &[Rect], seq: u64) {
        if screen.size() != self.enc.client_view().size() {
            self.enc.resize(screen.size());
        }
        let mut mask = TileMask::new(screen.size());
        for rect in damage {
            mask.mark_rect(rect);
        }
        let meta = FrameMeta {
            source_seq: seq,
            capture_unix_us: 1_700_000_000_000_000 + seq,
        };
        let Some(frame) = self.enc.encode(screen, &mask, meta).expect("encodes") else {
            return;
        };
        self.frames += 1;
        self.copies += frame.stats.copies;
        self.cache_hits += frame.stats.cache_hits;
        self.first_payload.get_or_insert(frame.msg.payload.len());
        let limit = Channel::Display.max_message_len();
        self.stream
            .extend(encode_message(&frame.msg, limit).expect("fits the display channel"));
        self.dec
            .apply(&frame.msg)
            .expect("the Rust decoder takes it");
    }

    /// Polls `source` `ticks` times, sending each poll's damage.
    fn play(&mut self, source: &mut SyntheticSource, ticks: u32) {
        for _ in 0..ticks {
            let damage = source.poll();
            self.send(source.pixels(), &damage, source.sequence());
        }
    }

    /// Writes the stream and the expected pixels; the Rust decoder must hold `screen`.
    fn write(&self, dir: &Path, screen: &Framebuffer) -> Value {
        assert!(
            self.dec.framebuffer() == screen,
            "{}: the Rust decoder does not end with the source's pixels",
            self.name
        );
        let stream = format!("{}.bin", self.name);
        let expect = format!("{}.pixels", self.name);
        fs::write(dir.join(&stream), &self.stream).expect("write stream");
        fs::write(dir.join(&expect), le_bytes(screen.pixels())).expect("write pixels");
        json!({
            "name": self.name,
            "width": self.start.width,
            "height": self.start.height,
            "caps": {"flags": self.caps.flags, "tileCacheEntries": self.caps.tile_cache_entries},
            "stream": stream,
            "expect": expect,
        })
    }
}

fn le_bytes(pixels: &[u32]) -> Vec<u8> {
    pixels.iter().flat_map(|p| p.to_le_bytes()).collect()
}

fn synthetic(workload: Workload, size: Size) -> SyntheticSource {
    SyntheticSource::new(SyntheticConfig {
        workload,
        size,
        fps: 30,
        max_ticks: None,
    })
    .expect("synthetic source (fonts-dejavu-core installed?)")
}

/// A workload played on a synthetic desktop; returns the case and its final screen.
fn workload(name: &'static str, workload: Workload, size: Size, ticks: u32) -> (Case, Framebuffer) {
    let mut source = synthetic(workload, size);
    let mut case = Case::new(name, size, caps(LOSSLESS, 2048));
    case.play(&mut source, ticks);
    (case, source.pixels().clone())
}

/// Pseudo-random pixels in `rect`, the same for the same seed.
fn noise(fb: &mut Framebuffer, rect: &Rect, seed: u32) {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    for dy in 0..rect.height {
        for p in fb.row_mut(rect, dy) {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            *p = s & 0xff_ffff;
        }
    }
}

/// Popups of four contents in three places over a desktop, each closed again: what they
/// covered comes back from the tile cache, which is small enough to evict.
fn popups() -> (Case, Framebuffer) {
    let size = Size::new(1280, 720);
    let mut source = synthetic(Workload::Typing, size);
    let mut case = Case::new("cache", size, caps(LOSSLESS, 40));
    case.play(&mut source, 1);
    let base = source.pixels().clone();
    let places = [
        Rect::new(128, 64, 256, 192),
        Rect::new(100, 70, 300, 200),
        Rect::new(640, 320, 320, 256),
    ];
    let mut seq = source.sequence();
    for i in 0..24u32 {
        let place = places[(i % 3) as usize];
        let mut shown = base.clone();
        noise(&mut shown, &place, i % 4);
        seq += 1;
        case.send(&shown, &[place], seq);
        seq += 1;
        case.send(&base, &[place], seq);
    }
    (case, base)
}

/// A desktop that changes size twice, to sizes whose edge tiles are not 64 wide.
fn resizes() -> (Case, Framebuffer) {
    let mut source = synthetic(Workload::Typing, Size::new(800, 600));
    let mut case = Case::new("resize", Size::new(800, 600), caps(LOSSLESS, 2048));
    case.play(&mut source, 10);
    for size in [
        Size::new(1000, 700),
        Size::new(800, 600),
        Size::new(999, 533),
    ] {
        source
            .request_resize(size)
            .expect("the synthetic desktop resizes");
        case.play(&mut source, 8);
    }
    (case, source.pixels().clone())
}

/// A 2x1 desktop without solid fills or palettes: the first chunk of the zstd stream is
/// shorter than what fzstd decodes from a first push.
fn tiny() -> (Case, Framebuffer) {
    let size = Size::new(2, 1);
    let mut case = Case::new(
        "tiny",
        size,
        caps(CAP_ZSTD | CAP_COPY_RECT | CAP_TILE_CACHE, 16),
    );
    let states: [[u32; 2]; 5] = [
        [0x11_2233, 0x44_5566],
        [0x77_8899, 0xaa_bbcc],
        [0x11_2233, 0x44_5566],
        [0x77_8899, 0x44_5566],
        [0, 0xff_ffff],
    ];
    let mut screen = Framebuffer::new(size);
    for (seq, pixels) in (1..).zip(states) {
        screen = Framebuffer::from_pixels(size, pixels.to_vec()).expect("2x1 pixels");
        case.send(&screen, &[size.full_rect()], seq);
    }
    let first = case.first_payload.expect("a first frame");
    assert!(first < 18, "the tiny first chunk is {first} bytes");
    (case, screen)
}

/// Server messages with the object wire.js must decode each to.
fn server_messages() -> Vec<Value> {
    fn body<T: serde::Serialize>(msg: &T) -> String {
        let bytes = encode_message(msg, usize::MAX).expect("encodes");
        bytes[4..].iter().map(|b| format!("{b:02x}")).collect()
    }
    let entry = |decode: &str, body: String, expect: Value| json!({"decode": decode, "body": body, "expect": expect});
    let rect = Rect::new(1, 2, 300, 40_000);
    let rect_json = json!({"x": 1, "y": 2, "width": 300, "height": 40_000});
    let frame = FrameMsg {
        frame_id: 1 << 40,
        source_seq: 251,
        capture_unix_us: 1_700_000_000_123_456,
        resize: Some(Size::new(70_000, 1)),
        copies: vec![CopyRect {
            dst: rect,
            src_x: 65_535,
            src_y: 65_536,
        }],
        video_ended: vec![1, u64::MAX],
        updates: vec![
            RectUpdate {
                rect,
                kind: UpdateKind::Solid(0xff12_3456),
            },
            RectUpdate {
                rect,
                kind: UpdateKind::Palette { len: 250 },
            },
            RectUpdate {
                rect,
                kind: UpdateKind::Raw,
            },
            RectUpdate {
                rect,
                kind: UpdateKind::CacheHit(u64::MAX - 5),
            },
            RectUpdate {
                rect,
                kind: UpdateKind::CacheHit(7),
            },
        ],
        payload: vec![1, 2, 3],
    };
    let audio = AudioPacket {
        seq: 9,
        capture_unix_us: 1 << 53,
        after_silence: true,
        opus: vec![0xfc, 0xff],
    };
    vec![
        entry(
            "decodeHelloReply",
            body(&HelloReply::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                session_id: u64::MAX - 1,
                desktop_size: Size::new(1920, 1080),
                capabilities: caps(LOSSLESS, 2048),
            })),
            json!({"type": "Welcome", "version": 4, "sessionId": "18446744073709551614",
                   "desktopSize": {"width": 1920, "height": 1080},
                   "capabilities": {"flags": LOSSLESS, "tileCacheEntries": 2048}}),
        ),
        entry(
            "decodeHelloReply",
            body(&HelloReply::Reject(Reject {
                code: RejectCode::BadTicket,
                message: "ticket expired ✓".into(),
            })),
            json!({"type": "Reject", "code": "BadTicket", "message": "ticket expired ✓"}),
        ),
        entry(
            "decodeServerControl",
            body(&ServerControl::Flow {
                frames_in_flight: 1,
                frame_window: 300,
                video_bitrate: 70_000,
            }),
            json!({"type": "Flow", "framesInFlight": 1, "frameWindow": 300, "videoBitrate": 70_000}),
        ),
        entry(
            "decodeServerControl",
            body(&ServerControl::Moved(MovedTo {
                address: "10.0.0.2:4433".into(),
                fingerprint: std::array::from_fn(|i| u8::try_from(i * 8).unwrap()),
                ticket: vec![9; 300],
                input_taken: (1 << 53) - 1,
            })),
            json!({"type": "Moved", "address": "10.0.0.2:4433",
                   "fingerprint": (0..32).map(|i| i * 8).collect::<Vec<u32>>(),
                   "ticket": vec![9; 300], "inputTaken": 9_007_199_254_740_991u64}),
        ),
        entry(
            "decodeFrameMsg",
            body(&frame),
            json!({"frameId": 1u64 << 40, "sourceSeq": 251, "captureUnixUs": 1_700_000_000_123_456u64,
                   "resize": {"width": 70_000, "height": 1},
                   "copies": [{"dst": rect_json, "srcX": 65_535, "srcY": 65_536}],
                   "videoEnded": [json!(1), json!("18446744073709551615")],
                   "updates": [
                       {"rect": rect_json, "kind": "Solid", "colour": 0xff12_3456u32},
                       {"rect": rect_json, "kind": "Palette", "len": 250},
                       {"rect": rect_json, "kind": "Raw"},
                       {"rect": rect_json, "kind": "CacheHit", "key": (u64::MAX - 5).to_string()},
                       {"rect": rect_json, "kind": "CacheHit", "key": "7"},
                   ],
                   "payload": [1, 2, 3]}),
        ),
        entry(
            "decodeVideoMsg",
            body(&VideoMsg::Start {
                region_id: 3,
                rect,
                after_frame: 250,
            }),
            json!({"type": "Start", "regionId": 3, "rect": rect_json, "afterFrame": 250}),
        ),
        entry(
            "decodeVideoMsg",
            body(&VideoMsg::Frame(VideoFrame {
                frame_no: 65_536,
                source_seq: 1 << 32,
                capture_unix_us: 1 << 53,
                keyframe: true,
                data: vec![0, 0, 1, 0x67],
            })),
            json!({"type": "Frame", "frameNo": 65_536, "sourceSeq": 1u64 << 32,
                   "captureUnixUs": "9007199254740992", "keyframe": true, "data": [0, 0, 1, 0x67]}),
        ),
        entry(
            "decodeCursorMsg",
            body(&CursorMsg::Shape {
                width: 2,
                height: 1,
                hot_x: 1,
                hot_y: 0,
                pixels: vec![0xff00_ff00, 0x80ff_ffff],
            }),
            json!({"type": "Shape", "width": 2, "height": 1, "hotX": 1, "hotY": 0,
                   "pixels": [0xff00_ff00u32, 0x80ff_ffffu32]}),
        ),
        entry(
            "decodeCursorMsg",
            body(&CursorMsg::Position {
                x: 5,
                y: 6,
                visible: false,
            }),
            json!({"type": "Position", "x": 5, "y": 6, "visible": false}),
        ),
        entry(
            "decodeClipboardMsg",
            body(&ClipboardMsg::Refused {
                serial: 12,
                format: ClipFormat::Png,
                reason: "too large".into(),
            }),
            json!({"type": "Refused", "serial": 12, "format": "Png", "reason": "too large"}),
        ),
        entry(
            "decodeClipboardMsg",
            body(&ClipboardMsg::Policy(ClipboardPolicy {
                to_desktop: true,
                to_client: false,
                max_bytes: 1 << 24,
            })),
            json!({"type": "Policy", "toDesktop": true, "toClient": false, "maxBytes": 1 << 24}),
        ),
        entry(
            "decodeAudioPacket",
            audio
                .to_datagram()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            json!({"seq": 9, "captureUnixUs": "9007199254740992", "afterSilence": true, "opus": [0xfc, 0xff]}),
        ),
    ]
}

/// Reads client.bin, which decode_check.mjs encodes with wire.js: the same messages.
fn check_client_messages(bytes: &[u8]) {
    let mut reader = MessageReader::new(usize::MAX);
    reader.push(bytes);
    fn next<T: DeserializeOwned>(reader: &mut MessageReader) -> T {
        reader
            .next_message()
            .expect("decodes")
            .expect("a whole message")
    }
    let hello: Hello = next(&mut reader);
    assert_eq!(
        hello,
        Hello {
            version: PROTOCOL_VERSION,
            capabilities: caps(0x1f, 2048),
            desktop: "desk-ü".into(),
            ticket: vec![1, 2, 250, 251, 252, 253, 254, 255],
            desired_size: Some(Size::new(1920, 1080)),
            client_name: "oriel-web test".into(),
            held: Some(HeldScreen {
                size: Size::new(65, 1),
                tiles: vec![0, 0xfedc_ba98_7654_3210],
            }),
        }
    );
    let empty: Hello = next(&mut reader);
    assert_eq!(
        (empty.desired_size, empty.held, empty.ticket.len()),
        (None, None, 0)
    );
    let controls: Vec<ClientControl> = (0..5).map(|_| next(&mut reader)).collect();
    assert_eq!(
        controls,
        vec![
            ClientControl::Ack {
                frame_id: 1 << 40,
                decode_us: 70_000
            },
            ClientControl::RefreshRequest,
            ClientControl::VideoAck {
                region_id: u64::MAX,
                frame_no: 250,
                decode_us: 251
            },
            ClientControl::KeyframeRequest { region_id: 65_536 },
            ClientControl::ResizeRequest {
                width: u32::MAX,
                height: 0
            },
        ]
    );
    let input: Vec<InputEvent> = (0..4).map(|_| next(&mut reader)).collect();
    assert_eq!(
        input,
        vec![
            InputEvent::Key {
                code: 30,
                down: true
            },
            InputEvent::PointerMove { x: 1919, y: 1079 },
            InputEvent::PointerButton {
                button: PointerButton::Forward,
                down: false
            },
            InputEvent::Wheel {
                dx: -32768,
                dy: 32767
            },
        ]
    );
    let clipboard: Vec<ClipboardMsg> = (0..2).map(|_| next(&mut reader)).collect();
    assert_eq!(
        clipboard,
        vec![
            ClipboardMsg::Offer {
                selection: Selection::Primary,
                serial: 7,
                formats: vec![ClipFormat::Text, ClipFormat::Png],
            },
            ClipboardMsg::Data {
                serial: 8,
                format: ClipFormat::Png,
                data: vec![0, 255]
            },
        ]
    );
    reader.finish().expect("nothing after the last message");
}

/// Runs `tests/web/SCRIPT` on `dir`; node must be there (the test fails, it does not
/// skip, without it).
fn run_node(script: &str, dir: &Path) {
    let name = script;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("web")
        .join(name);
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "this test runs the browser client's decoders in node, which is missing or broken \
             ({other:?}): ./scripts/install-deps installs nodejs"
        ),
    }
    let log = fs::File::create(dir.join("node.log")).expect("log file");
    let mut child = Command::new("node")
        .arg(&script)
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("node starts");
    let deadline = Instant::now() + NODE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} hung for {NODE_TIMEOUT:?}: {}", read_log(dir));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "{name} failed ({status}):\n{}",
        read_log(dir)
    );
}

fn read_log(dir: &Path) -> String {
    fs::read_to_string(dir.join("node.log")).unwrap_or_default()
}

#[test]
fn the_browser_decoder_matches_the_rust_decoder() {
    let dir = oriel_e2e::temp_dir("web-codecs");
    let started = Instant::now();
    let made = [
        workload("typing", Workload::Typing, Size::new(1920, 1080), 90),
        workload("scroll", Workload::Scroll, Size::new(1920, 1080), 60),
        workload("mixed", Workload::Mixed, Size::new(1280, 720), 90),
        workload("video-lossless", Workload::Video, Size::new(1920, 1080), 10),
        popups(),
        resizes(),
        tiny(),
    ];
    let (scroll, cache) = (&made[1].0, &made[4].0);
    assert!(scroll.copies > 0, "the scroll workload made no copy-rects");
    assert!(cache.cache_hits > 0, "the popups made no tile cache hits");
    let cases: Vec<Value> = made
        .iter()
        .map(|(case, screen)| case.write(&dir, screen))
        .collect();
    let spec = json!({"cases": cases, "wire": server_messages(), "corrupt": "typing"});
    fs::write(dir.join("cases.json"), spec.to_string()).expect("write cases.json");
    eprintln!(
        "encoded {} workloads in {:?}",
        made.len(),
        started.elapsed()
    );

    run_node("decode_check.mjs", &dir);
    let result: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("result.json")).expect("result.json"))
            .expect("result.json is JSON");

    for ((case, screen), got) in made.iter().zip(result["cases"].as_array().expect("cases")) {
        let name = case.name;
        assert_eq!(got["name"], name);
        assert_eq!(got["ok"], true, "{name}: {got}");
        assert_eq!(got["frames"], case.frames, "{name}: frames decoded");
        assert_eq!(got["width"], screen.width(), "{name}");
        assert_eq!(got["height"], screen.height(), "{name}");
        let pixels =
            fs::read(dir.join(got["pixels"].as_str().expect("pixels file"))).expect("JS pixels");
        assert!(
            pixels == le_bytes(case.dec.framebuffer().pixels()),
            "{name}: the JS framebuffer differs from the Rust decoder's"
        );
        let held = HeldScreen::of(screen).expect("a listable screen");
        let keys: Vec<Value> = held.tiles.iter().map(|k| json!(k.to_string())).collect();
        assert_eq!(
            got["held"],
            json!(keys),
            "{name}: JS tile keys differ from Rust's"
        );
        eprintln!(
            "{name:>15}: {:>3} frames, {:>9} bytes (copies {}, cache hits {}); JS decode total \
             {} ms (wire {} ms), per frame p50 {} ms, p90 {} ms, max {} ms",
            case.frames,
            case.stream.len(),
            case.copies,
            case.cache_hits,
            (got["applyMs"].as_f64().unwrap_or(0.0) + got["wireMs"].as_f64().unwrap_or(0.0))
                .round(),
            got["wireMs"],
            got["p50FrameMs"],
            got["p90FrameMs"],
            got["maxFrameMs"],
        );
    }
    let wire = result["wire"].as_array().expect("wire results");
    assert_eq!(
        wire.len(),
        server_messages().len(),
        "server messages decoded"
    );
    for w in wire {
        assert_eq!(w["ok"], true, "server message decoded wrongly: {w}");
    }
    let checks = result["checks"].as_array().expect("checks");
    assert!(
        checks.len() >= 20,
        "only {} corruption checks ran",
        checks.len()
    );
    for c in checks {
        assert_eq!(c["ok"], true, "corrupted input was not refused: {c}");
    }
    let fuzz = &result["fuzz"];
    assert_eq!(fuzz["runs"], 60, "fuzz runs: {fuzz}");
    eprintln!(
        "corruption: {} checks refused; flipped bytes: {} runs, {} refused, {} decoded, \
         slowest {} ms; {} of 3000 random bodies refused",
        checks.len(),
        fuzz["runs"],
        fuzz["threw"],
        fuzz["completed"],
        fuzz["maxMs"],
        fuzz["garbageRefused"],
    );
    check_client_messages(&fs::read(dir.join("client.bin")).expect("client.bin"));
    let _ = fs::remove_dir_all(&dir);
}

/// The page's playout buffer (audio.js) plays a sound at an even pace, conceals a lost
/// packet in its slot, plays silence after a sound ends, schedules a new sound afresh,
/// drops what a stall made late (tests/web/playout_check.mjs has the scenarios).
#[test]
fn the_pages_playout_buffer_keeps_pace_conceals_losses_and_starts_each_sound_afresh() {
    let dir = oriel_e2e::temp_dir("web-playout");
    run_node("playout_check.mjs", &dir);
}
