// A program: its output is what it prints.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use oriel::launcher;
use oriel::resume::{self, Reconnect};
use oriel::screenshot::save_png;
use oriel::viewer::ViewerOptions;
use oriel::{ConnectOptions, Session, StopWhen};
use oriel_transport::Fingerprint;

mod demo;
mod pick;

/// Oriel thin client: connect to a desktop and view it. Without arguments (after
/// `oriel login`) it lists your pools and connects to the one you choose, or the only
/// one; `oriel oriel://BROKER/POOL` opens a desktop link.
#[derive(Debug, Parser)]
#[command(name = "oriel", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// A desktop link, oriel://BROKER/POOL (as a desktop environment passes it).
    link: Option<String>,
    #[command(flatten)]
    view: ViewArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in to a broker; the login is kept in ~/.config/oriel/login.json (mode 0600).
    /// The password is read from ORIEL_PASSWORD or the first line of stdin.
    Login {
        /// Broker URL, e.g. https://broker.example:8443. Repeat it for the brokers of a
        /// cluster: the first that answers is used, the others when it cannot be reached.
        #[arg(long, required = true)]
        broker: Vec<String>,
        /// The broker certificate's SHA-256 fingerprint (printed by oriel-broker).
        #[arg(long)]
        fingerprint: Option<Fingerprint>,
        #[arg(long)]
        user: String,
    },
    /// List the pools you may use and your desktops in them.
    Desktops,
    /// Connect to a desktop: POOL (through the broker you logged in to), or a display
    /// server's HOST:PORT with --fingerprint.
    Connect(ConnectArgs),
    /// Give back your desktop of a pool (a floating desktop is reset).
    Logoff { pool: String },
    /// Run a complete deployment on this machine (a display server with a synthetic
    /// desktop, and this client connected to it) and print what the client saw.
    Demo(demo::DemoArgs),
    /// Let the desktop environment open oriel:// links with this program: writes
    /// oriel.desktop to ~/.local/share/applications and registers it with xdg-mime.
    Register,
}

#[derive(Debug, clap::Args)]
struct ConnectArgs {
    /// A pool name, or a display server's HOST:PORT (then --fingerprint is required).
    target: String,
    /// SHA-256 fingerprint of the display server certificate, for a direct connection.
    #[arg(long)]
    fingerprint: Option<Fingerprint>,
    /// Desktop to show, for a direct connection.
    #[arg(long, default_value = "default")]
    desktop: String,
    #[command(flatten)]
    view: ViewArgs,
}

/// How a session is shown.
#[derive(Debug, Clone, clap::Args)]
struct ViewArgs {
    /// Run without a window: decode, acknowledge and print statistics (for scripts).
    #[arg(long)]
    headless: bool,
    /// Open the window full screen (F11 toggles; Ctrl+Alt+End sends Ctrl+Alt+Del).
    #[arg(long)]
    fullscreen: bool,
    /// Keep the desktop's size when the window is resized (by default the desktop is
    /// asked to take the window's size, where it can).
    #[arg(long)]
    no_resize: bool,
    /// Do not share the clipboard with the desktop (by default the window's X clipboard
    /// is shared, as far as the desktop's policy allows).
    #[arg(long)]
    no_clipboard: bool,
    /// Share PRIMARY too (what selecting text puts, pasted with the middle button).
    #[arg(long, conflicts_with = "no_clipboard")]
    clipboard_primary: bool,
    /// Write the desktop's sound to this WAV file (48 kHz stereo), as it would have
    /// been played.
    #[arg(long, value_name = "FILE.wav", conflicts_with_all = ["no_audio", "speaker"])]
    audio_out: Option<PathBuf>,
    /// Do not play the desktop's sound (a window plays it on the default output device).
    #[arg(long)]
    no_audio: bool,
    /// Play the desktop's sound on the default output device also when headless.
    #[arg(long, conflicts_with = "no_audio")]
    speaker: bool,
    /// Volume of the desktop's sound in percent, 0-200 (Ctrl+Alt+Up/Down in the window).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=200))]
    volume: u32,
    /// Start with the sound muted (Ctrl+Alt+M in the window toggles).
    #[arg(long)]
    mute: bool,
    /// Send the default input device to the desktop as its microphone.
    #[arg(long, conflicts_with = "audio_in")]
    microphone: bool,
    /// Use this WAV file (48 kHz, 16-bit, mono or stereo) as the microphone: the
    /// desktop's programs record it, once, from the start of the session.
    #[arg(long, value_name = "FILE.wav")]
    audio_in: Option<PathBuf>,
    /// Save the final screen as PNG.
    #[arg(long, value_name = "FILE")]
    screenshot: Option<PathBuf>,
    /// Disconnect after this long, e.g. 10s or 2m [default: until the server closes].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Print the statistics as one JSON line.
    #[arg(long)]
    json: bool,
    /// How long to wait for the broker to start a desktop when none is free.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    wait: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,winit=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        return match cli.link {
            Some(link) => pick::open_link(&link.parse()?, &cli.view).await,
            None => pick::choose_and_connect(&cli.view).await,
        };
    };
    match command {
        Command::Connect(args) => connect(args).await,
        Command::Register => pick::register(),
        Command::Login {
            broker,
            fingerprint,
            user,
        } => {
            let password = read_password()?;
            let login = launcher::login_to_any(&broker, fingerprint, &user, &password).await?;
            let path = launcher::save(&login)?;
            println!(
                "logged in to {} as {} (saved in {})",
                login.broker,
                login.user,
                path.display()
            );
            Ok(())
        }
        Command::Desktops => {
            let login = launcher::load()?;
            let pools = launcher::pools(&login).await?;
            if pools.is_empty() {
                println!("no pools: ask your administrator for an entitlement");
            }
            for p in pools {
                println!(
                    "{:<20} {:<10} {}",
                    p.name,
                    p.assignment,
                    p.desktop.map_or(format!("{} ready", p.ready), |d| format!(
                        "your desktop: {d}"
                    ))
                );
            }
            Ok(())
        }
        Command::Logoff { pool } => {
            launcher::logoff(&launcher::load()?, &pool).await?;
            println!("logged off from pool {pool}");
            Ok(())
        }
        Command::Demo(args) => demo::run(args).await,
    }
}

