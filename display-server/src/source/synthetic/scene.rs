//! The desktop of one workload: which windows exist, how they are first drawn, and what
//! each tick and each key press changes.

use super::canvas::Canvas;
use super::chrome::{client_rect, draw_static_text, draw_window, text_columns};
use super::config::{SyntheticConfig, Workload};
use super::corpus::Corpus;
use super::desktop::{work_area, Desktop};
use super::drag::{DragSchedule, DragWindow};
use super::editor::Editor;
use super::font::TextRenderer;
use super::keymap::KeyAction;
use super::layout::layout;
use super::scroller::ScrollView;
use super::video::VideoPanel;

/// Characters the editor types per tick (60 characters/s at 30 fps).
const TYPING_CHARS_PER_TICK: u32 = 2;
/// Pixels the viewer scrolls per tick (a new 18 px line every three ticks).
const SCROLL_PX_PER_TICK: u32 = 6;
/// In the mixed workload the window is dragged for 2.5 s out of every 5 s (at 30 fps).
const MIXED_DRAG: DragSchedule = DragSchedule::Occasional {
    moving: 75,
    period: 150,
};

/// Fixed seeds: content depends only on the configuration.
const EDITOR_SEED: u64 = 0x5EED_0001;
const DOCUMENT_SEED: u64 = 0x5EED_0002;
const DRAG_SEED: u64 = 0x5EED_0003;
const BACKDROP_SEED: u64 = 0x5EED_0004;
const VIDEO_SEED: u64 = 0x5EED_0005;

pub(crate) struct Scene {
    pub(crate) desktop: Desktop,
    pub(crate) editor: Option<Editor>,
    pub(crate) document: Option<ScrollView>,
    pub(crate) video: Option<VideoPanel>,
    pub(crate) drag: Option<DragWindow>,
}

impl Scene {
    pub(crate) fn new(config: &SyntheticConfig, font: &mut TextRenderer) -> Self {
        let size = config.size;
        let plan = layout(config.workload, work_area(size));

        let editor = plan.editor.map(|frame| {
            Editor::new(
                frame,
                "notes.md — Editor",
                TYPING_CHARS_PER_TICK,
                EDITOR_SEED,
                font,
            )
        });
        let document = plan.document.map(|frame| {
            let (title, speed) = match config.workload {
                Workload::Scroll => ("server.log — Viewer", SCROLL_PX_PER_TICK),
                _ => ("README.md — Viewer", 0),
            };
            ScrollView::new(frame, title, speed, DOCUMENT_SEED, font)
        });
        let video = plan.video.map(|(frame, picture)| {
            VideoPanel::new(frame, picture, "Camera — Meeting", VIDEO_SEED)
        });
        let schedule = match config.workload {
            Workload::Mixed => MIXED_DRAG,
            _ => DragSchedule::Continuous,
        };
        let drag = plan.drag.map(|p| {
            DragWindow::new(
                p.zone,
                p.window,
                "Files — Downloads",
                schedule,
                DRAG_SEED,
                font,
            )
        });

        let mut titles: Vec<String> = Vec::new();
        titles.extend(editor.iter().map(|e| e.title().to_owned()));
        titles.extend(document.iter().map(|d| d.title().to_owned()));
        titles.extend(drag.iter().map(|d| d.title().to_owned()));
        titles.extend(video.iter().map(|v| v.title().to_owned()));
        let backdrop_title = "Terminal — build";
        if plan.backdrop_window.is_some() {
            titles.push(backdrop_title.to_owned());
        }
        // Windows that stay put hide the desktop icons below them.
        let fixed_windows: Vec<_> = [plan.editor, plan.document, plan.backdrop_window]
            .into_iter()
            .chain([plan.video.map(|(frame, _)| frame)])
            .flatten()
            .collect();
        let mut desktop = Desktop::new(size, config.fps, titles, &fixed_windows, font);
        if let Some(frame) = plan.backdrop_window {
            desktop.bake(|canvas| {
                draw_window(canvas, font, frame, backdrop_title, false);
                let client = client_rect(frame);
                let mut corpus = Corpus::new(BACKDROP_SEED, text_columns(client, font));
                draw_static_text(canvas, font, client, &mut corpus);
            });
        }
        Self {
            desktop,
            editor,
            document,
            video,
            drag,
        }
    }

    /// Draws the whole desktop as it is before the first tick.
    pub(crate) fn draw(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer) {
        self.desktop.draw(canvas, font);
        if let Some(editor) = &mut self.editor {
            editor.draw(canvas, font);
        }
        if let Some(document) = &mut self.document {
            document.draw(canvas, font);
        }
        if let Some(video) = &mut self.video {
            video.draw(canvas, font);
        }
        if let Some(drag) = &self.drag {
            drag.draw(canvas);
        }
    }

    /// Advances every animated part to `tick` (1 for the first tick).
    pub(crate) fn tick(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer, tick: u64) {
        self.desktop.tick(canvas, font, tick);
        if let Some(editor) = &mut self.editor {
            editor.tick(canvas, font);
        }
        if let Some(document) = &mut self.document {
            document.tick(canvas, font);
        }
        if let Some(video) = &mut self.video {
            video.tick(canvas, tick);
        }
        if let Some(drag) = &mut self.drag {
            drag.tick(canvas, &self.desktop, tick);
        }
    }

    /// Echoes a key press into the editor, if there is one.
    pub(crate) fn key(&mut self, canvas: &mut Canvas<'_>, font: &mut TextRenderer, key: KeyAction) {
        if let Some(editor) = &mut self.editor {
            editor.key(canvas, font, key);
        }
    }
}
