//! `/metrics` of the display server in the OpenMetrics text format, by
//! `prometheus-client`. The figures live where they are kept (the [`ServerStats`]
//! atomics, the session slots, each desktop and its source); a [`Collector`] reads them
//! when the registry is encoded, so nothing is counted twice.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::shared::Shared;
use crate::source::{MetricKind, SourceMetric};
use crate::stats::ServerStats;

/// The HTTP content type of what [`encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry of a display server: one collector over its shared state.
pub(crate) fn registry(shared: Arc<Shared>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ServerCollector { shared }));
    registry
}

/// The OpenMetrics text of `registry`, ending in `# EOF`.
pub(crate) fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!("cannot encode the metrics: {e}");
    }
    text
}

struct ServerCollector {
    shared: Arc<Shared>,
}

impl fmt::Debug for ServerCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCollector").finish_non_exhaustive()
    }
}

impl Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let shared = &self.shared;
        encode_stats(&mut encoder, &shared.stats)?;
        gauge(
            &mut encoder,
            "oriel_sessions_active",
            "Connected sessions",
            u64::try_from(shared.slots.active()).unwrap_or(u64::MAX),
        )?;
        let desktops = shared.desktops.list();
        counter(
            &mut encoder,
            "oriel_source_frames",
            "Source polls that produced damage",
            desktops.iter().map(|d| d.frames_produced()).sum(),
        )?;
        // Each source is locked only to copy its figures out.
        let figures: Vec<(String, Vec<SourceMetric>)> = desktops
            .iter()
            .map(|d| (d.name().to_owned(), d.source().metrics()))
            .collect();
        encode_desktop_figures(&mut encoder, &figures)
    }
}

/// The counters of [`ServerStats`] (names without the `_total` the encoder appends).
fn encode_stats(encoder: &mut DescriptorEncoder, stats: &ServerStats) -> fmt::Result {
    let counters: [(&str, &str, &AtomicU64); 16] = [
        ("oriel_sessions", "Sessions accepted", &stats.sessions_total),
        (
            "oriel_sessions_rejected",
            "Sessions refused at handshake",
            &stats.sessions_rejected,
        ),
        (
            "oriel_protocol_errors",
            "Connections closed for malformed input",
            &stats.protocol_errors,
        ),
        (
            "oriel_frames_sent",
            "Frames sent to clients",
            &stats.frames_sent,
        ),
        (
            "oriel_frames_acked",
            "Frames acknowledged by clients",
            &stats.frames_acked,
        ),
        (
            "oriel_display_bytes",
            "Display stream bytes sent",
            &stats.display_bytes,
        ),
        (
            "oriel_raw_bytes",
            "Uncompressed size of the changed tiles sent",
            &stats.raw_bytes,
        ),
        (
            "oriel_tiles_changed",
            "Changed tiles encoded",
            &stats.tiles_changed,
        ),
        (
            "oriel_video_regions",
            "Video regions detected and streamed as H.264",
            &stats.video_regions,
        ),
        (
            "oriel_video_frames",
            "H.264 pictures sent",
            &stats.video_frames,
        ),
        (
            "oriel_video_keyframes",
            "H.264 keyframes sent",
            &stats.video_keyframes,
        ),
        ("oriel_video_bytes", "H.264 bytes sent", &stats.video_bytes),
        (
            "oriel_keyframe_requests",
            "Keyframes requested by clients",
            &stats.keyframe_requests,
        ),
        (
            "oriel_input_events",
            "Input events injected",
            &stats.input_events,
        ),
        (
            "oriel_audio_packets",
            "Audio packets (20 ms of Opus) sent",
            &stats.audio_packets,
        ),
        ("oriel_audio_bytes", "Audio bytes sent", &stats.audio_bytes),
    ];
    for (name, help, value) in counters {
        counter(encoder, name, help, value.load(Relaxed))?;
    }
    let mut by_codec = encoder.encode_descriptor(
        "oriel_tiles_by_codec",
        "Changed tiles by codec",
        None,
        MetricType::Counter,
    )?;
    for (codec, value) in [
        ("solid", &stats.tiles_solid),
        ("copy", &stats.tiles_copied),
        ("cache", &stats.tiles_cache_hit),
        ("palette", &stats.tiles_palette),
        ("zstd", &stats.tiles_raw),
    ] {
        ConstCounter::new(value.load(Relaxed))
            .encode(by_codec.encode_family(&[("codec", codec)])?)?;
    }
    encode_clipboard(encoder, stats)?;
    gauge(
        encoder,
        "oriel_video_bitrate_bps",
        "Video bitrate last chosen by rate control",
        stats.video_bitrate.load(Relaxed),
    )
}

/// Clipboard transfers and their bytes, by direction (not their content).
fn encode_clipboard(encoder: &mut DescriptorEncoder, stats: &ServerStats) -> fmt::Result {
    const WAYS: [&str; 2] = ["to_client", "to_desktop"];
    {
        let mut transfers = encoder.encode_descriptor(
            "oriel_clipboard_transfers",
            "Clipboard transfers, by direction, format and outcome",
            None,
            MetricType::Counter,
        )?;
        for (way, by_format) in WAYS.iter().zip(&stats.clipboard_transfers) {
            for (format, by_outcome) in ["text", "png"].iter().zip(by_format) {
                for (outcome, value) in ["ok", "refused"].iter().zip(by_outcome) {
                    let labels = [
                        ("direction", *way),
                        ("format", *format),
                        ("outcome", *outcome),
                    ];
                    ConstCounter::new(value.load(Relaxed))
                        .encode(transfers.encode_family(&labels)?)?;
                }
            }
        }
    }
    let mut bytes = encoder.encode_descriptor(
        "oriel_clipboard_bytes",
        "Clipboard bytes transferred, by direction",
        None,
        MetricType::Counter,
    )?;
    for (way, value) in WAYS.iter().zip(&stats.clipboard_bytes) {
        ConstCounter::new(value.load(Relaxed))
            .encode(bytes.encode_family(&[("direction", *way)])?)?;
    }
    Ok(())
}