async fn connect(args: ConnectArgs) -> anyhow::Result<()> {
    match args.fingerprint {
        Some(fingerprint) => {
            let mut opts = ConnectOptions::new(resolve(&args.target).await?, fingerprint);
            opts.desktop = args.desktop;
            view(&opts, None, None, &args.view).await
        }
        None if args.target.contains(':') => {
            anyhow::bail!("a direct connection to {} needs --fingerprint", args.target)
        }
        None => pick::connect_pool(&launcher::load()?, &args.target, &args.view).await,
    }
}

/// Shows the session `opts` leads to as `view` asks (bridging outages through
/// `reconnect`), then prints its statistics.
async fn view(
    opts: &ConnectOptions,
    pool: Option<&str>,
    reconnect: Option<Reconnect>,
    args: &ViewArgs,
) -> anyhow::Result<()> {
    let window = (!args.headless).then(|| ViewerOptions {
        title: match pool {
            Some(pool) => format!("{} ({pool}) — Oriel", opts.desktop),
            None => format!("{} — Oriel", opts.desktop),
        },
        fullscreen: args.fullscreen,
        resize_desktop: !args.no_resize,
        sound: None,
    });
    let mut window = window;
    let mut opts = opts.clone();
    if window.is_some() && !args.no_clipboard {
        match oriel::clipboard::ClipboardPort::start(None, args.clipboard_primary) {
            Ok(port) => opts.clipboard = Some(port),
            Err(e) => tracing::warn!("the clipboard is not shared: {e}"),
        }
    }
    if let Some(path) = &args.audio_out {
        opts.audio = Some(oriel::audio::AudioOutput::to_wav(path)?);
    } else if (window.is_some() && !args.no_audio) || args.speaker {
        match oriel::audio::AudioOutput::to_speaker() {
            Ok(out) => opts.audio = Some(out),
            Err(e) => tracing::warn!("the desktop's sound is not played: {e:#}"),
        }
    }
    if let Some(out) = &opts.audio {
        out.level.set_percent(args.volume);
        if args.mute {
            out.level.toggle_mute();
        }
        if let Some(w) = &mut window {
            w.sound = Some(out.level.clone());
        }
    }
    if let Some(path) = &args.audio_in {
        opts.microphone = Some(oriel::microphone::Microphone::from_wav(path)?);
    } else if args.microphone {
        opts.microphone = Some(oriel::microphone::Microphone::default_input());
    }
    let screenshot = args.screenshot.as_deref();
    let outcome = run_session(&opts, args.duration, screenshot, window, reconnect).await;
    if let Some(audio) = &opts.audio {
        audio.finish().await?;
        let f = &audio.figures;
        let went = match &args.audio_out {
            Some(path) => format!("written to {}", path.display()),
            None => "played on the default output device".into(),
        };
        eprintln!(
            "audio: {} packets, {} concealed, {went}",
            f.packets.load(std::sync::atomic::Ordering::Relaxed),
            f.concealed.load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    let outcome = outcome?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome.stats.summary())?);
    } else {
        println!("{}", outcome.stats.summary());
    }
    Ok(())
}

/// Connects, runs in a window (or headless without `window`), saves the screenshot;
/// shared by `connect` and `demo`.
pub(crate) async fn run_session(
    opts: &ConnectOptions,
    duration: Option<Duration>,
    screenshot: Option<&std::path::Path>,
    window: Option<ViewerOptions>,
    reconnect: Option<Reconnect>,
) -> anyhow::Result<oriel::Outcome> {
    let session = Session::connect(opts).await?;
    let w = session.welcome();
    eprintln!(
        "connected to desktop '{}' ({}x{}), session {}",
        opts.desktop, w.desktop_size.width, w.desktop_size.height, w.session_id
    );
    // Ctrl-C ends the session cleanly, so the statistics and screenshot still come out.
    let interrupt = Arc::new(tokio::sync::Notify::new());
    let notify = interrupt.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            notify.notify_one();
        }
    });
    let stop = StopWhen {
        duration,
        source_seq: None,
        settled_seq: None,
        interrupt: Some(interrupt),
    };
    let outcome = match window {
        Some(options) => oriel::viewer::run(session, stop, options, reconnect)?,
        None => {
            let event = |e: resume::Event<'_>| match e {
                resume::Event::Reconnecting { attempt, reason } => {
                    eprintln!("connection lost ({reason}); reconnecting, attempt {attempt} ...")
                }
                resume::Event::Connected(s) => {
                    let w = s.welcome();
                    eprintln!("connected, session {}", w.session_id);
                }
            };
            resume::run_resuming(session, stop, reconnect, |_, _| {}, event).await?
        }
    };
    if let Some(path) = screenshot {
        save_png(&outcome.framebuffer, path)?;
        eprintln!("screenshot saved to {}", path.display());
    }
    Ok(outcome)
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("ORIEL_PASSWORD") {
        return Ok(p);
    }
    eprintln!("password (one line on stdin):");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve '{addr}' (expected HOST:PORT)"))?
        .next()
        .with_context(|| format!("'{addr}' resolves to no address"))
}
