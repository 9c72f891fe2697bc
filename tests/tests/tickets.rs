//! A display server working for a broker admits only valid, unexpired, unused tickets
//! for the desktop asked for.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use oriel::{ClientError, Session, StopWhen};
use oriel_display_server::source::synthetic::Workload;
use oriel_e2e::*;
use oriel_protocol::ticket::{sign_ticket, TicketClaims};
use oriel_protocol::RejectCode;

fn now() -> u64 {
    oriel_transport::unix_micros() / 1_000_000
}

fn ticket(key: &SigningKey, desktop: &str, issued: u64, nonce: u8) -> Vec<u8> {
    sign_ticket(
        &TicketClaims {
            user: "alice".into(),
            desktop: desktop.into(),
            issued_unix: issued,
            expires_unix: issued + 30,
            nonce: [nonce; 16],
            generation: 0,
        },
        key,
    )
}

async fn connect_with(
    server: &oriel_display_server::DisplayServer,
    desktop: &str,
    ticket: Vec<u8>,
) -> Result<Session, ClientError> {
    let mut opts = connect_options(server, desktop);
    opts.ticket = ticket;
    Session::connect(&opts).await
}

fn refused_because(result: Result<Session, ClientError>, needle: &str) {
    match result {
        Err(ClientError::Rejected { code, message }) => {
            assert_eq!(code, RejectCode::BadTicket);
            assert!(message.contains(needle), "{message}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a bad ticket was accepted (expected: {needle})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_valid_unused_tickets_for_the_desktop_are_admitted() {
    const TICKS: u64 = 20;
    let config = synthetic(Workload::Typing, TICKS);
    let server = start_server_with(&[("d1", config.clone()), ("d2", config.clone())], 2, true);
    let broker_key = SigningKey::from_bytes(&[42; 32]);

    // Before the server knows the broker's key, nothing gets in.
    refused_because(
        connect_with(&server, "d1", ticket(&broker_key, "d1", now(), 1)).await,
        "signature",
    );
    server.set_ticket_key(broker_key.verifying_key());

    refused_because(connect_with(&server, "d1", vec![]).await, "no ticket");
    let forger = SigningKey::from_bytes(&[7; 32]);
    refused_because(
        connect_with(&server, "d1", ticket(&forger, "d1", now(), 2)).await,
        "signature",
    );
    refused_because(
        connect_with(&server, "d1", ticket(&broker_key, "d1", now() - 120, 3)).await,
        "expired",
    );
    refused_because(
        connect_with(&server, "d1", ticket(&broker_key, "d2", now(), 4)).await,
        "desktop 'd2'",
    );

    let good = ticket(&broker_key, "d1", now(), 5);
    let session = connect_with(&server, "d1", good.clone())
        .await
        .expect("valid ticket admitted");
    refused_because(connect_with(&server, "d1", good).await, "already used");

    let (expected, seq) = replay(&config, TICKS);
    let stop = StopWhen {
        duration: Some(Duration::from_secs(60)),
        source_seq: Some(seq),
        ..Default::default()
    };
    let outcome = session.run(stop, None).await.unwrap();
    assert_eq!(diff_pixels(&outcome.framebuffer, &expected), 0);
    assert!(
        server
            .stats()
            .sessions_rejected
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 6
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_desktop_ends_its_sessions_with_a_clear_reason() {
    let config = synthetic(Workload::Idle, 5);
    let server = start_server(&[("d1", config)], 2);
    let session = Session::connect(&connect_options(&server, "d1"))
        .await
        .unwrap();
    let run = tokio::spawn(session.run(StopWhen::default(), None));
    // The session is admitted (its viewer counted) before the desktop goes.
    let desktop = server.desktop("d1").expect("desktop exists");
    while desktop.viewers() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.desktops().remove("d1").expect("desktop existed");
    let err = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("session ends")
        .unwrap()
        .err()
        .expect("an error that says why");
    assert!(
        err.to_string()
            .contains("the desktop was stopped, reset or deleted"),
        "{err}"
    );
    server.shutdown().await;
}
