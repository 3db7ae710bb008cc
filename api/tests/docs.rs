//! The documentation cannot drift from the code: the generated pages must equal what the
//! code renders now, every route and error code must be in them, and every error code the
//! sources answer with must be one the reference lists. Pure table and file checks: no
//! server is started.

use std::path::{Path, PathBuf};

use halyard_api::chat::sse;
use halyard_api::docs::{self, API_PAGE, CONVENTIONS_PAGE, OPERATIONS_ROUTES, REGENERATE};
use halyard_api::route::ROUTES;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(page: &str) -> String {
    let path = root().join(page);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; run `{REGENERATE}`", path.display()))
}

/// The first line where `got` and `want` differ, for the failure message.
fn first_difference(got: &str, want: &str) -> String {
    let (mut g, mut w) = (got.lines(), want.lines());
    for n in 1.. {
        match (g.next(), w.next()) {
            (None, None) => break,
            (a, b) if a == b => continue,
            (a, b) => {
                return format!(
                    "line {n}:\n  committed: {}\n  generated: {}",
                    a.unwrap_or("<end of file>"),
                    b.unwrap_or("<end of file>")
                )
            }
        }
    }
    "line endings differ".into()
}

#[test]
fn generated_pages_are_current() {
    let pages = docs::pages(&root()).unwrap_or_else(|e| panic!("{e}"));
    for page in pages {
        let committed = read(page.path);
        assert!(
            committed == page.content,
            "{} is stale: run `{REGENERATE}` and commit the result\n{}",
            page.path,
            first_difference(&committed, &page.content)
        );
    }
}

#[test]
fn every_route_is_in_the_reference() {
    let api = read(API_PAGE);
    for def in ROUTES {
        let heading = format!("## `{} {}`", def.method.as_str(), def.pattern);
        assert!(
            api.lines().any(|l| l == heading),
            "{API_PAGE} has no section `{heading}`: run `{REGENERATE}`"
        );
    }
    for (method, path, _) in OPERATIONS_ROUTES {
        let row = format!("| {method} | `{path}` |");
        assert!(api.contains(&row), "{API_PAGE} lacks {method} {path}");
    }
}

#[test]
fn every_error_code_and_stream_event_is_documented() {
    for page in [API_PAGE, CONVENTIONS_PAGE] {
        let text = read(page);
        for (status, code, _) in docs::error_codes() {
            let row = format!("| {status} | `{code}` |");
            assert!(text.contains(&row), "{page} lacks `{status} {code}`");
        }
        for e in sse::STREAM_ERROR_CODES {
            assert!(
                text.contains(&format!("| `{}` |", e.code)),
                "{page} lacks the stream error `{}`",
                e.code
            );
        }
        for e in sse::EVENTS {
            assert!(
                text.contains(&format!("| `{}` |", e.name)),
                "{page} lacks the stream event `{}`",
                e.name
            );
        }
    }
}

/// The Rust files under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The string literal at the start of `s` (after spaces), if any.
fn literal(s: &str) -> Option<&str> {
    let rest = s.trim_start().strip_prefix('"')?;
    rest.split('"').next()
}

/// Error codes written in the sources: `Response::error(STATUS, "CODE", ...)` and
/// `"code": "CODE"` in a JSON literal.
fn codes_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("Response::error(") {
        let args = &text[at + "Response::error(".len()..];
        if let Some((_, rest)) = args.split_once(',') {
            found.extend(literal(rest).map(String::from));
        }
    }
    for (at, pat) in text.match_indices("\"code\":") {
        found.extend(literal(&text[at + pat.len()..]).map(String::from));
    }
    found.retain(|c| c.len() > 2 && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
    found
}

#[test]
fn every_error_code_the_sources_answer_with_is_in_the_reference() {
    let mut files = Vec::new();
    for dir in ["engine/src", "api/src", "src"] {
        sources(&root().join(dir), &mut files);
    }
    let known: Vec<String> = docs::error_codes()
        .into_iter()
        .map(|(_, code, _)| code.to_string())
        .chain(sse::STREAM_ERROR_CODES.iter().map(|e| e.code.to_string()))
        .collect();
    let mut seen = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for code in codes_in(&text) {
            seen += 1;
            assert!(
                known.contains(&code),
                "{} answers with error code {code}, which the reference does not list: \
                 add it to ApiError::catalog, docs::engine_errors or sse::STREAM_ERROR_CODES, \
                 then run `{REGENERATE}`",
                file.display()
            );
        }
    }
    // The scan itself must find the engine's literal codes, or it checks nothing.
    assert!(seen >= 5, "the source scan found only {seen} error codes");
}

#[test]
fn the_scan_reads_both_shapes() {
    let text = r#"Response::error(408, "REQUEST_TIMEOUT", "x"); json!({"code": "SLOW_CONSUMER"}); json!({"code": e.code()})"#;
    assert_eq!(codes_in(text), ["REQUEST_TIMEOUT", "SLOW_CONSUMER"]);
}
