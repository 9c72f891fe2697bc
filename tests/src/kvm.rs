//! Helpers for the KVM desktop tests: the guest's own framebuffer memory, its serial
//! console, and keys typed as a US keyboard would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oriel_display_server::source::kvm::KvmSource;
use oriel_display_server::Desktop;
use oriel_protocol::{Framebuffer, InputEvent, Size};

/// Whether KVM tests can run; prints why not.
pub fn kvm_available() -> bool {
    match oriel_vmm::kvm_usable() {
        Ok(()) => true,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            false
        }
    }
}

/// The guest's framebuffer memory, as a client should show it.
pub fn guest_screen(desktop: &Arc<Desktop>) -> Framebuffer {
    let source = desktop.source();
    let kvm = source
        .as_any()
        .downcast_ref::<KvmSource>()
        .expect("kvm source");
    let f = kvm.vm().format();
    Framebuffer::from_pixels(
        Size::new(f.width, f.height),
        kvm.vm().framebuffer().read_all(),
    )
    .unwrap()
}

pub fn console(desktop: &Arc<Desktop>) -> String {
    desktop.source().console_log(1 << 20).unwrap_or_default()
}

/// Waits up to `timeout` until the serial console shows `text`.
pub async fn wait_console(desktop: &Arc<Desktop>, text: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !console(desktop).contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} on the console: {}",
            console(desktop)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the server's copy equals guest memory; returns that screen and the
/// source sequence a client must reach to hold it.
pub async fn settled(desktop: &Arc<Desktop>) -> (Framebuffer, u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let guest = guest_screen(desktop);
        {
            let source = desktop.source();
            if *source.pixels() == guest {
                return (guest, source.sequence());
            }
        }
        assert!(
            Instant::now() < deadline,
            "the capture never caught up with the guest"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Key events that type `text` on a US keyboard (letters, digits, space, newline and
/// the punctuation a shell line needs).
pub fn us_keys(text: &str) -> Vec<InputEvent> {
    const SHIFT: u16 = 42;
    const LETTERS: [u16; 26] = [
        30, 48, 46, 32, 18, 33, 34, 35, 23, 36, 37, 38, 50, 49, 24, 25, 16, 19, 31, 20, 22, 47, 17,
        45, 21, 44,
    ];
    const DIGITS: [u16; 10] = [11, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let mut events = Vec::new();
    for c in text.chars() {
        let (code, shift) = match c {
            'a'..='z' => (LETTERS[c as usize - 'a' as usize], false),
            'A'..='Z' => (LETTERS[c as usize - 'A' as usize], true),
            '0'..='9' => (DIGITS[c as usize - '0' as usize], false),
            ' ' => (57, false),
            '\n' => (28, false),
            '-' => (12, false),
            '=' => (13, false),
            '.' => (52, false),
            '/' => (53, false),
            '>' => (52, true),
            '$' => (5, true),
            '(' => (10, true),
            ')' => (11, true),
            '*' => (9, true),
            '+' => (13, true),
            other => panic!("no US key for {other:?}"),
        };
        if shift {
            events.push(InputEvent::Key {
                code: SHIFT,
                down: true,
            });
        }
        events.push(InputEvent::Key { code, down: true });
        events.push(InputEvent::Key { code, down: false });
        if shift {
            events.push(InputEvent::Key {
                code: SHIFT,
                down: false,
            });
        }
    }
    events
}