/// The sources' figures, one family per metric name with a sample per desktop.
fn encode_desktop_figures(
    encoder: &mut DescriptorEncoder,
    figures: &[(String, Vec<SourceMetric>)],
) -> fmt::Result {
    // Desktop and figure, by metric name; help and kind come from the first desktop.
    let mut by_name: BTreeMap<&str, Vec<(&str, &SourceMetric)>> = BTreeMap::new();
    for (desktop, metrics) in figures {
        for m in metrics {
            by_name.entry(m.name).or_default().push((desktop, m));
        }
    }
    for (name, samples) in by_name {
        let Some(&(_, first)) = samples.first() else {
            continue;
        };
        let kind = match first.kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        let mut family = encoder.encode_descriptor(name, first.help, None, kind)?;
        for (desktop, m) in samples {
            let labels = [("desktop", desktop)];
            let sample = family.encode_family(&labels)?;
            match first.kind {
                MetricKind::Counter => ConstCounter::new(m.value).encode(sample)?,
                MetricKind::Gauge => ConstGauge::new(m.value).encode(sample)?,
            }
        }
    }
    Ok(())
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

#[cfg(test)]
mod tests {
    use oriel_transport::openmetrics_test::parse;

    use super::*;

    /// A registry over fixed figures, as the server's collector would read them.
    struct Fixed {
        stats: ServerStats,
        figures: Vec<(String, Vec<SourceMetric>)>,
    }

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            encode_stats(&mut encoder, &self.stats)?;
            encode_desktop_figures(&mut encoder, &self.figures)
        }
    }

    impl fmt::Debug for Fixed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Fixed").finish_non_exhaustive()
        }
    }

    #[test]
    fn figures_round_trip_through_the_exposition() {
        let stats = ServerStats::default();
        stats.sessions_total.store(3, Relaxed);
        stats.frames_sent.store(41, Relaxed);
        stats.tiles_cache_hit.store(7, Relaxed);
        stats.video_bitrate.store(2_500_000, Relaxed);
        let vm = |boots, resident| {
            vec![
                SourceMetric::counter("oriel_vm_boots", "Power-ons", boots),
                SourceMetric::gauge("oriel_vm_guest_resident_bytes", "Touched", resident),
            ]
        };
        let figures = vec![
            ("a".to_string(), vm(1, 4096)),
            ("synthetic".to_string(), Vec::new()),
            ("b \"2\"".to_string(), vm(2, 8192)),
        ];
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed { stats, figures }));
        let text = encode(&registry);
        let (samples, types) = parse(&text);

        assert_eq!(samples["oriel_sessions_total"], 3.0);
        assert_eq!(samples["oriel_frames_sent_total"], 41.0);
        assert_eq!(samples["oriel_input_events_total"], 0.0);
        assert_eq!(samples["oriel_tiles_by_codec_total{codec=\"cache\"}"], 7.0);
        assert_eq!(samples["oriel_tiles_by_codec_total{codec=\"zstd\"}"], 0.0);
        assert_eq!(samples["oriel_video_bitrate_bps"], 2_500_000.0);
        assert_eq!(samples["oriel_vm_boots_total{desktop=\"a\"}"], 1.0);
        // Label values are escaped, not mangled.
        assert_eq!(
            samples["oriel_vm_boots_total{desktop=\"b \\\"2\\\"\"}"],
            2.0
        );
        assert_eq!(
            samples["oriel_vm_guest_resident_bytes{desktop=\"a\"}"],
            4096.0
        );
        assert_eq!(types["oriel_sessions"], "counter");
        assert_eq!(types["oriel_tiles_by_codec"], "counter");
        assert_eq!(types["oriel_vm_boots"], "counter");
        assert_eq!(types["oriel_vm_guest_resident_bytes"], "gauge");
        assert_eq!(types["oriel_video_bitrate_bps"], "gauge");
        assert!(
            text.contains("# HELP oriel_sessions Sessions accepted\n"),
            "{text}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_display_server_exports_its_counters_and_desktops() {
        use crate::source::synthetic::{SyntheticConfig, SyntheticSource};
        let identity = oriel_transport::Identity::generate(&[]).unwrap();
        let config = crate::ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let source = SyntheticSource::new(SyntheticConfig::default()).unwrap();
        let desktop = crate::Desktop::new("default", Box::new(source));
        let server = crate::DisplayServer::start(config, &identity, vec![desktop]).unwrap();
        server.stats().sessions_rejected.store(2, Relaxed);
        let (samples, types) = parse(&server.metrics());
        assert_eq!(samples["oriel_sessions_rejected_total"], 2.0);
        assert_eq!(samples["oriel_sessions_active"], 0.0);
        assert!(samples.contains_key("oriel_source_frames_total"));
        assert_eq!(types["oriel_sessions_active"], "gauge");
        assert_eq!(types["oriel_source_frames"], "counter");
        // A synthetic desktop has no figures of its own.
        assert!(!samples.keys().any(|k| k.contains("desktop=")));
        server.shutdown().await;
    }
}
