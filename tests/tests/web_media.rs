//! The browser client's sound, microphone and clipboard, in a real chromium against an
//! x11 desktop from a real broker: a chirp played with paplay in the desktop is what the
//! browser plays into its sound server (PulseAudio, recorded from its monitor); the
//! browser's microphone (chromium's fake capture device playing a chirp file) is what
//! parecord records in the desktop; text copied with xclip in the desktop lands in the
//! browser's clipboard, and text in the browser's clipboard is what xclip pastes in the
//! desktop after Ctrl+V in the page; and so do pictures (PNG), pixel for pixel.

// Tests print the figures they measure (never asserted).
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use oriel_broker::store::{Assignment, Role};
use oriel_display_server::audio::SoundServer;
use oriel_display_server::desktop::Desktop;
use oriel_display_server::DisplayServer;
use oriel_e2e::broker::{wait_up_to, Harness};
use oriel_e2e::browser::{Browser, BrowserSetup};
use oriel_e2e::sound::{
    chirp, left_channel, locate_reference, parecord, silent_frames, stop, windowed_match,
};
use oriel_e2e::web_page::{self, open, script};
use oriel_e2e::xclip::{copy, paste, paste_until, png};
use serde_json::{json, Value};

const PASSWORD: &str = "a-long-password";

/// A harness with an x11 pool `office` (sound and clipboard on) and a user entitled to it.
async fn x11_office(tag: &str) -> (Harness, Arc<DisplayServer>) {
    let mut h = Harness::start(tag).await;
    h.pool_of(
        "x11",
        "office",
        Assignment::Floating,
        1,
        1,
        r#"{"width":320,"height":240,"command":"sleep 600"}"#,
    )
    .await;
    let host = h.add_host("host-1", 4);
    h.user_with_password("wendy", PASSWORD, Role::User, None)
        .await;
    h.store().entitle_user("office", "wendy").await.unwrap();
    h.ready("office", 1).await;
    (h, host)
}

fn desktop(host: &DisplayServer, name: &str) -> Arc<Desktop> {
    host.desktop(name)
        .unwrap_or_else(|| panic!("the host runs {name}"))
}

