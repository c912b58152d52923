//! The guide's commands against the CLI's grammar: every `sptune ...` line in a fenced block of
//! `docs/guide.md` must parse with [`Cli`]'s clap parser, so the guide cannot show a flag, a
//! value or a command the binary does not take. Commands are only parsed, never run: a
//! placeholder file name such as `photos` parses like any path.

use clap::CommandFactory;
use clap::Parser;
use clap::error::ErrorKind;

use crate::args::Cli;

/// `docs/guide.md`, read when the test runs.
fn guide() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/guide.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines of fenced blocks that start with `sptune` (leading blanks ignored), each joined
/// with the lines its trailing `\` continues onto: `(line number, text)`.
fn fenced_sptune_lines(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    let mut open: Option<(usize, String)> = None;
    for (n, line) in md.lines().enumerate() {
        let t = line.trim_start();
        if let Some(m) = ["```", "~~~"].into_iter().find(|m| t.starts_with(m)) {
            match fence {
                None => fence = Some(m),
                Some(f) if f == m => {
                    fence = None;
                    out.extend(open.take());
                }
                Some(_) => {}
            }
            continue;
        }
        if fence.is_none() {
            continue;
        }
        let continues = line.trim_end().ends_with('\\');
        match open.take() {
            Some((start, mut text)) => {
                text.push('\n');
                text.push_str(line);
                if continues {
                    open = Some((start, text));
                } else {
                    out.push((start, text));
                }
            }
            None if t == "sptune" || t.starts_with("sptune ") => {
                if continues {
                    open = Some((n + 1, line.to_string()));
                } else {
                    out.push((n + 1, line.to_string()));
                }
            }
            None => {}
        }
    }
    out.extend(open);
    out
}

/// A token of a shell line: a word (quotes removed) or an operator.
#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Op(String),
}

/// Splits a shell line as `sh` would, without expansions: `'...'` literal, `"..."` with
/// `\"`, `\\`, `\$` and `` \` `` escapes, `\` escaping one character outside quotes,
/// backslash-newline joining lines, `#` at the start of a word opening a comment to the end of
/// the line, and `;`, `&`, `&&`, `|`, `||`, `<`, `>`, `>>`, `>&` as operators (a number right
/// before a redirection, as in `2>`, is its file descriptor and dropped).
fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let flush = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(n) => {
                    word.push(n);
                    in_word = true;
                }
                None => return Err("a trailing backslash continues onto nothing".into()),
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => word.push(x),
                        None => return Err("an unclosed single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.peek() {
                            Some(&n) if matches!(n, '"' | '\\' | '$' | '`' | '\n') => {
                                chars.next();
                                if n != '\n' {
                                    word.push(n);
                                }
                            }
                            _ => word.push('\\'),
                        },
                        Some(x) => word.push(x),
                        None => return Err("an unclosed double quote".into()),
                    }
                }
            }
            '#' if !in_word => {
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            ';' | '&' | '|' | '<' | '>' => {
                if matches!(c, '<' | '>') && in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                flush(&mut word, &mut in_word, &mut tokens);
                let mut op = c.to_string();
                if let Some(&n) = chars.peek()
                    && ((n == c && c != ';' && c != '<') || (c == '>' && n == '&'))
                {
                    op.push(n);
                    chars.next();
                }
                tokens.push(Token::Op(op));
            }
            c if c.is_whitespace() => flush(&mut word, &mut in_word, &mut tokens),
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    flush(&mut word, &mut in_word, &mut tokens);
    Ok(tokens)
}

/// The commands of a tokenized line, split at `;`, `&`, `&&`, `|` and `||`, with
/// redirections and their targets removed.
fn commands(tokens: Vec<Token>) -> Result<Vec<Vec<String>>, String> {
    let mut out = vec![Vec::new()];
    let mut tokens = tokens.into_iter();
    while let Some(t) = tokens.next() {
        match t {
            Token::Word(w) => out.last_mut().unwrap().push(w),
            Token::Op(op) if matches!(op.as_str(), "<" | ">" | ">>" | ">&") => {
                match tokens.next() {
                    Some(Token::Word(_)) => {}
                    _ => return Err(format!("{op} without a target")),
                }
            }
            Token::Op(_) => out.push(Vec::new()),
        }
    }
    out.retain(|c| !c.is_empty());
    Ok(out)
}

