//! `oriel-bench browser --workload NAME`: the browser client against the native one on
//! the same kind of desktop. A broker and a display server run in-process on loopback;
//! Debian's chromium (headless, over WebDriver) signs in at `/` and opens a synthetic
//! desktop of the workload, then the native client (headless) opens a fresh one of the
//! same workload and size, so each sees the script from its start on a quiet machine.
//!
//! Figures for each client: frames presented per second (display frames and video
//! pictures painted, from the first paint to the last), decode time per frame, and
//! whether it ends on the desktop's screen pixel for pixel. The `echo` workload types
//! keys into the typing desktop's editor once its script ended and measures, in each
//! client, from the key event to the paint of the frame that shows it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oriel::{EndReason, Session, Shown, StopWhen};
use oriel_broker::store::{Assignment, Role};
use oriel_display_server::config::parse_size;
use oriel_display_server::desktop::Desktop;
use oriel_display_server::source::synthetic::{SyntheticConfig, SyntheticSource};
use oriel_display_server::source::FrameSource;
use oriel_display_server::DisplayServer;
use oriel_e2e::broker::{login_in_store, Harness};
use oriel_e2e::browser::Browser;
use oriel_e2e::web_page::{self, canvas, open, script, settled};
use oriel_e2e::{diff_pixels, server_screen, us_keys};
use oriel_protocol::Size;
use serde_json::{json, Value};

#[derive(Debug, clap::Args)]
pub(crate) struct BrowserArgs {
    /// idle, typing, scroll, drag, video, mixed, all (those six) or echo (keystroke
    /// to echo); several comma-separated.
    #[arg(long, default_value = "all")]
    workload: String,
    /// Seconds each desktop's script plays.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The browser's window, and so the desktop's size (the page asks the desktop to
    /// follow the tab).
    #[arg(long, default_value = "1280x720")]
    size: String,
    /// Keys the echo workload types in each client (after a warm-up of five).
    #[arg(long, default_value_t = 50)]
    keys: usize,
}

const WORKLOADS: [&str; 6] = ["idle", "typing", "scroll", "drag", "video", "mixed"];
const PASSWORD: &str = "a-long-password";
/// Script ticks per second of the synthetic desktops.
const FPS: u64 = 30;
/// Ticks the script has played before a client sees it (the desktop starts when its
/// pool fills, the client connects after): added so `--seconds` are seen.
const LEAD_TICKS: u64 = 3 * FPS;
/// Between two keys of the echo workload: each echo is seen before the next key.
const KEY_GAP: Duration = Duration::from_millis(120);
const WARM_UP_KEYS: usize = 5;

pub(crate) fn run(args: &BrowserArgs) -> anyhow::Result<Vec<String>> {
    let size = parse_size(&args.size)?;
    if args.seconds == 0 {
        bail!("--seconds must be positive");
    }
    let workloads: Vec<&str> = args
        .workload
        .split(',')
        .flat_map(|w| {
            if w == "all" {
                WORKLOADS.to_vec()
            } else {
                vec![w]
            }
        })
        .collect();
    if let Some(w) = workloads
        .iter()
        .find(|w| !WORKLOADS.contains(w) && **w != "echo")
    {
        bail!("unknown workload '{w}' (idle, typing, scroll, drag, video, mixed, all, echo)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut lines = Vec::new();
        for workload in workloads {
            eprintln!("oriel-bench: browser {workload} ...");
            let line = if workload == "echo" {
                echo(size, args.keys).await?
            } else {
                playback(workload, size, args.seconds).await?
            };
            lines.push(line);
        }
        Ok(lines)
    })
}

/// A broker with one display server, a signed-in browser whose viewport is the
/// desktops' size, and a user of each client.
struct Stage {
    harness: Harness,
    host: Arc<DisplayServer>,
    browser: Browser,
    base: String,
    size: Size,
}