/// Waits until `body` (a page function body) returns true.
async fn wait_in_page(browser: &Browser, what: &str, body: &str) {
    wait_up_to(Duration::from_secs(20), what, || async {
        script(browser, body).await == json!(true)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desktops_sound_plays_in_the_page_and_the_pages_microphone_reaches_the_desktop() {
    let (h, host) = x11_office("web-sound").await;
    let (said, spoken) = (h.dir.join("said.wav"), h.dir.join("spoken.wav"));
    chirp(&said);
    // The microphone says it after a second of silence (its capture starts with the page).
    let padded = std::process::Command::new("sox")
        .arg(&said)
        .arg(&spoken)
        .args(["pad", "1", "0"])
        .status()
        .expect("sox runs");
    assert!(padded.success());
    // The browser's machine: a sound server of its own, whose null sink is its speaker.
    let pulse_dir = h.dir.join("browser-pulse");
    std::fs::create_dir_all(&pulse_dir).unwrap();
    let local = SoundServer::start(pulse_dir, false).expect("pulseaudio runs");
    let local_pulse = local.access().address;
    let browser = Browser::start_with(
        &h.dir,
        BrowserSetup {
            args: vec![
                // Tests cannot click: sound may start without a user's gesture.
                "--autoplay-policy=no-user-gesture-required".into(),
                // The microphone: a device playing the chirp once, allowed without asking.
                "--use-fake-device-for-media-stream".into(),
                "--use-fake-ui-for-media-stream".into(),
                format!(
                    "--use-file-for-fake-audio-capture={}%noloop",
                    spoken.display()
                ),
            ],
            env: vec![("PULSE_SERVER".into(), local_pulse.clone())],
            ..Default::default()
        },
    )
    .await;
    let base = h.broker.url();
    web_page::sign_in(&browser, &base, "wendy", PASSWORD).await;
    script(
        &browser,
        "localStorage.setItem('oriel.microphone', 'on'); return true;",
    )
    .await;
    let desktop_pulse = {
        let pool = h.store().pool_by_name("office").await.unwrap().unwrap();
        let name = h.store().list_desktops(Some(&pool.id)).await.unwrap()[0]
            .name
            .clone();
        let d = desktop(&host, &name);
        let access = d.source().sound_server().expect("the desktop has sound");
        access.address
    };
    let (heard_here, heard_there) = (h.dir.join("speaker.wav"), h.dir.join("desktop-mic.wav"));
    let speaker = parecord(&local_pulse, Some("oriel.monitor"), &heard_here);
    // The desktop's program records its default source, as a video call would.
    let desktop_mic = parecord(&desktop_pulse, None, &heard_there);
    tokio::time::sleep(Duration::from_millis(300)).await;
    open(&browser, &base, "office").await;
    wait_in_page(
        &browser,
        "the page plays sound and sends the microphone",
        "const s = window.oriel.session; \
         return !!(s && s.speaker && s.microphone) && window.oriel.sound.playing();",
    )
    .await;
    // A quiet tone first (below what `silent_frames` counts as loud): the browser starts
    // its sound device with the first sound it plays, which may take it a second on a
    // busy machine (what it plays meanwhile is lost); the chirp is measured on a running
    // device.
    let warm_up = h.dir.join("warm-up.wav");
    let made = std::process::Command::new("sox")
        .args(["-n", "-r", "48000", "-c", "2", "-b", "16"])
        .arg(&warm_up)
        .args(["synth", "1", "sine", "440", "vol", "0.02"])
        .status()
        .expect("sox runs");
    assert!(made.success());
    for sound in [&warm_up, &said] {
        let played = tokio::process::Command::new("paplay")
            .arg(sound)
            .env("PULSE_SERVER", &desktop_pulse)
            .status()
            .await
            .expect("paplay runs (pulseaudio-utils)");
        assert!(played.success());
    }
    // What the desktop played crosses to the browser's speaker (buffers on the way).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let figures = script(
        &browser,
        "const s = window.oriel.session; \
         return { speaker: s.speaker.figures, microphone: s.microphone.figures };",
    )
    .await;
    stop(speaker).await;
    stop(desktop_mic).await;
    let reference = left_channel(&said);
    let speaker = left_channel(&heard_here);
    let here = windowed_match(&reference, &speaker);
    let there = windowed_match(&reference, &left_channel(&heard_there));
    println!("page's speaker: correlation {here:.3}; page's microphone: correlation {there:.3}; {figures}");
    let packets = |side: &str| figures[side]["packets"].as_u64().unwrap_or(0);
    // 1 s of tone and 1.5 s of chirp are 125 packets; silence is not sent.
    assert!(packets("speaker") >= 115, "{figures}");
    assert!(packets("microphone") >= 70, "{figures}");
    assert!(
        here >= 0.9,
        "the page's speaker: cross-correlation {here:.3}"
    );
    // From the chirp on: the quiet warm-up before it (and a click as the device starts)
    // is not the chirp.
    let gaps = silent_frames(&speaker[locate_reference(&reference, &speaker)..]);
    assert!(
        gaps.is_empty(),
        "silent 20 ms frames inside the chirp: {gaps:?}"
    );
    assert!(
        there >= 0.9,
        "the page's microphone: cross-correlation {there:.3}"
    );
    browser.close().await;
    drop(local);
    h.shutdown().await;
}

/// The browser's clipboard text, read in the page (null when it cannot be read).
async fn page_clipboard(browser: &Browser) -> Value {
    browser
        .client
        .execute_async(
            "const done = arguments[0]; \
             navigator.clipboard.readText().then(done, () => done(null));",
            vec![],
        )
        .await
        .unwrap_or(Value::Null)
}

/// The picture in the browser's clipboard as RGBA pixels: (width, height, base64), or
/// null when it holds none.
async fn page_picture(browser: &Browser) -> Value {
    browser
        .client
        .execute_async(
            "const done = arguments[0]; (async () => { \
               const items = await navigator.clipboard.read(); \
               const item = items.find((i) => i.types.includes('image/png')); \
               if (!item) return null; \
               const bitmap = await createImageBitmap(await item.getType('image/png'), \
                 { colorSpaceConversion: 'none', premultiplyAlpha: 'none' }); \
               const canvas = new OffscreenCanvas(bitmap.width, bitmap.height); \
               const g = canvas.getContext('2d'); g.drawImage(bitmap, 0, 0); \
               const d = g.getImageData(0, 0, bitmap.width, bitmap.height).data; \
               let s = ''; for (let i = 0; i < d.length; i += 0x8000) \
                 s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000)); \
               return [bitmap.width, bitmap.height, btoa(s)]; \
             })().then(done, () => done(null));",
            vec![],
        )
        .await
        .unwrap_or(Value::Null)
}

/// A PNG's pixels as `page_picture` gives them.
fn picture_value(png: &[u8]) -> Value {
    use base64::Engine;
    let img = image::load_from_memory(png).expect("a PNG").to_rgba8();
    let rgba = base64::engine::general_purpose::STANDARD.encode(img.as_raw());
    json!([img.width(), img.height(), rgba])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_pictures_copied_on_either_side_are_pasted_on_the_other() {
    let (h, host) = x11_office("web-clipboard").await;
    let browser = Browser::start(&h.dir).await;
    let base = h.broker.url();
    web_page::sign_in(&browser, &base, "wendy", PASSWORD).await;
    // As a user answering the browser's question once.
    browser.grant("clipboard-read").await;
    browser.grant("clipboard-write").await;
    let name = open(&browser, &base, "office").await;
    let display = desktop(&host, &name)
        .source()
        .clipboard()
        .expect("the desktop has a clipboard")
        .0;
    wait_in_page(
        &browser,
        "the page has the desktop's clipboard policy",
        "const c = window.oriel.session.clipboard; return !!(c && c.policy);",
    )
    .await;

    // Desktop → browser: the desktop offers, the page fetches it into the clipboard.
    let text = "copied in the desktop: grüße, 你好";
    copy(&display, "UTF8_STRING", text.as_bytes());
    wait_up_to(
        Duration::from_secs(20),
        "the desktop's text in the browser's clipboard",
        || async { page_clipboard(&browser).await == json!(text) },
    )
    .await;

    // Browser → desktop: another program put text in the browser's clipboard; the user
    // pastes with Ctrl+V in the page, which offers it first.
    let mine = "copied in the browser ✓";
    let written = browser
        .client
        .execute_async(
            "const [text, done] = arguments; \
             navigator.clipboard.writeText(text).then(() => done(true), (e) => done(String(e)));",
            vec![json!(mine)],
        )
        .await
        .unwrap();
    assert_eq!(
        written,
        json!(true),
        "the test wrote the browser's clipboard"
    );
    let screen = browser.wait_for("#screen").await;
    screen.send_keys("\u{E009}v\u{E000}").await.unwrap();
    let pasted = tokio::task::spawn_blocking({
        let display = display.clone();
        move || paste_until(&display, "UTF8_STRING", mine.as_bytes())
    })
    .await
    .unwrap();
    assert_eq!(
        pasted.as_deref(),
        Ok(mine.as_bytes()),
        "the browser's text pasted in the desktop"
    );

    // A picture, desktop → browser: the browser's clipboard holds its pixels.
    let picture = png(40, 30);
    copy(&display, "image/png", &picture);
    let want = picture_value(&picture);
    wait_up_to(
        Duration::from_secs(20),
        "the desktop's picture in the browser's clipboard",
        || async { page_picture(&browser).await == want },
    )
    .await;

    // A picture, browser → desktop: what xclip pastes after Ctrl+V has its pixels (the
    // browser re-encodes pictures, so the bytes may differ).
    let theirs = png(24, 16);
    let written = browser
        .client
        .execute_async(
            "const [b64, done] = arguments; \
             const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)); \
             const blob = new Blob([bytes], { type: 'image/png' }); \
             navigator.clipboard.write([new ClipboardItem({ 'image/png': blob })]) \
               .then(() => done(true), (e) => done(String(e)));",
            vec![json!(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &theirs
            ))],
        )
        .await
        .unwrap();
    assert_eq!(
        written,
        json!(true),
        "the test wrote a picture to the browser's clipboard"
    );
    screen.send_keys("\u{E009}v\u{E000}").await.unwrap();
    let want = picture_value(&theirs);
    wait_up_to(
        Duration::from_secs(20),
        "the browser's picture pasted in the desktop",
        || {
            let display = display.clone();
            let want = want.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    paste(&display, "image/png").is_ok_and(|p| picture_value(&p) == want)
                })
                .await
                .unwrap()
            }
        },
    )
    .await;

    let figures = script(&browser, "return window.oriel.session.clipboard.figures;").await;
    println!("clipboard transfers: {figures}");
    assert!(figures["toDesktop"].as_u64().unwrap_or(0) >= 2, "{figures}");
    assert!(figures["toClient"].as_u64().unwrap_or(0) >= 2, "{figures}");
    browser.close().await;
    h.shutdown().await;
}
