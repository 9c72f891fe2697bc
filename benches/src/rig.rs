//! What every display workload runs on: a display server with one desktop, on a runtime
//! of its own whose threads count their CPU time, and a client runtime that dials it,
//! through an emulated link when one is given.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use oriel::ConnectOptions;
use oriel_display_server::source::FrameSource;
use oriel_display_server::stats::ServerStats;
use oriel_display_server::{Desktop, DisplayServer, ServerConfig};
use oriel_netem::{LinkSpec, Relay};
use oriel_transport::Identity;

pub struct Rig {
    pub server: DisplayServer,
    pub client_rt: tokio::runtime::Runtime,
    /// Where the client dials: the server, or the relay in front of it.
    pub opts: ConnectOptions,
    server_rt: tokio::runtime::Runtime,
    server_cpu_ns: Arc<AtomicU64>,
    relay: Option<Relay>,
}

/// What is left of a stopped rig.
pub struct Finished {
    pub stats: Arc<ServerStats>,
    pub frames_produced: u64,
    /// CPU seconds every display server thread used.
    pub server_cpu_s: f64,
}

impl Rig {
    /// Starts the server with `source` as desktop "default".
    pub fn start(
        source: Box<dyn FrameSource>,
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
                vec![Desktop::new("default", source)],
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

    pub fn desktop(&self) -> Arc<Desktop> {
        self.server.desktop("default").expect("the rig's desktop")
    }

    /// Stops relay and server; the CPU count is complete once the server's threads end.
    pub fn finish(self) -> Finished {
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
