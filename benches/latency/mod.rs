//! Shared by the latency benches (`refresh_storm`, `early_refresh`): percentiles over
//! recorded latencies, the machine's load, and the JSON-lines report.

use std::{fs, io::Write, path::PathBuf, time::Duration};

/// Nearest-rank percentiles of a set of latencies.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(mut latencies: Vec<Duration>) -> Self {
        if latencies.is_empty() {
            return Self::default();
        }
        latencies.sort_unstable();
        let rank = |p: f64| {
            let index = ((p * latencies.len() as f64).ceil() as usize).saturating_sub(1);
            latencies[index.min(latencies.len() - 1)]
        };
        Self {
            count: latencies.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: latencies[latencies.len() - 1],
        }
    }
}

/// Milliseconds with three decimals, for tables and JSON.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The 1-, 5- and 15-minute load averages, as `uptime` shows them (Linux only).
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Writes `lines` (one JSON object each) to `target/criterion/<name>.json`, replacing
/// the file, and returns its path.
pub fn write_json_lines(name: &str, lines: &[serde_json::Value]) -> std::io::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("criterion");
    fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    let mut file = fs::File::create(&path)?;
    for line in lines {
        writeln!(file, "{line}")?;
    }
    Ok(path)
}
