//! Network emulation on loopback: a UDP relay between a QUIC client and server that
//! imposes a bandwidth cap (with a drop-tail queue, like a router), one-way delay,
//! jitter and random loss, in each direction. Tests and benchmarks put it between
//! client and display server to try constrained links on one machine.
//!
//! ```text
//! client ──▶ relay (front socket) ──▶ upstream socket per client ──▶ server
//! ```

mod shaper;
mod spec;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use shaper::Shaper;
pub use spec::{LinkSpec, ParseLinkError};

/// Largest UDP payload relayed.
const MAX_DATAGRAM: usize = 65_535;

/// Packet counters of a relay, both directions together.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub forwarded: AtomicU64,
    pub bytes: AtomicU64,
    pub lost: AtomicU64,
    pub queue_drops: AtomicU64,
}

/// A running relay; dropping it stops it.
pub struct Relay {
    addr: SocketAddr,
    stats: Arc<RelayStats>,
    task: tokio::task::JoinHandle<()>,
    /// The link is cut: every packet, both ways, is dropped.
    cut: Arc<AtomicBool>,
}

impl Relay {
    /// Listens on an ephemeral loopback port and forwards to `upstream` through `spec`.
    pub async fn start(upstream: SocketAddr, spec: LinkSpec) -> std::io::Result<Relay> {
        let front = Arc::new(UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?);
        let addr = front.local_addr()?;
        let stats = Arc::new(RelayStats::default());
        let cut = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(front, upstream, spec, stats.clone(), cut.clone()));
        Ok(Relay {
            addr,
            stats,
            task,
            cut,
        })
    }

    /// Cuts the link (every packet is dropped, both ways) or mends it: a network outage.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Relaxed);
    }

    /// Where clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client's flow: packets towards the server go through its shaper.
struct Flow {
    up: mpsc::UnboundedSender<(Instant, Vec<u8>)>,
    shaper: Shaper,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Flow {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn run(
    front: Arc<UdpSocket>,
    upstream: SocketAddr,
    spec: LinkSpec,
    stats: Arc<RelayStats>,
    cut: Arc<AtomicBool>,
) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut seed = 1u64;
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            continue; // e.g. ICMP port unreachable surfaced as an error: keep relaying
        };
        if cut.load(Relaxed) {
            stats.lost.fetch_add(1, Relaxed);
            continue;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = flows.entry(client) {
            match open_flow(&front, client, upstream, &spec, seed, &stats, &cut).await {
                Ok(flow) => {
                    e.insert(flow);
                }
                Err(e) => {
                    tracing::warn!("relay: cannot open a flow for {client}: {e}");
                    continue;
                }
            }
            seed += 2;
        }
        let Some(flow) = flows.get_mut(&client) else {
            continue;
        };
        let now = Instant::now();
        match flow.shaper.admit(n, now) {
            Ok(at) => {
                let _ = flow.up.send((at, buf[..n].to_vec()));
            }
            Err(drop) => drop.count(&stats),
        }
    }
}

async fn open_flow(
    front: &Arc<UdpSocket>,
    client: SocketAddr,
    upstream: SocketAddr,
    spec: &LinkSpec,
    seed: u64,
    stats: &Arc<RelayStats>,
    cut: &Arc<AtomicBool>,
) -> std::io::Result<Flow> {
    let cut = cut.clone();
    let socket = Arc::new(UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?);
    socket.connect(upstream).await?;
    let (up_tx, up_rx) = mpsc::unbounded_channel();
    let (down_tx, down_rx) = mpsc::unbounded_channel();
    let sender = socket.clone();
    let up_stats = stats.clone();
    let deliver_up = tokio::spawn(deliver(up_rx, up_stats, move |p| {
        let s = sender.clone();
        async move { s.send(&p).await.map(|_| ()) }
    }));
    let front = front.clone();
    let down_stats = stats.clone();
    let mut down_shaper = Shaper::new(spec, seed + 1);
    let receive_down = tokio::spawn(async move {
        let deliver_down = tokio::spawn(deliver(down_rx, down_stats.clone(), move |p| {
            let f = front.clone();
            async move { f.send_to(&p, client).await.map(|_| ()) }
        }));
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while let Ok(n) = socket.recv(&mut buf).await {
            if cut.load(Relaxed) {
                down_stats.lost.fetch_add(1, Relaxed);
                continue;
            }
            match down_shaper.admit(n, Instant::now()) {
                Ok(at) => {
                    let _ = down_tx.send((at, buf[..n].to_vec()));
                }
                Err(drop) => drop.count(&down_stats),
            }
        }
        deliver_down.abort();
    });
    Ok(Flow {
        up: up_tx,
        shaper: Shaper::new(spec, seed),
        tasks: [deliver_up, receive_down],
    })
}

/// Sends each packet at its delivery time; times never decrease, so order is kept.
async fn deliver<F, Fut>(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    stats: Arc<RelayStats>,
    send: F,
) where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>>,
{
    while let Some((at, packet)) = rx.recv().await {
        tokio::time::sleep_until(at).await;
        let len = packet.len() as u64;
        if send(packet).await.is_ok() {
            stats.forwarded.fetch_add(1, Relaxed);
            stats.bytes.fetch_add(len, Relaxed);
        }
    }
}
