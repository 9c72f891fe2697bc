//! A running session's live figures (what the viewer's overlay shows) come from the
//! client's own decoding and from the server's pacing reports.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use oriel::{Session, StopWhen};
use oriel_display_server::source::synthetic::Workload;
use oriel_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_figures_include_the_servers_frame_window() {
    let server = start_server(&[("default", synthetic(Workload::Typing, 300))], 4);
    let session = Session::connect(&connect_options(&server, "default"))
        .await
        .unwrap();
    let live = session.live_stats();
    let stop = StopWhen {
        duration: Some(Duration::from_millis(1500)),
        ..Default::default()
    };
    let outcome = session.run(stop, None).await.unwrap();
    assert_eq!(live.frames.load(Relaxed), outcome.stats.frames);
    assert!(live.bytes.load(Relaxed) > 0);
    assert!(live.rtt_us.load(Relaxed) > 0);
    // The server reports its pacing twice a second: a window of 2 to 4 frames here.
    let window = live.frame_window.load(Relaxed);
    assert!((2..=4).contains(&window), "frame window {window}");
    assert!(live.frames_in_flight.load(Relaxed) <= window);
    server.shutdown().await;
}
