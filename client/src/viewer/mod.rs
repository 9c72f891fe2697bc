//! The viewer window (winit + softbuffer). The session runs on tokio's workers: it
//! decodes frames there and hands each finished framebuffer to the UI thread, which only
//! scales and presents it. Keys go out by physical key, the pointer in desktop
//! coordinates, and the cursor is drawn by the window system from the server's shape, so
//! moving it needs no round trip.

mod damage;
mod grab;
mod keymap;
mod keys;
mod overlay;
mod scale;

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use oriel_protocol::{CursorMsg, Framebuffer, InputEvent, PointerButton, Size};
use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::event::{ElementState, MouseButton, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop};
use winit::keyboard::{ModifiersState, PhysicalKey};
use winit::window::{CustomCursor, Fullscreen, Window, WindowId};

use crate::resume::{self, Reconnect};
use crate::{ClientError, InputSender, Outcome, Session, Shown, StopWhen};
use damage::{Changed, Latest};
use scale::Layout;

/// How the window starts.
pub struct ViewerOptions {
    pub title: String,
    pub fullscreen: bool,
    /// Ask the server for a desktop of the window's size when the window is resized.
    pub resize_desktop: bool,
    /// The sound's volume and mute (Ctrl+Alt+M mutes, Ctrl+Alt+Up/Down set the volume).
    pub sound: Option<Arc<crate::audio::Level>>,
}

/// How long the window size must hold before the desktop is asked to follow it (a
/// window being dragged larger sends many sizes).
const RESIZE_SETTLE: Duration = Duration::from_millis(300);

/// What the session thread tells the UI thread.
enum UserEvent {
    /// A new framebuffer is in [`Latest`].
    Frame,
    /// The server sent a new cursor image.
    Cursor(CursorMsg),
    /// The connection was lost; reconnecting (attempt, why).
    Reconnecting(u32, String),
    /// A new session took over after an outage.
    Resumed,
    /// The session is over.
    Ended,
}

/// The current session's handles; replaced when a session resumes after an outage.
struct Handles {
    input: InputSender,
    cursor: tokio::sync::watch::Receiver<Option<CursorMsg>>,
    live: Arc<crate::LiveStats>,
    controller: crate::Controller,
}

impl Handles {
    fn of(session: &Session) -> Handles {
        Handles {
            input: session.input(),
            cursor: session.cursor_shape_handle(),
            live: session.live_stats(),
            controller: session.controller(),
        }
    }
}

