//! Command line and TOML configuration of `oriel-display-server`. Flags override the file;
//! everything has a default so `oriel-display-server` alone serves a demo desktop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Parser;
use oriel_protocol::Size;
use serde::Deserialize;

use oriel_protocol::desktop_spec::{DesktopSpec, KvmParams, SyntheticParams, X11Params};

use crate::source::SourceConfig;

/// Oriel display server: runs desktops and streams them to Oriel clients over QUIC.
#[derive(Debug, Parser, Default)]
#[command(
    name = "oriel-display-server",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML file with any of the options below (flags win over the file).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// UDP address for QUIC clients [default: 127.0.0.1:4433].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// UDP address for browsers (WebTransport), or "off" [default: the --listen address
    /// with its port + 10, 127.0.0.1:4443].
    #[arg(long, value_name = "ADDR|off")]
    pub web_listen: Option<String>,
    /// Where the TLS certificate and key are kept
    /// [default: $XDG_DATA_HOME/oriel/display-server or ~/.local/share/oriel/display-server].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A desktop: NAME=WORKLOAD for a synthetic one (idle, typing, scroll, drag, video,
    /// mixed), NAME=x11 for a new Xvfb of --size running a window manager or xterm,
    /// NAME=x11:DISPLAY to serve an existing X display, or NAME=kvm:IMAGE for a VM of
    /// --size booting IMAGE from --images ("tiny" is the built-in test guest); repeat
    /// for several [default: default=mixed].
    #[arg(long = "desktop", value_name = "NAME=KIND")]
    pub desktops: Vec<String>,
    /// Serve this running X display (e.g. :0, or "$DISPLAY") as the desktop "default":
    /// the same as --desktop default=x11:DISPLAY.
    #[arg(long, value_name = "DISPLAY")]
    pub display: Option<String>,
    /// The guest image store of kvm desktops (see `image build`)
    /// [default: DATA_DIR/images].
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Desktop size as WIDTHxHEIGHT [default: 1920x1080; 1024x768 for kvm desktops].
    #[arg(long, value_name = "WxH")]
    pub size: Option<String>,
    /// Frames per second of the synthetic desktops [default: 30].
    #[arg(long)]
    pub fps: Option<u32>,
    /// Stop the synthetic scripts after this many frames (the screen then stays still).
    #[arg(long, value_name = "N")]
    pub ticks: Option<u64>,
    /// Most frames a client may leave unacknowledged before the server waits; fewer are
    /// used when the path's RTT is short [default: 4].
    #[arg(long, value_name = "N")]
    pub frame_window: Option<usize>,
    /// Highest H.264 bitrate of a session's video regions, in kbit/s; rate control adapts
    /// below it to the network [default: 16000].
    #[arg(long, value_name = "KBIT")]
    pub max_video_kbit: Option<u32>,
    /// zstd level of the lossless stream [default: 1].
    #[arg(long, value_name = "N")]
    pub zstd_level: Option<i32>,
    /// Most concurrent sessions [default: 64].
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// TCP address of the Prometheus /metrics endpoint, or "off" [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR|off")]
    pub metrics_listen: Option<String>,
    /// Work for a broker: its host-link address (printed by oriel-broker). Clients then
    /// need broker tickets, and the broker creates the desktops. Repeat it for the
    /// brokers of a cluster: the host links to one and fails over to the next.
    #[arg(long, value_name = "ADDR")]
    pub broker: Vec<SocketAddr>,
    /// SHA-256 fingerprint of the broker's certificate (printed by oriel-broker).
    #[arg(long, value_name = "SHA256")]
    pub broker_fingerprint: Option<String>,
    /// One-time token to join the broker (the `join-token` file in the broker's data
    /// directory, named by `oriel-broker serve`); later starts use the credential saved
    /// in the data directory.
    #[arg(long, value_name = "TOKEN")]
    pub join_token: Option<String>,
    /// Name of this host at the broker [default: the listen address].
    #[arg(long)]
    pub name: Option<String>,
    /// Address clients should dial, if not the listen address (e.g. behind NAT).
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<String>,
    /// Most desktops this host runs for the broker [default: 16].
    #[arg(long, value_name = "N")]
    pub capacity: Option<u32>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Guest images for kvm desktops.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Build a bootable image from Debian packages: linux-image-amd64's kernel and an
    /// initramfs with busybox-static whose init starts shells on the framebuffer and
    /// serial consoles. Downloads with apt-get unless --kernel and --busybox are given.
    Build {
        /// Name of the image (what kvm pools name).
        #[arg(long, default_value = crate::source::DEFAULT_IMAGE)]
        name: String,
        /// The image store [default: ~/.local/share/oriel/display-server/images].
        #[arg(long, value_name = "DIR")]
        images: Option<PathBuf>,
        /// A kernel to use instead of downloading linux-image-amd64 (bzImage or vmlinux).
        #[arg(long, value_name = "FILE")]
        kernel: Option<PathBuf>,
        /// A static busybox to use instead of downloading busybox-static.
        #[arg(long, value_name = "FILE")]
        busybox: Option<PathBuf>,
        /// Kernel arguments to add to the defaults.
        #[arg(long, value_name = "ARGS")]
        append: Option<String>,
        /// Guest memory pools get unless they say otherwise.
        #[arg(long, value_name = "MIB", default_value_t = 512)]
        memory_mib: u64,
    },
    /// List the images of the store.
    List {
        /// The image store [default: ~/.local/share/oriel/display-server/images].
        #[arg(long, value_name = "DIR")]
        images: Option<PathBuf>,
    },
}

