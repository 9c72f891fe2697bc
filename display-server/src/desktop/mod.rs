//! A running desktop: its source, the capture loop that polls it, and the damage sinks
//! through which every connected session learns what changed.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use oriel_protocol::{InputEvent, Size};
use oriel_transport::unix_micros;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

mod damage_sink;

pub use damage_sink::{DamageSink, TakenDamage};

use crate::capture_pacer::CapturePacer;
use crate::eviction::{Admission, Evictions, StaleGeneration};
use crate::source::{FrameSource, InputSink, SourceCursor};

pub struct Desktop {
    name: String,
    /// The clipboard bridge (dropped before the source and its X server).
    clipboard: Option<Arc<crate::clipboard::DesktopClipboard>>,
    /// The capture of the desktop's sound, if it has a sound server.
    audio: Option<crate::audio::DesktopAudio>,
    /// The source's size as of the last poll (X screens can change size).
    size: Mutex<Size>,
    source: Mutex<Box<dyn FrameSource>>,
    sinks: Mutex<Vec<Arc<DamageSink>>>,
    frames_produced: AtomicU64,
    /// Last input or viewer arrival: what the broker's idle timeout measures.
    last_activity: Mutex<std::time::Instant>,
    /// What ends sessions: stop, reset and destroy; log-offs and reassignments (the
    /// assignment generation); a connection taking the desktop over.
    evictions: tokio::sync::watch::Sender<Evictions>,
    /// The source's pointer, for the sessions' cursor streams.
    cursor: tokio::sync::watch::Sender<Option<SourceCursor>>,
    /// Why the desktop can no longer be shown; set once, by the capture loop.
    failure: Mutex<Option<String>>,
    /// A key or a button went in: the capture loop takes its echo out of turn.
    input_arrived: Notify,
    /// The source's input path that needs no lock on it, if it has one.
    input_sink: Option<Arc<dyn InputSink>>,
    /// Where the desktop went (live migration), once it was handed over.
    moved_to: Mutex<Option<oriel_protocol::MovedTo>>,
    /// Input kept back while a migration's last copy runs (`None`: input goes in),
    /// injected if the VM stays here.
    held_input: Mutex<Option<Vec<InputEvent>>>,
}

/// Most input events a desktop keeps back during a migration's last copy.
const MAX_HELD_INPUT: usize = 1024;

/// What one poll of the source found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captured {
    pub damaged: bool,
    /// The source knows of more damage already (see [`FrameSource::damage_waiting`]).
    pub waiting: bool,
}

impl Desktop {
    pub fn new(name: impl Into<String>, source: Box<dyn FrameSource>) -> Arc<Self> {
        Self::at_generation(name, source, 0)
    }

