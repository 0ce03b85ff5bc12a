//! Progress bars for long commands (replay jobs, backups): drawn on stderr
//! when it is a terminal, nothing at all otherwise, so piped and scripted
//! runs stay line-oriented (their one result line goes to stdout).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::human;

/// What the bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Triggers,
}

/// The total the bar fills towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    Unknown,
    Exact(u64),
    /// An estimate: shown with `~`, and the bar stops short of full until the end.
    About(u64),
}

pub struct Progress {
    enabled: bool,
    unit: Unit,
    total: Total,
    label: String,
    started: Instant,
    /// What the last drawing showed: a redraw happens only when it changes.
    shown: Option<Shown>,
    drawn: bool,
}

/// What a redraw is for: with a total, the filled cells and the percentage
/// (at most 131 redraws for a whole bar); without one, the amount as printed.
/// A backup calls `update` for every chunk; the line is rewritten only when
/// this would read differently, whatever the clock says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    cells: usize,
    percent: u64,
    amount: String,
}

const BAR_WIDTH: usize = 30;

impl Progress {
    /// A bar on stderr when it is a terminal and `quiet` is false (`--json`).
    pub fn on_stderr(quiet: bool, label: &str, unit: Unit, total: Total) -> Progress {
        Progress::new(!quiet && std::io::stderr().is_terminal(), label, unit, total)
    }

    pub fn new(enabled: bool, label: &str, unit: Unit, total: Total) -> Progress {
        Progress { enabled, unit, total, label: label.to_string(), started: Instant::now(), shown: None, drawn: false }
    }

    pub fn set_total(&mut self, total: Total) {
        self.total = total;
    }

    /// Shows `done`: redrawn only when the bar would read differently.
    /// Returns whether it drew.
    pub fn update(&mut self, done: u64) -> bool {
        if !self.enabled || self.shown.as_ref() == Some(&self.shown(done)) {
            return false;
        }
        self.draw(done);
        true
    }

    fn shown(&self, done: u64) -> Shown {
        let fraction = match self.total {
            Total::Exact(t) | Total::About(t) if t > 0 => (done as f64 / t as f64).min(1.0),
            _ => 0.0,
        };
        let amount = if matches!(self.total, Total::Unknown) { amount(done, self.unit) } else { String::new() };
        Shown { cells: (fraction * BAR_WIDTH as f64) as usize, percent: (fraction * 100.0) as u64, amount }
    }

    /// The last state, drawn whatever the throttle, and the line ended.
    pub fn finish(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        if let Total::About(_) = self.total {
            // Complete now: the estimate was only for the way.
            self.total = Total::Exact(done);
        }
        self.draw(done);
        eprintln!();
        self.drawn = false;
    }

    fn draw(&mut self, done: u64) {
        let line = render(&self.label, done, self.total, self.unit, self.started.elapsed());
        // \r and clear-to-end-of-line: one line, rewritten in place.
        eprint!("\r{line}\x1b[K");
        let _ = std::io::stderr().flush();
        self.shown = Some(self.shown(done));
        self.drawn = true;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error ends the command mid-bar: its message starts on a fresh line.
        if self.drawn {
            eprintln!();
        }
    }
}

fn amount(n: u64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => human::bytes(n),
        Unit::Triggers => n.to_string(),
    }
}

/// One line: `label [#####.....]  45%  12.3 MiB / 27.1 MiB  3.1 MiB/s`.
pub fn render(label: &str, done: u64, total: Total, unit: Unit, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs >= 0.5 { done as f64 / secs } else { 0.0 };
    let rate = match unit {
        _ if rate == 0.0 => String::new(),
        Unit::Bytes => format!("  {}/s", human::bytes(rate as u64)),
        Unit::Triggers => format!("  {rate:.0}/s"),
    };
    let (total, about, cap) = match total {
        Total::Unknown => return format!("{label} {}{rate}", amount(done, unit)),
        Total::Exact(t) => (t, "", 100),
        Total::About(t) => (t, "~", 99),
    };
    let percent = done.saturating_mul(100).checked_div(total).map_or(100, |p| p.min(cap));
    let filled = (percent as usize * BAR_WIDTH / 100).min(BAR_WIDTH);
    format!(
        "{label} [{}{}] {percent:>3}%  {} / {about}{}{rate}",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled),
        amount(done, unit),
        amount(total, unit)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_shows_the_share_the_amounts_and_the_rate() {
        let line = render("backup", 512 * 1024, Total::Exact(1024 * 1024), Unit::Bytes, Duration::from_secs(2));
        assert_eq!(line, "backup [###############...............]  50%  512.0 KiB / 1.0 MiB  256.0 KiB/s");
        let line = render("replay", 3, Total::Exact(4), Unit::Triggers, Duration::from_millis(100));
        assert_eq!(line, "replay [######################........]  75%  3 / 4");
    }

    #[test]
    fn an_estimate_never_shows_full_before_the_end_and_unknown_has_no_bar() {
        let line = render("backup", 2000, Total::About(1000), Unit::Bytes, Duration::ZERO);
        assert!(line.contains(" 99%") && line.contains("/ ~1000 B"), "{line}");
        assert_eq!(render("backup", 2048, Total::Unknown, Unit::Bytes, Duration::ZERO), "backup 2.0 KiB");
        assert!(render("replay", 0, Total::Exact(0), Unit::Triggers, Duration::ZERO).contains("100%"));
    }

    #[test]
    fn a_bar_redraws_when_it_reads_differently_not_for_every_chunk() {
        let mut bar = Progress::new(true, "backup", Unit::Bytes, Total::Exact(64 * 1024 * 1024));
        let draws = (1..=16_384u64).filter(|i| bar.update(i * 4096)).count();
        assert!((101..=101 + BAR_WIDTH).contains(&draws), "once per percent and per cell, not once per 4 KiB chunk: {draws}");
        let mut unknown = Progress::new(true, "backup", Unit::Bytes, Total::Unknown);
        let draws = (1..=1000u64).filter(|i| unknown.update(10 * 1024 + i * 10)).count();
        assert!(draws < 1000, "only when the printed amount changes: {draws}");
        let mut off = Progress::new(false, "backup", Unit::Bytes, Total::Exact(10));
        assert!(!off.update(5), "no terminal, no drawing");
    }
}
