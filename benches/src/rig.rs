//! What every display workload runs on: a display server with one desktop, on a runtime
//! of its own whose threads count their CPU time, and a client runtime that dials it,
//! through an emulated link when one is given.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use oriel::{percentile, ConnectOptions};
use oriel_display_server::source::FrameSource;
use oriel_display_server::stats::ServerStats;
use oriel_display_server::{Desktop, DisplayServer, ServerConfig};
use oriel_netem::{LinkSpec, Relay};
use oriel_transport::Identity;

pub(crate) struct Rig {
    pub server: DisplayServer,
    pub client_rt: tokio::runtime::Runtime,
    /// Where the client dials: the server, or the relay in front of it.
    pub opts: ConnectOptions,
    server_rt: tokio::runtime::Runtime,
    server_cpu_ns: Arc<AtomicU64>,
    relay: Option<Relay>,
}

/// What is left of a stopped rig.
pub(crate) struct Finished {
    pub stats: Arc<ServerStats>,
    pub frames_produced: u64,
    /// CPU seconds every display server thread used.
    pub server_cpu_s: f64,
}

impl Rig {
    /// Starts the server with `source` as desktop "default".
    pub(crate) fn start(
        source: Box<dyn FrameSource>,
        frame_window: usize,
        max_video_kbit: u32,
        link: Option<LinkSpec>,
    ) -> anyhow::Result<Rig> {
        let desktops = vec![Desktop::new("default", source)];
        Self::start_desktops(desktops, frame_window, max_video_kbit, link)
    }

    /// Starts the server with `desktops`.
    pub(crate) fn start_desktops(
        desktops: Vec<Arc<Desktop>>,
        frame_window: usize,
        max_video_kbit: u32,
        link: Option<LinkSpec>,
    ) -> anyhow::Result<Rig> {
        let server_cpu_ns = Arc::new(AtomicU64::new(0));
        let cpu = server_cpu_ns.clone();
        // Every thread of the server's runtime (workers and blocking captures) adds its
        // CPU time when it stops, so the server's share is told apart from the client's.
        let server_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("oriel-server")
            .on_thread_stop(move || {
                cpu.fetch_add(thread_cpu_ns(), Relaxed);
            })
            .build()?;
        let identity = Identity::generate(&["localhost".into()])?;
        let server = server_rt.block_on(async {
            DisplayServer::start(
                ServerConfig {
                    listen: "127.0.0.1:0".parse()?,
                    frame_window,
                    max_video_bitrate: max_video_kbit.saturating_mul(1000),
                    ..Default::default()
                },
                &identity,
                desktops,
            )
        })?;
        let mut opts = ConnectOptions::new(server.local_addr()?, server.fingerprint());
        let client_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let relay = match link {
            Some(spec) => {
                let relay = client_rt.block_on(Relay::start(opts.addr, spec))?;
                opts.addr = relay.addr();
                Some(relay)
            }
            None => None,
        };
        Ok(Rig {
            server,
            client_rt,
            opts,
            server_rt,
            server_cpu_ns,
            relay,
        })
    }

    pub(crate) fn desktop(&self) -> Arc<Desktop> {
        self.server.desktop("default").expect("the rig's desktop")
    }

    /// Stops relay and server; the CPU count is complete once the server's threads end.
    pub(crate) fn finish(self) -> Finished {
        drop(self.relay);
        let stats = self.server.stats();
        let frames_produced = self.server.frames_produced();
        self.server_rt.block_on(self.server.shutdown());
        self.server_rt.shutdown_timeout(Duration::from_secs(5));
        Finished {
            stats,
            frames_produced,
            server_cpu_s: self.server_cpu_ns.load(Relaxed) as f64 / 1e9,
        }
    }
}

/// CPU time the calling thread has used, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What a client saw of a run, for [`display_figures`].
pub(crate) struct Seen<'a> {
    pub outcome: &'a oriel::Outcome,
    /// The source's final screen, which the client must end on.
    pub truth: &'a oriel_protocol::Framebuffer,
    /// Video pictures shown.
    pub pictures: u64,
    /// Display frames shown from the first video picture to the last (indices into the
    /// client's latency samples): the frames shown while a video played.
    pub during_video: (Option<usize>, usize),
    pub link: Option<LinkSpec>,
}