pub use crate::image_build::default_images_dir;

/// Tunables of the display pipeline.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Where browsers connect over WebTransport (UDP), if the server takes them.
    pub web_listen: Option<SocketAddr>,
    /// Most frames a session may have unacknowledged before it stops sending and merges
    /// damage (also per video region). Sessions use fewer when the path's RTT is short.
    pub frame_window: usize,
    /// Highest video bitrate of a session, bits per second; rate control adapts below it.
    pub max_video_bitrate: u32,
    pub zstd_level: i32,
    pub max_sessions: usize,
    /// Clients must present a broker ticket (set when the server works for a broker).
    pub require_tickets: bool,
    /// The guest image store `kvm` desktops boot from.
    pub images_dir: std::path::PathBuf,
    /// Where suspended desktops' states are kept (they survive a restart).
    pub suspend_dir: std::path::PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            web_listen: None,
            frame_window: 4,
            max_video_bitrate: 16_000_000,
            zstd_level: 1,
            max_sessions: 64,
            require_tickets: false,
            images_dir: crate::image_build::default_images_dir(),
            suspend_dir: oriel_transport::files::data_dir("display-server").join("suspended"),
        }
    }
}

/// The same options as [`Args`], from a TOML file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    listen: Option<SocketAddr>,
    web_listen: Option<String>,
    data_dir: Option<PathBuf>,
    desktops: Option<Vec<String>>,
    images: Option<PathBuf>,
    size: Option<String>,
    fps: Option<u32>,
    ticks: Option<u64>,
    frame_window: Option<usize>,
    max_video_kbit: Option<u32>,
    zstd_level: Option<i32>,
    max_sessions: Option<usize>,
    metrics_listen: Option<String>,
    /// One address or a list of them.
    #[serde(default, deserialize_with = "one_or_many")]
    broker: Vec<SocketAddr>,
    broker_fingerprint: Option<String>,
    join_token: Option<String>,
    name: Option<String>,
    advertise: Option<String>,
    capacity: Option<u32>,
}

/// Everything the server needs, resolved.
#[derive(Debug)]
pub struct Resolved {
    pub server: ServerConfig,
    pub data_dir: PathBuf,
    pub desktops: Vec<(String, SourceConfig)>,
    pub metrics_listen: Option<SocketAddr>,
    pub broker: Option<BrokerLink>,
}

/// The browsers' address beside `listen`: ten ports up (any free port when `listen`'s is).
fn web_port_beside(listen: SocketAddr) -> SocketAddr {
    let port = match listen.port() {
        0 => 0,
        p => p.checked_add(10).unwrap_or(0),
    };
    SocketAddr::new(listen.ip(), port)
}

/// `broker = "ADDR"` or `broker = ["ADDR", …]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(SocketAddr),
        Many(Vec<SocketAddr>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(a) => vec![a],
        OneOrMany::Many(v) => v,
    })
}

/// How to reach the broker; the rest of the agent's settings come from the server.
#[derive(Debug, Clone)]
pub struct BrokerLink {
    /// The brokers of the cluster, tried in turn.
    pub addresses: Vec<SocketAddr>,
    pub fingerprint: oriel_transport::Fingerprint,
    pub join_token: Option<String>,
    pub name: Option<String>,
    pub advertise: Option<String>,
    pub capacity: u32,
}