impl Stage {
    async fn start(tag: &str, window: Size) -> anyhow::Result<Stage> {
        let mut harness = Harness::start_on_sqlite(tag).await;
        let host = harness.add_host("host-1", 4);
        let browser = Browser::start_with_window(&harness.dir, window.width, window.height).await;
        let base = harness.broker.url();
        for user in ["web", "native"] {
            harness
                .user_with_password(user, PASSWORD, Role::User, None)
                .await;
        }
        web_page::sign_in(&browser, &base, "web", PASSWORD).await;
        // The page asks for its viewport: the pools are made that size, so neither client
        // resizes its desktop.
        let mut size = viewport(&browser).await?;
        if size != window {
            // The window's frame takes some of it: grow the window by that much.
            let grow = |want: u32, got: u32, window: u32| window + want.saturating_sub(got);
            let frame = script(&browser, "return [window.outerWidth, window.outerHeight];").await;
            let outer = |i: usize| frame[i].as_u64().and_then(|v| u32::try_from(v).ok());
            if let (Some(w), Some(h)) = (outer(0), outer(1)) {
                browser
                    .client
                    .set_window_size(
                        grow(window.width, size.width, w),
                        grow(window.height, size.height, h),
                    )
                    .await?;
                size = viewport(&browser).await?;
            }
        }
        Ok(Stage {
            harness,
            host,
            browser,
            base,
            size,
        })
    }

    /// A fresh pool of one `workload` desktop playing `ticks`, entitled to `user`;
    /// returns once the desktop runs.
    async fn pool(&self, name: &str, workload: &str, ticks: u64, user: &str) {
        let params = format!(
            r#"{{"workload":"{workload}","width":{},"height":{},"ticks":{ticks}}}"#,
            self.size.width, self.size.height
        );
        self.harness
            .pool(name, Assignment::Floating, 1, 1, &params)
            .await;
        self.harness
            .store()
            .entitle_user(name, user)
            .await
            .expect("entitled");
        self.harness.ready(name, 1).await;
    }

    fn desktop(&self, name: &str) -> anyhow::Result<Arc<Desktop>> {
        self.host
            .desktop(name)
            .with_context(|| format!("the host does not run {name}"))
    }

    /// How the native client connects to `pool` as `user`.
    async fn native_options(
        &self,
        user: &str,
        pool: &str,
    ) -> anyhow::Result<oriel::ConnectOptions> {
        let broker = &self.harness.broker;
        let login = login_in_store(
            self.harness.store(),
            user,
            &broker.url(),
            broker.fingerprint,
        )
        .await;
        Ok(oriel::launcher::connect_options(&login, pool).await?.0)
    }

    /// Leaves the desktop page (its session ends) so the native client runs alone.
    async fn leave_page(&self) {
        self.browser.goto("about:blank").await;
    }

    async fn finish(self) {
        self.browser.close().await;
        self.harness.shutdown().await;
    }
}

/// The page's viewport.
async fn viewport(browser: &Browser) -> anyhow::Result<Size> {
    let inner = script(browser, "return [window.innerWidth, window.innerHeight];").await;
    let side = |i: usize| inner[i].as_u64().and_then(|v| u32::try_from(v).ok());
    match (side(0), side(1)) {
        (Some(w), Some(h)) => Ok(Size::new(w, h)),
        _ => bail!("the browser did not say its viewport: {inner}"),
    }
}

/// What one client saw of a playing desktop.
#[derive(Default)]
struct Seen {
    presented: u64,
    pictures: u64,
    span_s: f64,
    frame_decode_ms: Vec<f64>,
    video_decode_ms: Vec<f64>,
    bytes: u64,
    pixel_exact: bool,
}

impl Seen {
    fn fps(&self) -> f64 {
        if self.span_s > 0.0 {
            self.presented.saturating_sub(1) as f64 / self.span_s
        } else {
            0.0
        }
    }

    fn figures(&self, prefix: &str) -> Value {
        let mut frame = self.frame_decode_ms.clone();
        let mut video = self.video_decode_ms.clone();
        json!({
            format!("{prefix}_frames_presented"): self.presented,
            format!("{prefix}_video_pictures"): self.pictures,
            format!("{prefix}_fps"): self.fps(),
            format!("{prefix}_decode_ms_p50"): quantile(&mut frame, 0.5),
            format!("{prefix}_decode_ms_p99"): quantile(&mut frame, 0.99),
            format!("{prefix}_video_decode_ms_p50"): quantile(&mut video, 0.5),
            format!("{prefix}_video_decode_ms_p99"): quantile(&mut video, 0.99),
            format!("{prefix}_bytes"): self.bytes,
            format!("{prefix}_pixel_exact"): self.pixel_exact,
        })
    }
}

