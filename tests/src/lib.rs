//! Shared helpers for the end-to-end tests: real display servers on loopback QUIC,
//! real clients, and ground truth from replaying the deterministic synthetic source.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use oriel::ConnectOptions;
use oriel_display_server::source::synthetic::{SyntheticConfig, SyntheticSource, Workload};
use oriel_display_server::source::FrameSource;
use oriel_display_server::{Desktop, DisplayServer, ServerConfig};
use oriel_protocol::{Framebuffer, Size};
use oriel_transport::Identity;

/// Synthetic desktop settings used by most tests.
pub fn synthetic(workload: Workload, ticks: u64) -> SyntheticConfig {
    SyntheticConfig {
        workload,
        size: Size::new(1920, 1080),
        fps: 30,
        max_ticks: Some(ticks),
    }
}

/// Starts a display server on 127.0.0.1 with one synthetic desktop per entry.
pub fn start_server(desktops: &[(&str, SyntheticConfig)], frame_window: usize) -> DisplayServer {
    start_server_with(desktops, frame_window, false)
}

/// Like [`start_server`]; with `require_tickets` clients need a broker ticket.
pub fn start_server_with(
    desktops: &[(&str, SyntheticConfig)],
    frame_window: usize,
    require_tickets: bool,
) -> DisplayServer {
    let identity = Identity::generate(&["localhost".into()]).expect("identity");
    let desktops = desktops
        .iter()
        .map(|(name, cfg)| {
            let source = SyntheticSource::new(cfg.clone()).expect("synthetic source");
            Desktop::new(*name, Box::new(source) as Box<dyn FrameSource>)
        })
        .collect();
    let config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        frame_window,
        require_tickets,
        ..Default::default()
    };
    DisplayServer::start(config, &identity, desktops).expect("server starts")
}

/// A QUIC connection to `server` with the pinned certificate and the protocol's ALPN,
/// and nothing more: for tests that play the protocol by hand.
pub async fn raw_connection(server: &DisplayServer) -> quinn::Connection {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let config =
        oriel_transport::tls::pinned_client_config(server.fingerprint(), oriel_protocol::ALPN)
            .unwrap();
    endpoint.set_default_client_config(config);
    endpoint
        .connect(server.local_addr().unwrap(), "oriel")
        .unwrap()
        .await
        .unwrap()
}

pub fn connect_options(server: &DisplayServer, desktop: &str) -> ConnectOptions {
    let mut opts = ConnectOptions::new(server.local_addr().expect("addr"), server.fingerprint());
    opts.desktop = desktop.into();
    opts
}

/// A session with `desktop` on `server`, running in the background for up to a minute:
/// its input and request handles, and the task to abort or await.
pub async fn background_session(
    server: &DisplayServer,
    desktop: &str,
) -> (
    oriel::InputSender,
    oriel::Controller,
    tokio::task::JoinHandle<Result<oriel::Outcome, oriel::ClientError>>,
) {
    let session = oriel::Session::connect(&connect_options(server, desktop))
        .await
        .expect("connect");
    let (input, controller) = (session.input(), session.controller());
    let stop = oriel::StopWhen {
        duration: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    };
    (input, controller, tokio::spawn(session.run(stop, None)))
}

/// The screen a synthetic desktop shows after `ticks` polls, computed independently.
pub fn truth(config: &SyntheticConfig, ticks: u64) -> Framebuffer {
    replay(config, ticks).0
}

/// Screen and source sequence after `ticks` polls: a client that decoded a frame with
/// this sequence holds exactly this screen.
pub fn replay(config: &SyntheticConfig, ticks: u64) -> (Framebuffer, u64) {
    let mut source = SyntheticSource::new(config.clone()).expect("synthetic source");
    for _ in 0..ticks {
        source.poll();
    }
    (source.pixels().clone(), source.sequence())
}

/// The server's own current screen of a desktop.
pub fn server_screen(desktop: &Arc<Desktop>) -> Framebuffer {
    desktop.source().pixels().clone()
}

