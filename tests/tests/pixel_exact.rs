//! Every synthetic workload, streamed over real QUIC on loopback, ends pixel-exact: video
//! regions go lossy while they play and are sent exactly once they stop.

use oriel::{EndReason, Session, StopWhen};
use oriel_display_server::source::synthetic::Workload;
use oriel_e2e::*;
use std::time::Duration;

const TICKS: u64 = 45;

async fn check(workload: Workload) {
    let config = synthetic(workload, TICKS);
    let server = start_server(&[("default", config.clone())], 2);
    let session = Session::connect(&connect_options(&server, "default"))
        .await
        .expect("connect");
    let (expected, final_seq) = replay(&config, TICKS);
    let stop = StopWhen {
        duration: Some(Duration::from_secs(120)),
        settled_seq: Some(final_seq),
        ..Default::default()
    };
    let outcome = session.run(stop, None).await.expect("session runs");
    assert_eq!(
        outcome.end,
        EndReason::Settled,
        "{workload}: the client never reached the final source state"
    );
    let server_view = server_screen(&server.desktop("default").unwrap());
    assert_eq!(
        server_view, expected,
        "{workload}: the source is not deterministic"
    );
    assert_eq!(
        diff_pixels(&outcome.framebuffer, &expected),
        0,
        "{workload}: client framebuffer differs from the truth"
    );
    assert!(outcome.stats.frames > 0);
    assert!(outcome.cursor_shape.is_some(), "cursor shape not received");
    if matches!(workload, Workload::Scroll | Workload::Drag) {
        let copied = server
            .stats()
            .tiles_copied
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(copied > 0, "{workload}: moves must be sent as copy-rects");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_is_pixel_exact() {
    check(Workload::Idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_pixel_exact() {
    check(Workload::Typing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scroll_is_pixel_exact() {
    check(Workload::Scroll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drag_is_pixel_exact() {
    check(Workload::Drag).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_is_pixel_exact() {
    check(Workload::Video).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_is_pixel_exact() {
    check(Workload::Mixed).await;
}
