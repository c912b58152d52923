//! The docs' relative links: every `[text](path)` and `![alt](path)` in README.md and
//! `docs/*.md` must name a file or folder that exists, relative to the linking file.

use std::path::{Path, PathBuf};

/// Every relative Markdown link (`[text](path)`, `![alt](path)`, `[label]: path`) in README.md
/// and `docs/*.md` points to a file or directory that exists relative to the file that links
/// it (a leading `/` means the repository root, as on GitHub). Links to `http(s):` and
/// `mailto:` addresses and pure `#anchor` links are skipped, and a `#anchor` suffix is
/// stripped before the check; links inside fenced blocks and inline code are not links.
#[test]
fn every_relative_link_in_the_docs_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);

    let mut checked = 0;
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (line, target) in links(&text) {
            let Some(path) = local_path(&target) else {
                continue;
            };
            checked += 1;
            let resolved = match path.strip_prefix('/') {
                Some(from_root) => root.join(from_root),
                None => file.parent().unwrap().join(path),
            };
            if !resolved.exists() {
                broken.push(format!(
                    "{name}:{line}: ({target}) -> {path} does not exist"
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} broken link(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
    // the README alone has dozens: finding none means the scan is broken, not the docs clean
    assert!(checked >= 30, "only {checked} relative links found");
}

/// The path part of a link target when it is a local file: `None` for web and mail
/// addresses and for pure `#anchor` links; the `#anchor` suffix stripped otherwise.
fn local_path(target: &str) -> Option<&str> {
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("http:") || lower.starts_with("https:") || lower.starts_with("mailto:") {
        return None;
    }
    let path = target.split('#').next().unwrap_or("");
    (!path.is_empty()).then_some(path)
}

/// `(line, target)` of every inline link or image and every reference definition, outside
/// fenced blocks and code spans.
fn links(md: &str) -> Vec<(usize, String)> {
    let text = blank_code(md);
    let line_of = |pos: usize| text[..pos].matches('\n').count() + 1;
    let mut out = Vec::new();
    // inline links and images: `](target)` or `](target "title")`, parentheses may nest
    let mut from = 0;
    while let Some(i) = text[from..].find("](") {
        let start = from + i + 2;
        let mut depth = 1;
        let mut end = None;
        for (j, c) in text[start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(start + j);
                        break;
                    }
                }
                '\n' => break,
                _ => {}
            }
        }
        if let Some(end) = end {
            let inner = text[start..end].trim();
            let target = match inner.strip_prefix('<') {
                Some(rest) => rest.split('>').next().unwrap_or(""),
                None => inner.split_whitespace().next().unwrap_or(""),
            };
            out.push((line_of(start), target.to_string()));
        }
        from = start;
    }
    // reference definitions: `[label]: target`
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if line.len() - t.len() > 3 || !t.starts_with('[') {
            continue;
        }
        if let Some((label, rest)) = t[1..].split_once("]:")
            && !label.is_empty()
            && !label.contains(']')
            && let Some(target) = rest.split_whitespace().next()
        {
            let target = target.trim_start_matches('<').trim_end_matches('>');
            out.push((n + 1, target.to_string()));
        }
    }
    out
}

/// The text with fenced blocks and code spans replaced by spaces (newlines kept, so
/// positions keep their line numbers).
fn blank_code(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    let mut fence: Option<&str> = None;
    for line in md.split_inclusive('\n') {
        let t = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| t.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => {
                out.push_str(line);
                continue;
            }
            _ => {}
        }
        out.extend(line.chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
    }
    blank_code_spans(&out)
}

/// Code spans blanked: a run of n backticks up to the next run of exactly n backticks in the
/// same paragraph (an unmatched run is literal text, as in CommonMark).
fn blank_code_spans(text: &str) -> String {
    let b = text.as_bytes();
    let mut keep = vec![true; b.len()];
    let run_at = |i: usize| b[i..].iter().take_while(|&&c| c == b'`').count();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'`' {
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut close = None;
        while j < b.len() {
            if b[j] == b'\n'
                && text[j + 1..]
                    .trim_start_matches([' ', '\t'])
                    .starts_with('\n')
            {
                break; // a blank line ends the paragraph
            }
            if b[j] == b'`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                for k in keep.iter_mut().take(j + n).skip(i) {
                    *k = false;
                }
                i = j + n;
            }
            None => i += n,
        }
    }
    text.char_indices()
        .map(|(p, c)| if keep[p] || c == '\n' { c } else { ' ' })
        .collect()
}

/// The scanner finds inline links, images and reference definitions, strips anchors, and
/// skips web links, anchors, fenced blocks and code spans.
#[test]
fn the_link_scanner_sees_links_and_only_links() {
    let md = "See [a](x/a.md#top), ![img](pic.png \"title\") and [web](https://e.org).\n\
              `[not](code.md)` and ``[nor](this.md)``; [anchor](#here); [p](<s p.md>)\n\
              ```\n[fenced](fence.md)\n```\n\
              [ref]: ref.md\n\
              [n](wiki/(x).md)\n";
    let found: Vec<(usize, String)> = links(md);
    let targets: Vec<&str> = found.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        targets,
        [
            "x/a.md#top",
            "pic.png",
            "https://e.org",
            "#here",
            "s p.md",
            "wiki/(x).md",
            "ref.md"
        ]
    );
    assert_eq!(found[0].0, 1);
    assert_eq!(found[4].0, 2);
    assert_eq!(found[6].0, 6);
    let local: Vec<&str> = targets.iter().filter_map(|t| local_path(t)).collect();
    assert_eq!(
        local,
        ["x/a.md", "pic.png", "s p.md", "wiki/(x).md", "ref.md"]
    );
}