/// Shows `session` in a window until the window is closed or the session ends; with
/// `reconnect`, outages show "reconnecting" and the session resumes. Returns the last
/// session's outcome, with the window's present times in its statistics.
pub fn run(
    session: Session,
    stop: StopWhen,
    options: ViewerOptions,
    reconnect: Option<Reconnect>,
) -> anyhow::Result<Outcome> {
    let event_loop = EventLoop::<UserEvent>::with_user_event()
        .build()
        .context("cannot open a window (is DISPLAY set? --headless runs without one)")?;
    let proxy = event_loop.create_proxy();
    let size = session.welcome().desktop_size;
    let latest = Arc::new(Mutex::new(Latest::new(size)));
    let handles = Arc::new(Mutex::new(Handles::of(&session)));
    let interrupt = stop
        .interrupt
        .clone()
        .unwrap_or_else(|| Arc::new(tokio::sync::Notify::new()));
    let stop = StopWhen {
        interrupt: Some(interrupt.clone()),
        ..stop
    };

    // Frames: copied into `latest`; one wake-up per batch the UI has not drawn yet.
    let wake_pending = Arc::new(AtomicBool::new(false));
    let (to_ui, pending) = (proxy.clone(), wake_pending.clone());
    let shared = latest.clone();
    // Every frame and picture changes the screen, where it says.
    let observe = move |shown: Shown, fb: &Framebuffer| {
        let mut l = lock(&shared);
        match shown {
            Shown::Frame { changed, .. } => l.update(fb, &changed),
            Shown::Picture { rect, .. } => l.update(fb, &[rect]),
        }
        drop(l);
        if !pending.swap(true, Ordering::AcqRel) {
            let _ = to_ui.send_event(UserEvent::Frame);
        }
    };
    let (to_ui, current) = (proxy.clone(), handles.clone());
    let session_task = tokio::spawn(async move {
        let mut first = true;
        let event = |e: resume::Event<'_>| match e {
            resume::Event::Connected(session) => {
                *lock(&current) = Handles::of(session);
                if !std::mem::take(&mut first) {
                    let _ = to_ui.send_event(UserEvent::Resumed);
                }
            }
            resume::Event::Reconnecting { attempt, reason } => {
                let _ = to_ui.send_event(UserEvent::Reconnecting(attempt, reason));
            }
        };
        let outcome = resume::run_resuming(session, stop, reconnect, observe, event).await;
        let _ = to_ui.send_event(UserEvent::Ended);
        outcome
    });
    let (to_ui, current) = (proxy.clone(), handles.clone());
    let cursor_task = tokio::spawn(async move {
        let mut shown: Option<CursorMsg> = None;
        loop {
            // The session's cursor, until it changes or a resumed session replaces it.
            let mut watch = lock(&current).cursor.clone();
            let latest = watch.borrow_and_update().clone();
            if let Some(shape) = latest.filter(|c| shown.as_ref() != Some(c)) {
                shown = Some(shape.clone());
                if to_ui.send_event(UserEvent::Cursor(shape)).is_err() {
                    return;
                }
            }
            let wait = Duration::from_millis(250);
            if let Ok(Err(_)) = tokio::time::timeout(wait, watch.changed()).await {
                // That session ended; the next one's handles come with its resume.
                tokio::time::sleep(wait).await;
            }
        }
    });

    let mut app = Viewer {
        options,
        desktop: size,
        latest,
        wake_pending,
        handles,
        interrupt,
        window: None,
        surface: None,
        columns: Vec::new(),
        layout: Layout::fit(size, size),
        modifiers: ModifiersState::empty(),
        pressed: BTreeSet::new(),
        present_us: Vec::new(),
        error: None,
        overlay: None,
        resize_due: None,
        grab: None,
        grab_released: false,
    };
    let ran = event_loop.run_app(&mut app);
    if let Some(grab) = &mut app.grab {
        grab.release();
    }
    app.grab = None;
    cursor_task.abort();
    // The window is gone: end the session if it still runs, and collect its outcome.
    app.interrupt.notify_one();
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::block_in_place(|| handle.block_on(session_task))
        .context("the session task failed")?;
    ran.context("the window's event loop failed")?;
    if let Some(e) = app.error {
        return Err(e);
    }
    let mut outcome: Outcome = outcome.map_err(|e: ClientError| anyhow::anyhow!(e))?;
    outcome.stats.present_us = app.present_us;
    Ok(outcome)
}

struct Viewer {
    options: ViewerOptions,
    desktop: Size,
    latest: Arc<Mutex<Latest>>,
    wake_pending: Arc<AtomicBool>,
    handles: Arc<Mutex<Handles>>,
    interrupt: Arc<tokio::sync::Notify>,
    window: Option<Rc<Window>>,
    surface: Option<softbuffer::Surface<Rc<Window>, Rc<Window>>>,
    /// Source column per window column, reused between frames.
    columns: Vec<u32>,
    layout: Layout,
    modifiers: ModifiersState,
    /// Keys held down here, released on the desktop if the window loses focus.
    pressed: BTreeSet<u16>,
    /// Frame decoded → pixels handed to the window system, µs.
    present_us: Vec<u32>,
    error: Option<anyhow::Error>,
    /// The statistics overlay, while shown (Ctrl+Alt+O).
    overlay: Option<overlay::Overlay>,
    /// A window size to ask the desktop for, once it has held until then.
    resize_due: Option<(Instant, Size)>,
    /// The keyboard grab (X11), taken while focused unless the user released it.
    grab: Option<grab::KeyboardGrab>,
    grab_released: bool,
}

impl Viewer {
    fn send(&self, event: InputEvent) {
        // A full queue drops the event rather than stall the UI.
        lock(&self.handles).input.try_send(event);
    }

    /// Grabs the keyboard while focused (unless released by the user), and shows which.
    fn update_grab(&mut self, focused: bool) {
        let Some(grab) = &mut self.grab else {
            return;
        };
        if focused && !self.grab_released {
            if !grab.grab() {
                tracing::info!("another program holds the keyboard; not grabbing it");
            }
        } else {
            grab.release();
        }
        self.update_title();
    }

    /// The title, with what the user changed: the keyboard released, the sound's level.
    fn update_title(&self) {
        let Some(w) = &self.window else {
            return;
        };
        let mut title = self.options.title.clone();
        if self.grab_released {
            title += " (keyboard released: Ctrl+Alt+G)";
        }
        match &self.options.sound {
            Some(level) if level.muted() => title += " (muted: Ctrl+Alt+M)",
            Some(level) if level.percent() != 100 => {
                title += &format!(" (volume {}%)", level.percent());
            }
            _ => {}
        }
        w.set_title(&title);
    }