/// Every `sptune` command of the guide's fenced lines: `(line number, the line, its words)`.
fn guide_commands() -> Vec<(usize, String, Vec<String>)> {
    let mut out = Vec::new();
    for (n, line) in fenced_sptune_lines(&guide()) {
        let words = tokenize(&line)
            .and_then(commands)
            .unwrap_or_else(|e| panic!("docs/guide.md:{n}: {e}: {line}"));
        for cmd in words.into_iter().filter(|c| c[0] == "sptune") {
            out.push((n, line.clone(), cmd));
        }
    }
    out
}

/// Every fenced line of `docs/guide.md` that starts with `sptune ` (split shell-like: quotes,
/// trailing `\` continuations, `# comments` dropped) parses under the CLI's clap grammar
/// (`Cli::try_parse_from`; `--help` and `--version` count as parsing). Each failing line is
/// printed with its line number and clap's error.
#[test]
fn every_sptune_command_in_the_guide_parses() {
    let cmds = guide_commands();
    let mut failures = Vec::new();
    for (n, line, words) in &cmds {
        if let Err(e) = Cli::try_parse_from(words)
            && !matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            )
        {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default();
            failures.push(format!("docs/guide.md:{n}: {line}\n    {first}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} guide command(s) do not parse:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // the guide shows dozens: finding few means the fence scan is broken, not the guide short
    assert!(
        cmds.len() >= 30,
        "only {} sptune commands found",
        cmds.len()
    );
}

/// The guide shows every command of the CLI at least once (every subcommand, and every
/// subcommand of `runs` and `weights`, that is not hidden), in a fenced line that parses.
#[test]
fn the_guide_shows_every_command() {
    let mut shown = std::collections::BTreeSet::new();
    for (_, _, words) in guide_commands() {
        let Ok(m) = Cli::command().try_get_matches_from(&words) else {
            continue; // reported by every_sptune_command_in_the_guide_parses
        };
        if let Some((name, sub)) = m.subcommand() {
            shown.insert(name.to_string());
            if let Some((inner, _)) = sub.subcommand() {
                shown.insert(format!("{name} {inner}"));
            }
        }
    }
    let mut missing = Vec::new();
    for cmd in Cli::command().get_subcommands() {
        if cmd.is_hide_set() || cmd.get_name() == "help" {
            continue;
        }
        let name = cmd.get_name();
        if !shown.contains(name) {
            missing.push(name.to_string());
        }
        for inner in cmd.get_subcommands() {
            let full = format!("{name} {}", inner.get_name());
            if !inner.is_hide_set() && inner.get_name() != "help" && !shown.contains(&full) {
                missing.push(full);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/guide.md shows no command line for: sptune {}",
        missing.join(", sptune ")
    );
}

/// The shell-like splitting: quotes, escapes, continuations, comments, operators and
/// redirections.
#[test]
fn guide_lines_are_split_like_a_shell() {
    let split = |s: &str| tokenize(s).and_then(commands).unwrap();
    assert_eq!(
        split("sptune eval --model 'a b.safetensors' --data \"x \\\"y\\\"\"   # note"),
        [[
            "sptune",
            "eval",
            "--model",
            "a b.safetensors",
            "--data",
            "x \"y\""
        ]]
    );
    assert_eq!(
        split("sptune finetune --init a \\\n    --out b  # c\n"),
        [["sptune", "finetune", "--init", "a", "--out", "b"]]
    );
    assert_eq!(
        split("sptune runs list r; sptune report r 2>/dev/null | head -3 && echo a#b"),
        [
            vec!["sptune", "runs", "list", "r"],
            vec!["sptune", "report", "r"],
            vec!["head", "-3"],
            vec!["echo", "a#b"],
        ]
    );
    assert!(tokenize("sptune eval --model 'open").is_err());
    let md = "text\n```sh\nsptune a \\\n  --b c\n# sptune no\ncargo x\n  sptune d\n```\nsptune e\n";
    assert_eq!(
        fenced_sptune_lines(md),
        [
            (3, "sptune a \\\n  --b c".to_string()),
            (7, "  sptune d".to_string())
        ]
    );
}

/// `sptune study --help` names every preset the library knows, and each of them loads.
#[test]
fn the_preset_help_names_every_preset() {
    let mut cmd = Cli::command();
    let study = cmd.find_subcommand_mut("study").expect("study subcommand");
    let help = study.render_long_help().to_string();
    assert!(!sptune::study::StudyConfig::PRESETS.is_empty());
    for name in sptune::study::StudyConfig::PRESETS {
        assert!(
            help.contains(name),
            "`sptune study --help` does not name the preset {name}"
        );
        sptune::study::StudyConfig::preset(name).unwrap();
    }
}
