//! Encoder → wire → decoder round trips: the client must end pixel-exact.

use oriel_protocol::codec::{Decoder, Encoder, EncoderConfig, FrameMeta};
use oriel_protocol::wire::{encode_message, MessageReader};
use oriel_protocol::*;
use proptest::prelude::*;

struct Pair {
    enc: Encoder,
    dec: Decoder,
}

impl Pair {
    fn new(size: Size, caps: Capabilities) -> Self {
        Self {
            enc: Encoder::new(
                size,
                EncoderConfig {
                    capabilities: caps,
                    zstd_level: 1,
                },
            )
            .unwrap(),
            dec: Decoder::new(size, caps).unwrap(),
        }
    }

    /// Encodes, sends through the wire framing and decodes; returns the frame if any.
    fn send(&mut self, screen: &Framebuffer, damage: &TileMask) -> Option<FrameMsg> {
        let frame = self
            .enc
            .encode(screen, damage, FrameMeta::default())
            .unwrap()?;
        let limit = Channel::Display.max_message_len();
        let bytes = encode_message(&frame.msg, limit).unwrap();
        let mut reader = MessageReader::new(limit);
        reader.push(&bytes);
        let msg: FrameMsg = reader.next_message().unwrap().unwrap();
        self.dec.apply(&msg).unwrap();
        assert_eq!(self.dec.framebuffer(), self.enc.client_view());
        Some(msg)
    }
}

fn noise(fb: &mut Framebuffer, rect: &Rect, seed: u32) {
    let mut s = seed | 1;
    for dy in 0..rect.height {
        for p in fb.row_mut(rect, dy) {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            *p = s & 0xff_ffff;
        }
    }
}

/// A page of "text": short dark runs on white, like glyphs.
fn text_page(fb: &mut Framebuffer, rect: &Rect, first_line: u32) {
    fb.fill(rect, 0xffffff);
    for dy in 0..rect.height {
        let line = (dy + first_line) / 16;
        let row = fb.row_mut(rect, dy);
        for (x, p) in (0u32..).zip(row.iter_mut()) {
            let glyph = (x / 8).wrapping_mul(2654435761).wrapping_add(line * 97);
            if (dy + first_line) % 16 < 11 && !(glyph >> 7).is_multiple_of(3) && (x + glyph) % 5 < 2
            {
                *p = 0x202020 + ((glyph >> 3) & 0x3f) * 0x010101;
            }
        }
    }
}

#[test]
fn scroll_is_sent_as_moves() {
    let size = Size::new(640, 480);
    let mut pair = Pair::new(size, Capabilities::all());
    let window = Rect::new(64, 32, 512, 384);
    let mut screen = Framebuffer::new(size);
    text_page(&mut screen, &window, 0);
    pair.send(&screen, &TileMask::full(size));
    let mut total_copies = 0;
    for step in 1..10 {
        text_page(&mut screen, &window, step * 8);
        let mut damage = TileMask::new(size);
        damage.mark_rect(&window);
        let msg = pair.send(&screen, &damage).unwrap();
        total_copies += msg.copies.len();
        assert!(
            msg.payload.len() < 8 * 1024,
            "scroll step {step} cost {} bytes",
            msg.payload.len()
        );
    }
    assert!(total_copies > 0);
}

#[test]
fn repeated_content_hits_the_cache() {
    let size = Size::new(256, 256);
    let mut pair = Pair::new(size, Capabilities::all());
    let mut a = Framebuffer::new(size);
    noise(&mut a, &size.full_rect(), 1);
    let b = Framebuffer::new(size);
    pair.send(&a, &TileMask::full(size));
    pair.send(&b, &TileMask::full(size));
    let msg = pair.send(&a, &TileMask::full(size)).unwrap();
    let hits = msg
        .updates
        .iter()
        .filter(|u| matches!(u.kind, UpdateKind::CacheHit(_)))
        .count();
    assert_eq!(hits, 16);
    assert!(msg.payload.is_empty());
}

