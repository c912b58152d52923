//! The docs' relative links: every `[text](path)` and `![alt](path)` in README.md,
//! CHANGELOG.md and `docs/*.md` must name a file or folder that exists, relative to the
//! linking file, and every `#anchor` into a Markdown file must name one of its headings.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Every relative Markdown link (`[text](path)`, `![alt](path)`, `[label]: path`) in README.md,
/// CHANGELOG.md and `docs/*.md` points to a file or directory that exists relative to the file
/// that links it (a leading `/` means the repository root, as on GitHub). Links to `http(s):`
/// and `mailto:` addresses are skipped; links inside fenced blocks and inline code are not
/// links. A `#anchor` (alone, or after a path to a `.md` file) must be the GitHub slug of a
/// heading of that file.
#[test]
fn every_relative_link_in_the_docs_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md"), root.join("CHANGELOG.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);

    let mut checked = 0;
    let mut anchors_checked = 0;
    let mut broken = Vec::new();
    let mut slugs: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (line, target) in links(&text) {
            let lower = target.to_ascii_lowercase();
            if lower.starts_with("http:")
                || lower.starts_with("https:")
                || lower.starts_with("mailto:")
            {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                checked += 1;
                let resolved = match path.strip_prefix('/') {
                    Some(from_root) => root.join(from_root),
                    None => file.parent().unwrap().join(path),
                };
                if !resolved.exists() {
                    broken.push(format!(
                        "{name}:{line}: ({target}) -> {path} does not exist"
                    ));
                    continue;
                }
                resolved
            };
            let Some(anchor) = anchor else { continue };
            if resolved.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let key = resolved.canonicalize().unwrap();
            let known = slugs
                .entry(key.clone())
                .or_insert_with(|| heading_slugs(&std::fs::read_to_string(&key).unwrap()));
            anchors_checked += 1;
            if !known.contains(anchor) {
                broken.push(format!(
                    "{name}:{line}: ({target}) -> no heading with anchor #{anchor}"
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
    assert!(
        anchors_checked >= 10,
        "only {anchors_checked} anchors found"
    );
}

/// The anchors GitHub gives a Markdown file's ATX headings (outside fenced blocks): the
/// heading's text with link syntax and code backticks removed, lowercased, every character
/// other than a letter, digit, `-`, `_` or space dropped, spaces turned into `-`; a repeated
/// slug gets `-1`, `-2`, ... in order.
fn heading_slugs(md: &str) -> HashSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = HashSet::new();
    let mut in_fence = false;
    for line in md.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || line.len() - t.len() > 3 {
            continue;
        }
        let hashes = t.bytes().take_while(|&b| b == b'#').count();
        if hashes == 0 || hashes > 6 || !(t.len() == hashes || t[hashes..].starts_with(' ')) {
            continue;
        }
        let slug = slug(t[hashes..].trim().trim_end_matches('#').trim());
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

/// One heading's GitHub slug (see [`heading_slugs`]).
fn slug(heading: &str) -> String {
    // `[text](target)` -> `text`
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after.find("](").and_then(|close| {
            after[close + 2..]
                .find(')')
                .map(|end| (close, close + 2 + end + 1))
        }) {
            Some((close, end)) => {
                text.push_str(&rest[..open]);
                text.push_str(&after[..close]);
                rest = &after[end..];
            }
            None => {
                text.push_str(&rest[..open + 1]);
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .flat_map(char::to_lowercase)
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Slugs as GitHub renders them, derived by hand from its rule (lowercase; punctuation
/// other than `-` and `_` dropped, backticks included; each space a `-`, so `--` in code
/// stays and the spaces around it add one each), and repeated headings numbered.
#[test]
fn heading_slugs_follow_github() {
    assert_eq!(
        slug("The demo (`cargo run --release -- demo`)"),
        "the-demo-cargo-run---release----demo"
    );
    assert_eq!(
        slug("Keeping the source: `fashion-mnist-keep`"),
        "keeping-the-source-fashion-mnist-keep"
    );
    assert_eq!(
        slug("Studies ([docs/a.md](docs/a.md)) now"),
        "studies-docsamd-now"
    );
    assert_eq!(
        slug("A real transfer: EfficientNet-Lite0 (ImageNet) -> Fashion-MNIST"),
        "a-real-transfer-efficientnet-lite0-imagenet---fashion-mnist"
    );
    let s = heading_slugs("# Top\n## Notes\n```\n# not a heading\n```\n### Notes\n#no\n");
    let want: HashSet<String> = ["top", "notes", "notes-1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(s, want);
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
