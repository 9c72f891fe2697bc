//! A synthetic desktop: a scripted, fully deterministic screen for benchmarks and tests.
//!
//! The desktop has a gradient backdrop, a taskbar with a clock, and windows with title
//! bars; text is anti-aliased DejaVu Sans Mono. A [`Workload`] picks what happens each
//! tick (typing, scrolling, dragging, video, or all at once). The pixels after N polls
//! depend only on the [`SyntheticConfig`], N and injected input.
//!
//! Damage is exact by construction: every write to the screen goes through a canvas that
//! records the rectangle it touched (coalescing neighbours), so `poll` reports precisely
//! what changed and no more than a glyph cell, a scrolled viewport or a moved window.

mod canvas;
mod chrome;
mod config;
mod corpus;
mod damage;
mod desktop;
mod drag;
mod editor;
mod error;
mod font;
mod keymap;
mod label;
mod layout;
mod num;
mod rng;
mod scene;
mod scroller;
mod video;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use oriel_protocol::{Framebuffer, InputEvent, Rect, Size};

use self::canvas::Canvas;
use self::damage::Damage;
use self::font::{TextRenderer, FONT_PATH};
use self::keymap::{key_action, KeyAction, KEY_LEFTSHIFT, KEY_RIGHTSHIFT};
use self::scene::Scene;
use super::FrameSource;

pub use self::config::{ParseWorkloadError, SyntheticConfig, Workload};
pub use self::error::SyntheticError;

/// Input events kept for [`SyntheticSource::recorded_input`]; older ones are dropped.
const MAX_RECORDED_INPUT: usize = 10_000;
/// Key presses waiting for the next poll to be echoed; more are dropped (a source that is
/// not polled cannot show them anyway).
const MAX_PENDING_KEYS: usize = 4_096;

/// A [`FrameSource`] that draws a scripted desktop.
pub struct SyntheticSource {
    config: SyntheticConfig,
    screen: Framebuffer,
    damage: Damage,
    font: TextRenderer,
    scene: Scene,
    ticks: u64,
    sequence: u64,
    /// The initial desktop is drawn in `new`, but reported by the first poll.
    presented: bool,
    input: VecDeque<InputEvent>,
    pending_keys: VecDeque<KeyAction>,
    shift: (bool, bool),
}

impl SyntheticSource {
    /// Builds the desktop of `config` and draws its initial state.
    pub fn new(config: SyntheticConfig) -> Result<Self, SyntheticError> {
        config.validate()?;
        let mut font = TextRenderer::load(Path::new(FONT_PATH))?;
        let mut scene = Scene::new(&config, &mut font);
        let mut screen = Framebuffer::new(config.size);
        let mut damage = Damage::new(config.size);
        scene.draw(&mut Canvas::new(&mut screen, &mut damage), &mut font);
        // The first poll reports the whole screen instead.
        damage.clear();
        Ok(Self {
            config,
            screen,
            damage,
            font,
            scene,
            ticks: 0,
            sequence: 0,
            presented: false,
            input: VecDeque::new(),
            pending_keys: VecDeque::new(),
            shift: (false, false),
        })
    }

    pub fn config(&self) -> &SyntheticConfig {
        &self.config
    }

    /// Ticks of the script run so far (at most `max_ticks`).
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Every injected event, oldest first (the last 10 000).
    pub fn recorded_input(&self) -> &[InputEvent] {
        // `inject` keeps the deque contiguous, so the first slice holds everything.
        self.input.as_slices().0
    }

    /// Polls until the source shows state `seq`; false if its script ended before.
    pub fn advance_to(&mut self, seq: u64) -> bool {
        while self.sequence < seq {
            let before = self.sequence;
            self.poll();
            if self.sequence == before {
                return false;
            }
        }
        true
    }

    /// Whether the script still has ticks to play (then the screen will change again).
    pub fn script_running(&self) -> bool {
        self.config.max_ticks.is_none_or(|max| self.ticks < max)
    }

    fn record(&mut self, event: &InputEvent) {
        if self.input.len() == MAX_RECORDED_INPUT {
            self.input.pop_front();
        }
        self.input.push_back(*event);
        self.input.make_contiguous();
    }
}

impl FrameSource for SyntheticSource {
    fn size(&self) -> Size {
        self.config.size
    }

    fn frame_interval(&self) -> Duration {
        // `validate` guarantees 1..=MAX_FPS.
        Duration::from_secs(1) / self.config.fps
    }

    /// Echoes pending key presses, runs one tick of the script (unless it has ended) and
    /// returns the damage; the first call returns the whole screen.
    fn poll(&mut self) -> Vec<Rect> {
        let running = self.script_running();
        let mut canvas = Canvas::new(&mut self.screen, &mut self.damage);
        while let Some(key) = self.pending_keys.pop_front() {
            self.scene.key(&mut canvas, &mut self.font, key);
        }
        if running {
            self.ticks += 1;
            self.scene.tick(&mut canvas, &mut self.font, self.ticks);
        }
        let mut damage = self.damage.take();
        if !self.presented {
            self.presented = true;
            damage = vec![self.config.size.full_rect()];
        }
        if !damage.is_empty() {
            self.sequence += 1;
        }
        damage
    }

    fn pixels(&self) -> &Framebuffer {
        &self.screen
    }

    fn request_resize(&mut self, size: Size) -> Result<(), String> {
        if size == self.config.size {
            return Ok(());
        }
        let config = SyntheticConfig {
            size,
            ..self.config.clone()
        };
        config.validate().map_err(|e| e.to_string())?;
        // The same desktop laid out for the new size; the script goes on from here.
        let mut scene = Scene::new(&config, &mut self.font);
        let mut screen = Framebuffer::new(size);
        let mut damage = Damage::new(size);
        scene.draw(&mut Canvas::new(&mut screen, &mut damage), &mut self.font);
        damage.clear();
        (self.config, self.scene, self.screen, self.damage) = (config, scene, screen, damage);
        self.presented = false;
        Ok(())
    }

    /// Polls that returned damage: the number of distinct screen states shown so far.
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Records the event; key presses are echoed into the editor at the next poll.
    fn inject(&mut self, event: &InputEvent) {
        self.record(event);
        let InputEvent::Key { code, down } = *event else {
            return;
        };
        match code {
            KEY_LEFTSHIFT => self.shift.0 = down,
            KEY_RIGHTSHIFT => self.shift.1 = down,
            _ if down => {
                let shift = self.shift.0 || self.shift.1;
                if let Some(action) = key_action(code, shift) {
                    if self.pending_keys.len() < MAX_PENDING_KEYS {
                        self.pending_keys.push_back(action);
                    }
                }
            }
            _ => {}
        }
    }
}