fn quantile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "an index within the slice"
    )]
    let at = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[at]
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// The workload played in the page, then in the native client.
async fn playback(workload: &str, window: Size, seconds: u64) -> anyhow::Result<String> {
    let stage = Stage::start(&format!("bench-browser-{workload}"), window).await?;
    let ticks = seconds * FPS + LEAD_TICKS;

    stage.pool("page", workload, ticks, "web").await;
    let name = open(&stage.browser, &stage.base, "page").await;
    let desktop = stage.desktop(&name)?;
    settled(&stage.browser, &desktop).await;
    let got = script(
        &stage.browser,
        "const o = window.oriel, f = o.session.figures; \
         return { frames: o.framesShown, pictures: o.picturesShown, \
           span: o.lastPaintAt - o.firstPaintAt, bytes: f.bytes, \
           frame: f.frameDecodeMs, video: f.videoDecodeMs };",
    )
    .await;
    let shown = canvas(&stage.browser).await;
    stage
        .browser
        .screenshot(&format!("bench-browser-{workload}"))
        .await;
    let count = |key: &str| got[key].as_u64().unwrap_or(0);
    let page = Seen {
        presented: count("frames") + count("pictures"),
        pictures: count("pictures"),
        span_s: got["span"].as_f64().unwrap_or(0.0) / 1e3,
        frame_decode_ms: floats(&got["frame"]),
        video_decode_ms: floats(&got["video"]),
        bytes: count("bytes"),
        pixel_exact: diff_pixels(&shown, &server_screen(&desktop)) == 0,
    };
    stage.leave_page().await;

    stage.pool("native", workload, ticks, "native").await;
    let opts = stage.native_options("native", "native").await?;
    let desktop = stage.desktop(&opts.desktop)?;
    let final_seq = final_sequence(workload, stage.size, ticks)?;
    let native = native_playback(opts, desktop, final_seq).await?;
    let size = stage.size;
    stage.finish().await;

    let ratio = if native.fps() > 0.0 {
        page.fps() / native.fps()
    } else {
        0.0
    };
    Ok(crate::rig::merged_line([
        json!({
            "workload": workload,
            "client": "browser",
            "width": size.width,
            "height": size.height,
            "seconds": seconds,
            "fps_ratio_page_vs_native": ratio,
        }),
        page.figures("page"),
        native.figures("native"),
    ]))
}

/// The native client on its own thread and runtime (as a viewer process would be),
/// until it shows the desktop's final state exactly (`settled_seq`).
async fn native_playback(
    opts: oriel::ConnectOptions,
    desktop: Arc<Desktop>,
    final_seq: u64,
) -> anyhow::Result<Seen> {
    let (outcome, presented, span) =
        tokio::task::spawn_blocking(move || native_client(&opts, final_seq)).await??;
    if outcome.end != EndReason::Settled {
        bail!(
            "the native client did not reach the final frame ({:?})",
            outcome.end
        );
    }
    let ms = |v: &[u32]| v.iter().map(|&us| f64::from(us) / 1e3).collect();
    Ok(Seen {
        presented,
        pictures: outcome.stats.video_frames,
        span_s: span.as_secs_f64(),
        frame_decode_ms: ms(&outcome.stats.decode_us),
        video_decode_ms: ms(&outcome.stats.video_decode_us),
        bytes: outcome.stats.bytes,
        pixel_exact: outcome.framebuffer == server_screen(&desktop),
    })
}

/// Runs the native session until it settles on `final_seq`; returns what it showed,
/// how many frames and pictures it presented and the time from the first to the last.
fn native_client(
    opts: &oriel::ConnectOptions,
    final_seq: u64,
) -> anyhow::Result<(oriel::Outcome, u64, Duration)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let session = Session::connect(opts).await?;
        let (mut presented, mut first, mut last) = (0u64, None, None);
        let observe = |_: Shown, _: &oriel_protocol::Framebuffer| {
            let now = Instant::now();
            presented += 1;
            first.get_or_insert(now);
            last = Some(now);
        };
        let until = StopWhen {
            duration: Some(Duration::from_secs(300)),
            settled_seq: Some(final_seq),
            ..Default::default()
        };
        let outcome = session.run_observed(until, None, observe).await?;
        let span = match (first, last) {
            (Some(a), Some(b)) => b - a,
            _ => Duration::ZERO,
        };
        Ok((outcome, presented, span))
    })
}

