//! Video regions end to end over real QUIC: H.264 while a video plays, lossless
//! everywhere else, exact pixels once it stops; never video for text, scrolls or drags;
//! and the same through an emulated constrained or lossy link.

// Tests print the figures they measure (never asserted).
#![allow(clippy::print_stdout)]

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use oriel::{EndReason, Session, Shown, StopWhen};
use oriel_display_server::source::synthetic::{SyntheticConfig, Workload};
use oriel_e2e::*;
use oriel_media::luma_psnr;
use oriel_netem::{LinkSpec, Relay};
use oriel_protocol::{Framebuffer, Rect};

/// A picture the client showed: its source sequence, where, and its pixels.
struct PictureSample {
    seq: u64,
    rect: Rect,
    pixels: Vec<u32>,
}

/// A display frame the client applied: its sequence and the whole framebuffer.
struct FrameSample {
    seq: u64,
    fb: Framebuffer,
}

struct Observed {
    pictures: Spread<PictureSample>,
    frames: Spread<FrameSample>,
    regions: Vec<Rect>,
    last_picture: Option<Instant>,
}

impl Observed {
    fn new() -> Self {
        Self {
            pictures: Spread::new(24),
            frames: Spread::new(8),
            regions: Vec::new(),
            last_picture: None,
        }
    }

    fn observe(&mut self, shown: Shown, fb: &Framebuffer) {
        match shown {
            Shown::Picture {
                rect, source_seq, ..
            } => {
                if !self.regions.contains(&rect) {
                    self.regions.push(rect);
                }
                self.last_picture = Some(Instant::now());
                self.pictures.offer(|| {
                    let mut pixels = Vec::new();
                    fb.read_rect(&rect, &mut pixels);
                    PictureSample {
                        seq: source_seq,
                        rect,
                        pixels,
                    }
                });
            }
            Shown::Frame { source_seq, .. } => self.frames.offer(|| FrameSample {
                seq: source_seq,
                fb: fb.clone(),
            }),
        }
    }

    /// Checks every sample against the replayed truth: pictures at `min_psnr` or better,
    /// display frames exact outside the video regions. Returns the PSNRs.
    fn check(&self, config: &SyntheticConfig, min_psnr: f64) -> Vec<f64> {
        let mut psnrs = Vec::new();
        let mut replay = Replayer::new(config);
        let mut pictures = self.pictures.items.iter().peekable();
        let mut frames = self.frames.items.iter().peekable();
        loop {
            let next_picture = pictures.peek().map(|p| p.seq);
            let next_frame = frames.peek().map(|f| f.seq);
            match (next_picture, next_frame) {
                (Some(p), f) if f.is_none_or(|f| p <= f) => {
                    let sample = pictures.next().unwrap();
                    let mut truth = Vec::new();
                    replay.at(sample.seq).read_rect(&sample.rect, &mut truth);
                    let psnr = luma_psnr(&truth, &sample.pixels);
                    assert!(
                        psnr >= min_psnr,
                        "picture at sequence {}: {psnr:.1} dB",
                        sample.seq
                    );
                    psnrs.push(psnr);
                }
                (_, Some(_)) => {
                    let sample = frames.next().unwrap();
                    let truth = replay.at(sample.seq);
                    let wrong = differing_outside(truth, &sample.fb, &self.regions);
                    assert_eq!(
                        wrong, 0,
                        "frame at sequence {}: pixels outside the video regions differ",
                        sample.seq
                    );
                }
                (None, None) => break,
                (Some(_), None) => unreachable!(),
            }
        }
        psnrs
    }
}

