//! The server session core driven with no socket and no clock: a fake clock the test
//! advances, bytes the test writes, actions the test reads.

use std::time::{Duration, Instant};

use oriel_protocol::session::server::*;
use oriel_protocol::session::{CloseCode, SendChannel};
use oriel_protocol::wire::{encode_message, MessageReader};
use oriel_protocol::*;
use proptest::prelude::*;

fn config() -> ServerSessionConfig {
    ServerSessionConfig {
        capabilities: Capabilities::all(),
        handshake_timeout: Duration::from_secs(10),
        frame_window: 4,
        max_video_bitrate: 8_000_000,
    }
}

fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        capabilities: Capabilities::all(),
        desktop: "d".into(),
        ticket: vec![],
        desired_size: None,
        client_name: "test".into(),
        held: None,
    }
}

fn bytes<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    encode_message(msg, 1 << 20).unwrap()
}

fn drain(s: &mut ServerSession) -> Vec<ServerAction> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn admitted(size: Size) -> Admitted {
    Admitted {
        session_id: 7,
        desktop_size: size,
        frame_interval: Duration::from_millis(33),
        clipboard: None,
        microphone: false,
    }
}

/// A session past its handshake, with the actions of the handshake drained.
fn running(now: Instant) -> ServerSession {
    let mut s = ServerSession::new(config(), now);
    s.handle(now, ServerEvent::ControlBytes(&bytes(&hello())));
    assert!(matches!(drain(&mut s)[..], [ServerAction::Admit(_)]));
    s.handle(now, ServerEvent::Admitted(admitted(Size::new(640, 480))));
    drain(&mut s);
    s
}

fn frame(id: u64) -> Encoded {
    Encoded {
        frame: Some(FrameReady {
            frame_id: id,
            size: Size::new(640, 480),
            message: vec![0; 100],
        }),
        ..Default::default()
    }
}

fn sends_on(actions: &[ServerAction], channel: SendChannel) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            ServerAction::Send { channel: c, bytes } if *c == channel => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

fn control_messages<T: serde::de::DeserializeOwned>(actions: &[ServerAction]) -> Vec<T> {
    let mut reader = MessageReader::new(1 << 20);
    for b in sends_on(actions, SendChannel::Control) {
        reader.push(&b);
    }
    std::iter::from_fn(|| reader.next_message().unwrap()).collect()
}

