//! The clipboard channel through both session cores, with no socket and no clock: the
//! desktop's policy is enforced on every message either way, and every paste that
//! cannot be served is answered with the reason.

use std::time::{Duration, Instant};

use oriel_protocol::session::client::{
    ClientAction, ClientEvent, ClientSession, ClientSessionConfig,
};
use oriel_protocol::session::server::*;
use oriel_protocol::session::{CloseCode, SendChannel};
use oriel_protocol::wire::{encode_message, MessageReader};
use oriel_protocol::*;

fn bytes<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    encode_message(msg, 1 << 24).unwrap()
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

fn policy(mode: &str, max_bytes: u32) -> ClipboardPolicy {
    ClipboardPolicy::parse(Some(mode), Some(max_bytes)).unwrap()
}

fn server(now: Instant, clipboard: Option<ClipboardPolicy>) -> (ServerSession, Vec<ServerAction>) {
    let mut s = ServerSession::new(
        ServerSessionConfig {
            capabilities: Capabilities::all(),
            handshake_timeout: Duration::from_secs(10),
            frame_window: 4,
            max_video_bitrate: 8_000_000,
        },
        now,
    );
    s.handle(now, ServerEvent::ControlBytes(&bytes(&hello())));
    s.handle(
        now,
        ServerEvent::Admitted(Admitted {
            session_id: 1,
            desktop_size: Size::new(640, 480),
            frame_interval: Duration::from_millis(33),
            clipboard,
            microphone: false,
        }),
    );
    let actions = std::iter::from_fn(|| s.poll_action()).collect();
    (s, actions)
}

fn drain(s: &mut ServerSession) -> Vec<ServerAction> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

/// The clipboard messages the server sent its client (after the stream's tag).
fn to_client(actions: &[ServerAction]) -> Vec<ClipboardMsg> {
    let mut reader = MessageReader::new(1 << 24);
    for a in actions {
        if let ServerAction::Send {
            channel: SendChannel::Clipboard,
            bytes,
        } = a
        {
            if bytes.as_slice() != [Channel::Clipboard as u8] {
                reader.push(bytes);
            }
        }
    }
    std::iter::from_fn(|| reader.next_message().unwrap()).collect()
}

