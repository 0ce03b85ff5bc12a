//! Checks of the command line itself: every command and flag explains
//! itself, and every `weir …` command the runbook and the CLI docs show parses.

use clap::{CommandFactory, Parser};

use super::Cli;

/// Walks the command tree: each visible (sub)command has an about line and
/// each of its visible arguments a help line.
fn missing_help(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
    if cmd.get_about().is_none() && path != "weir" {
        missing.push(format!("{path}: no about line"));
    }
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            missing.push(format!("{path} {}: no help line", arg.get_long().map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"))));
        }
    }
    for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
        missing_help(sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

#[test]
fn every_command_and_flag_has_a_help_line() {
    let cmd = Cli::command();
    cmd.clone().debug_assert();
    let mut missing = Vec::new();
    missing_help(&cmd, "weir", &mut missing);
    assert!(missing.is_empty(), "without help:\n{}", missing.join("\n"));
}

#[test]
fn the_version_names_the_commit() {
    let version = Cli::command().get_version().map(str::to_string).unwrap_or_default();
    assert!(version.starts_with(env!("CARGO_PKG_VERSION")), "{version}");
    let commit = env!("GATEWAY_BUILD_COMMIT");
    assert!(version.ends_with(&format!("(commit {commit})")), "{version}");
    assert!(commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_alphanumeric())), "{commit}");
}

/// Splits a shell line into words as sh would for a simple command: quotes
/// group, `$(…)` stays one word, a comment or `|`, `;`, `&&` ends it.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word) = (Vec::new(), String::new());
    let (mut single, mut double, mut depth) = (false, false, 0usize);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '(' if !single && word.ends_with('$') => {
                depth += 1;
                word.push(c);
            }
            ')' if !single && depth > 0 => {
                depth -= 1;
                word.push(c);
            }
            '#' | '|' | ';' if !single && !double && depth == 0 && word.is_empty() => break,
            '&' if !single && !double && depth == 0 && chars.peek() == Some(&'&') => break,
            c if c.is_whitespace() && !single && !double && depth == 0 => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The `weir …` commands of a Markdown file's fenced code blocks (leading
/// `VAR=value` assignments dropped), with their line numbers.
fn fenced_weir_commands(markdown: &str) -> Vec<(usize, Vec<String>)> {
    let mut fenced = false;
    let mut commands = Vec::new();
    for (n, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            continue;
        }
        let words: Vec<String> = shell_words(line).into_iter().skip_while(|w| w.contains('=') && !w.starts_with('-')).collect();
        if words.first().is_some_and(|w| w == "weir") {
            commands.push((n + 1, words));
        }
    }
    commands
}

#[test]
fn shell_words_split_as_sh_would() {
    assert_eq!(
        shell_words("weir backup --out /b/weir-$(date +%F).weirbak   # daily"),
        ["weir", "backup", "--out", "/b/weir-$(date +%F).weirbak"]
    );
    assert_eq!(shell_words("weir status | head -1"), ["weir", "status"]);
    assert_eq!(shell_words("weir replay --tenant 'a b' && x"), ["weir", "replay", "--tenant", "a b"]);
}

#[test]
fn every_weir_command_in_the_runbook_and_the_cli_docs_parses() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let mut checked = 0;
    for file in ["operations.md", "cli.md"] {
        let text = std::fs::read_to_string(docs.join(file)).expect("docs file");
        let commands = fenced_weir_commands(&text);
        assert!(!commands.is_empty(), "{file} shows no weir command in a code block");
        for (line, words) in commands {
            if let Err(e) = Cli::try_parse_from(&words) {
                panic!("docs/{file}:{line}: `{}` does not parse:\n{e}", words.join(" "));
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} commands found");
}