fn encode_orders(actions: &[ServerAction]) -> Vec<EncodeOrder> {
    actions
        .iter()
        .filter_map(|a| match a {
            ServerAction::Encode(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

fn closed_with(actions: &[ServerAction]) -> Option<CloseCode> {
    actions.iter().find_map(|a| match a {
        ServerAction::Close { code, .. } => Some(*code),
        _ => None,
    })
}

#[test]
fn a_hello_byte_by_byte_is_admitted_and_welcomed() {
    let now = Instant::now();
    let mut s = ServerSession::new(config(), now);
    for b in bytes(&hello()) {
        s.handle(now, ServerEvent::ControlBytes(&[b]));
    }
    let actions = drain(&mut s);
    assert!(matches!(actions[..], [ServerAction::Admit(ref h)] if h.desktop == "d"));
    s.handle(now, ServerEvent::Admitted(admitted(Size::new(800, 600))));
    let actions = drain(&mut s);
    let replies: Vec<HelloReply> = control_messages(&actions);
    assert!(
        matches!(&replies[..], [HelloReply::Welcome(w)] if w.session_id == 7 && w.desktop_size == Size::new(800, 600))
    );
    assert!(actions.contains(&ServerAction::Open(SendChannel::Display)));
    assert!(actions.contains(&ServerAction::Open(SendChannel::Cursor)));
    assert_eq!(
        sends_on(&actions, SendChannel::Display),
        vec![vec![Channel::Display as u8]],
        "the display stream starts with its tag"
    );
}

#[test]
fn no_hello_in_time_closes_with_a_protocol_error() {
    let now = Instant::now();
    let mut s = ServerSession::new(config(), now);
    let deadline = s.next_deadline().unwrap();
    assert_eq!(deadline, now + Duration::from_secs(10));
    s.handle_timeout(now + Duration::from_secs(9));
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(deadline);
    assert_eq!(closed_with(&drain(&mut s)), Some(CloseCode::ProtocolError));
    assert!(s.is_closed());
}

#[test]
fn a_refused_hello_gets_a_reject_then_closes() {
    let now = Instant::now();
    let mut s = ServerSession::new(config(), now);
    s.handle(now, ServerEvent::ControlBytes(&bytes(&hello())));
    drain(&mut s);
    let reject = Reject {
        code: RejectCode::BadTicket,
        message: "ticket refused: expired".into(),
    };
    s.handle(now, ServerEvent::Refused(reject.clone()));
    let actions = drain(&mut s);
    assert_eq!(actions[0], ServerAction::Rejected(reject.clone()));
    let replies: Vec<HelloReply> = control_messages(&actions);
    assert_eq!(replies, vec![HelloReply::Reject(reject)]);
    assert_eq!(closed_with(&actions), Some(CloseCode::Rejected));
    assert!(CloseCode::Rejected.lingers());
}

#[test]
fn an_incompatible_hello_is_refused_by_the_core() {
    let now = Instant::now();
    let mut s = ServerSession::new(config(), now);
    let old = Hello {
        version: PROTOCOL_VERSION + 1,
        ..hello()
    };
    s.handle(now, ServerEvent::ControlBytes(&bytes(&old)));
    let actions = drain(&mut s);
    assert!(matches!(actions[0], ServerAction::Rejected(_)));
    assert_eq!(closed_with(&actions), Some(CloseCode::Rejected));
}

#[test]
fn a_kick_during_set_up_closes_before_anything_is_sent() {
    let now = Instant::now();
    let mut s = ServerSession::new(config(), now);
    s.handle(now, ServerEvent::ControlBytes(&bytes(&hello())));
    drain(&mut s);
    s.handle(now, ServerEvent::Evicted("logged off".into()));
    let actions = drain(&mut s);
    assert_eq!(closed_with(&actions), Some(CloseCode::DesktopGone));
    assert!(sends_on(&actions, SendChannel::Control).is_empty());
    // The driver's late answer changes nothing.
    s.handle(now, ServerEvent::Admitted(admitted(Size::new(640, 480))));
    assert!(drain(&mut s).is_empty());
}

#[test]
fn an_eviction_says_why_and_stops_input_and_frames() {
    let now = Instant::now();
    let mut s = running(now);
    s.handle(
        now,
        ServerEvent::Evicted("another user has the desktop".into()),
    );
    let actions = drain(&mut s);
    let notices: Vec<ServerControl> = control_messages(&actions);
    assert_eq!(
        notices,
        vec![ServerControl::Closing {
            message: "another user has the desktop".into()
        }]
    );
    assert_eq!(closed_with(&actions), Some(CloseCode::DesktopGone));
    let mut input = vec![Channel::Input as u8];
    input.extend(bytes(&InputEvent::Key {
        code: 30,
        down: true,
    }));
    s.handle(
        now,
        ServerEvent::StreamBytes {
            stream: 1,
            bytes: &input,
        },
    );
    s.handle(now, ServerEvent::Damage);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn damage_is_taken_while_the_window_is_full_but_no_frame_may_go() {
    let now = Instant::now();
    let mut s = running(now);
    let window = s.pacing().1 as u64;
    assert!(window >= 2);
    for id in 1..=window {
        s.handle(now, ServerEvent::Damage);
        let orders = encode_orders(&drain(&mut s));
        assert_eq!(orders.len(), 1);
        assert!(orders[0].lossless, "frame {id} fits the window");
        s.handle(now, ServerEvent::Encoded(frame(id)));
        drain(&mut s);
    }
    // The window is full: damage is still taken (it merges), but no lossless frame.
    s.handle(now, ServerEvent::Damage);
    let orders = encode_orders(&drain(&mut s));
    assert_eq!(orders.len(), 1);
    assert!(!orders[0].lossless);
    s.handle(
        now,
        ServerEvent::Encoded(Encoded {
            lossless_due: true,
            ..Default::default()
        }),
    );
    assert!(
        encode_orders(&drain(&mut s)).is_empty(),
        "it waits for room"
    );
    // An ack frees the window: the merged damage goes out at once.
    let later = now + Duration::from_millis(20);
    s.handle(
        later,
        ServerEvent::ControlBytes(&bytes(&ClientControl::Ack {
            frame_id: 2,
            decode_us: 1,
        })),
    );
    let actions = drain(&mut s);
    assert!(
        actions.contains(&ServerAction::Record(Record::FramesAcked(vec![
        Duration::from_millis(20);
        2
    ])))
    );
    let orders = encode_orders(&actions);
    assert_eq!(orders.len(), 1);
    assert!(orders[0].lossless);
}

#[test]
fn one_encode_at_a_time() {
    let now = Instant::now();
    let mut s = running(now);
    s.handle(now, ServerEvent::Damage);
    s.handle(now, ServerEvent::Damage);
    assert_eq!(encode_orders(&drain(&mut s)).len(), 1);
    s.handle(now, ServerEvent::Encoded(frame(1)));
    // The second damage came while encoding: one more step.
    assert_eq!(encode_orders(&drain(&mut s)).len(), 1);
}

#[test]
fn an_ack_for_a_frame_never_sent_acknowledges_only_what_was_sent() {
    let now = Instant::now();
    let mut s = running(now);
    s.handle(now, ServerEvent::Damage);
    drain(&mut s);
    s.handle(now, ServerEvent::Encoded(frame(1)));
    drain(&mut s);
    s.handle(
        now,
        ServerEvent::ControlBytes(&bytes(&ClientControl::Ack {
            frame_id: 1_000_000,
            decode_us: 1,
        })),
    );
    let actions = drain(&mut s);
    assert!(
        actions.contains(&ServerAction::Record(Record::FramesAcked(vec![
            Duration::ZERO
        ])))
    );
    assert_eq!(s.pacing().0, 0);
    assert!(!s.is_closed());
}

#[test]
fn keyframe_requests_are_granted_at_most_twice_a_second() {
    let now = Instant::now();
    let mut s = running(now);
    let ask = bytes(&ClientControl::KeyframeRequest { region_id: 3 });
    s.handle(now, ServerEvent::ControlBytes(&ask));
    s.handle(now, ServerEvent::ControlBytes(&ask));
    let actions = drain(&mut s);
    let grants: Vec<bool> = actions
        .iter()
        .filter_map(|a| match a {
            ServerAction::Record(Record::KeyframeRequested { granted }) => Some(*granted),
            _ => None,
        })
        .collect();
    assert_eq!(grants, vec![true, false]);
    s.handle(now, ServerEvent::Damage);
    let orders = encode_orders(&drain(&mut s));
    assert_eq!(orders[0].keyframes, vec![3]);
    s.handle(now, ServerEvent::Encoded(Encoded::default()));
    s.handle(
        now + Duration::from_millis(600),
        ServerEvent::ControlBytes(&ask),
    );
    assert!(
        drain(&mut s).contains(&ServerAction::Record(Record::KeyframeRequested {
            granted: true
        }))
    );
}

#[test]
fn video_regions_open_streams_keep_their_own_window_and_close() {
    let now = Instant::now();
    let mut s = running(now);
    let window = s.pacing().1 as u64;
    s.handle(now, ServerEvent::Damage);
    drain(&mut s);
    let picture = |no| PictureReady {
        region_id: 9,
        frame_no: no,
        message: vec![1; 10],
    };
    s.handle(
        now,
        ServerEvent::Encoded(Encoded {
            started: vec![VideoStart {
                region_id: 9,
                rect: Rect::new(0, 0, 64, 64),
                after_frame: 0,
            }],
            pictures: (1..=window).map(picture).collect(),
            video_due: vec![9],
            ..Default::default()
        }),
    );
    let actions = drain(&mut s);
    assert!(actions.contains(&ServerAction::Open(SendChannel::Video(9))));
    assert_eq!(
        sends_on(&actions, SendChannel::Video(9)).len() as u64,
        1 + 1 + window
    );
    assert!(
        encode_orders(&actions).is_empty(),
        "a due picture waits for room in its region's window"
    );
    s.handle(
        now,
        ServerEvent::ControlBytes(&bytes(&ClientControl::VideoAck {
            region_id: 9,
            frame_no: 1,
            decode_us: 1,
        })),
    );
    let actions = drain(&mut s);
    assert!(actions.contains(&ServerAction::Record(Record::PicturesAcked(1))));
    assert_eq!(encode_orders(&actions)[0].full_regions, Vec::<u64>::new());
    s.handle(
        now,
        ServerEvent::Encoded(Encoded {
            ended: vec![9],
            lossless_due: true,
            ..Default::default()
        }),
    );
    let actions = drain(&mut s);
    assert!(actions.contains(&ServerAction::Finish(SendChannel::Video(9))));
}

#[test]
fn a_resize_mid_video_moves_the_input_bounds_with_the_frame() {
    let now = Instant::now();
    let mut s = running(now);
    let input = |x, y| {
        let mut b = vec![Channel::Input as u8];
        b.extend(bytes(&InputEvent::PointerMove { x, y }));
        b
    };
    s.handle(now, ServerEvent::Damage);
    drain(&mut s);
    // The desktop shrinks to 320x240 while a region plays: the frame carries the resize
    // and ends the region.
    s.handle(
        now,
        ServerEvent::Encoded(Encoded {
            ended: vec![],
            frame: Some(FrameReady {
                frame_id: 1,
                size: Size::new(320, 240),
                message: vec![0; 10],
            }),
            ..Default::default()
        }),
    );
    drain(&mut s);
    // A move sent before the client saw the shrink is dropped, not an error.
    s.handle(
        now,
        ServerEvent::StreamBytes {
            stream: 2,
            bytes: &input(600, 400),
        },
    );
    assert!(drain(&mut s).is_empty());
    s.handle(
        now,
        ServerEvent::StreamBytes {
            stream: 2,
            bytes: &bytes(&InputEvent::PointerMove { x: 10, y: 10 }),
        },
    );
    // Its number counts the move dropped before it: the client wrote both.
    assert_eq!(
        drain(&mut s),
        vec![ServerAction::Inject(
            InputEvent::PointerMove { x: 10, y: 10 },
            1
        )]
    );
    // Outside anything the desktop ever was: a protocol error.
    s.handle(
        now,
        ServerEvent::StreamBytes {
            stream: 2,
            bytes: &bytes(&InputEvent::PointerMove { x: 5000, y: 10 }),
        },
    );
    assert_eq!(closed_with(&drain(&mut s)), Some(CloseCode::ProtocolError));
}

#[test]
fn requests_are_checked_and_paced() {
    let now = Instant::now();
    let mut s = running(now);
    let refresh = bytes(&ClientControl::RefreshRequest);
    s.handle(now, ServerEvent::ControlBytes(&refresh));
    s.handle(now, ServerEvent::ControlBytes(&refresh));
    let actions = drain(&mut s);
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == ServerAction::Refresh)
            .count(),
        1
    );
    assert!(actions.contains(&ServerAction::Record(Record::RefreshIgnored)));
    let resize = |width, height| bytes(&ClientControl::ResizeRequest { width, height });
    s.handle(now, ServerEvent::ControlBytes(&resize(640, 480)));
    assert!(drain(&mut s).is_empty(), "already that size");
    s.handle(now, ServerEvent::ControlBytes(&resize(1024, 768)));
    assert_eq!(
        drain(&mut s),
        vec![ServerAction::Resize(Size::new(1024, 768))]
    );
    s.handle(now, ServerEvent::ControlBytes(&resize(10, 10)));
    assert_eq!(closed_with(&drain(&mut s)), Some(CloseCode::ProtocolError));
}

#[test]
fn pacing_reports_come_twice_a_second() {
    let now = Instant::now();
    let mut s = running(now);
    let deadline = s.next_deadline().unwrap();
    assert_eq!(deadline, now + Duration::from_millis(500));
    s.handle_timeout(deadline);
    let notices: Vec<ServerControl> = control_messages(&drain(&mut s));
    assert!(matches!(
        notices[..],
        [ServerControl::Flow {
            frames_in_flight: 0,
            ..
        }]
    ));
    assert_eq!(
        s.next_deadline(),
        Some(deadline + Duration::from_millis(500))
    );
}

#[test]
fn the_cursor_sends_the_newest_state_once_the_last_is_written() {
    let now = Instant::now();
    let mut s = running(now);
    let shape = |serial| ServerEvent::CursorShape {
        serial,
        shape: CursorMsg::Shape {
            width: 1,
            height: 1,
            hot_x: 0,
            hot_y: 0,
            pixels: vec![u32::try_from(serial).expect("a small serial")],
        },
    };
    s.handle(now, shape(1));
    assert_eq!(sends_on(&drain(&mut s), SendChannel::Cursor).len(), 1);
    // A slow client: positions pile up while the shape is written; only the last goes.
    for x in 0..50 {
        s.handle(
            now,
            ServerEvent::CursorPosition {
                x,
                y: 0,
                visible: true,
            },
        );
    }
    assert!(drain(&mut s).is_empty());
    s.handle(now, ServerEvent::CursorWritten);
    let sent = sends_on(&drain(&mut s), SendChannel::Cursor);
    assert_eq!(sent.len(), 1);
    let mut reader = MessageReader::new(1 << 20);
    reader.push(&sent[0]);
    assert_eq!(
        reader.next_message::<CursorMsg>().unwrap(),
        Some(CursorMsg::Position {
            x: 49,
            y: 0,
            visible: true
        })
    );
    s.handle(now, ServerEvent::CursorWritten);
    s.handle(now, shape(1));
    assert!(drain(&mut s).is_empty(), "the same shape is not sent twice");
}

#[test]
fn garbage_and_strange_streams_are_protocol_errors() {
    let now = Instant::now();
    let mut s = running(now);
    s.handle(
        now,
        ServerEvent::StreamBytes {
            stream: 5,
            bytes: &[Channel::Video as u8],
        },
    );
    assert_eq!(closed_with(&drain(&mut s)), Some(CloseCode::ProtocolError));
    let mut s = running(now);
    s.handle(
        now,
        ServerEvent::ControlBytes(&[3, 0, 0, 0, 0xff, 0xff, 0xff]),
    );
    assert_eq!(closed_with(&drain(&mut s)), Some(CloseCode::ProtocolError));
    let mut s = running(now);
    s.handle(now, ServerEvent::ControlBytes(&[2, 0]));
    s.handle(now, ServerEvent::ControlFinished);
    assert_eq!(closed_with(&drain(&mut s)), Some(CloseCode::ProtocolError));
    let mut s = running(now);
    s.handle(now, ServerEvent::ControlFinished);
    assert_eq!(closed_with(&drain(&mut s)), Some(CloseCode::Normal));
}

/// What a test does to a running session, in any order.
#[derive(Debug, Clone)]
enum Step {
    Damage,
    Encode { frame: bool, due: bool },
    Ack(u64),
    Wait(u16),
    Keyframe(u64),
    Garbage(Vec<u8>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Damage),
        4 => (any::<bool>(), any::<bool>()).prop_map(|(frame, due)| Step::Encode { frame, due }),
        3 => (0u64..40).prop_map(Step::Ack),
        2 => (0u16..800).prop_map(Step::Wait),
        1 => (0u64..4).prop_map(Step::Keyframe),
        1 => proptest::collection::vec(any::<u8>(), 0..12).prop_map(Step::Garbage),
    ]
}

proptest! {
    /// Whatever the client acks (late, reordered, made up) and whenever the encoder
    /// answers: never more frames in flight than the window, never two encodes at
    /// once, every Encode is answered before the next, and nothing panics.
    #[test]
    fn the_window_holds_under_loss_reorder_and_slow_clients(steps in proptest::collection::vec(step(), 1..200)) {
        let start = Instant::now();
        let mut now = start;
        let mut s = running(now);
        let mut next_frame = 1;
        let mut encoding = false;
        let mut may_send_frame = false;
        for step in steps {
            match step {
                Step::Damage => s.handle(now, ServerEvent::Damage),
                Step::Encode { frame: with_frame, due } if encoding => {
                    encoding = false;
                    let with_frame = with_frame && may_send_frame;
                    let mut e = if with_frame { frame(next_frame) } else { Encoded::default() };
                    e.lossless_due = due;
                    if with_frame { next_frame += 1; }
                    s.handle(now, ServerEvent::Encoded(e));
                }
                Step::Encode { .. } => {}
                Step::Ack(id) => s.handle(now, ServerEvent::ControlBytes(&bytes(&ClientControl::Ack { frame_id: id, decode_us: 0 }))),
                Step::Wait(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    if s.next_deadline().is_some_and(|d| d <= now) {
                        s.handle_timeout(now);
                    }
                }
                Step::Keyframe(r) => s.handle(now, ServerEvent::ControlBytes(&bytes(&ClientControl::KeyframeRequest { region_id: r }))),
                Step::Garbage(b) => s.handle(now, ServerEvent::StreamBytes { stream: 99, bytes: &b }),
            }
            for action in drain(&mut s) {
                if let ServerAction::Encode(order) = action {
                    prop_assert!(!encoding, "two encodes at once");
                    encoding = true;
                    may_send_frame = order.lossless;
                    // A frame may only go with room in the window.
                    prop_assert!(!order.lossless || s.pacing().0 < s.pacing().1.max(1));
                }
            }
            let (in_flight, window, _) = s.pacing();
            if !s.is_closed() {
                prop_assert!(in_flight <= window.max(1), "{in_flight} in flight, window {window}");
            }
        }
    }
}
