//! Sound in datagrams through both session cores, with no socket and no clock: the
//! desktop's sound goes to a client that asked for it, the client's microphone to a
//! desktop that takes one, and a datagram nobody agreed to ends the session.

use std::time::{Duration, Instant};

use oriel_protocol::session::client::{
    ClientAction, ClientEvent, ClientSession, ClientSessionConfig,
};
use oriel_protocol::session::server::*;
use oriel_protocol::session::SendChannel;
use oriel_protocol::*;

fn hello(flags: u32) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        capabilities: Capabilities {
            flags,
            ..Capabilities::all()
        },
        desktop: "d".into(),
        ticket: vec![],
        desired_size: None,
        client_name: "test".into(),
        held: None,
    }
}

fn packet(seq: u64) -> AudioPacket {
    AudioPacket {
        seq,
        capture_unix_us: 1_000_000 + seq * 20_000,
        after_silence: seq == 0,
        opus: vec![0xfc, 0xff, 0xfe],
    }
}

/// A client and a server session, welcomed, with the client offering `flags` and the
/// desktop taking a microphone or not.
fn pair(flags: u32, microphone: bool) -> (ClientSession, ServerSession, Instant) {
    let now = Instant::now();
    let mut client = ClientSession::new(
        ClientSessionConfig {
            hello: hello(flags),
            handshake_timeout: Duration::from_secs(15),
        },
        now,
    );
    let mut server = ServerSession::new(
        ServerSessionConfig {
            capabilities: Capabilities::all(),
            handshake_timeout: Duration::from_secs(10),
            frame_window: 4,
            max_video_bitrate: 8_000_000,
        },
        now,
    );
    let hello_bytes: Vec<u8> = std::iter::from_fn(|| client.poll_action())
        .filter_map(|a| match a {
            ClientAction::SendControl(b) => Some(b),
            _ => None,
        })
        .flatten()
        .collect();
    server.handle(now, ServerEvent::ControlBytes(&hello_bytes));
    server.handle(
        now,
        ServerEvent::Admitted(Admitted {
            session_id: 1,
            desktop_size: Size::new(640, 480),
            frame_interval: Duration::from_millis(33),
            clipboard: None,
            microphone,
        }),
    );
    for action in std::iter::from_fn(|| server.poll_action()) {
        if let ServerAction::Send {
            channel: SendChannel::Control,
            bytes,
        } = action
        {
            client.handle(now, ClientEvent::ControlBytes(&bytes));
        }
    }
    let welcomed: Vec<ClientAction> = std::iter::from_fn(|| client.poll_action()).collect();
    assert!(
        welcomed
            .iter()
            .any(|a| matches!(a, ClientAction::Welcomed(_))),
        "{welcomed:?}"
    );
    (client, server, now)
}

fn server_actions(s: &mut ServerSession) -> Vec<ServerAction> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn client_actions(s: &mut ClientSession) -> Vec<ClientAction> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn closed(actions: &[ServerAction]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, ServerAction::Close { .. }))
}

#[test]
fn the_desktops_sound_reaches_a_client_that_asked_for_it() {
    let (mut client, mut server, now) = pair(CAP_AUDIO, false);
    let p = packet(0);
    server.handle(now, ServerEvent::Audio(&p));
    let sent = server_actions(&mut server);
    let [ServerAction::SendDatagram(datagram)] = sent.as_slice() else {
        panic!("{sent:?}");
    };
    client.handle(now, ClientEvent::Datagram(datagram));
    assert_eq!(client_actions(&mut client), [ClientAction::Audio(p)]);
}

#[test]
fn no_sound_goes_to_a_client_that_did_not_ask_and_a_datagram_then_fails_it() {
    let (mut client, mut server, now) = pair(0, false);
    server.handle(now, ServerEvent::Audio(&packet(0)));
    assert_eq!(server_actions(&mut server), []);
    client.handle(now, ClientEvent::Datagram(&packet(0).to_datagram()));
    assert!(client_actions(&mut client)
        .iter()
        .any(|a| matches!(a, ClientAction::Fail(_))));
}

#[test]
fn the_microphone_reaches_a_desktop_that_takes_one() {
    let (mut client, mut server, now) = pair(CAP_MICROPHONE, true);
    let p = packet(3);
    client.handle(now, ClientEvent::Microphone(&p));
    let sent = client_actions(&mut client);
    let [ClientAction::SendDatagram(datagram)] = sent.as_slice() else {
        panic!("{sent:?}");
    };
    server.handle(now, ServerEvent::Datagram(datagram));
    assert_eq!(server_actions(&mut server), [ServerAction::Microphone(p)]);
    // Junk in a datagram ends the session with a reason.
    server.handle(now, ServerEvent::Datagram(&[0xff; 12]));
    assert!(closed(&server_actions(&mut server)));
}

#[test]
fn a_desktop_without_a_microphone_takes_none_and_a_client_sending_anyway_is_closed() {
    let (mut client, mut server, now) = pair(CAP_MICROPHONE, false);
    // The welcome said no: the client's core keeps its microphone to itself.
    client.handle(now, ClientEvent::Microphone(&packet(0)));
    assert_eq!(client_actions(&mut client), []);
    // A client that sends anyway breaks the protocol.
    server.handle(now, ServerEvent::Datagram(&packet(0).to_datagram()));
    assert!(closed(&server_actions(&mut server)));
}
