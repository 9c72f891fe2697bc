//! Criterion benches of each codec, the tile differ and the whole frame encoder, on
//! content from the synthetic desktops.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use oriel_display_server::source::synthetic::{SyntheticConfig, SyntheticSource, Workload};
use oriel_display_server::source::FrameSource;
use oriel_protocol::codec::cache::tile_key;
use oriel_protocol::codec::motion::candidate_vectors;
use oriel_protocol::codec::stream::StreamEncoder;
use oriel_protocol::codec::{palette, Encoder, EncoderConfig, FrameMeta};
use oriel_protocol::{Framebuffer, Rect, TileMask};

/// The screen of `workload` after `ticks` polls, and the one before it with the damage.
fn frames(workload: Workload, ticks: u64) -> (Framebuffer, Framebuffer, TileMask) {
    let mut source = SyntheticSource::new(SyntheticConfig {
        workload,
        max_ticks: None,
        ..Default::default()
    })
    .expect("synthetic source (needs fonts-dejavu-core)");
    for _ in 0..ticks {
        source.poll();
    }
    let before = source.pixels().clone();
    let damage = source.poll();
    let mut mask = TileMask::new(source.size());
    for r in &damage {
        mask.mark_rect(r);
    }
    (before, source.pixels().clone(), mask)
}

fn text_tile(fb: &Framebuffer, mask: &TileMask) -> Vec<u32> {
    let (c, r) = mask.iter().next().expect("damage");
    let mut out = Vec::new();
    fb.read_rect(&mask.tile_rect(c, r), &mut out);
    out
}

fn codecs(c: &mut Criterion) {
    let (_, typed, mask) = frames(Workload::Typing, 60);
    let tile = text_tile(&typed, &mask);
    let bytes: Vec<u8> = tile.iter().flat_map(|p| p.to_le_bytes()).collect();
    let mut g = c.benchmark_group("tile_codecs");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("palette_encode", |b| {
        b.iter(|| {
            let pal = palette::collect_palette(black_box(&tile), 256);
            let mut out = Vec::new();
            if let Some(p) = pal {
                palette::encode(&tile, &p, &mut out);
            }
            out
        })
    });
    let pal = palette::collect_palette(&tile, 256);
    if let Some(p) = &pal {
        let mut enc = Vec::new();
        palette::encode(&tile, p, &mut enc);
        g.bench_function("palette_decode", |b| {
            let mut out = vec![0u32; tile.len()];
            b.iter(|| palette::decode(black_box(&enc), &mut out))
        });
    }
    g.bench_function("zstd1_stream_chunk", |b| {
        let mut enc = StreamEncoder::new(1).unwrap();
        b.iter(|| {
            let mut out = Vec::new();
            enc.compress_chunk(black_box(&bytes), &mut out).unwrap();
            out
        })
    });
    g.bench_function("lz4_block", |b| {
        b.iter(|| lz4_flex::block::compress(black_box(&bytes)))
    });
    g.bench_function("tile_key_xxh3", |b| {
        b.iter(|| tile_key(&Rect::new(0, 0, 64, 64), black_box(&tile)))
    });
    g.finish();
}

/// Diffing damaged tiles against the client's copy versus copying them.
fn differ(c: &mut Criterion) {
    let (before, after, _) = frames(Workload::Video, 5);
    let size = after.size();
    let full = TileMask::full(size);
    let mut g = c.benchmark_group("damage_diff");
    g.throughput(Throughput::Bytes(size.area() * 4));
    g.bench_function("diff_all_tiles", |b| {
        b.iter(|| {
            full.iter()
                .filter(|(c, r)| !after.rect_eq(&before, &full.tile_rect(*c, *r)))
                .count()
        })
    });
    g.bench_function("memcpy_all_tiles", |b| {
        let mut dst = before.clone();
        b.iter(|| {
            for (c, r) in full.iter() {
                dst.copy_rect_from(&after, &full.tile_rect(c, r));
            }
        })
    });
    g.finish();
}

fn encoder(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_encode");
    g.sample_size(20);
    for workload in [
        Workload::Typing,
        Workload::Scroll,
        Workload::Drag,
        Workload::Video,
    ] {
        let (before, after, mask) = frames(workload, 40);
        g.bench_with_input(
            BenchmarkId::from_parameter(workload.name()),
            &workload,
            |b, _| {
                b.iter_batched(
                    || {
                        let mut enc =
                            Encoder::new(before.size(), EncoderConfig::default()).unwrap();
                        enc.encode(
                            &before,
                            &TileMask::full(before.size()),
                            FrameMeta::default(),
                        )
                        .unwrap();
                        enc
                    },
                    |mut enc| enc.encode(&after, &mask, FrameMeta::default()).unwrap(),
                    criterion::BatchSize::LargeInput,
                )
            },
        );
    }
    let (before, after, mask) = frames(Workload::Scroll, 40);
    g.bench_function("motion_search_scroll", |b| {
        let region = mask.bounds();
        b.iter(|| candidate_vectors(&before, &after, &region, &[]))
    });
    g.finish();
}

/// One poll of each synthetic workload at 1080p (what the source costs the server).
fn synthetic_poll(c: &mut Criterion) {
    let mut g = c.benchmark_group("synthetic_poll");
    for workload in Workload::ALL {
        let mut source = SyntheticSource::new(SyntheticConfig {
            workload,
            max_ticks: None,
            ..Default::default()
        })
        .expect("synthetic source");
        source.poll();
        g.bench_function(workload.name(), |b| b.iter(|| source.poll()));
    }
    g.finish();
}

criterion_group!(benches, codecs, differ, encoder, synthetic_poll);
criterion_main!(benches);
