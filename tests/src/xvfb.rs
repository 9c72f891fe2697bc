//! A private Xvfb per test, on a display number Xvfb picks itself (so tests running at
//! once never share one); stopped when dropped.

use oriel_display_server::source::xserver::XServer;
use oriel_protocol::Size;

pub struct Xvfb {
    _server: XServer,
    pub display: String,
}

impl Xvfb {
    pub fn start(width: u32, height: u32) -> Xvfb {
        let server = XServer::start_bare(Size::new(width, height))
            .expect("Xvfb runs (scripts/install-deps installs the xvfb package)");
        Xvfb {
            display: server.display().to_owned(),
            _server: server,
        }
    }
}