#[test]
fn refresh_resends_every_tile_without_moves() {
    let size = Size::new(256, 192);
    let mut pair = Pair::new(size, Capabilities::all());
    let mut screen = Framebuffer::new(size);
    noise(&mut screen, &Rect::new(0, 0, 256, 100), 5);
    pair.send(&screen, &TileMask::full(size));
    assert!(pair.send(&screen, &TileMask::full(size)).is_none());
    pair.enc.resend_everything();
    let msg = pair.send(&screen, &TileMask::full(size)).unwrap();
    assert!(msg.copies.is_empty());
    let covered: u64 = msg.updates.iter().map(|u| u.rect.area()).sum();
    assert_eq!(covered, size.area());
}

#[test]
fn undamaged_changes_are_not_sent_and_unchanged_damage_sends_nothing() {
    let size = Size::new(128, 128);
    let mut pair = Pair::new(size, Capabilities::all());
    let screen = Framebuffer::new(size);
    assert!(pair.send(&screen, &TileMask::full(size)).is_none());
}

#[test]
fn works_with_only_raw_codec() {
    let size = Size::new(200, 130);
    let caps = Capabilities {
        flags: CAP_ZSTD,
        tile_cache_entries: 0,
    };
    let mut pair = Pair::new(size, caps);
    let mut screen = Framebuffer::new(size);
    noise(&mut screen, &Rect::new(10, 10, 150, 100), 3);
    screen.fill(&Rect::new(0, 0, 200, 5), 0x123456);
    let msg = pair.send(&screen, &TileMask::full(size)).unwrap();
    assert!(msg
        .updates
        .iter()
        .all(|u| matches!(u.kind, UpdateKind::Raw)));
}

#[test]
fn decoder_refuses_out_of_bounds_and_unknown_cache_keys() {
    let size = Size::new(128, 128);
    let mut dec = Decoder::new(size, Capabilities::all()).unwrap();
    let mut msg = FrameMsg {
        frame_id: 1,
        source_seq: 0,
        capture_unix_us: 0,
        resize: None,
        copies: vec![],
        video_ended: vec![],
        updates: vec![RectUpdate {
            rect: Rect::new(100, 100, 64, 64),
            kind: UpdateKind::Solid(0),
        }],
        payload: vec![],
    };
    assert!(dec.apply(&msg).is_err());
    msg.updates[0] = RectUpdate {
        rect: Rect::new(64, 64, 64, 64),
        kind: UpdateKind::CacheHit(42),
    };
    assert!(dec.apply(&msg).is_err());
    msg.updates.clear();
    msg.copies.push(CopyRect {
        dst: Rect::new(0, 0, 64, 64),
        src_x: 100,
        src_y: 0,
    });
    assert!(dec.apply(&msg).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random edits (fills, noise, moved blocks) with exact damage always end pixel-exact.
    #[test]
    fn random_edits_round_trip(edits in proptest::collection::vec(
        (0u8..3, 0u32..300, 0u32..200, 1u32..200, 1u32..150, any::<u32>()), 1..12)) {
        let size = Size::new(300, 200);
        let mut pair = Pair::new(size, Capabilities::all());
        let mut screen = Framebuffer::new(size);
        noise(&mut screen, &Rect::new(0, 0, 300, 100), 99);
        pair.send(&screen, &TileMask::full(size));
        for (kind, x, y, w, h, seed) in edits {
            let rect = Rect::new(x, y, w, h).intersect(&size.full_rect());
            if rect.is_empty() { continue; }
            let mut damage = TileMask::new(size);
            match kind {
                0 => screen.fill(&rect, seed & 0xffffff),
                1 => noise(&mut screen, &rect, seed),
                _ => {
                    // Move a block by a small vector, like a drag.
                    let before = screen.clone();
                    let (dx, dy) = ((seed % 21) as i64 - 10, ((seed >> 8) % 21) as i64 - 10);
                    for yy in rect.y..rect.y + rect.height {
                        for xx in rect.x..rect.x + rect.width {
                            let (sx, sy) = (u32::try_from(i64::from(xx) - dx), u32::try_from(i64::from(yy) - dy));
                            if let (Ok(sx), Ok(sy)) = (sx, sy) {
                                if sx < size.width && sy < size.height {
                                    screen.set_pixel(xx, yy, before.pixel(sx, sy));
                                }
                            }
                        }
                    }
                }
            }
            damage.mark_rect(&rect);
            pair.send(&screen, &damage);
        }
        prop_assert_eq!(pair.dec.framebuffer(), &screen);
    }

    /// Arbitrary bytes as a frame message never panic the decoder.
    #[test]
    fn garbage_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut dec = Decoder::new(Size::new(256, 256), Capabilities::all()).unwrap();
        if let Ok(msg) = oriel_protocol::wire::decode_body::<FrameMsg>(&bytes) {
            let _ = dec.apply(&msg);
        }
    }
}

