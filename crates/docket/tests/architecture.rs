//! The layering rules of `ARCHITECTURE.md`, checked on the real crate graph, and the codemap
//! itself checked against the tree.
//!
//! * `crate_graph_keeps_its_layers` reads `cargo metadata` (the resolved graph, normal
//!   dependencies only: dev- and build-dependencies do not ship) and fails when a crate
//!   reaches, directly or through others, a library its layer must not see: the pure crates
//!   (`docket-core`, `docket-events`) no runtime, database, HTTP or mail library; the ports
//!   (`docket-ports`), the bus and its consumer runtime (`docket-bus`) and the use-case crate
//!   (`docket-app`) no database driver, HTTP framework or client, mail or broker library; the
//!   HTTP crate no database driver; and no crate that ships reaches the test fixtures
//!   (`docket-testkit`). There are no exceptions.
//! * `pure_crates_read_no_clock_and_draw_nothing`: the pure crates take time and new ids as
//!   arguments, so their graph has no `rand` and their code (comments aside) calls no clock
//!   or random source (`Timestamp::now`, `Uuid::now_v7`, `rand::`, …); ids are made at the
//!   edges (`docket_ports::ids`), trace ids in `docket-trace`.
//! * `architecture_md_names_exist` reads every backticked span of `ARCHITECTURE.md` that is a
//!   path (`crates/docket-ports/src/store.rs`, `docket-postgres/src/lib.rs`, `deploy/`) or a Rust path
//!   (`topics::log_topics`, `Store::prune_outbox`) and fails when the tree has no such file or
//!   folder, or no Rust code (comments aside) names the item, so the codemap cannot silently go stale.
//!
//! It does not judge what the codemap says about an item, only that the item exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// Libraries a layer must not reach, by rule.
const RUNTIME_IO: &[&str] = &["tokio", "sqlx", "rusqlite", "axum", "reqwest", "hyper", "lettre"];
const DRIVERS: &[&str] = &["sqlx", "rusqlite", "sqlx-postgres", "sqlx-core", "libsqlite3-sys"];
const EDGE_LIBS: &[&str] =
    &["axum", "hyper", "reqwest", "lettre", "rdkafka", "redis", "async-nats", "lapin", "rumqttc"];

/// Random number sources: the pure crates take random draws (ids, jitter) as arguments.
const RANDOMNESS: &[&str] = &["rand", "fastrand"];

/// The host's target triple: the graph is resolved for the platform the binary is built on.
fn host() -> String {
    let out = Command::new("rustc").arg("-vV").output().expect("run rustc -vV");
    let text = String::from_utf8(out.stdout).expect("rustc -vV output");
    text.lines().find_map(|l| l.strip_prefix("host: ")).expect("host line").to_owned()
}

fn metadata() -> Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host()])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

/// Every package's name by id, and each package's normal dependencies by id.
fn normal_graph(meta: &Value) -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>) {
    let names = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap().to_owned(), p["name"].as_str().unwrap().to_owned()))
        .collect();
    let mut deps = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let id = node["id"].as_str().unwrap().to_owned();
        let normal = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null()))
            .map(|d| d["pkg"].as_str().unwrap().to_owned())
            .collect();
        deps.insert(id, normal);
    }
    (names, deps)
}

