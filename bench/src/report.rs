//! Results: per-run samples, median and spread, ratios to the bare server,
//! goals met or missed; printed as a table and written as JSON.
//!
//! A [`Metric`] keeps every run's sample so the JSON holds the raw figures;
//! the median and min–max are derived when printing and serialising. A ratio
//! to bare is computed per run (each Weir run against the bare run just
//! before it) and summarised the same way.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

/// What a figure measures, for formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    PerSec,
    Micros,
    Millis,
    Seconds,
    MiB,
    Percent,
    Count,
    /// A ratio of two figures measured in the same run (not to bare).
    Ratio,
}

impl Unit {
    fn format(self, v: f64) -> String {
        match self {
            Unit::PerSec if v >= 10_000.0 => format!("{:.1}k/s", v / 1000.0),
            Unit::PerSec => format!("{v:.0}/s"),
            Unit::Micros => format!("{v:.1} µs"),
            Unit::Millis if v < 10.0 => format!("{v:.2} ms"),
            Unit::Millis => format!("{v:.1} ms"),
            Unit::Seconds if v < 1.0 => format!("{v:.3} s"),
            Unit::Seconds => format!("{v:.2} s"),
            Unit::MiB => format!("{v:.1} MiB"),
            Unit::Percent => format!("{v:.3} %"),
            Unit::Count => format!("{v:.0}"),
            Unit::Ratio => format!("{v:.2} ×"),
        }
    }

    fn short(self, v: f64) -> String {
        // The spread column: same unit, no repeated suffix on the first value.
        let s = self.format(v);
        s.split(' ').next().unwrap_or(&s).trim_end_matches("k/s").trim_end_matches("/s").to_string()
    }
}

/// One figure over several runs.
#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub unit: Unit,
    pub samples: Vec<f64>,
    /// Per-run ratio to the bare server measured in the same run.
    pub ratio: Option<Vec<f64>>,
}

/// Median, min and max of a set of samples.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some(Summary { median, min: v[0], max: v[n - 1] })
}

/// The median of samples, or NaN when there are none.
pub fn median(samples: &[f64]) -> f64 {
    summarize(samples).map_or(f64::NAN, |s| s.median)
}

impl Metric {
    pub fn new(name: impl Into<String>, unit: Unit) -> Metric {
        Metric { name: name.into(), unit, samples: Vec::new(), ratio: None }
    }

    pub fn with_samples(name: impl Into<String>, unit: Unit, samples: Vec<f64>) -> Metric {
        Metric { samples, ..Metric::new(name, unit) }
    }

    pub fn median(&self) -> f64 {
        median(&self.samples)
    }

    pub fn ratio_median(&self) -> Option<f64> {
        self.ratio.as_deref().map(median)
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "unit": self.unit,
            "samples": self.samples,
            "summary": summarize(&self.samples),
            "ratio_to_bare": self.ratio.as_ref().map(|r| json!({"samples": r, "summary": summarize(r)})),
        })
    }
}

/// A target from issue 7, reported against; never asserted.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    /// `None` when the figure could not be measured.
    pub met: Option<bool>,
}

/// Everything one scenario found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub scenario: String,
    /// How the figures were taken (load shape, durations, runs).
    pub setup: String,
    pub metrics: Vec<Metric>,
    pub goals: Vec<Goal>,
    pub notes: Vec<String>,
    pub elapsed_secs: f64,
    /// Share of the machine's CPU other processes used meanwhile (see `machine`).
    pub foreign_cpu_percent: Option<f64>,
}

impl Report {
    pub fn new(scenario: &str, setup: impl Into<String>) -> Report {
        Report { scenario: scenario.to_string(), setup: setup.into(), ..Report::default() }
    }

    pub fn push(&mut self, m: Metric) {
        self.metrics.push(m);
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    pub fn goal(&mut self, goal: impl Into<String>, measured: impl Into<String>, met: Option<bool>) {
        self.goals.push(Goal { goal: goal.into(), measured: measured.into(), met });
    }

    /// The readable table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let foreign = self.foreign_cpu_percent.map(|p| format!(", other processes used {p:.0} % of the CPU meanwhile")).unwrap_or_default();
        let _ = writeln!(out, "\n== {} ({:.0} s{foreign}) ==", self.scenario, self.elapsed_secs);
        let _ = writeln!(out, "{}", self.setup);
        let width = self.metrics.iter().map(|m| m.name.chars().count()).max().unwrap_or(10).max(10);
        let _ = writeln!(out, "{:<width$}  {:>12}  {:>22}  {:>20}", "metric", "median", "spread (min–max)", "ratio to bare");
        for m in &self.metrics {
            let Some(s) = summarize(&m.samples) else {
                let _ = writeln!(out, "{:<width$}  {:>12}", m.name, "n/a");
                continue;
            };
            let spread =
                if m.samples.len() > 1 { format!("{}–{}", m.unit.short(s.min), m.unit.format(s.max)) } else { "(1 run)".to_string() };
            let ratio = match m.ratio.as_deref().and_then(summarize) {
                Some(r) if m.samples.len() > 1 => {
                    format!("{:.2} ({:.2}–{:.2})", r.median, r.min, r.max)
                }
                Some(r) => format!("{:.2}", r.median),
                None => String::new(),
            };
            let _ = writeln!(out, "{:<width$}  {:>12}  {:>22}  {:>20}", m.name, m.unit.format(s.median), spread, ratio);
        }
        if !self.goals.is_empty() {
            let _ = writeln!(out, "goals (targets, not assertions):");
            for g in &self.goals {
                let mark = match g.met {
                    Some(true) => "MET ",
                    Some(false) => "MISS",
                    None => "n/a ",
                };
                let _ = writeln!(out, "  [{mark}] {}: {}", g.goal, g.measured);
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "scenario": self.scenario,
            "setup": self.setup,
            "elapsed_secs": self.elapsed_secs,
            "foreign_cpu_percent": self.foreign_cpu_percent,
            "metrics": self.metrics.iter().map(Metric::to_json).collect::<Vec<_>>(),
            "goals": self.goals,
            "notes": self.notes,
        })
    }
}

/// Writes the reports of one invocation, with what they were measured on.
pub fn write_json(path: &Path, header: serde_json::Value, reports: &[Report]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut doc = header;
    doc["scenarios"] = reports.iter().map(Report::to_json).collect();
    let text = serde_json::to_string_pretty(&doc).context("encoding the results")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = summarize(&[3.0, 1.0, 2.0]).expect("samples");
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), 2.5);
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn units_format_readably() {
        assert_eq!(Unit::PerSec.format(23_456.0), "23.5k/s");
        assert_eq!(Unit::Millis.format(1.234), "1.23 ms");
        assert_eq!(Unit::PerSec.short(23_456.0), "23.5");
        assert_eq!(Unit::Ratio.format(0.8765), "0.88 ×");
        assert_eq!(Unit::Ratio.short(0.8765), "0.88");
    }
}
