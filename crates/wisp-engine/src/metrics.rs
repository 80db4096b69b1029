//! Counters for Prometheus: invocations by status, cold starts, throttles, durations,
//! billed GB-seconds (what a user of this platform pays for), instances and the async
//! queue. Updated once per invocation, off the instance's critical section.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use wisp_core::InvocationStatus;

/// Upper bounds (seconds) of the duration histogram's buckets.
const BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Functions tracked; past this, new names share one "_other" series.
const MAX_FUNCTIONS: usize = 10_000;

/// Every metric this module emits, with its type and help text.
pub const DECLARED: &[(&str, &str, &str)] = &[
    (
        "wisp_invocations_total",
        "counter",
        "Invocations by function and final status.",
    ),
    (
        "wisp_cold_starts_total",
        "counter",
        "Invocations that started a new instance.",
    ),
    (
        "wisp_throttles_total",
        "counter",
        "Invocations refused for lack of concurrency.",
    ),
    (
        "wisp_invocation_duration_seconds",
        "histogram",
        "Run time of invocations (init excluded).",
    ),
    (
        "wisp_init_duration_seconds_total",
        "counter",
        "Time spent initialising instances.",
    ),
    (
        "wisp_billed_gb_seconds_total",
        "counter",
        "Billed duration times memory size, in GB-seconds.",
    ),
    ("wisp_instances", "gauge", "Live instances by state."),
    (
        "wisp_async_queue_depth",
        "gauge",
        "Accepted asynchronous invocations not yet finished.",
    ),
];

#[derive(Default, Clone)]
struct FunctionMetrics {
    by_status: BTreeMap<&'static str, u64>,
    cold_starts: u64,
    throttles: u64,
    buckets: [u64; BUCKETS.len()],
    duration_sum: f64,
    duration_count: u64,
    init_seconds: f64,
    gb_seconds: f64,
}

#[derive(Default)]
pub struct Metrics {
    functions: Mutex<BTreeMap<String, FunctionMetrics>>,
}

impl Metrics {
    fn with(&self, function: &str, f: impl FnOnce(&mut FunctionMetrics)) {
        let mut map = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        let key = if map.contains_key(function) || map.len() < MAX_FUNCTIONS {
            function
        } else {
            "_other"
        };
        f(map.entry(key.to_string()).or_default());
    }

    pub fn invocation(
        &self,
        function: &str,
        status: InvocationStatus,
        run_ms: f64,
        init_ms: Option<f64>,
        billed_ms: u64,
        memory_mb: u32,
    ) {
        self.with(function, |m| {
            *m.by_status.entry(status.as_str()).or_default() += 1;
            let seconds = run_ms / 1000.0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    m.buckets[i] += 1;
                }
            }
            m.duration_sum += seconds;
            m.duration_count += 1;
            if let Some(init) = init_ms {
                m.cold_starts += 1;
                m.init_seconds += init / 1000.0;
            }
            m.gb_seconds += billed_ms as f64 / 1000.0 * f64::from(memory_mb) / 1024.0;
        });
    }

    pub fn throttle(&self, function: &str) {
        self.with(function, |m| m.throttles += 1);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, idle: usize, busy: usize, queue_depth: u64) -> String {
        let map = self
            .functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = String::new();
        for (name, kind, help) in DECLARED {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            match *name {
                "wisp_invocations_total" => {
                    for (f, m) in &map {
                        for (status, n) in &m.by_status {
                            let _ =
                                writeln!(out, "{name}{{function=\"{f}\",status=\"{status}\"}} {n}");
                        }
                    }
                }
                "wisp_cold_starts_total" => series(&mut out, name, &map, |m| m.cold_starts as f64),
                "wisp_throttles_total" => series(&mut out, name, &map, |m| m.throttles as f64),
                "wisp_init_duration_seconds_total" => {
                    series(&mut out, name, &map, |m| m.init_seconds)
                }
                "wisp_billed_gb_seconds_total" => series(&mut out, name, &map, |m| m.gb_seconds),
                "wisp_invocation_duration_seconds" => {
                    for (f, m) in &map {
                        for (bound, n) in BUCKETS.iter().zip(m.buckets) {
                            let _ = writeln!(
                                out,
                                "{name}_bucket{{function=\"{f}\",le=\"{bound}\"}} {n}"
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{name}_bucket{{function=\"{f}\",le=\"+Inf\"}} {}",
                            m.duration_count
                        );
                        let _ = writeln!(out, "{name}_sum{{function=\"{f}\"}} {}", m.duration_sum);
                        let _ =
                            writeln!(out, "{name}_count{{function=\"{f}\"}} {}", m.duration_count);
                    }
                }
                "wisp_instances" => {
                    let _ = writeln!(
                        out,
                        "{name}{{state=\"idle\"}} {idle}\n{name}{{state=\"busy\"}} {busy}"
                    );
                }
                "wisp_async_queue_depth" => {
                    let _ = writeln!(out, "{name} {queue_depth}");
                }
                _ => {}
            }
        }
        out
    }
}

fn series(
    out: &mut String,
    name: &str,
    map: &BTreeMap<String, FunctionMetrics>,
    value: impl Fn(&FunctionMetrics) -> f64,
) {
    for (f, m) in map {
        let _ = writeln!(out, "{name}{{function=\"{f}\"}} {}", value(m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every declared metric appears in the exposition once something has happened.
    #[test]
    fn every_declared_metric_is_emitted() {
        let m = Metrics::default();
        m.invocation("f", InvocationStatus::Success, 12.0, Some(40.0), 12, 512);
        m.throttle("f");
        let text = m.render(1, 0, 3);
        for (name, _, _) in DECLARED {
            let emitted = text
                .lines()
                .any(|l| !l.starts_with('#') && l.starts_with(name));
            assert!(emitted, "{name} is declared but not emitted:\n{text}");
        }
        assert!(
            text.contains("wisp_billed_gb_seconds_total{function=\"f\"} 0.006"),
            "{text}"
        );
        assert!(
            text.contains("wisp_invocation_duration_seconds_bucket{function=\"f\",le=\"0.025\"} 1")
        );
        assert!(
            text.contains("wisp_invocation_duration_seconds_bucket{function=\"f\",le=\"0.01\"} 0")
        );
    }
}