/// The figures every display workload reports, whatever its source: bytes and frames,
/// encode and latency percentiles, server CPU, tiles per codec, exactness and video.
pub(crate) fn display_figures(
    done: &Finished,
    seen: &Seen,
) -> serde_json::Map<String, serde_json::Value> {
    let stats = &done.stats;
    let client = &seen.outcome.stats;
    let ms = |us: u32| f64::from(us) / 1000.0;
    let bytes = stats.display_bytes.load(Relaxed);
    let raw = stats.raw_bytes.load(Relaxed);
    let frames_sent = stats.frames_sent.load(Relaxed);
    let encode = stats.encode_samples();
    let video_encode = stats.video_encode_samples();
    let first_frame_bytes = first_frame_bytes(stats);
    let steady_bytes = bytes - first_frame_bytes;
    let during_video = match seen.during_video {
        (Some(first), last) if last > first => &client.latency_us[first..last],
        _ => &[][..],
    };
    let figures = serde_json::json!({
        "link": seen.link.map_or("loopback".to_string(), |l| l.to_string()),
        "frames_produced": done.frames_produced,
        "frames_sent": frames_sent,
        "bytes": bytes,
        "bytes_per_frame": bytes.checked_div(frames_sent).unwrap_or(0),
        "first_frame_bytes": first_frame_bytes,
        "steady_bytes_per_frame": steady_bytes.checked_div(frames_sent.saturating_sub(1)).unwrap_or(0),
        "raw_bytes": raw,
        "ratio_vs_raw": if bytes == 0 { 0.0 } else { raw as f64 / bytes as f64 },
        "encode_ms_p50": ms(percentile(&encode, 0.5)),
        "encode_ms_p99": ms(percentile(&encode, 0.99)),
        "latency_ms_p50": ms(percentile(&client.latency_us, 0.5)),
        "latency_ms_p99": ms(percentile(&client.latency_us, 0.99)),
        "decode_ms_p50": ms(percentile(&client.decode_us, 0.5)),
        "server_cpu_s": done.server_cpu_s,
        "tiles_changed": stats.tiles_changed.load(Relaxed),
        "tiles_copy": stats.tiles_copied.load(Relaxed),
        "tiles_cache_hit": stats.tiles_cache_hit.load(Relaxed),
        "tiles_solid": stats.tiles_solid.load(Relaxed),
        "tiles_palette": stats.tiles_palette.load(Relaxed),
        "tiles_zstd": stats.tiles_raw.load(Relaxed),
        "pixel_exact": seen.outcome.framebuffer == *seen.truth,
        "lossless_bytes": bytes,
        "video_bytes": stats.video_bytes.load(Relaxed),
        "video_regions": stats.video_regions.load(Relaxed),
        "video_pictures": seen.pictures,
        "video_keyframes": stats.video_keyframes.load(Relaxed),
        "video_encode_ms_p50": ms(percentile(&video_encode, 0.5)),
        "video_latency_ms_p50": ms(percentile(&client.video_latency_us, 0.5)),
        "video_latency_ms_p99": ms(percentile(&client.video_latency_us, 0.99)),
        "video_decode_ms_p50": ms(percentile(&client.video_decode_us, 0.5)),
        "latency_during_video_ms_p50": ms(percentile(during_video, 0.5)),
        "latency_during_video_ms_p99": ms(percentile(during_video, 0.99)),
    });
    match figures {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("json! of an object literal"),
    }
}

/// Bytes of the first frame, which carries the whole desktop; the goals are about what
/// follows it.
pub(crate) fn first_frame_bytes(stats: &ServerStats) -> u64 {
    stats
        .frame_byte_samples()
        .first()
        .copied()
        .map_or(0, u64::from)
}

/// `figures` with `more` added: one JSON line.
pub(crate) fn json_line(
    figures: serde_json::Map<String, serde_json::Value>,
    more: serde_json::Value,
) -> String {
    merged_line([serde_json::Value::Object(figures), more])
}

/// The fields of JSON objects as one JSON line; a later object's field wins.
pub(crate) fn merged_line(objects: impl IntoIterator<Item = serde_json::Value>) -> String {
    let mut line = serde_json::Map::new();
    for object in objects {
        if let serde_json::Value::Object(fields) = object {
            line.extend(fields);
        }
    }
    serde_json::Value::Object(line).to_string()
}
