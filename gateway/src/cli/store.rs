//! `weir store check` and `weir store repair`: offline, on the store files
//! themselves (the gateway must be stopped), unlike the other commands which
//! go through the admin API.

use std::path::Path;

use super::CliError;
use crate::store::check;

/// Prints what the check found; `Err` (exit 1) when any file is damaged.
pub fn store_check(dir: &Path) -> Result<(), CliError> {
    let reports = check::check_dir(dir).map_err(|e| CliError::Failed(e.to_string()))?;
    let mut damaged = 0;
    for r in &reports {
        match (&r.triggers, r.problems.is_empty()) {
            (Some(n), true) => println!("{}: ok, {n} trigger(s)", r.path.display()),
            _ => {
                damaged += 1;
                println!("{}: CORRUPT", r.path.display());
                for p in &r.problems {
                    println!("  {p}");
                }
            }
        }
    }
    if damaged > 0 {
        return Err(CliError::Failed(format!(
            "{damaged} of {} store file(s) damaged; stop weir and run `weir store repair` (the damaged files are kept aside), or restore a backup",
            reports.len()
        )));
    }
    Ok(())
}

/// Rebuilds each damaged file from what can be read of it and prints the counts.
pub fn store_repair(dir: &Path) -> Result<(), CliError> {
    let reports = check::repair_dir(dir).map_err(|e| CliError::Failed(e.to_string()))?;
    for r in &reports {
        let Some(aside) = &r.moved_to else {
            println!("{}: ok, {} trigger(s), nothing to repair", r.path.display(), r.kept);
            continue;
        };
        println!("{}: repaired", r.path.display());
        for p in &r.problems {
            println!("  was: {p}");
        }
        let lost = match r.expected {
            Some(expected) => format!("{} (the file's counters claimed {expected})", expected.saturating_sub(r.kept).max(r.lost)),
            None => "unknown (the file's counters were unreadable)".to_string(),
        };
        println!("  kept {} trigger(s); lost {lost}; {} unreadable record(s) left behind", r.kept, r.lost);
        if r.problems.iter().any(|p| p.contains("checksum") || p.contains("corrupted")) && r.kept > 0 {
            println!("  pages failed their checksums: kept bodies are whole but one of them may carry a damaged byte");
        }
        println!("  the damaged original is kept at {}", aside.display());
    }
    Ok(())
}