    /// A desktop the broker created at assignment generation `generation`: tickets
    /// of earlier generations are refused.
    pub fn at_generation(
        name: impl Into<String>,
        source: Box<dyn FrameSource>,
        generation: u64,
    ) -> Arc<Self> {
        let evictions = Evictions {
            generation,
            ..Default::default()
        };
        let name = name.into();
        let clipboard = source.clipboard().and_then(|(display, setting)| {
            crate::clipboard::DesktopClipboard::start(&display, setting)
                .inspect_err(|e| {
                    tracing::warn!(desktop = name, "the desktop has no clipboard: {e:#}")
                })
                .ok()
        });
        let audio = source.sound_server().and_then(|access| {
            crate::audio::DesktopAudio::start(&access, &name)
                .inspect_err(|e| {
                    tracing::warn!(desktop = name, "the desktop's sound is not captured: {e:#}")
                })
                .ok()
        });
        Arc::new(Self {
            name,
            clipboard,
            audio,
            input_sink: source.input_sink(),
            size: Mutex::new(source.size()),
            source: Mutex::new(source),
            sinks: Mutex::new(Vec::new()),
            frames_produced: AtomicU64::new(0),
            evictions: tokio::sync::watch::channel(evictions).0,
            moved_to: Mutex::new(None),
            held_input: Mutex::new(None),
            cursor: tokio::sync::watch::channel(None).0,
            last_activity: Mutex::new(std::time::Instant::now()),
            failure: Mutex::new(None),
            input_arrived: Notify::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The desktop's sound from now on, if it has any.
    pub fn audio(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<Arc<oriel_protocol::AudioPacket>>> {
        self.audio.as_ref().map(|a| a.subscribe())
    }

    /// Where viewers' microphones go, if the desktop takes one.
    pub fn microphone(&self) -> Option<crate::microphone::MicrophoneFeed> {
        self.audio.as_ref().and_then(|a| a.microphone())
    }

    /// The desktop's clipboard, if it shares one.
    pub fn clipboard(&self) -> Option<&Arc<crate::clipboard::DesktopClipboard>> {
        self.clipboard.as_ref()
    }

    pub fn size(&self) -> Size {
        *lock(&self.size)
    }

    /// Polls that produced damage since the desktop started.
    pub fn frames_produced(&self) -> u64 {
        self.frames_produced.load(Ordering::Relaxed)
    }

    /// Ends every session on this desktop (it was stopped, reset or destroyed).
    /// Later sessions are not affected.
    pub fn kick_viewers(&self) {
        self.evictions.send_modify(|e| e.all += 1);
    }

    /// The desktop went to another display server: its sessions end, each telling its
    /// viewer where to go.
    pub fn hand_over(&self, to: oriel_protocol::MovedTo) {
        *lock(&self.moved_to) = Some(to);
        self.kick_viewers();
    }

    /// Keeps input back from now on (a migration's last copy begins: what reached the
    /// VM now would not be in the state that goes), until [`Desktop::release_input`].
    pub fn hold_input(&self) {
        lock(&self.held_input).get_or_insert_with(Vec::new);
    }

    /// Ends holding input: what was kept back goes into the desktop (the VM stays
    /// here after all). A desktop that moved never releases it: its viewers resend
    /// what it did not take to where it went.
    pub fn release_input(&self) {
        let kept = lock(&self.held_input).take().unwrap_or_default();
        for event in &kept {
            self.inject(event);
        }
    }

    /// Where the desktop went, once it was handed over.
    pub fn moved_to(&self) -> Option<oriel_protocol::MovedTo> {
        lock(&self.moved_to).clone()
    }

    /// A log-off or reassignment: sessions and tickets of generations before
    /// `generation` end and are refused from now on.
    pub fn revoke_before(&self, generation: u64) {
        self.evictions
            .send_if_modified(|e| e.revoke_before(generation));
    }

    /// The assignment generation this desktop is at.
    pub fn generation(&self) -> u64 {
        self.evictions.borrow().generation
    }

    /// Admits session `session` with its ticket's generation (`None`: standalone), in
    /// one step with ending the sessions it supersedes.
    pub fn admit(
        &self,
        session: u64,
        generation: Option<u64>,
    ) -> Result<Admission, StaleGeneration> {
        let mut admitted = Err(StaleGeneration);
        self.evictions.send_if_modified(|e| {
            let before = *e;
            admitted = e.admit(session, generation);
            *e != before
        });
        admitted
    }

    /// Resolves when the session admitted with `admission` must end, with the reason
    /// to tell its client; at once when the desktop has failed.
    pub async fn evicted(&self, admission: Admission) -> String {
        let mut watch = self.evictions.subscribe();
        let eviction = match self.failure() {
            Some(_) => None,
            None => watch
                .wait_for(|e| e.evicts(&admission).is_some())
                .await
                .ok()
                .and_then(|e| e.evicts(&admission)),
        };
        match (self.failure(), eviction) {
            (Some(failure), _) => format!("the desktop failed: {failure}"),
            (None, Some(eviction)) => eviction.reason().into(),
            (None, None) => crate::eviction::Eviction::Stopped.reason().into(),
        }
    }

    /// Whether the session admitted with `admission` has been ended.
    pub fn is_evicted(&self, admission: &Admission) -> bool {
        self.evictions.borrow().evicts(admission).is_some()
    }

    /// Locks the source, e.g. to copy pixels out of it.
    pub fn source(&self) -> MutexGuard<'_, Box<dyn FrameSource>> {
        lock(&self.source)
    }

    /// Asks the source for another size; sessions see it at the next poll.
    pub fn request_resize(&self, size: Size) -> Result<(), String> {
        self.source().request_resize(size)
    }

    pub fn inject(&self, event: &InputEvent) {
        self.inject_into(event, None);
    }

    /// Injects a viewer's input event number `index` (its place among the events the
    /// viewer sent); once the desktop took it, `taken` becomes `index + 1`. Both happen
    /// under the hold's lock, so after [`Desktop::hold_input`] the count is final.
    pub fn inject_counted(&self, event: &InputEvent, index: u64, taken: &AtomicU64) {
        self.inject_into(event, Some((index, taken)));
    }

    fn inject_into(&self, event: &InputEvent, counted: Option<(u64, &AtomicU64)>) {
        {
            // Held for the lock's length: `hold_input` returns once no event is on its
            // way into the source.
            let mut held = lock(&self.held_input);
            match held.as_mut() {
                Some(kept) => {
                    if kept.len() < MAX_HELD_INPUT {
                        kept.push(*event);
                    }
                    return;
                }
                None => {
                    match &self.input_sink {
                        Some(sink) => sink.inject(event),
                        None => self.source().inject(event),
                    }
                    if let Some((index, taken)) = counted {
                        taken.store(index + 1, Ordering::SeqCst);
                    }
                }
            }
        }
        *lock(&self.last_activity) = std::time::Instant::now();
        // Pointer motion is drawn by the client itself; keys and buttons are answered
        // by the desktop, and the user waits for that answer.
        if matches!(
            event,
            InputEvent::Key { .. } | InputEvent::PointerButton { .. } | InputEvent::Wheel { .. }
        ) {
            self.input_arrived.notify_one();
        }
    }

    /// How long no viewer has given input (or joined).
    pub fn idle_for(&self) -> std::time::Duration {
        lock(&self.last_activity).elapsed()
    }

    /// Registers a new viewer; its sink starts with the whole screen pending.
    pub fn subscribe(&self) -> Arc<DamageSink> {
        *lock(&self.last_activity) = std::time::Instant::now();
        // Under the source lock: a resize cannot slip between reading the size and
        // joining the sinks it resizes.
        let _source = self.source();
        let sink = Arc::new(DamageSink::new(self.size()));
        lock(&self.sinks).push(sink.clone());
        sink
    }

    /// Sessions watching this desktop.
    pub fn viewers(&self) -> usize {
        lock(&self.sinks).len()
    }

    pub fn unsubscribe(&self, sink: &Arc<DamageSink>) {
        lock(&self.sinks).retain(|s| !Arc::ptr_eq(s, sink));
    }

    /// The source's pointer; changes are signalled to every receiver.
    pub fn cursor(&self) -> tokio::sync::watch::Receiver<Option<SourceCursor>> {
        self.cursor.subscribe()
    }

    /// Why this desktop failed (its source broke), or `None` while it works.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Polls the source once and hands its damage to every viewer. A source that fails
    /// marks the desktop failed and ends its sessions.
    pub fn capture_once(&self) -> Captured {
        let mut captured = Captured {
            damaged: false,
            waiting: false,
        };
        // The source stays locked until every sink has the damage: a session that takes
        // damage and copies pixels under the same lock then sees both or neither.
        let mut source = self.source();
        let damage = source.poll();
        if let Some(reason) = source.failure() {
            drop(source);
            let mut failure = lock(&self.failure);
            if failure.is_none() {
                tracing::error!(desktop = self.name, "desktop failed: {reason}");
                *failure = Some(reason);
                drop(failure);
                self.kick_viewers();
            }
            return captured;
        }
        captured.waiting = source.damage_waiting();
        let size = source.size();
        if size != self.size() {
            tracing::info!(
                desktop = self.name,
                "desktop resized to {}x{}",
                size.width,
                size.height
            );
            *lock(&self.size) = size;
            for sink in lock(&self.sinks).iter() {
                sink.resize(size);
            }
        }
        if let Some(cursor) = source.cursor() {
            self.cursor.send_if_modified(|current| {
                let changed = current.as_ref() != Some(cursor);
                if changed {
                    *current = Some(cursor.clone());
                }
                changed
            });
        }
        if damage.is_empty() {
            return captured;
        }
        captured.damaged = true;
        self.frames_produced.fetch_add(1, Ordering::Relaxed);
        let now = unix_micros();
        for sink in lock(&self.sinks).iter() {
            sink.add(&damage, now);
        }
        drop(source);
        captured
    }

    /// Polls the source until the returned handle is aborted: when it signals damage or
    /// a key goes in, and at its frame interval, as [`CapturePacer`] decides.
    pub fn spawn_capture_loop(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let desktop = self.clone();
        tokio::spawn(async move {
            let (interval, signal) = {
                let source = desktop.source();
                let signal = source.damage_signal().and_then(|fd| watch_fd(fd, &desktop));
                (source.frame_interval(), signal)
            };
            let mut pacer = CapturePacer::new(interval, signal.is_some(), Instant::now());
            while desktop.failure().is_none() {
                let now = Instant::now();
                let due = pacer.next_poll(now);
                // A poll due now goes at once: tokio's timers round up to the next
                // millisecond, which is most of an echo's time. After a wake, the
                // loop asks the pacer again.
                if due > now {
                    match wait(&desktop, signal.as_ref(), due).await {
                        Wake::Input => pacer.input(Instant::now()),
                        Wake::Signal => pacer.signal(),
                        Wake::Due => {}
                    }
                    continue;
                }
                let started = Instant::now();
                let d = desktop.clone();
                // Sources may take milliseconds to render or capture: keep that off the
                // async workers that move network traffic.
                match tokio::task::spawn_blocking(move || d.capture_once()).await {
                    Ok(captured) => {
                        pacer.polled(started, captured.damaged);
                        if captured.waiting {
                            pacer.signal();
                        }
                    }
                    Err(_) => {
                        tracing::error!(desktop = desktop.name(), "capture panicked; stopping");
                        return;
                    }
                }
            }
        })
    }
}

/// Why the capture loop woke up.
enum Wake {
    Input,
    Signal,
    Due,
}

async fn wait(desktop: &Desktop, signal: Option<&AsyncFd<OwnedFd>>, due: Instant) -> Wake {
    tokio::select! {
        () = desktop.input_arrived.notified() => Wake::Input,
        () = readable(signal) => Wake::Signal,
        () = tokio::time::sleep_until(due.into()) => Wake::Due,
    }
}

/// Watches a source's damage descriptor (a duplicate of it, so the source keeps its own).
fn watch_fd(fd: BorrowedFd<'_>, desktop: &Desktop) -> Option<AsyncFd<OwnedFd>> {
    let watched = match fd.try_clone_to_owned() {
        // SAFETY: the AsyncFd owns this descriptor, so it stays open and the same for
        // the AsyncFd's whole life.
        Ok(fd) => unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match watched {
        Ok(watched) => Some(watched),
        Err(e) => {
            tracing::warn!(
                desktop = desktop.name(),
                "cannot watch the source for damage, polling at every frame: {e}"
            );
            None
        }
    }
}

/// Resolves when `fd` has become readable since the last call; never without one.
async fn readable(fd: Option<&AsyncFd<OwnedFd>>) {
    let Some(fd) = fd else {
        return std::future::pending().await;
    };
    match fd.readable().await {
        // The poll reads the socket; a later arrival signals again.
        Ok(mut guard) => guard.clear_ready(),
        // Not expected for a socket; the frame interval still polls.
        Err(_) => std::future::pending().await,
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the state it
/// guards (pixels, damage bits) stays consistent at every await-free step.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
