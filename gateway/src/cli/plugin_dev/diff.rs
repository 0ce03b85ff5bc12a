//! A unified line diff (`diff -u` format, three lines of context), for
//! showing what a plugin did to a JSON body (both sides pretty-printed).
//!
//! Common leading and trailing lines are set aside first (a transform
//! usually touches a few lines of a large body); the rest is an LCS table
//! when it is small enough, else shown as replaced whole: a correct diff,
//! if not the shortest, in bounded memory.

use std::fmt::Write;

/// Lines of context around each change.
const CONTEXT: usize = 3;
/// Largest LCS table (cells) for the changed middle.
const MAX_TABLE: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Same,
    Delete,
    Insert,
}

/// One line of the edit script, with where it is on each side: the index
/// of its line there, or (for a line the side does not have) how many of
/// that side's lines came before it.
#[derive(Debug, Clone, Copy)]
struct Op {
    kind: Kind,
    old: usize,
    new: usize,
}

/// `old` and `new` as a unified diff with headers `--- {old_name}` and
/// `+++ {new_name}`; empty when they are equal.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let ops = script(&a, &b);
    if ops.iter().all(|op| op.kind == Kind::Same) {
        return String::new();
    }
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    for (start, end) in hunks(&ops) {
        render(&mut out, &ops[start..end], &a, &b);
    }
    out
}

/// The edit script turning `a` into `b`.
fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let middle = if am.len().saturating_mul(bm.len()) <= MAX_TABLE {
        lcs(am, bm)
    } else {
        [vec![Kind::Delete; am.len()], vec![Kind::Insert; bm.len()]].concat()
    };
    let kinds = std::iter::repeat_n(Kind::Same, prefix).chain(middle).chain(std::iter::repeat_n(Kind::Same, suffix));
    let (mut old, mut new) = (0, 0);
    kinds
        .map(|kind| {
            let op = Op { kind, old, new };
            old += usize::from(kind != Kind::Insert);
            new += usize::from(kind != Kind::Delete);
            op
        })
        .collect()
}

/// The classic LCS table walk (deletions before insertions in a change).
fn lcs(a: &[&str], b: &[&str]) -> Vec<Kind> {
    let (n, m) = (a.len(), b.len());
    // len[i][j]: length of the LCS of a[i..] and b[j..].
    let mut len = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            len[at(i, j)] = if a[i] == b[j] { len[at(i + 1, j + 1)] + 1 } else { len[at(i + 1, j)].max(len[at(i, j + 1)]) };
        }
    }
    let (mut i, mut j, mut kinds) = (0, 0, Vec::with_capacity(n + m));
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            kinds.push(Kind::Same);
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || len[at(i + 1, j)] >= len[at(i, j + 1)]) {
            kinds.push(Kind::Delete);
            i += 1;
        } else {
            kinds.push(Kind::Insert);
            j += 1;
        }
    }
    kinds
}

/// Ranges of `ops` to print: each change with its context, merged when
/// their contexts touch.
fn hunks(ops: &[Op]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (k, op) in ops.iter().enumerate() {
        if op.kind == Kind::Same {
            continue;
        }
        let (start, end) = (k.saturating_sub(CONTEXT), (k + CONTEXT + 1).min(ops.len()));
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

fn render(out: &mut String, ops: &[Op], a: &[&str], b: &[&str]) {
    let old_len = ops.iter().filter(|op| op.kind != Kind::Insert).count();
    let new_len = ops.iter().filter(|op| op.kind != Kind::Delete).count();
    // `diff -u`: a side with no lines in the hunk names the line before it.
    let range = |first: usize, len: usize| match len {
        0 => format!("{first},0"),
        1 => format!("{}", first + 1),
        _ => format!("{},{len}", first + 1),
    };
    let _ = writeln!(out, "@@ -{} +{} @@", range(ops[0].old, old_len), range(ops[0].new, new_len));
    for op in ops {
        let _ = match op.kind {
            Kind::Same => writeln!(out, " {}", a[op.old]),
            Kind::Delete => writeln!(out, "-{}", a[op.old]),
            Kind::Insert => writeln!(out, "+{}", b[op.new]),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y"), "");
    }

    #[test]
    fn a_change_in_the_middle_is_one_hunk_with_context() {
        let old = (1..=10).map(|i| format!("{i}\n")).collect::<String>();
        let new = old.replace("5\n", "five\n").replace("6\n", "");
        let d = unified(&old, &new, "received", "transformed");
        assert_eq!(d, "--- received\n+++ transformed\n@@ -2,8 +2,7 @@\n 2\n 3\n 4\n-5\n-6\n+five\n 7\n 8\n 9\n");
    }

    #[test]
    fn far_apart_changes_are_separate_hunks_and_edges_work() {
        let old = (1..=20).map(|i| format!("{i}\n")).collect::<String>();
        let new = format!("0\n{}", old.replace("20\n", ""));
        let d = unified(&old, &new, "a", "b");
        assert_eq!(d, "--- a\n+++ b\n@@ -1,3 +1,4 @@\n+0\n 1\n 2\n 3\n@@ -17,4 +18,3 @@\n 17\n 18\n 19\n-20\n");
        let d = unified("", "x\n", "a", "b");
        assert_eq!(d, "--- a\n+++ b\n@@ -0,0 +1 @@\n+x\n");
    }

    #[test]
    fn a_huge_middle_is_replaced_whole() {
        let old = (0..3000).map(|i| format!("o{i}\n")).collect::<String>();
        let new = (0..3000).map(|i| format!("n{i}\n")).collect::<String>();
        let d = unified(&old, &new, "a", "b");
        assert_eq!(d.lines().filter(|l| l.starts_with('-') && !l.starts_with("---")).count(), 3000);
        assert_eq!(d.lines().filter(|l| l.starts_with('+') && !l.starts_with("+++")).count(), 3000);
    }
}