    /// Draws the desktop: only what changed since the last draw, unless `whole` (the
    /// window system asked, e.g. the window was exposed) or the picture moved.
    fn draw(&mut self, whole: bool) -> anyhow::Result<()> {
        let (Some(window), Some(surface)) = (&self.window, &mut self.surface) else {
            return Ok(());
        };
        let inner = window.inner_size();
        let (Some(w), Some(h)) = (NonZeroU32::new(inner.width), NonZeroU32::new(inner.height))
        else {
            return Ok(());
        };
        surface
            .resize(w, h)
            .map_err(|e| anyhow::anyhow!("resizing the window buffer: {e}"))?;
        let mut buffer = surface
            .buffer_mut()
            .map_err(|e| anyhow::anyhow!("window buffer: {e}"))?;
        let mut latest = lock(&self.latest);
        let layout = Layout::fit(latest.fb.size(), Size::new(w.get(), h.get()));
        let kept = !whole && layout == self.layout && buffer.age() > 0 && self.overlay.is_none();
        let damage = match latest.take_changed() {
            Changed::Nothing if kept => return Ok(()),
            Changed::Rects(rects) if kept => rects
                .iter()
                .map(|r| layout.window_rect(r))
                .filter_map(|r| {
                    layout.draw_rect(&latest.fb, &mut buffer, &mut self.columns, &r);
                    Some(softbuffer::Rect {
                        x: r.x,
                        y: r.y,
                        width: NonZeroU32::new(r.width)?,
                        height: NonZeroU32::new(r.height)?,
                    })
                })
                .collect(),
            _ => {
                layout.draw(&latest.fb, &mut buffer, &mut self.columns);
                vec![softbuffer::Rect {
                    x: 0,
                    y: 0,
                    width: w,
                    height: h,
                }]
            }
        };
        (self.desktop, self.layout) = (latest.fb.size(), layout);
        let (decoded, fresh) = (latest.decoded, std::mem::take(&mut latest.fresh));
        drop(latest);
        if let Some(overlay) = &mut self.overlay {
            let live = lock(&self.handles).live.clone();
            overlay.sample(&live);
            overlay.draw(&mut buffer, w.get() as usize);
        }
        buffer
            .present_with_damage(&damage)
            .map_err(|e| anyhow::anyhow!("presenting: {e}"))?;
        if fresh {
            let us = u32::try_from(decoded.elapsed().as_micros()).unwrap_or(u32::MAX);
            self.present_us.push(us);
        }
        Ok(())
    }

    fn set_cursor(&self, event_loop: &ActiveEventLoop, msg: CursorMsg) {
        let (
            Some(window),
            CursorMsg::Shape {
                width,
                height,
                hot_x,
                hot_y,
                pixels,
            },
        ) = (&self.window, msg)
        else {
            return;
        };
        // 0xAARRGGBB, premultiplied as X cursors are, to straight RGBA bytes.
        let rgba: Vec<u8> = pixels
            .iter()
            .flat_map(|&p| {
                let a = (p >> 24) as u8;
                let un = |c: u32| {
                    let c = (c & 0xff) as u16;
                    if a == 0 {
                        0
                    } else {
                        (c * 255 / u16::from(a)).min(255) as u8
                    }
                };
                [un(p >> 16), un(p >> 8), un(p), a]
            })
            .collect();
        match CustomCursor::from_rgba(rgba, width, height, hot_x, hot_y) {
            Ok(source) => window.set_cursor(event_loop.create_custom_cursor(source)),
            Err(e) => tracing::warn!("cursor from the server not shown: {e}"),
        }
    }
}

