//! Latency samples and their percentiles.

use serde::Serialize;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// Summarizes `samples` (milliseconds).
pub fn summarize(mut samples: Vec<f64>) -> Summary {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if samples.is_empty() {
            return f64::NAN;
        }
        let rank = ((samples.len() as f64) * p / 100.0).ceil() as usize;
        samples[rank.clamp(1, samples.len()) - 1]
    };
    Summary {
        n: samples.len(),
        p50_ms: at(50.0),
        p99_ms: at(99.0),
        mean_ms: samples.iter().sum::<f64>() / samples.len().max(1) as f64,
    }
}
