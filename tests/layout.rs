//! The library's layers: no folder uses a folder above it, and no module imports one that
//! imports it back (README, "Layout of the code").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each layer folder may use besides itself and the crate-wide `error` and `host`.
const ALLOWED: &[(&str, &[&str])] = &[
    ("crypto", &[]),
    ("rdb", &[]),
    ("store", &["crypto"]),
    ("format", &["store", "crypto"]),
    ("engine", &["format", "store", "crypto", "rdb"]),
    ("maintain", &["engine", "format", "store", "crypto", "rdb"]),
    ("redis", &["engine", "format", "store", "crypto", "rdb"]),
    ("ops", &["maintain", "redis", "engine", "format", "store", "crypto", "rdb"]),
    ("web", &["ops", "maintain", "redis", "engine", "format", "store", "crypto", "rdb"]),
];

/// Files directly in `src/` that are not layers.
const LOOSE: &[&str] = &["lib.rs", "main.rs", "error.rs", "host.rs", "testutil.rs"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
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

/// The module path of a file, e.g. `src/engine/backup.rs` -> `engine::backup`.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

/// The code of a file without `//` comments and unit tests, with `super::` spelled out
/// as the crate path it names.
fn code(file: &Path, module: &str) -> String {
    let text = std::fs::read_to_string(file).expect("read source");
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let parent = if parent.is_empty() { "crate::".to_string() } else { format!("crate::{parent}::") };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or("").replace("super::", &parent))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b::...` path a file names, cut to the longest known module.
fn imports(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let path: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
        let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        for n in (1..=segs.len()).rev() {
            let candidate = segs[..n].join("::");
            if modules.contains(&candidate) {
                out.insert(candidate);
                break;
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.retain(|f| !f.starts_with(src().join("cli")) && !f.ends_with("main.rs"));
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    files
        .iter()
        .map(|f| {
            let me = module_of(f);
            let mut deps = imports(&code(f, &me), &modules);
            // A folder's mod.rs declares its children; that is not an import cycle.
            deps.retain(|d| d != &me && !d.starts_with(&format!("{me}::")) && !me.starts_with(&format!("{d}::")));
            (me, deps)
        })
        .collect()
}

fn layer(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn src_holds_layer_folders_and_few_loose_files() {
    let mut loose = Vec::new();
    for entry in std::fs::read_dir(src()).expect("read src") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        if path.is_dir() {
            assert!(name == "cli" || ALLOWED.iter().any(|(l, _)| *l == name), "src/{name}/ is not a known layer");
        } else {
            assert!(LOOSE.contains(&name.as_str()), "src/{name} is loose: put it in a layer folder");
            loose.push(name);
        }
    }
    let besides = loose.iter().filter(|n| *n != "lib.rs" && *n != "main.rs").count();
    assert!(besides <= 4, "{besides} loose files besides lib.rs/main.rs: {loose:?}");
}

#[test]
fn no_layer_uses_a_layer_above_it() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, deps) in graph() {
        let from = layer(&module);
        let Some(ok) = allowed.get(from) else { continue };
        for dep in deps {
            let to = layer(&dep);
            let fine = to == from || ok.contains(&to) || ["error", "host", "testutil"].contains(&to);
            if !fine {
                wrong.push(format!("{module} -> {dep}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports that point up or sideways: {wrong:#?}");
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph();
    // Tarjan-free: a module is in a cycle if it can reach itself.
    let mut cycles = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = graph[start].iter().collect();
        while let Some(m) = stack.pop() {
            if m == start {
                cycles.push(start.clone());
                break;
            }
            if seen.insert(m.clone()) {
                stack.extend(graph.get(m).into_iter().flatten());
            }
        }
    }
    assert!(cycles.is_empty(), "modules on an import cycle: {cycles:?}");
}

#[test]
fn every_layer_says_what_it_may_use() {
    for (name, _) in ALLOWED {
        let text = std::fs::read_to_string(src().join(name).join("mod.rs")).expect("layer mod.rs");
        assert!(text.starts_with("//!"), "src/{name}/mod.rs has no module doc");
    }
}
