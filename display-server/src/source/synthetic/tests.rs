//! Behaviour of the synthetic source: determinism, exact damage, script end, input echo,
//! and the geometry of drags and scrolls.

use oriel_protocol::{Framebuffer, InputEvent, Rect, Size};

use super::canvas::Canvas;
use super::chrome::colors;
use super::{FrameSource, SyntheticConfig, SyntheticError, SyntheticSource, Workload};

fn source(workload: Workload, size: Size, max_ticks: Option<u64>) -> SyntheticSource {
    let config = SyntheticConfig {
        workload,
        size,
        max_ticks,
        ..SyntheticConfig::default()
    };
    SyntheticSource::new(config).expect("synthetic source (is fonts-dejavu-core installed?)")
}

const HD: Size = Size::new(1920, 1080);

/// Asserts every pixel that differs between `before` and `after` lies in `damage`, and
/// returns the damaged area.
fn assert_exact(before: &Framebuffer, after: &Framebuffer, damage: &[Rect], what: &str) -> u64 {
    let size = after.size();
    let width = size.width as usize;
    let mut covered = vec![false; size.pixel_count()];
    for r in damage {
        assert!(!r.is_empty() && r.fits_in(size), "{what}: bad rect {r:?}");
        for y in r.y..r.y + r.height {
            let start = y as usize * width + r.x as usize;
            covered[start..start + r.width as usize].fill(true);
        }
    }
    let changed = before.pixels().iter().zip(after.pixels());
    for (i, ((a, b), &inside)) in changed.zip(&covered).enumerate() {
        assert!(
            a == b || inside,
            "{what}: pixel ({}, {}) changed outside the damage {damage:?}",
            i % width,
            i / width
        );
    }
    covered.iter().filter(|&&c| c).count() as u64
}

/// Polls once and checks the damage against the previous screen; returns the damage.
fn poll_checked(src: &mut SyntheticSource, what: &str) -> (Vec<Rect>, u64) {
    let before = src.pixels().clone();
    let damage = src.poll();
    let area = assert_exact(&before, src.pixels(), &damage, what);
    (damage, area)
}

fn key(code: u16) -> [InputEvent; 2] {
    [
        InputEvent::Key { code, down: true },
        InputEvent::Key { code, down: false },
    ]
}

#[test]
fn workload_names_round_trip() {
    for w in Workload::ALL {
        assert_eq!(w.name().parse::<Workload>(), Ok(w));
        assert_eq!(w.name().to_uppercase().parse::<Workload>(), Ok(w));
    }
    let err = "bogus"
        .parse::<Workload>()
        .expect_err("unknown name")
        .to_string();
    for w in Workload::ALL {
        assert!(err.contains(w.name()), "{err}");
    }
}

#[test]
fn bad_configs_are_errors() {
    let with = |size: Size, fps: u32| {
        SyntheticSource::new(SyntheticConfig {
            size,
            fps,
            ..SyntheticConfig::default()
        })
    };
    for size in [Size::new(0, 0), Size::new(1920, 0), Size::new(639, 480)] {
        assert!(matches!(with(size, 30), Err(SyntheticError::TooSmall(_))));
    }
    for size in [Size::new(8193, 600), Size::new(8192, 8192)] {
        assert!(matches!(with(size, 30), Err(SyntheticError::TooLarge(_))));
    }
    assert!(matches!(with(HD, 0), Err(SyntheticError::BadFps(0))));
    let message = with(Size::new(10, 10), 30).err().map(|e| e.to_string());
    assert!(message.is_some_and(|m| m.contains("10x10") && m.contains("640x480")));
}

#[test]
fn frame_interval_follows_fps() {
    let mut config = SyntheticConfig::default();
    assert_eq!(config.fps, 30);
    config.fps = 60;
    let src = SyntheticSource::new(config).expect("source");
    assert_eq!(src.frame_interval(), std::time::Duration::from_secs(1) / 60);
    assert_eq!(src.size(), HD);
}

#[test]
fn first_poll_is_full_screen() {
    for w in Workload::ALL {
        let mut src = source(w, HD, None);
        assert_eq!(src.sequence(), 0);
        assert_eq!(src.poll(), vec![HD.full_rect()], "{w}");
        assert_eq!((src.sequence(), src.ticks()), (1, 1));
    }
}

