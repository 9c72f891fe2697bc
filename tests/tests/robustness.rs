//! Wrong certificates, unknown desktops, garbage and oversized messages, slow clients,
//! several clients at once.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use oriel::{ClientError, EndReason, Session, StopWhen};
use oriel_display_server::source::synthetic::{SyntheticConfig, Workload};
use oriel_e2e::*;
use oriel_protocol::Channel;
use oriel_transport::{close, Fingerprint};

/// Stop once the client holds the screen `config` shows after `ticks` polls.
fn until(config: &SyntheticConfig, ticks: u64) -> StopWhen {
    StopWhen {
        duration: Some(Duration::from_secs(120)),
        source_seq: Some(replay(config, ticks).1),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_fingerprint_is_refused() {
    let server = start_server(&[("default", synthetic(Workload::Idle, 5))], 2);
    let mut opts = connect_options(&server, "default");
    opts.fingerprint = Fingerprint([7; 32]);
    let err = Session::connect(&opts)
        .await
        .err()
        .expect("must be refused");
    let text = err.to_string();
    assert!(matches!(err, ClientError::Connect { .. }), "{text}");
    assert!(text.contains("fingerprint"), "{text}");
    assert_eq!(server.stats().sessions_total.load(Relaxed), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_desktop_is_rejected_with_a_reason() {
    let server = start_server(&[("default", synthetic(Workload::Idle, 5))], 2);
    let opts = connect_options(&server, "nope");
    match Session::connect(&opts).await {
        Err(ClientError::Rejected { message, .. }) => assert!(message.contains("nope")),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("unknown desktop accepted"),
    }
    server.shutdown().await;
}

/// Opens a raw QUIC connection with the right certificate and ALPN, sends `bytes` on
/// the control stream and returns the server's close code.
async fn raw_client_sends(server: &oriel_display_server::DisplayServer, bytes: Vec<u8>) -> u64 {
    let conn = raw_connection(server).await;
    let (mut tx, _rx) = conn.open_bi().await.unwrap();
    tx.write_all(&bytes).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(30), conn.closed())
        .await
        .expect("server closes the connection");
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
        other => panic!("unexpected close {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_clients_are_dropped_while_others_keep_working() {
    const TICKS: u64 = 60;
    let config = synthetic(Workload::Typing, TICKS);
    let server = start_server(&[("default", config.clone())], 2);
    let good = Session::connect(&connect_options(&server, "default"))
        .await
        .expect("good client connects");
    let good = tokio::spawn(good.run(until(&config, TICKS), None));

    // A well-framed message whose body is not a Hello.
    let mut garbage = 9u32.to_le_bytes().to_vec();
    garbage.extend([0xff; 9]);
    assert_eq!(
        raw_client_sends(&server, garbage).await,
        close::PROTOCOL_ERROR.into_inner()
    );
    // A length prefix far beyond the control channel's limit.
    let huge = (u32::try_from(Channel::Control.max_message_len()).unwrap() + 1)
        .to_le_bytes()
        .to_vec();
    assert_eq!(
        raw_client_sends(&server, huge).await,
        close::PROTOCOL_ERROR.into_inner()
    );
    assert!(server.stats().protocol_errors.load(Relaxed) >= 2);

    let outcome = good.await.unwrap().expect("good client keeps working");
    assert_eq!(outcome.end, EndReason::SequenceReached);
    assert_eq!(diff_pixels(&outcome.framebuffer, &truth(&config, TICKS)), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_gets_fewer_frames_bounded_and_exact() {
    const TICKS: u64 = 90;
    const WINDOW: usize = 2;
    let config = synthetic(Workload::Drag, TICKS);
    let server = start_server(&[("default", config.clone())], WINDOW);
    let session = Session::connect(&connect_options(&server, "default"))
        .await
        .unwrap();
    let outcome = session
        .run(until(&config, TICKS), Some(Duration::from_millis(150)))
        .await
        .unwrap();
    assert_eq!(outcome.end, EndReason::SequenceReached);
    let stats = server.stats();
    let sent = stats.frames_sent.load(Relaxed);
    let produced = server.frames_produced();
    assert!(
        sent < produced,
        "a slow client should get fewer frames ({sent}) than produced ({produced})"
    );
    assert!(stats.max_frames_in_flight.load(Relaxed) <= WINDOW as u64);
    assert_eq!(diff_pixels(&outcome.framebuffer, &truth(&config, TICKS)), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_clients_on_different_desktops() {
    const TICKS: u64 = 40;
    let a = synthetic(Workload::Typing, TICKS);
    let b = synthetic(Workload::Scroll, TICKS);
    let server = start_server(&[("a", a.clone()), ("b", b.clone())], 2);
    let sa = Session::connect(&connect_options(&server, "a"))
        .await
        .unwrap();
    let sb = Session::connect(&connect_options(&server, "b"))
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(
        sa.run(until(&a, TICKS), None),
        sb.run(until(&b, TICKS), None)
    );
    assert_eq!(diff_pixels(&ra.unwrap().framebuffer, &truth(&a, TICKS)), 0);
    assert_eq!(diff_pixels(&rb.unwrap().framebuffer, &truth(&b, TICKS)), 0);
    server.shutdown().await;
}