impl ApplicationHandler<UserEvent> for Viewer {
    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        let Some((due, size)) = self.resize_due else {
            return;
        };
        if Instant::now() < due {
            event_loop.set_control_flow(ControlFlow::WaitUntil(due));
            return;
        }
        self.resize_due = None;
        event_loop.set_control_flow(ControlFlow::Wait);
        if size.width >= 64 && size.height >= 64 && size != self.desktop {
            lock(&self.handles)
                .controller
                .request_resize(size.width, size.height);
        }
    }

    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_some() {
            return;
        }
        let attributes = Window::default_attributes()
            .with_title(self.options.title.clone())
            .with_inner_size(PhysicalSize::new(self.desktop.width, self.desktop.height))
            .with_fullscreen(
                self.options
                    .fullscreen
                    .then_some(Fullscreen::Borderless(None)),
            );
        let opened = event_loop.create_window(attributes).map(Rc::new);
        let window = match opened {
            Ok(w) => w,
            Err(e) => {
                self.error = Some(anyhow::anyhow!("cannot open the window: {e}"));
                event_loop.exit();
                return;
            }
        };
        let surface = softbuffer::Context::new(window.clone())
            .and_then(|context| softbuffer::Surface::new(&context, window.clone()));
        match surface {
            Ok(s) => self.surface = Some(s),
            Err(e) => {
                self.error = Some(anyhow::anyhow!("cannot draw into the window: {e}"));
                event_loop.exit();
                return;
            }
        }
        window.request_redraw();
        self.grab = grab::KeyboardGrab::new(&window);
        self.window = Some(window);
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, event: UserEvent) {
        match event {
            UserEvent::Frame => {
                self.wake_pending.store(false, Ordering::Release);
                // Drawn right away: a frame is never held back for the next vsync.
                if let Err(e) = self.draw(false) {
                    self.error = Some(e);
                    event_loop.exit();
                }
            }
            UserEvent::Cursor(msg) => self.set_cursor(event_loop, msg),
            UserEvent::Reconnecting(attempt, reason) => {
                // Keys held now would stay down on the desktop.
                self.pressed.clear();
                tracing::warn!("connection lost ({reason}); reconnecting, attempt {attempt}");
                if let Some(w) = &self.window {
                    w.set_title(&format!(
                        "{} — reconnecting… (attempt {attempt})",
                        self.options.title
                    ));
                }
            }
            UserEvent::Resumed => {
                if let Some(w) = &self.window {
                    w.set_title(&self.options.title);
                }
            }
            UserEvent::Ended => event_loop.exit(),
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested => {
                self.interrupt.notify_one();
                event_loop.exit();
            }
            WindowEvent::RedrawRequested | WindowEvent::Resized(_) => {
                if let WindowEvent::Resized(size) = event {
                    let wanted = Size::new(size.width, size.height);
                    if self.options.resize_desktop && wanted != self.desktop {
                        self.resize_due = Some((Instant::now() + RESIZE_SETTLE, wanted));
                        event_loop.set_control_flow(ControlFlow::WaitUntil(
                            Instant::now() + RESIZE_SETTLE,
                        ));
                    }
                }
                if let Err(e) = self.draw(true) {
                    self.error = Some(e);
                    event_loop.exit();
                }
            }
            WindowEvent::ModifiersChanged(m) => self.modifiers = m.state(),
            WindowEvent::Focused(focused) => {
                if !focused {
                    self.release_all_keys();
                }
                self.update_grab(focused);
            }
            WindowEvent::KeyboardInput { event, .. } => {
                let PhysicalKey::Code(key) = event.physical_key else {
                    return;
                };
                let down = event.state == ElementState::Pressed;
                // Auto-repeat is the desktop's business: it sees the key held.
                if event.repeat || self.shortcut(key, down) {
                    return;
                }
                if let Some(code) = keymap::evdev_code(key) {
                    self.key(code, down);
                }
            }
            WindowEvent::CursorMoved { position, .. } => {
                if let Some((x, y)) = self.layout.desktop_pixel(position.x, position.y) {
                    self.send(InputEvent::PointerMove { x, y });
                }
            }
            WindowEvent::MouseInput { state, button, .. } => {
                let button = match button {
                    MouseButton::Left => PointerButton::Left,
                    MouseButton::Middle => PointerButton::Middle,
                    MouseButton::Right => PointerButton::Right,
                    MouseButton::Back => PointerButton::Back,
                    MouseButton::Forward => PointerButton::Forward,
                    MouseButton::Other(_) => return,
                };
                self.send(InputEvent::PointerButton {
                    button,
                    down: state == ElementState::Pressed,
                });
            }
            WindowEvent::MouseWheel { delta, .. } => {
                let (dx, dy) = match delta {
                    MouseScrollDelta::LineDelta(x, y) => {
                        (wheel_clicks(f64::from(x)), wheel_clicks(-f64::from(y)))
                    }
                    MouseScrollDelta::PixelDelta(p) => {
                        (wheel_clicks(p.x / 40.0), wheel_clicks(-p.y / 40.0))
                    }
                };
                if dx != 0 || dy != 0 {
                    self.send(InputEvent::Wheel { dx, dy });
                }
            }
            _ => {}
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wheel clicks from a scroll delta, rounded to the nearest click.
#[expect(
    clippy::cast_possible_truncation,
    reason = "float to int saturates; a scroll beyond i16 clicks is clamped"
)]
fn wheel_clicks(delta: f64) -> i16 {
    delta.round() as i16
}
