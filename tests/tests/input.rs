//! Input from the client reaches the desktop: the synthetic source records every event
//! in order and the typing desktop echoes key presses, which a client then sees.

use std::time::Duration;

use oriel::{EndReason, Session, StopWhen};
use oriel_display_server::source::synthetic::{SyntheticSource, Workload};
use oriel_display_server::source::FrameSource;
use oriel_e2e::*;
use oriel_protocol::{InputEvent, PointerButton};

const TICKS: u64 = 10;

fn recorded(server: &oriel_display_server::DisplayServer) -> Vec<InputEvent> {
    let desktop = server.desktop("default").unwrap();
    let source = desktop.source();
    let synthetic = source
        .as_any()
        .downcast_ref::<SyntheticSource>()
        .expect("synthetic source");
    synthetic.recorded_input().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_pointer_reach_the_desktop_and_echo_back() {
    let config = synthetic(Workload::Typing, TICKS);
    let server = start_server(&[("default", config.clone())], 2);
    // evdev codes for "hi" then Enter, and a click.
    let mut events = Vec::new();
    for code in [35u16, 23, 28] {
        events.push(InputEvent::Key { code, down: true });
        events.push(InputEvent::Key { code, down: false });
    }
    events.push(InputEvent::PointerMove { x: 100, y: 200 });
    events.push(InputEvent::PointerButton {
        button: PointerButton::Left,
        down: true,
    });
    events.push(InputEvent::Wheel { dx: 0, dy: -3 });

    let (_, script_end) = replay(&config, TICKS);
    let first = Session::connect(&connect_options(&server, "default"))
        .await
        .unwrap();
    let input = first.input();
    // Type only after the script has ended, so the echo lands where the replay puts it.
    let mut waited = 0;
    while current_seq(&server) < script_end && waited < 600 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    for e in &events {
        input.send(*e).await.unwrap();
    }
    // Wait (bounded) for the events to arrive while the session stays connected; the
    // check is on content, not on how long it took.
    let mut waited = 0;
    while recorded(&server).len() < events.len() && waited < 600 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    assert_eq!(
        recorded(&server),
        events,
        "events arrive complete and in order"
    );
    let stop = StopWhen {
        duration: Some(Duration::from_secs(60)),
        source_seq: Some(script_end),
        ..Default::default()
    };
    first.run(stop, None).await.unwrap();
    // The echo is drawn at the first poll after the keys arrived and after the script.
    let mut waited = 0;
    while current_seq(&server) <= script_end && waited < 600 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }

    // The echo, computed independently: the same script with the same keys.
    let mut source = SyntheticSource::new(config.clone()).unwrap();
    for _ in 0..TICKS {
        source.poll();
    }
    for e in &events {
        source.inject(e);
    }
    source.poll();
    let expected = source.pixels().clone();
    assert_ne!(
        &expected,
        &truth(&config, TICKS),
        "the keys must change the screen"
    );

    // A second client sees the echoed text.
    let second = Session::connect(&connect_options(&server, "default"))
        .await
        .unwrap();
    let stop = StopWhen {
        duration: Some(Duration::from_secs(60)),
        source_seq: Some(current_seq(&server)),
        ..Default::default()
    };
    let outcome = second.run(stop, None).await.unwrap();
    assert_eq!(outcome.end, EndReason::SequenceReached);
    assert_eq!(diff_pixels(&outcome.framebuffer, &expected), 0);
    server.shutdown().await;
}

fn current_seq(server: &oriel_display_server::DisplayServer) -> u64 {
    server.desktop("default").unwrap().source().sequence()
}