#[test]
fn video_regions_are_left_alone_then_sent_exactly_when_they_end() {
    let size = Size::new(256, 192);
    let mut p = Pair::new(size, Capabilities::all());
    let mut screen = Framebuffer::new(size);
    text_page(&mut screen, &size.full_rect(), 0);
    p.send(&screen, &TileMask::full(size)).unwrap();

    let video = Rect::new(40, 30, 130, 100);
    p.enc.set_video_regions(&[video]);
    for i in 0..3u32 {
        noise(&mut screen, &video, i + 1);
        screen.fill(&Rect::new(200, 150, 10, 10), 0x112233 + i);
        let msg = p.send(&screen, &TileMask::full(size)).unwrap();
        assert!(msg.updates.iter().all(|u| !u.rect.intersects(&video)));
        for c in &msg.copies {
            let src = Rect::new(c.src_x, c.src_y, c.dst.width, c.dst.height);
            assert!(!c.dst.intersects(&video) && !src.intersects(&video));
        }
    }
    // What a lossy video decoder left in the region.
    let mut lossy = Vec::new();
    screen.read_rect(&video, &mut lossy);
    for px in &mut lossy {
        *px ^= 0x010101;
    }
    p.dec.blit(&video, &lossy).unwrap();
    assert_ne!(p.dec.framebuffer(), &screen);

    // The region ends: its pixels go out exactly, with no new damage at all.
    p.enc.set_video_regions(&[]);
    assert!(p.enc.has_refinement());
    let frame = p
        .enc
        .encode(&screen, &TileMask::new(size), FrameMeta::default())
        .unwrap()
        .expect("a refinement frame");
    p.dec.apply(&frame.msg).unwrap();
    assert_eq!(p.dec.framebuffer(), &screen);
    assert!(!p.enc.has_refinement());
}

#[test]
fn a_resize_repaints_the_new_size_exactly() {
    let mut pair = Pair::new(Size::new(256, 192), Capabilities::all());
    let mut screen = Framebuffer::new(Size::new(256, 192));
    text_page(&mut screen, &Rect::new(0, 0, 256, 192), 0);
    pair.send(&screen, &TileMask::full(screen.size())).unwrap();

    for (width, height) in [(400, 130), (64, 64), (333, 217)] {
        let size = Size::new(width, height);
        let mut bigger = Framebuffer::new(size);
        // Half black (which a fresh client already has), half text.
        text_page(&mut bigger, &Rect::new(0, 0, width / 2, height), 3);
        pair.enc.resize(size);
        let msg = pair.send(&bigger, &TileMask::full(size)).unwrap();
        assert_eq!(msg.resize, Some(size));
        assert!(msg.copies.is_empty());
        assert_eq!(pair.dec.framebuffer(), &bigger);
    }
    // A resize to an all-black screen still goes out.
    let size = Size::new(128, 96);
    pair.enc.resize(size);
    let msg = pair
        .send(&Framebuffer::new(size), &TileMask::full(size))
        .expect("a frame announcing the size");
    assert_eq!((msg.resize, msg.updates.len()), (Some(size), 0));
    assert_eq!(pair.dec.framebuffer().size(), size);
}

#[test]
fn the_decoder_refuses_impossible_sizes() {
    let mut dec = Decoder::new(Size::new(64, 64), Capabilities::all()).unwrap();
    for size in [
        Size::new(0, 10),
        Size::new(10, 0),
        Size::new(100_000, 100_000),
    ] {
        let msg = FrameMsg {
            frame_id: 1,
            source_seq: 0,
            capture_unix_us: 0,
            resize: Some(size),
            copies: vec![],
            video_ended: vec![],
            updates: vec![],
            payload: vec![],
        };
        assert!(dec.apply(&msg).is_err(), "{size:?}");
    }
    assert_eq!(dec.framebuffer().size(), Size::new(64, 64));
}