/// Number of pixels that differ, for readable assertion messages.
pub fn diff_pixels(a: &Framebuffer, b: &Framebuffer) -> usize {
    a.pixels()
        .iter()
        .zip(b.pixels())
        .filter(|(x, y)| x != y)
        .count()
}

/// A workspace binary next to the test executable's target directory.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; run the tests with `cargo test --workspace` so it is built",
        path.display()
    );
    path
}

/// Says that a test did not run and why, on the process's own stderr: `cargo test`
/// captures what tests print, but shows this even when the test passes.
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oriel-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
pub mod av_sync;
pub mod broker;
pub mod browser;
pub mod cluster;
pub mod kvm;
pub mod sound;
pub mod web_page;
pub mod xclip;
pub mod xvfb;

/// Replays a synthetic source forward, one source state at a time, to check what a
/// client showed at a given source sequence.
pub struct Replayer {
    source: SyntheticSource,
}

impl Replayer {
    pub fn new(config: &SyntheticConfig) -> Self {
        Self {
            source: SyntheticSource::new(config.clone()).expect("synthetic source"),
        }
    }

    /// The screen at source sequence `seq` (never earlier than the last call's).
    pub fn at(&mut self, seq: u64) -> &Framebuffer {
        assert!(
            self.source.advance_to(seq),
            "the source stopped before sequence {seq}"
        );
        self.source.pixels()
    }
}

/// Keeps at most `cap` of an unknown number of items, evenly spread: when full, every
/// other one is dropped and only every other later one is kept.
pub struct Spread<T> {
    cap: usize,
    stride: u64,
    seen: u64,
    pub items: Vec<T>,
}

impl<T> Spread<T> {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(2),
            stride: 1,
            seen: 0,
            items: Vec::new(),
        }
    }

    /// Offers the next item; `make` runs only when it is kept.
    pub fn offer(&mut self, make: impl FnOnce() -> T) {
        self.seen += 1;
        if !(self.seen - 1).is_multiple_of(self.stride) {
            return;
        }
        self.items.push(make());
        if self.items.len() == self.cap {
            let mut i = 0;
            self.items.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
        }
    }
}

/// Key events that type `text` on a US keyboard (letters, digits, space, newline and
/// the punctuation a shell line needs).
pub fn us_keys(text: &str) -> Vec<oriel_protocol::InputEvent> {
    const SHIFT: u16 = 42;
    const LETTERS: [u16; 26] = [
        30, 48, 46, 32, 18, 33, 34, 35, 23, 36, 37, 38, 50, 49, 24, 25, 16, 19, 31, 20, 22, 47, 17,
        45, 21, 44,
    ];
    const DIGITS: [u16; 10] = [11, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let mut events = Vec::new();
    for c in text.chars() {
        let (code, shift) = match c {
            'a'..='z' => (LETTERS[c as usize - 'a' as usize], false),
            'A'..='Z' => (LETTERS[c as usize - 'A' as usize], true),
            '0'..='9' => (DIGITS[c as usize - '0' as usize], false),
            ' ' => (57, false),
            '\n' => (28, false),
            '-' => (12, false),
            '=' => (13, false),
            '.' => (52, false),
            '/' => (53, false),
            '>' => (52, true),
            '$' => (5, true),
            '(' => (10, true),
            ')' => (11, true),
            '*' => (9, true),
            '+' => (13, true),
            other => panic!("no US key for {other:?}"),
        };
        if shift {
            events.push(oriel_protocol::InputEvent::Key {
                code: SHIFT,
                down: true,
            });
        }
        events.push(oriel_protocol::InputEvent::Key { code, down: true });
        events.push(oriel_protocol::InputEvent::Key { code, down: false });
        if shift {
            events.push(oriel_protocol::InputEvent::Key {
                code: SHIFT,
                down: false,
            });
        }
    }
    events
}
