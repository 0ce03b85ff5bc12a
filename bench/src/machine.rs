//! What else ran on the machine: CPU time used by processes other than the
//! harness and its children (weir, the bare server) while a scenario ran.
//!
//! The 2-core machine is shared (builds, test suites); a scenario measured
//! while something else burned CPU says so in its notes instead of passing
//! off a perturbed figure as Weir's. Kernel threads doing writeback for weir
//! (ext4, block layer) count as "other", so a few percent is normal.

/// CPU counters at one moment, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    /// Busy time of all CPUs (everything but idle and iowait).
    busy: u64,
    /// All time of all CPUs.
    total: u64,
    /// This process plus its reaped children (weir and bare are waited for).
    ours: u64,
}

impl CpuMark {
    /// Reads `/proc/stat` and `/proc/self/stat`; `None` where they are unreadable.
    pub fn now() -> Option<CpuMark> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        let total: u64 = cpu.iter().take(8).sum();
        let idle = cpu.get(3)? + cpu.get(4)?;
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces) start at `state`.
        let fields: Vec<u64> = own.rsplit_once(')')?.1.split_whitespace().skip(11).take(4).filter_map(|v| v.parse().ok()).collect();
        Some(CpuMark { busy: total - idle, total, ours: fields.iter().sum() })
    }

    /// Share of the machine's CPU (0–100 %) used by other processes since `self`.
    /// Children still running at `end` are not counted as ours, so take `end`
    /// after they were stopped.
    pub fn foreign_percent(&self, end: &CpuMark) -> f64 {
        let total = end.total.saturating_sub(self.total).max(1) as f64;
        let foreign = end.busy.saturating_sub(self.busy).saturating_sub(end.ours.saturating_sub(self.ours));
        100.0 * foreign as f64 / total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_counters() {
        let a = CpuMark::now().expect("/proc is readable on Linux");
        let b = CpuMark::now().expect("/proc is readable on Linux");
        assert!(b.total >= a.total);
        assert!((0.0..=100.0).contains(&a.foreign_percent(&b)));
    }
}