fn differing_outside(a: &Framebuffer, b: &Framebuffer, holes: &[Rect]) -> usize {
    let w = a.width();
    a.pixels()
        .iter()
        .zip(b.pixels())
        .enumerate()
        .filter(|(i, (x, y))| {
            let i = u32::try_from(*i).unwrap();
            let (px, py) = (i % w, i / w);
            x != y && !holes.iter().any(|r| r.intersects(&Rect::new(px, py, 1, 1)))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_plays_as_h264_and_ends_pixel_exact() {
    let ticks = 150;
    let config = synthetic(Workload::Video, ticks);
    let server = start_server(&[("default", config.clone())], 4);
    let session = Session::connect(&connect_options(&server, "default"))
        .await
        .expect("connect");
    let (expected, final_seq) = replay(&config, ticks);
    let stop = StopWhen {
        duration: Some(Duration::from_secs(120)),
        settled_seq: Some(final_seq),
        ..Default::default()
    };
    let mut seen = Observed::new();
    let outcome = session
        .run_observed(stop, None, |s, fb| seen.observe(s, fb))
        .await
        .expect("session runs");
    // Measured when the session settles (printed, never asserted: tests do not time).
    let settle = seen.last_picture.map(|t| t.elapsed());
    assert_eq!(outcome.end, EndReason::Settled, "never settled");
    let stats = server.stats();
    assert!(stats.video_regions.load(Relaxed) >= 1, "no video region");
    assert!(
        outcome.stats.video_frames >= 30,
        "{}",
        outcome.stats.video_frames
    );
    assert!(outcome.stats.video_keyframes >= 1);
    assert_eq!(seen.regions.len(), 1, "one region: {:?}", seen.regions);

    let psnrs = seen.check(&config, 35.0);
    assert!(!psnrs.is_empty());
    println!(
        "{} pictures, {} sampled, PSNR min {:.1} dB; settled {settle:?} after the last picture",
        outcome.stats.video_frames,
        psnrs.len(),
        psnrs.iter().cloned().fold(f64::INFINITY, f64::min),
    );
    assert_eq!(diff_pixels(&outcome.framebuffer, &expected), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_scrolling_and_dragging_never_become_video() {
    for workload in [Workload::Typing, Workload::Scroll, Workload::Drag] {
        let ticks = 120;
        let config = synthetic(workload, ticks);
        let server = start_server(&[("default", config.clone())], 4);
        let session = Session::connect(&connect_options(&server, "default"))
            .await
            .expect("connect");
        let (expected, final_seq) = replay(&config, ticks);
        let stop = StopWhen {
            duration: Some(Duration::from_secs(120)),
            settled_seq: Some(final_seq),
            ..Default::default()
        };
        let outcome = session.run(stop, None).await.expect("session runs");
        assert_eq!(outcome.end, EndReason::Settled);
        assert_eq!(
            server.stats().video_regions.load(Relaxed),
            0,
            "{workload} became video"
        );
        assert_eq!(outcome.stats.video_frames, 0);
        assert_eq!(diff_pixels(&outcome.framebuffer, &expected), 0);
        server.shutdown().await;
    }
}

/// Runs `workload` through a relay with `link`; returns the outcome and the server.
async fn through_link(
    workload: Workload,
    ticks: u64,
    link: &str,
) -> (oriel::Outcome, oriel_display_server::DisplayServer, Relay) {
    let config = synthetic(workload, ticks);
    let server = start_server(&[("default", config.clone())], 4);
    let spec: LinkSpec = link.parse().expect("link spec");
    let relay = Relay::start(server.local_addr().unwrap(), spec)
        .await
        .expect("relay");
    let mut opts = connect_options(&server, "default");
    opts.addr = relay.addr();
    let session = Session::connect(&opts)
        .await
        .expect("connect through relay");
    let (expected, final_seq) = replay(&config, ticks);
    let stop = StopWhen {
        duration: Some(Duration::from_secs(240)),
        settled_seq: Some(final_seq),
        ..Default::default()
    };
    let outcome = session.run(stop, None).await.expect("session runs");
    println!(
        "{workload} over {link}: {}; server: {} frames, {} pictures, {} regions",
        outcome.stats.summary(),
        server.stats().frames_sent.load(Relaxed),
        server.stats().video_frames.load(Relaxed),
        server.stats().video_regions.load(Relaxed),
    );
    assert_eq!(outcome.end, EndReason::Settled, "{workload} over {link}");
    assert_eq!(
        diff_pixels(&outcome.framebuffer, &expected),
        0,
        "{workload} over {link}: final framebuffer"
    );
    (outcome, server, relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_stays_usable_over_2_mbit_and_40_ms() {
    let (outcome, server, relay) = through_link(Workload::Mixed, 240, "rate=2mbit,rtt=40ms").await;
    let stats = server.stats();
    // The server never queues more than its window, of frames or of pictures.
    assert!(stats.max_frames_in_flight.load(Relaxed) <= 4);
    assert!(stats.max_pictures_in_flight.load(Relaxed) <= 4);
    assert!(
        stats.video_regions.load(Relaxed) >= 1,
        "the video went H.264"
    );
    assert!(outcome.stats.frames > 10);
    println!(
        "{}; relay forwarded {} packets, dropped {} at the queue",
        outcome.stats.summary(),
        relay.stats().forwarded.load(Relaxed),
        relay.stats().queue_drops.load(Relaxed)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_percent_loss_does_not_stall_video_or_text() {
    let (outcome, server, relay) = through_link(Workload::Mixed, 240, "rtt=20ms,loss=1%").await;
    assert!(
        relay.stats().lost.load(Relaxed) > 0,
        "the link lost nothing"
    );
    let stats = server.stats();
    assert!(stats.video_regions.load(Relaxed) >= 1);
    // Video kept playing and lossless updates kept flowing despite the losses.
    assert!(
        outcome.stats.video_frames >= 60,
        "{}",
        outcome.stats.video_frames
    );
    assert!(outcome.stats.frames >= 60, "{}", outcome.stats.frames);
    println!(
        "{}; {} packets lost",
        outcome.stats.summary(),
        relay.stats().lost.load(Relaxed)
    );
    server.shutdown().await;
}

/// A hand-made client: plays the protocol itself so it can ask for a keyframe in the
/// middle of a video, as a client that lost sync would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyframe_request_gets_a_keyframe() {
    use oriel_protocol::*;
    use oriel_transport::{send_message, FramedRecv};

    let server = start_server(&[("default", synthetic(Workload::Video, 600))], 4);
    let conn = raw_connection(&server).await;
    let (mut control, control_rx) = conn.open_bi().await.unwrap();
    let limit = Channel::Control.max_message_len();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        capabilities: Capabilities::all(),
        desktop: "default".into(),
        ticket: Vec::new(),
        desired_size: None,
        client_name: "keyframe test".into(),
        held: None,
    };
    send_message(&mut control, &hello, limit).await.unwrap();
    let mut control_rx = FramedRecv::new(control_rx, limit);
    let reply: HelloReply = control_rx.recv().await.unwrap().unwrap();
    assert!(matches!(reply, HelloReply::Welcome(_)));

    // Acks go through one channel so display frames and pictures both keep flowing.
    let (acks, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<ClientControl>();
    tokio::spawn(async move {
        while let Some(ack) = ack_rx.recv().await {
            if send_message(&mut control, &ack, limit).await.is_err() {
                return;
            }
        }
    });
    let mut video = None;
    while video.is_none() {
        let mut stream = conn.accept_uni().await.unwrap();
        let mut tag = [0u8; 1];
        stream.read_exact(&mut tag).await.unwrap();
        match Channel::from_tag(tag[0]) {
            Some(Channel::Display) => {
                let acks = acks.clone();
                tokio::spawn(async move {
                    let mut rx = FramedRecv::new(stream, Channel::Display.max_message_len());
                    while let Ok(Some(frame)) = rx.recv::<FrameMsg>().await {
                        let ack = ClientControl::Ack {
                            frame_id: frame.frame_id,
                            decode_us: 0,
                        };
                        let _ = acks.send(ack);
                    }
                });
            }
            Some(Channel::Video) => {
                video = Some(FramedRecv::new(stream, Channel::Video.max_message_len()))
            }
            _ => {} // the cursor
        }
    }
    let mut video = video.unwrap();
    let Some(VideoMsg::Start { region_id, .. }) = video.recv().await.unwrap() else {
        panic!("a video stream starts with Start");
    };
    let mut keyframes = Vec::new();
    for n in 1..=40 {
        let Some(VideoMsg::Frame(picture)) = video.recv().await.unwrap() else {
            panic!("pictures follow Start");
        };
        keyframes.push(picture.keyframe);
        let _ = acks.send(ClientControl::VideoAck {
            region_id,
            frame_no: picture.frame_no,
            decode_us: 0,
        });
        if n == 10 {
            let _ = acks.send(ClientControl::KeyframeRequest { region_id });
        }
    }
    assert!(keyframes[0], "a region starts with a keyframe");
    assert!(
        !keyframes[1..10].iter().any(|k| *k),
        "no keyframes unasked: {keyframes:?}"
    );
    assert!(
        keyframes[10..].iter().any(|k| *k),
        "the request brought a keyframe: {keyframes:?}"
    );
    assert_eq!(server.stats().keyframe_requests.load(Relaxed), 1);
    conn.close(0u32.into(), b"done");
    server.shutdown().await;
}
