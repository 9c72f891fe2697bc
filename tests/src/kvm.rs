//! Helpers for the KVM desktop tests: the guest's own framebuffer memory, its serial
//! console, and what a client holds once it caught up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oriel_display_server::source::kvm::KvmSource;
use oriel_display_server::Desktop;
use oriel_protocol::{Framebuffer, Size};

/// Whether KVM tests can run; prints why not.
pub fn kvm_available() -> bool {
    oriel_vmm::kvm_tests_enabled("a KVM desktop test")
}

/// A dedicated pool `pool` of the tiny guest at `width` x `height`, and a new host
/// `host` with room for `capacity`, once it has `ready` of them ready.
pub async fn tiny_pool_on_new_host(
    h: &mut crate::broker::Harness,
    (pool, ready, max_size): (&str, i64, i64),
    (width, height): (u32, u32),
    (host, capacity): (&str, u32),
) -> Arc<oriel_display_server::DisplayServer> {
    use oriel_broker::store::{Assignment, DesktopState};
    h.pool_of(
        "kvm",
        pool,
        Assignment::Dedicated,
        ready,
        max_size,
        &format!(r#"{{"image":"tiny","width":{width},"height":{height}}}"#),
    )
    .await;
    let server = h.add_host(host, capacity);
    let want = usize::try_from(ready).unwrap();
    crate::broker::wait_for(&format!("{ready} VMs ready on {host}"), || async {
        h.count(pool, DesktopState::Ready).await == want
    })
    .await;
    server
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

/// A fresh client's screen once it has decoded sequence `seq`.
pub async fn client_screen(opts: &oriel::ConnectOptions, seq: u64) -> Framebuffer {
    let session = oriel::Session::connect(opts).await.unwrap();
    let stop = oriel::StopWhen {
        duration: Some(Duration::from_secs(60)),
        settled_seq: Some(seq),
        ..Default::default()
    };
    session.run(stop, None).await.unwrap().framebuffer
}
