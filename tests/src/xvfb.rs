//! A private Xvfb per test, on a display number Xvfb picks itself (so tests running at
//! once never share one); stopped when dropped.

use oriel_display_server::source::x11::X11Source;
use oriel_display_server::source::xserver::XServer;
use oriel_display_server::DisplayServer;
use oriel_protocol::{Framebuffer, Size};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::*;
use x11rb::rust_connection::RustConnection;

pub struct Xvfb {
    pub server: XServer,
    pub display: String,
}

impl Xvfb {
    pub fn start(width: u32, height: u32) -> Xvfb {
        let server = XServer::start_bare(Size::new(width, height))
            .expect("Xvfb runs (scripts/install-deps installs the xvfb package)");
        Xvfb {
            display: server.display().to_owned(),
            server,
        }
    }

    /// Xorg with the dummy driver instead: a screen RandR can resize (output `DUMMY0`).
    pub fn start_resizable(width: u32, height: u32) -> Xvfb {
        let server = XServer::start_xorg_dummy(Size::new(width, height)).expect(
            "Xorg runs (scripts/install-deps installs xserver-xorg-core and \
             xserver-xorg-video-dummy)",
        );
        Xvfb {
            display: server.display().to_owned(),
            server,
        }
    }
}

/// The X screen as the X server holds it.
pub fn capture(conn: &RustConnection, root: Window) -> Framebuffer {
    let geometry = conn.get_geometry(root).unwrap().reply().unwrap();
    let size = Size::new(u32::from(geometry.width), u32::from(geometry.height));
    let image = conn
        .get_image(
            ImageFormat::Z_PIXMAP,
            root,
            0,
            0,
            geometry.width,
            geometry.height,
            !0,
        )
        .unwrap()
        .reply()
        .unwrap();
    let pixels = image
        .data
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
        .collect();
    Framebuffer::from_pixels(size, pixels).unwrap()
}

/// Maps a window at (`x`, `y`) and paints coloured bars into it.
pub fn paint_window(conn: &RustConnection, root: Window, x: i16, y: i16) -> Window {
    let window = conn.generate_id().unwrap();
    conn.create_window(
        x11rb::COPY_DEPTH_FROM_PARENT,
        window,
        root,
        x,
        y,
        300,
        200,
        0,
        WindowClass::INPUT_OUTPUT,
        x11rb::COPY_FROM_PARENT,
        &CreateWindowAux::new()
            .background_pixel(0x00_20_40_60)
            .override_redirect(1)
            .event_mask(EventMask::KEY_PRESS | EventMask::BUTTON_PRESS | EventMask::EXPOSURE),
    )
    .unwrap();
    conn.map_window(window).unwrap();
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, window, &CreateGCAux::new()).unwrap();
    for (colour, i) in [
        0x00_ff_40_40u32,
        0x00_40_ff_40,
        0x00_40_40_ff,
        0x00_ff_ff_ff,
    ]
    .iter()
    .zip(0i16..)
    {
        conn.change_gc(gc, &ChangeGCAux::new().foreground(*colour))
            .unwrap();
        let bar = Rectangle {
            x: 10 + 70 * i,
            y: 20,
            width: 50,
            height: 150,
        };
        conn.poly_fill_rectangle(window, gc, &[bar]).unwrap();
    }
    conn.get_input_focus().unwrap().reply().unwrap(); // a round trip: all drawn
    window
}

/// The X display serving a broker desktop on `host`.
pub fn display_of(host: &DisplayServer, desktop: &str) -> String {
    let desktop = host.desktop(desktop).expect("desktop on the host");
    let source = desktop.source();
    source
        .as_any()
        .downcast_ref::<X11Source>()
        .expect("an x11 desktop")
        .display()
        .to_owned()
}