#[test]
fn same_config_same_pixels() {
    for w in Workload::ALL {
        let mut a = source(w, HD, None);
        let mut b = source(w, HD, None);
        for i in 0..40 {
            if i == 20 {
                for event in key(35).iter().chain(&key(23)) {
                    a.inject(event);
                    b.inject(event);
                }
            }
            assert_eq!(a.poll(), b.poll(), "{w} tick {i}");
        }
        assert!(a.pixels() == b.pixels(), "{w}: framebuffers differ");
        assert_eq!(a.sequence(), b.sequence());
    }
}

#[test]
fn damage_is_exact_and_tight_for_every_workload() {
    let screen = HD.area();
    for w in Workload::ALL {
        let mut src = source(w, HD, None);
        src.poll();
        let mut largest = 0;
        for i in 0..60 {
            if i == 30 {
                for event in key(30).iter().chain(&key(28)).chain(&key(57)) {
                    src.inject(event);
                }
            }
            let (_, area) = poll_checked(&mut src, &format!("{w} tick {i}"));
            largest = largest.max(area);
        }
        // Upper bounds per tick: a few glyph cells, one viewport, a window plus its
        // uncovered strips, one video picture.
        let limit = match w {
            Workload::Idle => 2_000,
            Workload::Typing => screen / 100,
            Workload::Scroll => 1_000 * 900,
            Workload::Drag => 640 * 440,
            Workload::Video => 1_280 * 720 + 2_000,
            Workload::Mixed => 640 * 360 + 440 * 300 + screen / 100,
        };
        assert!(
            largest <= limit,
            "{w}: {largest} px damaged in one tick (limit {limit})"
        );
    }
}

#[test]
fn idle_only_changes_the_clock_once_a_second() {
    let mut src = source(Workload::Idle, HD, None);
    src.poll();
    let mut damaged_ticks = Vec::new();
    for _ in 0..90 {
        let (damage, _) = poll_checked(&mut src, "idle");
        if !damage.is_empty() {
            damaged_ticks.push(src.ticks());
        }
    }
    assert_eq!(damaged_ticks, vec![30, 60, 90]);
}

#[test]
fn script_stops_after_max_ticks() {
    for w in Workload::ALL {
        let mut src = source(w, Size::new(800, 600), Some(8));
        for _ in 0..8 {
            src.poll();
        }
        let (frozen, sequence) = (src.pixels().clone(), src.sequence());
        for _ in 0..5 {
            assert!(src.poll().is_empty(), "{w}");
        }
        assert!(
            *src.pixels() == frozen,
            "{w}: pixels changed after the script ended"
        );
        assert_eq!((src.ticks(), src.sequence()), (8, sequence));
    }
}

#[test]
fn typed_keys_are_echoed_into_the_editor() {
    for w in [Workload::Typing, Workload::Mixed] {
        let mut src = source(w, HD, Some(3));
        for _ in 0..4 {
            src.poll();
        }
        let Some(editor) = &src.scene.editor else {
            panic!("{w} has an editor");
        };
        let first = editor.caret_cell(&src.font);
        let text_area = editor.text_area();
        // Shift+H, i: "Hi".
        let shift = |down| InputEvent::Key { code: 42, down };
        for event in [shift(true)]
            .iter()
            .chain(&key(35))
            .chain(&[shift(false)])
            .chain(&key(23))
        {
            src.inject(event);
        }
        let (damage, _) = poll_checked(&mut src, "echo");
        assert!(!damage.is_empty());
        for (i, c) in (0u32..).zip(['H', 'i']) {
            let cell = Rect::new(
                first.x + i * first.width,
                first.y,
                first.width,
                first.height,
            );
            let mut expected = Framebuffer::new(Size::new(cell.width, cell.height));
            let mut canvas = Canvas::offscreen(&mut expected);
            src.font
                .draw_char(&mut canvas, (0, 0), c, (colors::TEXT, colors::CLIENT_BG));
            let mut actual = Vec::new();
            src.pixels().read_rect(&cell, &mut actual);
            assert_eq!(actual, expected.pixels(), "{w}: echoed {c:?}");
        }
        // Keys alone, after the script ended: the caret moved two cells.
        let Some(editor) = &src.scene.editor else {
            unreachable!()
        };
        assert_eq!(editor.caret_cell(&src.font).x, first.x + 2 * first.width);
        assert!(text_area.intersect(&first) == first);
        assert_eq!(src.recorded_input().len(), 6);
    }
}