impl Args {
    pub fn resolve(self) -> anyhow::Result<Resolved> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let defaults = ServerConfig::default();
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| oriel_transport::files::data_dir("display-server"));
        let listen = self.listen.or(file.listen).unwrap_or(defaults.listen);
        let web_listen =
            match self.web_listen.or(file.web_listen).as_deref() {
                Some("off") => None,
                Some(addr) => Some(addr.parse().map_err(|_| {
                    anyhow::anyhow!("--web-listen '{addr}' is not ADDR:PORT or off")
                })?),
                None => Some(web_port_beside(listen)),
            };
        let server = ServerConfig {
            web_listen,
            images_dir: self
                .images
                .or(file.images)
                .unwrap_or_else(|| data_dir.join("images")),
            suspend_dir: data_dir.join("suspended"),
            listen,
            frame_window: self
                .frame_window
                .or(file.frame_window)
                .unwrap_or(defaults.frame_window),
            max_video_bitrate: self
                .max_video_kbit
                .or(file.max_video_kbit)
                .map_or(defaults.max_video_bitrate, |k| k.saturating_mul(1000)),
            zstd_level: self
                .zstd_level
                .or(file.zstd_level)
                .unwrap_or(defaults.zstd_level),
            max_sessions: self
                .max_sessions
                .or(file.max_sessions)
                .unwrap_or(defaults.max_sessions),
            require_tickets: !self.broker.is_empty() || !file.broker.is_empty(),
        };
        if server.frame_window == 0 {
            bail!("--frame-window must be at least 1");
        }
        if !(200_000..=100_000_000).contains(&server.max_video_bitrate) {
            bail!("--max-video-kbit must be between 200 and 100000");
        }
        let size = self
            .size
            .or(file.size)
            .map(|s| parse_size(&s))
            .transpose()?;
        let fps = self.fps.or(file.fps);
        let ticks = self.ticks.or(file.ticks);
        let brokers = if self.broker.is_empty() {
            file.broker
        } else {
            self.broker
        };
        let broker = match Some(brokers).filter(|b| !b.is_empty()) {
            Some(addresses) => {
                let fingerprint = self
                    .broker_fingerprint
                    .or(file.broker_fingerprint)
                    .context("--broker needs --broker-fingerprint")?
                    .parse()
                    .map_err(anyhow::Error::msg)?;
                Some(BrokerLink {
                    addresses,
                    fingerprint,
                    join_token: self.join_token.or(file.join_token),
                    name: self.name.or(file.name),
                    advertise: self.advertise.or(file.advertise),
                    capacity: self.capacity.or(file.capacity).unwrap_or(16),
                })
            }
            None => None,
        };
        // With a broker, the broker decides which desktops run.
        let default_desktops = if broker.is_some() {
            vec![]
        } else {
            vec!["default=mixed".into()]
        };
        let mut specs = if !self.desktops.is_empty() {
            self.desktops
        } else if self.display.is_some() {
            vec![]
        } else {
            file.desktops.unwrap_or(default_desktops)
        };
        if let Some(display) = self.display {
            specs.push(format!("default=x11:{display}"));
        }
        let mut desktops = Vec::new();
        for arg in specs {
            let (name, kind) = arg
                .split_once('=')
                .with_context(|| format!("desktop '{arg}' is not NAME=KIND"))?;
            if name.is_empty() || desktops.iter().any(|(n, _)| n == name) {
                bail!("desktop names must be unique and non-empty: '{arg}'");
            }
            let desktop = desktop_spec(kind, size, fps, ticks)
                .and_then(|spec| SourceConfig::from_spec(&spec))
                .with_context(|| format!("desktop '{arg}'"))?;
            desktops.push((name.to_string(), desktop));
        }
        let metrics_listen =
            match self.metrics_listen.or(file.metrics_listen).as_deref() {
                Some("off") => None,
                Some(addr) => Some(addr.parse().with_context(|| {
                    format!("--metrics-listen '{addr}' is not ADDR:PORT or off")
                })?),
                None => Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            };
        Ok(Resolved {
            server,
            data_dir,
            desktops,
            metrics_listen,
            broker,
        })
    }
}

/// The spec of a desktop KIND of the command line: sizes and rates left unset take
/// the defaults of [`SourceConfig::from_spec`], like a broker's pools.
fn desktop_spec(
    kind: &str,
    size: Option<Size>,
    fps: Option<u32>,
    ticks: Option<u64>,
) -> anyhow::Result<DesktopSpec> {
    let (width, height) = (size.map(|s| s.width), size.map(|s| s.height));
    Ok(match kind.split_once(':') {
        Some(("x11", display)) => DesktopSpec::X11(X11Params {
            display: Some(format!(":{}", display.trim_start_matches(':'))),
            fps,
            ..X11Params::default()
        }),
        None if kind == "x11" => DesktopSpec::X11(X11Params {
            width,
            height,
            fps,
            ..X11Params::default()
        }),
        Some(("kvm", image)) => DesktopSpec::Kvm(KvmParams {
            image: Some(image.into()),
            width,
            height,
            fps,
            ..KvmParams::default()
        }),
        None if kind == "kvm" => bail!(
            "say which image, e.g. kvm:{} or kvm:tiny",
            crate::source::DEFAULT_IMAGE
        ),
        _ => {
            // Parsed here for the error that lists the workloads.
            let workload: crate::source::synthetic::Workload = kind.parse()?;
            DesktopSpec::Synthetic(SyntheticParams {
                workload: Some(workload.to_string()),
                width,
                height,
                fps,
                ticks,
            })
        }
    })
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

pub fn parse_size(s: &str) -> anyhow::Result<Size> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("size '{s}' is not WIDTHxHEIGHT"))?;
    let size = Size::new(
        w.trim()
            .parse()
            .with_context(|| format!("bad width in '{s}'"))?,
        h.trim()
            .parse()
            .with_context(|| format!("bad height in '{s}'"))?,
    );
    if !oriel_protocol::handshake::valid_desktop_size(size) {
        bail!(
            "size {s} is out of range (1..=8192 per side, at most {} pixels)",
            oriel_protocol::MAX_DESKTOP_PIXELS
        );
    }
    Ok(size)
}

#[cfg(test)]
mod tests;
