//! Plain aligned tables for humans (`--json` for scripts). Cells are never
//! cut: an operator needs the whole error, id or sha256. A cell longer than
//! a column's cap pushes the rest of its line right instead.

/// Columns are aligned to their longest cell, up to this many characters.
const COLUMN_CAP: usize = 64;

pub fn print(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<(Vec<String>, Vec<String>)> = rows.iter().map(|r| (r.clone(), Vec::new())).collect();
    print!("{}", render(headers, &rows));
}

/// The table as text; each row is followed by its notes, each on its own
/// indented line (long texts such as an upstream's last error, shown whole).
pub fn render(headers: &[&str], rows: &[(Vec<String>, Vec<String>)]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for (row, _) in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count().min(COLUMN_CAP));
            }
        }
    }
    let line = |cells: &[String]| {
        let parts: Vec<String> =
            cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0))).collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for (row, notes) in rows {
        out.push_str(&line(row));
        for note in notes {
            out.push_str(&format!("  {note}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn cells_are_aligned_and_never_cut() {
        let sha = "9f2c".repeat(16);
        let rows = vec![
            (vec!["1".into(), sha.clone()], vec![]),
            (vec!["12".into(), "short".into()], vec!["error: a long message that stays whole".into()]),
        ];
        let out = super::render(&["V", "SHA256"], &rows);
        assert_eq!(out, format!("V   SHA256\n1   {sha}\n12  short\n  error: a long message that stays whole\n"));
    }
}
