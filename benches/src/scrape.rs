//! A broker's `/metrics` read over its pinned HTTPS as Prometheus would, and the figures
//! an operator derives from it (a histogram's quantiles between two scrapes).

use std::collections::HashMap;

use oriel_transport::Fingerprint;

/// The samples of one scrape, by series (`name` or `name{labels}`).
pub(crate) type Samples = HashMap<String, f64>;

pub(crate) struct MetricsScraper {
    http: reqwest::Client,
    url: String,
}

impl MetricsScraper {
    /// For the broker whose API is at `base` (`https://…`) with certificate `fingerprint`.
    pub(crate) fn new(base: &str, fingerprint: Fingerprint) -> anyhow::Result<MetricsScraper> {
        let tls = oriel_transport::tls::pinned_tls_client_config(fingerprint, &[b"http/1.1"])?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(MetricsScraper {
            http,
            url: format!("{base}/metrics"),
        })
    }

    pub(crate) async fn scrape(&self) -> anyhow::Result<Samples> {
        let text = self
            .http
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect())
    }
}

/// A series' growth from `before` to `after` (0 where it is missing).
pub(crate) fn delta(before: &Samples, after: &Samples, series: &str) -> f64 {
    after.get(series).unwrap_or(&0.0) - before.get(series).unwrap_or(&0.0)
}

/// A histogram's cumulative buckets (upper bound, observations) counted between two
/// scrapes, by bound; `+Inf` last.
pub(crate) fn histogram_delta(before: &Samples, after: &Samples, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = after
        .iter()
        .filter_map(|(series, n)| {
            let bound = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, n - before.get(series).unwrap_or(&0.0)))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside the bucket it
/// falls in, as Prometheus' `histogram_quantile` does; NaN without observations, the
/// highest finite bound when it falls in `+Inf`.
pub(crate) fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return f64::NAN;
    };
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(bound, n) in buckets {
        if n >= rank {
            if bound.is_infinite() {
                return lower;
            }
            let inside = n - below;
            let share = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return lower + (bound - lower) * share;
        }
        (lower, below) = (bound, n);
    }
    lower
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let buckets = [
            (0.01, 0.0),
            (0.02, 50.0),
            (0.05, 99.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((histogram_quantile(&buckets, 0.5) - 0.02).abs() < 1e-12);
        assert!((histogram_quantile(&buckets, 0.25) - 0.015).abs() < 1e-12);
        assert!((histogram_quantile(&buckets, 0.99) - 0.05).abs() < 1e-12);
        assert!((histogram_quantile(&buckets, 1.0) - 0.05).abs() < 1e-12);
        assert!(histogram_quantile(&[(f64::INFINITY, 0.0)], 0.5).is_nan());
    }

    #[test]
    fn buckets_are_counted_between_scrapes_in_order() {
        let scrape = |pairs: &[(&str, f64)]| -> Samples {
            pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
        };
        let before = scrape(&[
            ("h_bucket{le=\"0.1\"}", 1.0),
            ("h_bucket{le=\"+Inf\"}", 2.0),
        ]);
        let after = scrape(&[
            ("h_bucket{le=\"+Inf\"}", 7.0),
            ("h_bucket{le=\"0.1\"}", 4.0),
            ("h_count", 7.0),
        ]);
        assert_eq!(
            histogram_delta(&before, &after, "h"),
            vec![(0.1, 3.0), (f64::INFINITY, 5.0)]
        );
        assert_eq!(delta(&before, &after, "h_count"), 7.0);
    }
}