#[test]
fn enter_scrolls_a_full_page_with_exact_damage() {
    let mut src = source(Workload::Typing, Size::new(640, 480), None);
    src.poll();
    for round in 0..4 {
        for _ in 0..12 {
            for event in key(28).iter().chain(&key(2)) {
                src.inject(event);
            }
        }
        poll_checked(&mut src, &format!("enter round {round}"));
    }
    // Backspace at the start of a line and mid-line.
    for event in key(14).iter().chain(&key(14)).chain(&key(14)) {
        src.inject(event);
    }
    poll_checked(&mut src, "backspace");
}

#[test]
fn recorded_input_is_bounded() {
    let mut src = source(Workload::Idle, Size::new(640, 480), None);
    for i in 0..10_050u32 {
        src.inject(&InputEvent::PointerMove { x: i, y: 0 });
    }
    let recorded = src.recorded_input();
    assert_eq!(recorded.len(), 10_000);
    assert_eq!(recorded[0], InputEvent::PointerMove { x: 50, y: 0 });
    assert_eq!(recorded[9_999], InputEvent::PointerMove { x: 10_049, y: 0 });
}

#[test]
fn dragged_window_keeps_its_content() {
    let mut src = source(Workload::Drag, HD, None);
    src.poll();
    let Some(start) = src.scene.drag.as_ref().map(|d| d.rect()) else {
        panic!("drag workload has a dragged window");
    };
    let mut window = Vec::new();
    src.pixels().read_rect(&start, &mut window);
    for _ in 0..10 {
        src.poll();
    }
    let Some(end) = src.scene.drag.as_ref().map(|d| d.rect()) else {
        unreachable!()
    };
    assert!(
        end.x.abs_diff(start.x) >= 20 && end.y.abs_diff(start.y) >= 10,
        "{start:?} -> {end:?}"
    );
    let mut moved = Vec::new();
    src.pixels().read_rect(&end, &mut moved);
    assert!(moved == window, "window content changed while dragged");
}

#[test]
fn scroll_moves_content_by_exactly_dy() {
    let dy = 6;
    let mut src = source(Workload::Scroll, HD, None);
    src.poll();
    src.poll();
    let Some(view) = src.scene.document.as_ref().map(|d| d.viewport()) else {
        panic!("scroll workload has a document");
    };
    let before = src.pixels().clone();
    let damage = src.poll();
    assert!(
        damage.contains(&view),
        "{damage:?} should be the viewport {view:?}"
    );
    for y in 0..view.height - dy {
        assert_eq!(
            src.pixels().row(&view, y),
            before.row(&view, y + dy),
            "row {y}"
        );
    }
    // The new rows are not simply stale copies of the old bottom.
    let bottom = view.height - 1;
    assert!((bottom - dy..=bottom).any(|y| src.pixels().row(&view, y) != before.row(&view, y)));
}

#[test]
fn long_scroll_and_mixed_runs_stay_exact_on_small_screens() {
    for w in [Workload::Scroll, Workload::Mixed] {
        let mut src = source(w, Size::new(640, 480), None);
        src.poll();
        for i in 0..200 {
            poll_checked(&mut src, &format!("{w} tick {i}"));
        }
    }
}

#[test]
fn video_changes_nearly_every_pixel_every_tick() {
    let mut src = source(Workload::Video, HD, None);
    src.poll();
    let Some(region) = src.scene.video.as_ref().map(|v| v.region()) else {
        panic!("video workload has a video");
    };
    assert_eq!((region.width, region.height), (1280, 720));
    for _ in 0..3 {
        let before = src.pixels().clone();
        src.poll();
        let changed = (0..region.height)
            .map(|y| {
                let (a, b) = (before.row(&region, y), src.pixels().row(&region, y));
                a.iter().zip(b).filter(|(p, q)| p != q).count()
            })
            .sum::<usize>();
        assert!(
            changed as u64 * 100 > region.area() * 90,
            "only {changed} pixels changed"
        );
    }
}

#[test]
fn odd_sizes_work_for_every_workload() {
    let sizes = [
        Size::new(640, 480),
        Size::new(641, 483),
        Size::new(1024, 768),
        Size::new(1366, 768),
        Size::new(4000, 480),
        Size::new(640, 2000),
    ];
    for size in sizes {
        for w in Workload::ALL {
            let mut src = source(w, size, None);
            assert_eq!(src.poll(), vec![size.full_rect()]);
            for i in 0..4 {
                for event in key(30).iter().chain(&key(28)) {
                    src.inject(event);
                }
                poll_checked(&mut src, &format!("{w} {size:?} tick {i}"));
            }
        }
    }
}
