//! An X display as a desktop: damage from the DAMAGE extension (nothing is polled when
//! nothing changes), pixels from Xvfb's mapped framebuffer or through MIT-SHM (GetImage
//! when the X server cannot share memory with us, see `x11_capture`), keyboard and
//! pointer through XTEST, the cursor from XFIXES, and screen size changes from RandR.

use std::sync::Arc;
use std::time::Duration;

use oriel_protocol::{Framebuffer, InputEvent, Rect, Size};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::randr::{self, ConnectionExt as _};
use x11rb::protocol::xfixes::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::NONE;

use super::x11_capture::Capture;
use super::x11_error::request;
pub use super::x11_error::X11Error;
use super::x11_input::X11Input;
use super::{FrameSource, InputSink, SourceCursor};

/// Largest cursor image the protocol carries.
const MAX_CURSOR_EDGE: u16 = 256;

/// More damage rectangles than this in one poll are fetched as their bounding box.
const MAX_RECTS_PER_POLL: usize = 32;

pub struct X11Source {
    conn: Arc<RustConnection>,
    /// Input goes through the same connection without waiting for a capture.
    input: Arc<X11Input>,
    root: xproto::Window,
    display: String,
    damage: damage::Damage,
    size: Size,
    screen: Framebuffer,
    sequence: u64,
    presented: bool,
    interval: Duration,
    /// Why the connection broke (e.g. the X server died): the source stays still.
    dead: Option<String>,
    cursor: Option<SourceCursor>,
    /// XFIXES said the cursor image changed.
    cursor_changed: bool,
    /// How pixels are read (Xvfb's file, MIT-SHM or GetImage).
    capture: Capture,
    /// RandR said the screen changed (size, rotation).
    screen_changed: bool,
    /// Damage reported and not yet captured, clipped to the screen.
    waiting: Vec<Rect>,
    /// How the desktop's clipboard is shared.
    clipboard: crate::clipboard::ClipboardSetting,
    /// The X server this source started, if it did (dropped last: after the connection).
    _server: Option<super::xserver::XServer>,
}

impl X11Source {
    /// Attaches to `display` (e.g. ":1"; `None` uses `$DISPLAY`), polling at `fps`.
    pub fn connect(display: Option<&str>, fps: u32) -> Result<Self, X11Error> {
        Self::connect_with(display, fps, None)
    }

    /// Attaches to an X server this process started, reading its screen from Xvfb's
    /// framebuffer file when it has one.
    pub fn connect_to(server: &super::xserver::XServer, fps: u32) -> Result<Self, X11Error> {
        Self::connect_with(Some(server.display()), fps, server.framebuffer_file())
    }

    fn connect_with(
        display: Option<&str>,
        fps: u32,
        xvfb_file: Option<&std::path::Path>,
    ) -> Result<Self, X11Error> {
        let name = display.map(str::to_owned).unwrap_or_else(|| {
            std::env::var("DISPLAY").unwrap_or_else(|_| "(unset DISPLAY)".into())
        });
        let (conn, screen_num) = x11rb::connect(display).map_err(|e| X11Error::Connect {
            display: name.clone(),
            reason: e.to_string(),
        })?;
        let screen = &conn.setup().roots[screen_num];
        let root = screen.root;
        let size = Size::new(
            u32::from(screen.width_in_pixels),
            u32::from(screen.height_in_pixels),
        );
        if size.area() > oriel_protocol::MAX_DESKTOP_PIXELS {
            return Err(X11Error::TooLarge {
                width: size.width,
                height: size.height,
            });
        }
        for (name, ext) in [
            ("DAMAGE", "DAMAGE"),
            ("XTEST", "XTEST"),
            ("XFIXES", "XFIXES"),
        ] {
            let present = conn.extension_information(ext).map_err(request)?.is_some();
            if !present {
                return Err(X11Error::MissingExtension(name));
            }
        }
        conn.damage_query_version(1, 1)
            .map_err(request)?
            .reply()
            .map_err(request)?;
        conn.xtest_get_version(2, 2)
            .map_err(request)?
            .reply()
            .map_err(request)?;
        conn.xfixes_query_version(4, 0)
            .map_err(request)?
            .reply()
            .map_err(request)?;
        conn.xfixes_select_cursor_input(root, xfixes::CursorNotifyMask::DISPLAY_CURSOR)
            .map_err(request)?;
        // Screen size changes come from RandR, where the server has it (Xvfb's screen
        // cannot change size; Xorg's, Xvnc's and others' can).
        let randr = conn
            .extension_information(randr::X11_EXTENSION_NAME)
            .map_err(request)?
            .is_some()
            && conn
                .randr_query_version(1, 2)
                .map_err(request)?
                .reply()
                .is_ok();
        if randr {
            conn.randr_select_input(root, randr::NotifyMask::SCREEN_CHANGE)
                .map_err(request)?;
        }
        let damage = conn.generate_id().map_err(request)?;
        conn.damage_create(damage, root, damage::ReportLevel::RAW_RECTANGLES)
            .map_err(request)?;
        conn.flush().map_err(request)?;
        let capture = Capture::choose(&conn, size, xvfb_file)?;
        tracing::info!(
            display = name,
            capture = capture.name(),
            "attached to X display {}x{}",
            size.width,
            size.height
        );
        let conn = Arc::new(conn);
        Ok(Self {
            input: Arc::new(X11Input::new(conn.clone(), root)),
            conn,
            root,
            display: name,
            damage,
            size,
            screen: Framebuffer::new(size),
            sequence: 0,
            presented: false,
            interval: Duration::from_secs(1) / fps.clamp(1, 240),
            dead: None,
            cursor: None,
            cursor_changed: true,
            capture,
            screen_changed: false,
            waiting: Vec::new(),
            clipboard: Default::default(),
            _server: None,
        })
    }