/// The source sequence a desktop of `workload` ends its script on: it is deterministic.
fn final_sequence(workload: &str, size: Size, ticks: u64) -> anyhow::Result<u64> {
    let mut source = SyntheticSource::new(SyntheticConfig {
        workload: workload.parse()?,
        size,
        fps: u32::try_from(FPS)?,
        max_ticks: Some(ticks),
    })?;
    while source.script_running() {
        source.poll();
    }
    Ok(source.sequence())
}

/// Keystroke → echo in the page and in the native client, each on a typing desktop
/// whose script has ended.
async fn echo(window: Size, keys: usize) -> anyhow::Result<String> {
    let stage = Stage::start("bench-browser-echo", window).await?;
    let total = keys + WARM_UP_KEYS;
    let text: String = "asdfghjkl".chars().cycle().take(total).collect();

    stage.pool("page", "typing", 1, "web").await;
    let name = open(&stage.browser, &stage.base, "page").await;
    let desktop = stage.desktop(&name)?;
    settled(&stage.browser, &desktop).await;
    script(
        &stage.browser,
        "const o = window.oriel; o.bench = { keys: [], handled: [], paints: [], arrivals: [] }; \
         document.getElementById('screen').addEventListener('keydown', (e) => { \
           o.bench.keys.push(e.timeStamp); o.bench.handled.push(performance.now()); }); \
         const s = o.session; const onFrame = s.onFrame.bind(s); \
         s.onFrame = (f) => { o.bench.arrivals.push(performance.now()); return onFrame(f); }; \
         o.onFrame = () => o.bench.paints.push(performance.now()); return true;",
    )
    .await;
    let screen = stage.browser.wait_for("#screen").await;
    for c in text.chars() {
        screen.send_keys(&c.to_string()).await?;
        tokio::time::sleep(KEY_GAP).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = script(&stage.browser, "return window.oriel.bench;").await;
    let page = echoes(&floats(&got["keys"]), &floats(&got["paints"]));
    let mut split = EchoSplit::of(&got);
    stage.browser.screenshot("bench-browser-echo").await;
    stage.leave_page().await;

    stage.pool("native", "typing", 1, "native").await;
    let opts = stage.native_options("native", "native").await?;
    let native = tokio::task::spawn_blocking(move || native_echo(&opts, &text)).await??;
    let size = stage.size;
    stage.finish().await;

    let (page_ms, page_missed) = page;
    let (native_ms, native_missed) = native;
    let measured = |all: &[f64]| all.get(WARM_UP_KEYS..).unwrap_or_default().to_vec();
    let (mut page_ms, mut native_ms) = (measured(&page_ms), measured(&native_ms));
    let page_p50 = quantile(&mut page_ms, 0.5);
    let native_p50 = quantile(&mut native_ms, 0.5);
    Ok(json!({
        "workload": "echo",
        "client": "browser",
        "width": size.width,
        "height": size.height,
        "keys": keys,
        "page_echo_ms_p50": page_p50,
        "page_echo_ms_p90": quantile(&mut page_ms, 0.9),
        "page_echo_ms_p99": quantile(&mut page_ms, 0.99),
        "page_echo_missed": page_missed,
        "page_key_dispatch_ms_p50": quantile(&mut split.dispatch, 0.5),
        "page_key_to_frame_ms_p50": quantile(&mut split.round_trip, 0.5),
        "page_frame_to_paint_ms_p50": quantile(&mut split.local, 0.5),
        "native_echo_ms_p50": native_p50,
        "native_echo_ms_p90": quantile(&mut native_ms, 0.9),
        "native_echo_ms_p99": quantile(&mut native_ms, 0.99),
        "native_echo_missed": native_missed,
        "echo_ms_p50_page_minus_native": page_p50 - native_p50,
    })
    .to_string())
}

/// Where the page's echoes went (ms, per measured key that was echoed): the browser's
/// key dispatch (key event to the page's handler, which sends it), from there until the
/// echoing frame was read from its stream (network, server, and the browser's own
/// WebTransport path), and its decode and paint.
struct EchoSplit {
    dispatch: Vec<f64>,
    round_trip: Vec<f64>,
    local: Vec<f64>,
}

impl EchoSplit {
    fn of(got: &serde_json::Value) -> Self {
        let (keys, handled) = (floats(&got["keys"]), floats(&got["handled"]));
        let (paints, arrivals) = (floats(&got["paints"]), floats(&got["arrivals"]));
        let mut split = EchoSplit {
            dispatch: Vec::new(),
            round_trip: Vec::new(),
            local: Vec::new(),
        };
        for (i, (&key, &sent)) in keys.iter().zip(&handled).enumerate().skip(WARM_UP_KEYS) {
            let next_key = keys.get(i + 1).copied().unwrap_or(f64::INFINITY);
            let Some(&paint) = paints.iter().find(|&&p| p >= key && p < next_key) else {
                continue;
            };
            let Some(&arrival) = arrivals.iter().rev().find(|&&a| a <= paint) else {
                continue;
            };
            split.dispatch.push(sent - key);
            split.round_trip.push(arrival - sent);
            split.local.push(paint - arrival);
        }
        split
    }
}

/// For each key time, the delay to the first paint after it (same clock, ms); keys
/// with no paint before the next key are missed.
fn echoes(keys: &[f64], paints: &[f64]) -> (Vec<f64>, usize) {
    let mut delays = Vec::new();
    let mut missed = 0;
    for (i, &key) in keys.iter().enumerate() {
        let next_key = keys.get(i + 1).copied().unwrap_or(f64::INFINITY);
        match paints.iter().find(|&&p| p >= key) {
            Some(&paint) if paint < next_key => delays.push(paint - key),
            _ => missed += 1,
        }
    }
    (delays, missed)
}

/// The native client types `text`, a key every [`KEY_GAP`], and times each echo.
fn native_echo(opts: &oriel::ConnectOptions, text: &str) -> anyhow::Result<(Vec<f64>, usize)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let at = move |t: Instant| (t - start).as_secs_f64() * 1e3;
    rt.block_on(async {
        let session = Session::connect(opts).await?;
        let input = session.input();
        let paints = Arc::new(Mutex::new(Vec::new()));
        let keys = Arc::new(Mutex::new(Vec::new()));
        let events = us_keys(text);
        let typist = {
            let keys = keys.clone();
            async move {
                // The first frame and the cursor settle first.
                tokio::time::sleep(Duration::from_secs(1)).await;
                for pair in events.chunks(2) {
                    keys.lock().expect("keys").push(at(Instant::now()));
                    for event in pair {
                        input.send(*event).await?;
                    }
                    tokio::time::sleep(KEY_GAP).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                anyhow::Ok(())
            }
        };
        let observe = {
            let paints = paints.clone();
            move |shown: Shown, _: &oriel_protocol::Framebuffer| {
                if let Shown::Frame { .. } = shown {
                    paints.lock().expect("paints").push(at(Instant::now()));
                }
            }
        };
        let stop = Arc::new(tokio::sync::Notify::new());
        let until = StopWhen {
            interrupt: Some(stop.clone()),
            ..Default::default()
        };
        let run = session.run_observed(until, None, observe);
        tokio::pin!(run);
        tokio::select! {
            typed = typist => {
                typed?;
                stop.notify_one();
                run.await?;
            }
            ended = &mut run => bail!("the native session ended while typing: {:?}", ended.map(|o| o.end)),
        }
        let keys = keys.lock().expect("keys").clone();
        let paints = paints.lock().expect("paints").clone();
        Ok(echoes(&keys, &paints))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_is_the_first_paint_after_each_key_and_before_the_next() {
        let (delays, missed) = echoes(&[0.0, 100.0, 200.0], &[5.0, 7.0, 230.0]);
        assert_eq!(delays, vec![5.0, 30.0]);
        assert_eq!(missed, 1);
        assert_eq!(quantile(&mut [3.0, 1.0, 2.0], 0.5), 2.0);
    }
}
