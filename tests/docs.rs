//! The operator documentation cannot drift from the binary: every flag `halyard <command>
//! --help` shows is on the operations page with its default (and `serve`'s in the README
//! too), and every relative link of the README and of `docs/` leads to a file of this
//! repository. The binary is only asked for its help; no server is started.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The operations page.
const OPERATIONS: &str = "docs/operations.md";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(page: &str) -> String {
    let path = root().join(page);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One flag of a help text: its name and its `[default: ...]`, if any.
#[derive(Debug)]
struct Flag {
    name: String,
    default: Option<String>,
}

/// The flags of `halyard ARGS --help`, but `--help` itself.
fn flags(args: &[&str]) -> Vec<Flag> {
    let out = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run halyard --help");
    assert!(out.status.success(), "halyard {args:?} --help failed");
    let help = String::from_utf8_lossy(&out.stdout);
    // A flag's block is its line and the description lines under it (clap's long help).
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            blocks.push((name, trimmed.to_string()));
        } else if trimmed.starts_with('-') || trimmed.is_empty() || !line.starts_with(' ') {
            blocks.push((String::new(), String::new()));
        } else if let Some((_, text)) = blocks.last_mut() {
            text.push(' ');
            text.push_str(trimmed);
        }
    }
    blocks
        .into_iter()
        .filter(|(name, _)| !name.is_empty() && name != "help" && name != "version")
        .map(|(name, text)| {
            let default = text
                .split_once("[default: ")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(d, _)| d.to_string());
            Flag { name, default }
        })
        .collect()
}

/// The table row of `page` whose first cell names `--flag`.
fn row<'a>(page: &'a str, flag: &str) -> Option<&'a str> {
    let want = format!("--{flag}");
    page.lines().filter(|l| l.starts_with('|')).find(|l| {
        let first = l.split('|').nth(1).unwrap_or_default();
        first.match_indices(&want).any(|(at, _)| {
            let before = first[..at].chars().next_back();
            let after = first[at + want.len()..].chars().next();
            matches!(before, Some('`' | ' '))
                && after.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'))
        })
    })
}

/// Fails unless every flag of `halyard ARGS` has a row in `page` stating its default.
fn check_flags(args: &[&str], page_name: &str) {
    let page = read(page_name);
    let flags = flags(args);
    assert!(
        flags.len() >= 2,
        "found no flags in `halyard {args:?} --help`"
    );
    for flag in flags {
        let Some(row) = row(&page, &flag.name) else {
            panic!(
                "{page_name} does not document `halyard {} --{}`",
                args.join(" "),
                flag.name
            );
        };
        if let Some(default) = &flag.default {
            assert!(
                row.contains(default.as_str()),
                "{page_name}: the row of --{} does not state its default `{default}`:\n{row}",
                flag.name
            );
        }
    }
}

#[test]
fn every_serve_flag_is_documented_with_its_default() {
    check_flags(&["serve"], OPERATIONS);
    check_flags(&["serve"], "README.md");
}

#[test]
fn every_flag_of_the_other_commands_is_documented() {
    let page = read(OPERATIONS);
    let commands = [
        &["check"][..],
        &["tenant", "create"][..],
        &["backup"][..],
        &["restore"][..],
        &["migrate"][..],
        &["export-store"][..],
        &["import-store"][..],
    ];
    for args in commands {
        for flag in flags(args) {
            let documented = page.lines().any(|l| {
                l.starts_with(&format!("| `halyard {}", args.join(" ")))
                    && l.contains(&format!("`--{}", flag.name))
                    && flag.default.as_ref().is_none_or(|d| l.contains(d.as_str()))
            });
            assert!(
                documented,
                "{OPERATIONS} does not document `halyard {} --{}` (with its default)",
                args.join(" "),
                flag.name
            );
        }
    }
}

/// The targets of the Markdown links `[text](target)` in `text`.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("](") {
        let rest = &text[at + 2..];
        if let Some(end) = rest.find(')') {
            found.push(rest[..end].to_string());
        }
    }
    found
}

/// The Markdown pages of `docs/`.
fn doc_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    pages
}

#[test]
fn links_stay_inside_the_repository_and_resolve() {
    let mut pages = doc_pages();
    pages.push(root().join("README.md"));
    let mut checked = 0;
    for page in pages {
        let text = std::fs::read_to_string(&page).expect("read page");
        assert!(
            !text.contains("shared/spec") && !text.contains("shared/seed"),
            "{} points outside the repository (shared/...)",
            page.display()
        );
        let dir = page.parent().expect("a page has a directory");
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() {
                continue;
            }
            checked += 1;
            assert!(
                dir.join(file).exists(),
                "{}: the link ({target}) leads to no file",
                page.display()
            );
        }
    }
    assert!(checked > 0, "no relative link was checked");
}

#[test]
fn the_readme_lists_every_docs_page() {
    let readme = read("README.md");
    for page in doc_pages() {
        let name = page
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            readme.contains(&format!("](docs/{name})")),
            "README.md does not link docs/{name}"
        );
    }
}

#[test]
fn the_access_log_buffers_are_described_as_built() {
    use halyard_engine::access_log::{BUFFERS_PER_LOOP, BUFFER_BYTES, HAND_OVER_AFTER_MS};
    let page = read(OPERATIONS);
    let kib = BUFFER_BYTES / 1024;
    for said in [
        format!("a buffer of its own\n({kib} KiB)"),
        format!("{HAND_OVER_AFTER_MS} ms after its\nfirst line"),
        format!(
            "at most {BUFFERS_PER_LOOP} buffers (about {} MiB",
            BUFFERS_PER_LOOP * kib / 1024
        ),
        format!("({BUFFERS_PER_LOOP} x {kib} KiB)"),
    ] {
        assert!(page.contains(&said), "{OPERATIONS} does not say {said:?}");
    }
}
