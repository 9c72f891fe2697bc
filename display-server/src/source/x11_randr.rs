//! Resizing an X screen through RandR 1.2, as `xrandr --newmode/--addmode/--output`
//! does: a mode of the wanted size (made if the output lacks one), the CRTC switched
//! off, the screen resized, the CRTC switched on with the new mode. X servers with a
//! real or dummy output (Xorg's dummy driver, Xvnc) support this; Xvfb does not.

use oriel_protocol::Size;
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::randr::{self, ConnectionExt as _};
use x11rb::protocol::xproto;
use x11rb::rust_connection::RustConnection;

use super::x11_error::{request, X11Error};

/// Timings of a mode for a virtual output: blanking barely matters, the clock keeps it
/// near 60 Hz (30 Hz for very large modes) within what dummy drivers accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ModeTimings {
    pub clock_hz: u32,
    pub hsync_start: u32,
    pub hsync_end: u32,
    pub htotal: u32,
    pub vsync_start: u32,
    pub vsync_end: u32,
    pub vtotal: u32,
}

pub(super) fn mode_timings(size: Size) -> ModeTimings {
    let (w, h) = (size.width, size.height);
    let (htotal, vtotal) = (w + 32, h + 4);
    let pixels_per_frame = u64::from(htotal) * u64::from(vtotal);
    let refresh = if pixels_per_frame * 60 > 300_000_000 {
        30
    } else {
        60
    };
    ModeTimings {
        // Saturates only for modes far beyond any X server's limits (they run slower).
        clock_hz: u32::try_from(pixels_per_frame * refresh).unwrap_or(u32::MAX),
        hsync_start: w + 8,
        hsync_end: w + 16,
        htotal,
        vsync_start: h + 1,
        vsync_end: h + 2,
        vtotal,
    }
}

/// Sets the screen of `root` to `size` on its first connected output.
pub(super) fn set_screen_size(
    conn: &RustConnection,
    root: xproto::Window,
    size: Size,
) -> Result<(), X11Error> {
    if conn
        .extension_information(randr::X11_EXTENSION_NAME)
        .map_err(request)?
        .is_none()
    {
        return Err(X11Error::Request("the X server has no RandR".into()));
    }
    let (w, h) = (
        u16::try_from(size.width).map_err(request)?,
        u16::try_from(size.height).map_err(request)?,
    );
    let res = conn
        .randr_get_screen_resources_current(root)
        .map_err(request)?
        .reply()
        .map_err(request)?;
    let stamp = res.config_timestamp;
    let mut target = None;
    for &output in &res.outputs {
        let info = conn
            .randr_get_output_info(output, stamp)
            .map_err(request)?
            .reply()
            .map_err(request)?;
        if info.connection == randr::Connection::CONNECTED && info.crtc != 0 {
            target = Some((output, info));
            break;
        }
    }
    let (output, info) = target.ok_or_else(|| {
        X11Error::Request("no connected RandR output to resize (Xvfb cannot resize)".into())
    })?;
    let existing = res
        .modes
        .iter()
        .find(|m| (m.width, m.height) == (w, h) && info.modes.contains(&m.id))
        .map(|m| m.id);
    let mode = match existing {
        Some(id) => id,
        None => {
            let t = mode_timings(size);
            let name = format!("oriel-{w}x{h}");
            let field = |v: u32| {
                u16::try_from(v).map_err(|_| X11Error::TooLarge {
                    width: size.width,
                    height: size.height,
                })
            };
            let mode_info = randr::ModeInfo {
                id: 0,
                width: w,
                height: h,
                dot_clock: t.clock_hz,
                hsync_start: field(t.hsync_start)?,
                hsync_end: field(t.hsync_end)?,
                htotal: field(t.htotal)?,
                hskew: 0,
                vsync_start: field(t.vsync_start)?,
                vsync_end: field(t.vsync_end)?,
                vtotal: field(t.vtotal)?,
                name_len: u16::try_from(name.len()).map_err(request)?,
                mode_flags: randr::ModeFlag::from(0u32),
            };
            let created = conn
                .randr_create_mode(root, mode_info, name.as_bytes())
                .map_err(request)?
                .reply()
                .map_err(request)?
                .mode;
            conn.randr_add_output_mode(output, created)
                .map_err(request)?
                .check()
                .map_err(request)?;
            created
        }
    };
    let crtc = info.crtc;
    let off = conn
        .randr_set_crtc_config(
            crtc,
            x11rb::CURRENT_TIME,
            stamp,
            0,
            0,
            0,
            randr::Rotation::ROTATE0,
            &[],
        )
        .map_err(request)?
        .reply()
        .map_err(request)?;
    // A screen of 96 dpi, as X servers without a monitor report.
    let mm = |px: u16| (u32::from(px) * 254 / 960).max(1);
    conn.randr_set_screen_size(root, w, h, mm(w), mm(h))
        .map_err(request)?
        .check()
        .map_err(request)?;
    let on = conn
        .randr_set_crtc_config(
            crtc,
            x11rb::CURRENT_TIME,
            stamp,
            0,
            0,
            mode,
            randr::Rotation::ROTATE0,
            &[output],
        )
        .map_err(request)?
        .reply()
        .map_err(request)?;
    if off.status != randr::SetConfig::SUCCESS || on.status != randr::SetConfig::SUCCESS {
        return Err(X11Error::Request(format!(
            "RandR refused {w}x{h} ({:?})",
            on.status
        )));
    }
    conn.flush().map_err(request)?;
    Ok(())
}
