//! `rate=10mbit,rtt=40ms,jitter=5ms,loss=1%,queue=100ms`: a link as text.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What the emulated link imposes, the same in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkSpec {
    /// Bandwidth cap in bits per second; `None` for unlimited.
    pub rate_bps: Option<u64>,
    /// Round-trip time added (half each way).
    pub rtt: Duration,
    /// Extra one-way delay, uniformly random up to this (packets are never reordered).
    pub jitter: Duration,
    /// Probability of losing each packet, 0..=1.
    pub loss: f64,
    /// Longest a packet may wait for the bandwidth cap before it is dropped (drop-tail).
    /// Defaults to 100 ms.
    pub queue: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid link '{text}': {reason} (expected e.g. rate=10mbit,rtt=40ms,jitter=5ms,loss=1%,queue=100ms)")]
pub struct ParseLinkError {
    text: String,
    reason: String,
}

impl LinkSpec {
    pub const DEFAULT_QUEUE: Duration = Duration::from_millis(100);

    pub fn queue_limit(&self) -> Duration {
        self.queue.unwrap_or(Self::DEFAULT_QUEUE)
    }
}

impl FromStr for LinkSpec {
    type Err = ParseLinkError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseLinkError {
            text: text.to_owned(),
            reason,
        };
        let mut spec = LinkSpec::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| err(format!("'{part}' is not key=value")))?;
            match key.trim() {
                "rate" => spec.rate_bps = Some(parse_rate(value).map_err(err)?),
                "rtt" => spec.rtt = parse_duration(value).map_err(err)?,
                "jitter" => spec.jitter = parse_duration(value).map_err(err)?,
                "queue" => spec.queue = Some(parse_duration(value).map_err(err)?),
                "loss" => {
                    let v = value.trim();
                    let pct = v.strip_suffix('%').unwrap_or(v);
                    let p: f64 = pct
                        .parse()
                        .map_err(|_| err(format!("loss '{value}' is not a percentage")))?;
                    if !(0.0..=100.0).contains(&p) {
                        return Err(err(format!("loss {p}% is outside 0..100%")));
                    }
                    spec.loss = p / 100.0;
                }
                other => return Err(err(format!("unknown key '{other}'"))),
            }
        }
        Ok(spec)
    }
}

fn parse_rate(value: &str) -> Result<u64, String> {
    let v = value.trim().to_ascii_lowercase();
    let v = v
        .strip_suffix("bps")
        .or_else(|| v.strip_suffix("bit"))
        .unwrap_or(&v);
    let (number, scale) = match v.chars().last() {
        Some('k') => (&v[..v.len() - 1], 1e3),
        Some('m') => (&v[..v.len() - 1], 1e6),
        Some('g') => (&v[..v.len() - 1], 1e9),
        _ => (v, 1.0),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("rate '{value}' is not a number with kbit/mbit/gbit"))?;
    let bps = n * scale;
    if !(1_000.0..=100e9).contains(&bps) {
        return Err(format!("rate '{value}' is outside 1kbit..100gbit"));
    }
    #[expect(
        clippy::cast_possible_truncation,
        reason = "float to int saturates; bps was checked to lie in 1e3..=100e9 just above"
    )]
    let bps = bps as u64;
    Ok(bps)
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let (number, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(format!("duration '{value}' needs a unit (ms, us or s)"));
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("duration '{value}' is not a number"))?;
    if !(0.0..=60.0).contains(&(n * scale)) {
        return Err(format!("duration '{value}' is outside 0..60s"));
    }
    Ok(Duration::from_secs_f64(n * scale))
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(r) = self.rate_bps {
            parts.push(format!("rate={}kbit", r / 1000));
        }
        parts.push(format!("rtt={}ms", self.rtt.as_millis()));
        if !self.jitter.is_zero() {
            parts.push(format!("jitter={}ms", self.jitter.as_millis()));
        }
        if self.loss > 0.0 {
            parts.push(format!("loss={}%", self.loss * 100.0));
        }
        if let Some(q) = self.queue {
            parts.push(format!("queue={}ms", q.as_millis()));
        }
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form() {
        let s: LinkSpec = "rate=10mbit,rtt=40ms,loss=1%".parse().unwrap();
        assert_eq!(s.rate_bps, Some(10_000_000));
        assert_eq!(s.rtt, Duration::from_millis(40));
        assert!((s.loss - 0.01).abs() < 1e-12);
        let s: LinkSpec = "rate=2mbit, rtt=40ms, jitter=5ms, queue=200ms"
            .parse()
            .unwrap();
        assert_eq!(s.rate_bps, Some(2_000_000));
        assert_eq!(s.jitter, Duration::from_millis(5));
        assert_eq!(s.queue_limit(), Duration::from_millis(200));
        assert_eq!("".parse::<LinkSpec>().unwrap(), LinkSpec::default());
    }

    #[test]
    fn rejects_nonsense_clearly() {
        for bad in [
            "rate=fast",
            "rtt=40",
            "loss=150%",
            "speed=1",
            "rate",
            "rtt=-5ms",
        ] {
            let e = bad.parse::<LinkSpec>().unwrap_err().to_string();
            assert!(e.contains("invalid link"), "{bad}: {e}");
        }
    }
}