fn to_desktop(actions: &[ServerAction]) -> Vec<ClipboardMsg> {
    actions
        .iter()
        .filter_map(|a| match a {
            ServerAction::Clipboard(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn from_client(s: &mut ServerSession, now: Instant, first: bool, msg: &ClipboardMsg) {
    let mut b = if first {
        vec![Channel::Clipboard as u8]
    } else {
        vec![]
    };
    b.extend(bytes(msg));
    s.handle(
        now,
        ServerEvent::StreamBytes {
            stream: 2,
            bytes: &b,
        },
    );
}

fn text_offer(serial: u64) -> ClipboardMsg {
    ClipboardMsg::Offer {
        selection: Selection::Clipboard,
        serial,
        formats: vec![ClipFormat::Text],
    }
}

#[test]
fn the_server_opens_the_channel_with_the_policy_and_passes_what_it_allows() {
    let now = Instant::now();
    let both = policy("both", 1024);
    let (mut s, actions) = server(now, Some(both));
    assert!(actions.contains(&ServerAction::Open(SendChannel::Clipboard)));
    assert_eq!(to_client(&actions), [ClipboardMsg::Policy(both)]);

    from_client(&mut s, now, true, &text_offer(1));
    let request = ClipboardMsg::Request {
        serial: 9,
        format: ClipFormat::Png,
    };
    from_client(&mut s, now, false, &request);
    assert_eq!(to_desktop(&drain(&mut s)), [text_offer(1), request]);

    let data = ClipboardMsg::Data {
        serial: 9,
        format: ClipFormat::Png,
        data: vec![7; 1024],
    };
    s.handle(now, ServerEvent::Clipboard(text_offer(9)));
    s.handle(now, ServerEvent::Clipboard(data.clone()));
    let actions = drain(&mut s);
    assert_eq!(to_client(&actions), [text_offer(9), data]);
    assert!(actions.contains(&ServerAction::Record(Record::Clipboard {
        to_client: true,
        format: ClipFormat::Png,
        bytes: 1024,
        refused: false,
    })));
}

#[test]
fn a_to_desktop_policy_keeps_the_desktops_clipboard_and_says_why() {
    let now = Instant::now();
    let (mut s, _) = server(now, Some(policy("to-desktop", 1024)));
    // The desktop's offer does not go out; its data is refused to the client.
    s.handle(now, ServerEvent::Clipboard(text_offer(3)));
    s.handle(
        now,
        ServerEvent::Clipboard(ClipboardMsg::Data {
            serial: 3,
            format: ClipFormat::Text,
            data: b"secret".to_vec(),
        }),
    );
    let sent = to_client(&drain(&mut s));
    assert!(
        matches!(&sent[..], [ClipboardMsg::Refused { serial: 3, reason, .. }] if reason.contains("copying from the desktop")),
        "{sent:?}"
    );
    // A client asking for the desktop's clipboard hears why, and the desktop hears nothing.
    from_client(
        &mut s,
        now,
        true,
        &ClipboardMsg::Request {
            serial: 3,
            format: ClipFormat::Text,
        },
    );
    let actions = drain(&mut s);
    assert!(to_desktop(&actions).is_empty());
    assert!(matches!(
        &to_client(&actions)[..],
        [ClipboardMsg::Refused { serial: 3, .. }]
    ));
    // The client's clipboard still reaches the desktop.
    from_client(&mut s, now, false, &text_offer(1));
    assert_eq!(to_desktop(&drain(&mut s)), [text_offer(1)]);
}

#[test]
fn client_data_over_the_cap_fails_the_desktops_paste_and_more_than_the_stream_allows_closes() {
    let now = Instant::now();
    let (mut s, _) = server(now, Some(policy("both", 100)));
    from_client(
        &mut s,
        now,
        true,
        &ClipboardMsg::Data {
            serial: 2,
            format: ClipFormat::Text,
            data: vec![b'a'; 101],
        },
    );
    let actions = drain(&mut s);
    assert!(
        matches!(&to_desktop(&actions)[..], [ClipboardMsg::Refused { serial: 2, reason, .. }] if reason.contains("more than the 100 bytes")),
        "{actions:?}"
    );
    assert_eq!(closed(&actions), None);
    // Far beyond the cap: the stream's bound closes the session before reading it.
    from_client(
        &mut s,
        now,
        false,
        &ClipboardMsg::Data {
            serial: 2,
            format: ClipFormat::Text,
            data: vec![b'a'; 4096],
        },
    );
    assert_eq!(closed(&drain(&mut s)), Some(CloseCode::ProtocolError));
}

#[test]
fn a_desktop_without_a_clipboard_refuses_the_channel() {
    let now = Instant::now();
    let (mut s, actions) = server(now, None);
    assert!(!actions.contains(&ServerAction::Open(SendChannel::Clipboard)));
    from_client(&mut s, now, true, &text_offer(1));
    assert_eq!(closed(&drain(&mut s)), Some(CloseCode::ProtocolError));
}

fn closed(actions: &[ServerAction]) -> Option<CloseCode> {
    actions.iter().find_map(|a| match a {
        ServerAction::Close { code, .. } => Some(*code),
        _ => None,
    })
}

/// A welcomed client session.
fn welcomed(now: Instant) -> ClientSession {
    let mut c = ClientSession::new(
        ClientSessionConfig {
            hello: hello(),
            handshake_timeout: Duration::from_secs(15),
        },
        now,
    );
    let welcome = HelloReply::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        session_id: 1,
        desktop_size: Size::new(640, 480),
        capabilities: Capabilities::all(),
    });
    c.handle(now, ClientEvent::ControlBytes(&bytes(&welcome)));
    c
}

/// A running client session whose server opened its clipboard stream (3) with `policy`.
fn client(now: Instant, policy: ClipboardPolicy) -> ClientSession {
    let mut c = welcomed(now);
    let mut stream = vec![Channel::Clipboard as u8];
    stream.extend(bytes(&ClipboardMsg::Policy(policy)));
    c.handle(
        now,
        ClientEvent::StreamBytes {
            stream: 3,
            bytes: &stream,
        },
    );
    let actions: Vec<_> = std::iter::from_fn(|| c.poll_action()).collect();
    assert!(actions.contains(&ClientAction::Clipboard(ClipboardMsg::Policy(policy))));
    c
}

#[test]
fn the_client_sends_what_the_policy_allows_and_answers_the_rest_itself() {
    let now = Instant::now();
    let mut c = client(now, policy("to-client", 10));
    assert_eq!(c.clipboard_policy(), Some(policy("to-client", 10)));
    // Pasting the desktop's clipboard is allowed: the request goes, tagged, on a new stream.
    let request = ClipboardMsg::Request {
        serial: 4,
        format: ClipFormat::Text,
    };
    c.handle(now, ClientEvent::Clipboard(request.clone()));
    let sent: Vec<_> = std::iter::from_fn(|| c.poll_action()).collect();
    let mut expected = vec![Channel::Clipboard as u8];
    expected.extend(bytes(&request));
    assert_eq!(sent, [ClientAction::SendClipboard(expected)]);
    // The local clipboard may not go to the desktop: no offer goes, and data the desktop
    // asked for anyway is refused with the reason.
    c.handle(now, ClientEvent::Clipboard(text_offer(1)));
    assert_eq!(c.poll_action(), None);
    c.handle(
        now,
        ClientEvent::Clipboard(ClipboardMsg::Data {
            serial: 1,
            format: ClipFormat::Text,
            data: b"x".to_vec(),
        }),
    );
    let Some(ClientAction::SendClipboard(b)) = c.poll_action() else {
        panic!("nothing sent");
    };
    let mut reader = MessageReader::new(1 << 20);
    reader.push(&b);
    assert!(matches!(
        reader.next_message::<ClipboardMsg>().unwrap(),
        Some(ClipboardMsg::Refused { serial: 1, reason, .. }) if reason.contains("pasting into the desktop")
    ));
}

#[test]
fn a_clipboard_message_before_the_policy_is_a_protocol_error() {
    let now = Instant::now();
    let mut c = welcomed(now);
    let mut stream = vec![Channel::Clipboard as u8];
    stream.extend(bytes(&text_offer(1)));
    c.handle(
        now,
        ClientEvent::StreamBytes {
            stream: 3,
            bytes: &stream,
        },
    );
    let actions: Vec<_> = std::iter::from_fn(|| c.poll_action()).collect();
    assert!(actions.iter().any(|a| matches!(a, ClientAction::Fail(_))));
}