/// The names of every package `from` reaches through normal dependencies.
fn reach(
    from: &str,
    deps: &BTreeMap<String, Vec<String>>,
    names: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(id) = stack.pop() {
        for d in deps.get(&id).into_iter().flatten() {
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    seen.iter().map(|id| names[id].clone()).collect()
}

#[test]
fn crate_graph_keeps_its_layers() {
    let meta = metadata();
    let (names, deps) = normal_graph(&meta);
    let members: Vec<String> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let rules: &[(&str, &[&[&str]])] = &[
        ("docket-core", &[RUNTIME_IO, DRIVERS, RANDOMNESS]),
        ("docket-events", &[RUNTIME_IO, DRIVERS, RANDOMNESS]),
        ("docket-ports", &[DRIVERS, EDGE_LIBS]),
        ("docket-bus", &[DRIVERS, EDGE_LIBS]),
        ("docket-app", &[DRIVERS, EDGE_LIBS]),
        ("docket-http", &[DRIVERS]),
    ];
    // Dev-only fixtures: no crate that ships may depend on them.
    for (krate, dev_only) in [("docket-app", "docket-testkit"), ("docket-http", "docket-testkit")] {
        let id = members.iter().find(|id| names[*id] == krate).expect("workspace member");
        assert!(
            !reach(id, &deps, &names).contains(dev_only),
            "{krate} reaches {dev_only}, which holds test fixtures only"
        );
    }
    let mut found = BTreeSet::new();
    for (krate, forbidden) in rules {
        let id = members
            .iter()
            .find(|id| names[*id] == *krate)
            .unwrap_or_else(|| panic!("workspace member {krate}"));
        let reached = reach(id, &deps, &names);
        for lib in forbidden.iter().flat_map(|l| l.iter()) {
            if reached.contains(*lib) {
                found.insert((krate.to_string(), lib.to_string()));
            }
        }
    }
    assert!(found.is_empty(), "crates reach libraries their layer must not see: {found:?}");
}

/// The `.rs` files below `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn pure_crates_read_no_clock_and_draw_nothing() {
    let forbidden = [
        "::now(",
        "now_v7",
        "new_v7",
        "NoContext",
        "rand::",
        "getrandom",
        "thread_rng",
        "SystemTime",
        "Instant::",
    ];
    let mut found = Vec::new();
    for krate in ["docket-core", "docket-events"] {
        for file in rust_files(&root().join("crates").join(krate).join("src")) {
            let text = std::fs::read_to_string(&file).expect("read source");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for f in forbidden.iter().filter(|f| code.contains(*f)) {
                    found.push(format!("{}:{}: {f}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "the pure crates read a clock or draw random numbers: {found:#?}");
}

/// Every file and folder git would see (tracked or not, ignored ones excluded), relative to the root.
fn tree_paths() -> BTreeSet<String> {
    let out = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(root())
        .output()
        .expect("run git ls-files");
    assert!(out.status.success(), "git ls-files failed");
    let mut paths = BTreeSet::new();
    for file in String::from_utf8(out.stdout).unwrap().lines() {
        if !root().join(file).exists() {
            continue; // deleted in the work tree
        }
        let mut p = String::new();
        for (i, part) in file.split('/').enumerate() {
            if i > 0 {
                paths.insert(p.clone());
                p.push('/');
            }
            p.push_str(part);
        }
        paths.insert(p);
    }
    paths
}

/// The backticked spans of `text`.
fn spans(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for block in text.split("```").step_by(2) {
        let mut parts = block.split('`');
        parts.next();
        while let Some(span) = parts.next() {
            out.push(span);
            parts.next();
        }
    }
    out
}

fn is_file_path(span: &str) -> bool {
    let exts = [".rs", ".md", ".toml", ".sql", ".yaml", ".yml", ".env", ".py", ".json", ".sh"];
    !span.contains(' ')
        && !span.contains('{')
        && !span.contains('*')
        && !span.starts_with('/')
        && !span.contains("://")
        && (span.ends_with('/')
            || (span.contains('/') && exts.iter().any(|e| span.ends_with(e)))
            || exts.iter().any(|e| span.ends_with(e) && !span.contains("::")))
}

fn rust_path(span: &str) -> Option<Vec<&str>> {
    let span = span.strip_suffix("()").unwrap_or(span);
    let segs: Vec<&str> = span.split("::").collect();
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    (segs.len() >= 2 && segs.iter().all(|s| ident(s))).then_some(segs)
}

fn rust_sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            // Code only: a name that survives only in a comment does not exist.
            let text = std::fs::read_to_string(&path).expect("read source");
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

fn has_word(haystack: &str, word: &str) -> bool {
    haystack.match_indices(word).any(|(i, _)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + word.len()..].chars().next();
        let boundary = |c: Option<char>| !c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        boundary(before) && boundary(after)
    })
}

#[test]
fn architecture_md_names_exist() {
    let root = root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let paths = tree_paths();
    let mut sources = String::new();
    rust_sources(&root.join("crates"), &mut sources);
    let crate_names: BTreeSet<String> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().replace('-', "_"))
        .collect();

    let mut missing = Vec::new();
    for span in spans(&text) {
        if let Some(rel) = span.strip_prefix("../shared/") {
            // Outside the repository: the shared documents the project is built from.
            if !root.join("..").join("shared").join(rel).exists() && !rel.is_empty() {
                missing.push(format!("file `{span}`"));
            }
        } else if is_file_path(span) {
            let want = span.trim_end_matches('/');
            let found = paths.iter().any(|p| p == want || p.ends_with(&format!("/{want}")));
            if !found {
                missing.push(format!("path `{span}`"));
            }
        } else if let Some(segs) = rust_path(span) {
            for seg in segs {
                let known = crate_names.contains(seg)
                    || ["crate", "self", "super", "std"].contains(&seg)
                    || has_word(&sources, seg);
                if !known {
                    missing.push(format!("name `{seg}` of `{span}`"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what the tree does not have:\n{}",
        missing.join("\n")
    );
}