    /// Starts an X server of its own at `size`, running `command` (see
    /// [`super::xserver::XServer::start`]), and attaches to it.
    pub fn spawn(size: Size, fps: u32, command: Option<&str>) -> Result<Self, X11Error> {
        let config = super::xserver::XSessionConfig {
            size,
            command: command.map(str::to_owned),
            ..Default::default()
        };
        Self::spawn_session(&config, fps)
    }

    /// Starts the X server and session `config` describes and attaches to it.
    pub fn spawn_session(
        config: &super::xserver::XSessionConfig,
        fps: u32,
    ) -> Result<Self, X11Error> {
        let server = super::xserver::XServer::start_session(config)?;
        let mut source = Self::connect_to(&server, fps)?;
        source._server = Some(server);
        Ok(source)
    }

    /// Shares the clipboard as `setting` says (by default: both ways, 16 MiB).
    pub fn with_clipboard(mut self, setting: crate::clipboard::ClipboardSetting) -> Self {
        self.clipboard = setting;
        self
    }

    /// The X display this source shows, e.g. ":5".
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The PID of the X server this source started; `None` when it attached to one.
    pub fn server_pid(&self) -> Option<u32> {
        self._server.as_ref().map(|s| s.pid())
    }

    /// How captures read pixels: "Xvfb framebuffer file", "MIT-SHM" or "GetImage".
    pub fn capture_method(&self) -> &'static str {
        self.capture.name()
    }

    /// Captures with GetImage from now on, even when a shared way works.
    pub fn use_get_image(&mut self) {
        self.capture.release(&self.conn);
        self.capture = Capture::GetImage;
    }

    /// Whether the X server has gone away.
    pub fn is_dead(&self) -> bool {
        self.dead.is_some()
    }

    /// Copies `rect` of the X screen into the framebuffer; returns what changed there.
    fn fetch(&mut self, rect: &Rect) -> Result<Vec<Rect>, X11Error> {
        self.capture
            .fetch(&self.conn, self.root, rect, &mut self.screen)
    }

    /// Reads the events the X server has sent (without waiting) into `waiting` and the
    /// cursor and screen flags.
    fn read_events(&mut self) -> Result<(), X11Error> {
        while let Some(event) = self.conn.poll_for_event().map_err(request)? {
            match event {
                Event::XfixesCursorNotify(_) => self.cursor_changed = true,
                Event::RandrScreenChangeNotify(_) => self.screen_changed = true,
                Event::DamageNotify(e) => {
                    let area = e.area;
                    let x = area.x.max(0) as u32;
                    let y = area.y.max(0) as u32;
                    let r = Rect::new(x, y, u32::from(area.width), u32::from(area.height))
                        .intersect(&self.size.full_rect());
                    if r.is_empty() {
                        continue;
                    }
                    if self.waiting.len() >= MAX_RECTS_PER_POLL {
                        // Too many to fetch one by one: their bounding box.
                        let bounds = self.waiting.iter().fold(r, |a, w| a.union(w));
                        self.waiting = vec![bounds];
                    } else {
                        self.waiting.push(r);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Damage since the last call, clipped to the screen.
    fn take_damage(&mut self) -> Result<Vec<Rect>, X11Error> {
        self.read_events()?;
        let rects = std::mem::take(&mut self.waiting);
        if !rects.is_empty() {
            // Repair before fetching: whatever changes after this gets a new event.
            self.conn
                .damage_subtract(self.damage, NONE, NONE)
                .map_err(request)?;
        }
        Ok(rects)
    }

    /// Updates the cursor: its image when XFIXES said it changed, its position always.
    fn update_cursor(&mut self) -> Result<(), X11Error> {
        let pointer = self
            .conn
            .query_pointer(self.root)
            .map_err(request)?
            .reply()
            .map_err(request)?;
        let (x, y) = (pointer.root_x.max(0) as u32, pointer.root_y.max(0) as u32);
        if std::mem::take(&mut self.cursor_changed) || self.cursor.is_none() {
            let image = self
                .conn
                .xfixes_get_cursor_image()
                .map_err(request)?
                .reply()
                .map_err(request)?;
            let fits = image.width <= MAX_CURSOR_EDGE
                && image.height <= MAX_CURSOR_EDGE
                && image.cursor_image.len() == usize::from(image.width) * usize::from(image.height);
            if fits {
                self.cursor = Some(SourceCursor {
                    serial: u64::from(image.cursor_serial),
                    shape: oriel_protocol::CursorMsg::Shape {
                        width: image.width,
                        height: image.height,
                        hot_x: image.xhot.min(image.width.saturating_sub(1)),
                        hot_y: image.yhot.min(image.height.saturating_sub(1)),
                        pixels: image.cursor_image,
                    },
                    x,
                    y,
                    visible: pointer.same_screen,
                });
            }
        }
        if let Some(c) = &mut self.cursor {
            (c.x, c.y, c.visible) = (x, y, pointer.same_screen);
        }
        Ok(())
    }

    fn poll_inner(&mut self) -> Result<Vec<Rect>, X11Error> {
        let rects = self.poll_screen()?;
        self.update_cursor()?;
        // Events that came in with the replies are read now: the socket will not
        // signal them again.
        self.read_events()?;
        Ok(rects)
    }

    fn poll_screen(&mut self) -> Result<Vec<Rect>, X11Error> {
        let rects = self.take_damage()?;
        if std::mem::take(&mut self.screen_changed) {
            self.adopt_screen_size()?;
        }
        if !self.presented {
            self.presented = true;
            // Everything is new to us; damage from before is covered too.
            let full = self.size.full_rect();
            self.fetch(&full)?;
            return Ok(vec![full]);
        }
        // X reports what was drawn, overlapping (a scroll then its new line, several
        // times a frame): each pixel is fetched once, and only what differs from the
        // last capture goes on.
        let mut changed = Vec::new();
        for r in &oriel_protocol::geometry::disjoint(&rects) {
            changed.extend(self.fetch(r)?);
        }
        Ok(changed)
    }

    /// Takes the root window's size after RandR said the screen changed; a new size
    /// means a new framebuffer (and shared segment) and a full capture.
    fn adopt_screen_size(&mut self) -> Result<(), X11Error> {
        let geometry = self
            .conn
            .get_geometry(self.root)
            .map_err(request)?
            .reply()
            .map_err(request)?;
        let size = Size::new(u32::from(geometry.width), u32::from(geometry.height));
        if size == self.size {
            return Ok(());
        }
        if size.area() == 0 || size.area() > oriel_protocol::MAX_DESKTOP_PIXELS {
            return Err(X11Error::TooLarge {
                width: size.width,
                height: size.height,
            });
        }
        tracing::info!(
            display = self.display,
            "X screen resized to {}x{}",
            size.width,
            size.height
        );
        if !self.capture.fits(size) {
            self.capture.release(&self.conn);
            self.capture = Capture::shared_or_get_image(&self.conn, size)?;
        }
        self.size = size;
        self.screen = Framebuffer::new(size);
        self.presented = false;
        Ok(())
    }
}

impl FrameSource for X11Source {
    fn size(&self) -> Size {
        self.size
    }

    fn frame_interval(&self) -> Duration {
        self.interval
    }

    fn damage_signal(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.dead.is_none().then(|| self.conn.stream().as_fd())
    }

    fn damage_waiting(&self) -> bool {
        !self.waiting.is_empty() || self.cursor_changed || self.screen_changed
    }

    fn poll(&mut self) -> Vec<Rect> {
        if self.dead.is_some() {
            return Vec::new();
        }
        match self.poll_inner() {
            Ok(rects) => {
                if !rects.is_empty() {
                    self.sequence += 1;
                }
                rects
            }
            Err(e) => {
                tracing::error!(display = self.display, "X display lost: {e}");
                self.dead = Some(format!(
                    "its X display {} went away (the X server exited?): {e}",
                    self.display
                ));
                Vec::new()
            }
        }
    }

    fn pixels(&self) -> &Framebuffer {
        &self.screen
    }

    fn sequence(&self) -> u64 {
        self.sequence
    }

    fn inject(&mut self, event: &InputEvent) {
        self.input.inject(event);
    }

    fn input_sink(&self) -> Option<Arc<dyn InputSink>> {
        Some(self.input.clone())
    }

    fn sound_server(&self) -> Option<crate::audio::SoundAccess> {
        self._server.as_ref().and_then(|s| s.sound_access())
    }

    fn clipboard(&self) -> Option<(String, crate::clipboard::ClipboardSetting)> {
        Some((self.display.clone(), self.clipboard))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn cursor(&self) -> Option<&SourceCursor> {
        self.cursor.as_ref()
    }

    fn failure(&self) -> Option<String> {
        self.dead.clone()
    }

    fn request_resize(&mut self, size: Size) -> Result<(), String> {
        // The RandR notification that follows makes the next poll adopt the size.
        super::x11_randr::set_screen_size(&self.conn, self.root, size).map_err(|e| {
            format!(
                "the X server cannot resize its screen to {}x{} (Xvfb never can; use \
                 server=xorg): {e}",
                size.width, size.height
            )
        })
    }
}
