//! Keyboard grab on X11: while the viewer has the focus, every key goes to the desktop
//! (Alt+Tab, Super, the window manager's shortcuts), as in virt-viewer and the Horizon
//! client. Ctrl+Alt+G releases it, and grabs again. winit has no keyboard grab, so this
//! calls XGrabKeyboard on winit's own Xlib display (libX11 loaded at run time).

use raw_window_handle::{HasDisplayHandle, HasWindowHandle, RawDisplayHandle, RawWindowHandle};
use winit::window::Window;
use x11_dl::xlib;

pub(super) struct KeyboardGrab {
    xlib: xlib::Xlib,
    display: *mut xlib::Display,
    window: xlib::Window,
    held: bool,
}

impl KeyboardGrab {
    /// `None` when the window is not an Xlib window (another platform) or libX11 is
    /// missing: the viewer then works without a grab.
    pub(super) fn new(window: &Window) -> Option<KeyboardGrab> {
        let RawDisplayHandle::Xlib(display) = window.display_handle().ok()?.as_raw() else {
            return None;
        };
        let RawWindowHandle::Xlib(handle) = window.window_handle().ok()?.as_raw() else {
            return None;
        };
        let xlib = xlib::Xlib::open().ok()?;
        Some(KeyboardGrab {
            xlib,
            display: display.display?.as_ptr().cast(),
            window: handle.window,
            held: false,
        })
    }

    /// Grabs the keyboard for the window; false if another client holds a grab.
    pub(super) fn grab(&mut self) -> bool {
        if self.held {
            return true;
        }
        // SAFETY: winit's display connection and window, used on winit's thread while
        // both are alive (the grab is dropped before the window).
        let status = unsafe {
            (self.xlib.XGrabKeyboard)(
                self.display,
                self.window,
                xlib::True,
                xlib::GrabModeAsync,
                xlib::GrabModeAsync,
                xlib::CurrentTime,
            )
        };
        // SAFETY: as above.
        unsafe { (self.xlib.XFlush)(self.display) };
        self.held = status == xlib::GrabSuccess;
        self.held
    }

    pub(super) fn release(&mut self) {
        if !self.held {
            return;
        }
        // SAFETY: as in `grab`.
        unsafe { (self.xlib.XUngrabKeyboard)(self.display, xlib::CurrentTime) };
        // SAFETY: as in `grab`.
        unsafe { (self.xlib.XFlush)(self.display) };
        self.held = false;
    }
}
