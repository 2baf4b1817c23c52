//! The crate's layering, checked: every `crate::...` (and `super::...` reaching the crate root)
//! path in `src/` must name a module of a lower layer, or of the same layer when the table
//! allows it. The layers are the ones `src/lib.rs` documents; a new top-level module must be
//! placed here, or this test fails and says so.
//!
//! Why a test and not only `module-cycles.py` in CI: a cycle is the symptom; an upward import
//! is the cause, and it is caught here on the first one, in `cargo test`, with the file named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bottom to top. A module imports only from layers below its own, and from the modules its
/// own layer lists before it (the order inside a layer is the allowed direction).
const LAYERS: &[&[&str]] = &[
    &["clock", "path", "config", "error", "shard", "version"],
    &["http1", "body", "reply"],
    &["routing", "auth", "telemetry"],
    &["upstream"],
    // Siblings: neither may import the other (checked below).
    &["proxy", "server"],
    &["admin", "app", "demo", "lab", "cli"],
];

/// Same-layer pairs that must never depend on each other in either direction.
const SIBLINGS: &[(&str, &str)] = &[
    ("proxy", "server"),
    ("routing", "telemetry"),
    ("routing", "auth"),
    ("auth", "telemetry"),
];

fn rank(module: &str) -> Option<(usize, usize)> {
    LAYERS.iter().enumerate().find_map(|(layer, mods)| {
        mods.iter()
            .position(|m| *m == module)
            .map(|order| (layer, order))
    })
}

/// The code without comments and string literals (paths in docs and messages are not imports).
fn strip(code: &str) -> String {
    let b = code.as_bytes();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = code[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
        } else if b[i] == b'"' && !(i > 0 && b[i - 1] == b'\'') {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of each item of a `{...}` group starting at `s[0] == '{'`.
fn group_heads(s: &str) -> Vec<String> {
    let mut depth = 0;
    let mut heads = Vec::new();
    let mut item = String::new();
    for c in s.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => {
                heads.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        if depth >= 1 {
            item.push(c);
        }
    }
    heads.push(item);
    heads
        .iter()
        .map(|h| ident_at(h.trim_start()).to_owned())
        .filter(|h| !h.is_empty() && h != "self")
        .collect()
}

/// Top-level modules a file names: `crate::x`, `crate::{x, y}`, and `super::` chains that
/// climb out of its own top-level module.
fn targets(code: &str, depth: usize) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && code.as_bytes()[at - 1].is_ascii_alphanumeric() {
            continue; // `stratix_gateway_crate::` and the like
        }
        let rest = &code[at + "crate::".len()..];
        if rest.starts_with('{') {
            found.extend(group_heads(rest));
        } else {
            found.push(ident_at(rest).to_owned());
        }
    }
    for (at, _) in code.match_indices("super::") {
        if at >= "super::".len() && &code[at - "super::".len()..at] == "super::" {
            continue; // counted from the first `super::` of the chain
        }
        let mut rest = &code[at..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        if ups >= depth {
            found.push(ident_at(rest).to_owned());
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_import_goes_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let mut parts: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        let Some(module) = parts.first().cloned() else {
            continue; // lib.rs and main.rs declare the modules; they import nothing between them
        };
        // How many `super::` reach the crate root from this file: its module path's length.
        let depth = parts.len();
        let code = std::fs::read_to_string(file).expect("read source");
        for target in targets(&strip(&code), depth) {
            if target == module || target.is_empty() {
                continue;
            }
            edges
                .entry((module.clone(), target))
                .or_default()
                .push(rel.display().to_string());
        }
    }
    for ((from, to), files) in &edges {
        let (Some(f), Some(t)) = (rank(from), rank(to)) else {
            let unknown = if rank(from).is_none() { from } else { to };
            problems.push(format!(
                "module `{unknown}` is in no layer: place it in LAYERS (tests/layers.rs) and in src/lib.rs"
            ));
            continue;
        };
        let sibling = SIBLINGS
            .iter()
            .any(|(a, b)| (a == from && b == to) || (a == to && b == from));
        if t.0 > f.0 || (t.0 == f.0 && (t.1 >= f.1 || sibling)) {
            problems.push(format!(
                "{from} (layer {}) imports {to} (layer {}): {}",
                f.0 + 1,
                t.0 + 1,
                files.join(", ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "imports against the layering:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_relative_imports() {
    let code = strip(
        "use crate::{http1::Span, body::{A, B}};\n// crate::admin in a comment\nlet s = \"crate::app\";\nuse super::super::proxy::X;\nuse super::sibling;",
    );
    let mut found = targets(&code, 2);
    found.sort();
    assert_eq!(found, ["body", "http1", "proxy"]);
    assert_eq!(rank("proxy"), Some((4, 0)));
    assert_eq!(rank("nowhere"), None);
}
