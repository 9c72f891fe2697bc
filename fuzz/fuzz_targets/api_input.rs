//! What the broker's API and the host link parse from text: desktop parameters of every
//! kind (checked at the API, again on the host), and the JSON bodies of the API. Never a
//! panic; whatever is accepted is within the documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oriel_protocol::api::{valid_name, ConnectRequest, LoginRequest, LogoffRequest};
use oriel_protocol::desktop_spec::{DesktopSpec, DESKTOP_KINDS, MAX_EDGE, MIN_EDGE};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for kind in DESKTOP_KINDS {
        if let Ok(params) = DesktopSpec::parse(kind, text) {
            let (w, h) = match params {
                DesktopSpec::Synthetic(p) => (p.width, p.height),
                DesktopSpec::X11(p) => (p.width, p.height),
                DesktopSpec::Kvm(p) => (p.width, p.height),
            };
            for edge in [w, h].into_iter().flatten() {
                assert!((MIN_EDGE..=MAX_EDGE).contains(&edge));
            }
        }
    }
    let _ = serde_json::from_str::<LoginRequest>(text);
    let _ = serde_json::from_str::<ConnectRequest>(text);
    let _ = serde_json::from_str::<LogoffRequest>(text);
    let _ = valid_name(text);
});
