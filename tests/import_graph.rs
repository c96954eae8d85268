//! Issue 11: no import circle in the project's own code. For each crate
//! (`ternd` in src/, `proto` in crates/proto/src, the ice-agent binary in
//! crates/ice-agent/src) this builds the module-level import graph from the
//! source text and fails when a module imports, directly or through others,
//! a module that imports it. The failure names each cycle, one per line, and
//! then where each edge on a cycle comes from.
//!
//! The model, std only:
//! - Modules are files, found from the crate root through `mod name;`
//!   declarations (`name.rs` or `name/mod.rs`). Inline modules other than a
//!   `#[cfg(test)] mod tests { .. }` are not modelled and fail the scan.
//! - Comments and the contents of string and char literals are blanked
//!   first; `#[cfg(test)] mod tests { .. }` (and `#[cfg(test)] mod x;`) is
//!   removed.
//! - An edge is any path starting with `crate::`, `super::` or `self::`, in
//!   `use` declarations (grouped trees too) and in code. `mod child;` is not
//!   an edge, and neither is a path from a module into its own submodules
//!   (bare `child::..`, `self::child::..`) nor a path into another crate.
//! - A path resolves to the deepest module along it; when the next segment is
//!   a name the module only imports (`pub use x::Item`, `use crate::a::B as
//!   C`, ...), the import is followed to the module that defines the item, so
//!   facades such as proto's `pub use server::{Output, ..}` in lib.rs do not
//!   count as dependencies on the facade. Self-edges are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The crates scanned: name, root file (relative to the workspace root).
const CRATES: [(&str, &str); 3] = [
    ("ternd", "src/lib.rs"),
    ("proto", "crates/proto/src/lib.rs"),
    ("ice-agent", "crates/ice-agent/src/main.rs"),
];

#[test]
fn no_import_cycles_in_the_crates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).ok();
    let mut report = Vec::new();
    let mut evidence = Vec::new();
    for (name, crate_root) in CRATES {
        let graph = Graph::scan(crate_root, &read).unwrap_or_else(|e| panic!("scanning crate {name}: {e}"));
        graph.assert_saw_the_code(name);
        let cycles = graph.cycles();
        for cycle in &cycles {
            report.push(cycle.join(" -> "));
            for pair in cycle.windows(2) {
                let line = format!(
                    "  {} -> {}: {}",
                    pair[0],
                    pair[1],
                    graph.edges[&(pair[0].clone(), pair[1].clone())]
                );
                if !evidence.contains(&line) {
                    evidence.push(line);
                }
            }
        }
    }
    assert!(
        report.is_empty(),
        "{} import cycle(s) (issue 11: no module may import its importer):\n{}\n\nwhere the edges come from:\n{}\n",
        report.len(),
        report.join("\n"),
        evidence.join("\n")
    );
}

impl Graph {
    /// Guards against a scan that passes by seeing nothing.
    fn assert_saw_the_code(&self, name: &str) {
        let (modules, edges, known): (usize, usize, &[(&str, &str)]) = match name {
            "ternd" => (
                35,
                60,
                &[
                    ("src/cli.rs", "src/config/mod.rs"),
                    ("src/http/mod.rs", "src/server/handle.rs"),
                ],
            ),
            "proto" => (
                25,
                70,
                &[
                    ("crates/proto/src/turn/allocate.rs", "crates/proto/src/allocation.rs"),
                    ("crates/proto/src/turn/mod.rs", "crates/proto/src/drop_reason.rs"),
                ],
            ),
            "ice-agent" => (
                10,
                11,
                &[("crates/ice-agent/src/connect.rs", "crates/ice-agent/src/agent.rs")],
            ),
            _ => unreachable!(),
        };
        assert!(
            self.files.len() >= modules,
            "crate {name}: only {} modules found (expected at least {modules}): {:?}",
            self.files.len(),
            self.files.values().collect::<Vec<_>>()
        );
        assert!(
            self.edges.len() >= edges,
            "crate {name}: only {} import edges found (expected at least {edges})",
            self.edges.len()
        );
        for (from, to) in known {
            assert!(
                self.edges.contains_key(&(from.to_string(), to.to_string())),
                "crate {name}: the known edge {from} -> {to} was not found"
            );
        }
        // Facades are followed: proto's `crate::DropReason` is drop_reason's, not lib.rs's.
        if name == "proto" {
            let facade = (
                "crates/proto/src/turn/mod.rs".to_string(),
                "crates/proto/src/lib.rs".to_string(),
            );
            assert!(
                !self.edges.contains_key(&facade),
                "crate proto: {facade:?} (re-export not followed)"
            );
        }
    }
}

/// A module's path from the crate root (`[]` is the root).
type ModPath = Vec<String>;

struct Graph {
    /// Module → its file.
    files: BTreeMap<ModPath, String>,
    /// Module → its declared child modules.
    children: BTreeMap<ModPath, BTreeSet<String>>,
    /// Module → names it imports at module level (`use`, any visibility) →
    /// the imported path, relative to the module.
    imports: BTreeMap<ModPath, BTreeMap<String, Vec<String>>>,
    /// (from file, to file) → the first place that makes the edge.
    edges: BTreeMap<(String, String), String>,
}

impl Graph {
    /// Reads the crate whose root file is `root` (`read` maps a path to the
    /// file's text) and builds its import graph.
    fn scan(root: &str, read: &dyn Fn(&str) -> Option<String>) -> Result<Graph, String> {
        let mut graph = Graph {
            files: BTreeMap::new(),
            children: BTreeMap::new(),
            imports: BTreeMap::new(),
            edges: BTreeMap::new(),
        };
        // First every module: its file, children and imports.
        let mut tokens = BTreeMap::new();
        let mut todo = vec![(ModPath::new(), root.to_string())];
        while let Some((module, file)) = todo.pop() {
            let text = read(&file).ok_or_else(|| format!("cannot read {file}"))?;
            let toks = without_test_modules(tokenize(&blank_comments_and_literals(&text)));
            let children = declared_modules(&toks).map_err(|e| format!("{file}: {e}"))?;
            let dir = match file.strip_suffix("/mod.rs") {
                Some(dir) => dir.to_string(),
                None if module.is_empty() => file.rsplit_once('/').map_or("", |(d, _)| d).to_string(),
                None => file.trim_end_matches(".rs").to_string(),
            };
            for child in &children {
                let base = if dir.is_empty() {
                    child.clone()
                } else {
                    format!("{dir}/{child}")
                };
                let (flat, nested) = (format!("{base}.rs"), format!("{base}/mod.rs"));
                let child_file = match (read(&flat).is_some(), read(&nested).is_some()) {
                    (true, false) => flat,
                    (false, true) => nested,
                    (true, true) => return Err(format!("both {flat} and {nested} exist")),
                    (false, false) => return Err(format!("{file}: `mod {child};` has neither {flat} nor {nested}")),
                };
                let mut path = module.clone();
                path.push(child.clone());
                todo.push((path, child_file));
            }
            graph.imports.insert(module.clone(), module_imports(&toks));
            graph.children.insert(module.clone(), children);
            graph.files.insert(module.clone(), file);
            tokens.insert(module, toks);
        }
        // Then the edges, which need every module known.
        for (module, toks) in &tokens {
            let file = &graph.files[module];
            for (path, line) in crate_paths(toks) {
                if let Some(target) = graph.resolve(module, &path, 0) {
                    let to = &graph.files[&target];
                    // A module's own descendants (`self::child::..`, or
                    // `crate::x` from the root) are like a bare `child::..`
                    // path: part of the module, no edge (nor a self-edge).
                    if !target.starts_with(module) {
                        let place = format!("{file}:{line} `{}`", path.join("::"));
                        graph.edges.entry((file.clone(), to.clone())).or_insert(place);
                    }
                }
            }
        }
        Ok(graph)
    }

    /// The module that defines what `path` (seen from `from`) names, or None
    /// when it leads out of the crate.
    fn resolve(&self, from: &ModPath, path: &[String], depth: usize) -> Option<ModPath> {
        let mut module = from.clone();
        let mut rest = path;
        match rest.first()?.as_str() {
            "crate" => {
                module.clear();
                rest = &rest[1..];
            }
            "self" => rest = &rest[1..],
            "super" => {}
            first if self.children[from].contains(first) => {}
            _ => return None, // another crate or std
        }
        while rest.first().is_some_and(|s| s == "super" || s == "self") {
            if rest[0] == "super" {
                module.pop()?;
            }
            rest = &rest[1..];
        }
        while let Some(segment) = rest.first() {
            if !self.children[&module].contains(segment) {
                break;
            }
            module.push(segment.clone());
            rest = &rest[1..];
        }
        if let (Some(item), true) = (rest.first(), depth < 32) {
            if let Some(imported) = self.imports[&module].get(item) {
                let mut target = imported.clone();
                target.extend_from_slice(&rest[1..]);
                return self.resolve(&module, &target, depth + 1);
            }
        }
        Some(module)
    }

    /// Every elementary cycle, each starting at its smallest file, with the
    /// start repeated at the end. Found within strongly connected components
    /// (Tarjan), at most 100 per component.
    fn cycles(&self) -> Vec<Vec<String>> {
        let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, to) in self.edges.keys() {
            next.entry(from).or_default().push(to);
        }
        let mut cycles = Vec::new();
        for component in strongly_connected(&self.files.values().map(String::as_str).collect::<Vec<_>>(), &next) {
            if component.len() < 2 {
                continue;
            }
            let mut found = Vec::new();
            for start in &component {
                let allowed = |n: &str| component.contains(&n) && n > *start;
                let mut path = vec![*start];
                walk(start, &next, &allowed, &mut path, &mut found);
                if found.len() >= 100 {
                    break;
                }
            }
            found.truncate(100);
            cycles.extend(found);
        }
        cycles
    }
}

/// Depth-first search for paths back to `path[0]` through `allowed` nodes.
fn walk<'a>(
    at: &'a str,
    next: &BTreeMap<&'a str, Vec<&'a str>>,
    allowed: &dyn Fn(&str) -> bool,
    path: &mut Vec<&'a str>,
    found: &mut Vec<Vec<String>>,
) {
    for &n in next.get(at).into_iter().flatten() {
        if found.len() >= 100 {
            return;
        }
        if n == path[0] {
            found.push(path.iter().chain([&n]).map(|s| s.to_string()).collect());
        } else if allowed(n) && !path.contains(&n) {
            path.push(n);
            walk(n, next, allowed, path, found);
            path.pop();
        }
    }
}

/// Tarjan's strongly connected components, each sorted.
fn strongly_connected<'a>(nodes: &[&'a str], next: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a, 'n> {
        next: &'n BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(s: &mut State<'a, '_>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in s.next.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            component.sort();
            s.out.push(component);
        }
    }
    let mut s = State {
        next,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// The text with comments and the insides of string and char literals
/// replaced by spaces (newlines kept, so line numbers stay right).
fn blank_comments_and_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, from: usize, to: usize| {
        for &ch in &c[from..to.min(c.len())] {
            out.push(if ch == '\n' { '\n' } else { ' ' });
        }
    };
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut i = 0;
    while i < c.len() {
        let after_ident = i > 0 && is_ident_char(c[i - 1]);
        let end = if at(i) == '/' && at(i + 1) == '/' {
            (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len())
        } else if at(i) == '/' && at(i + 1) == '*' {
            let (mut j, mut depth) = (i + 2, 1);
            while j < c.len() && depth > 0 {
                if at(j) == '/' && at(j + 1) == '*' {
                    depth += 1;
                    j += 2;
                } else if at(j) == '*' && at(j + 1) == '/' {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            j
        } else if !after_ident
            && (at(i) == 'r' || (at(i) == 'b' && at(i + 1) == 'r'))
            && raw_string_end(&c, i).is_some()
        {
            raw_string_end(&c, i).unwrap_or(c.len())
        } else if at(i) == '"' || (!after_ident && at(i) == 'b' && at(i + 1) == '"') {
            let mut j = if at(i) == 'b' { i + 2 } else { i + 1 };
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if at(i) == '\'' && at(i + 1) == '\\' {
            (i + 3..c.len()).find(|&j| c[j] == '\'').map_or(c.len(), |j| j + 1)
        } else if at(i) == '\'' && at(i + 2) == '\'' {
            i + 3
        } else {
            out.push(c[i]);
            i += 1;
            continue;
        };
        blank(&mut out, i, end);
        i = end;
    }
    out
}

/// The end (exclusive) of a raw string `r#"…"#` / `br"…"` starting at `i`.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let mut j = if c[i] == 'b' { i + 2 } else { i + 1 };
    let hashes = c[j..].iter().take_while(|&&ch| ch == '#').count();
    j += hashes;
    if c.get(j) != Some(&'"') {
        return None;
    }
    let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
    (j + 1..c.len())
        .find(|&k| c[k..].starts_with(&close))
        .map(|k| k + close.len())
}

fn is_ident_char(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
    /// A number.
    Literal,
}

/// A token and its line.
type Token = (Tok, usize);

fn tokenize(code: &str) -> Vec<Token> {
    let c: Vec<char> = code.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            let mut ident: String = c[start..i].iter().collect();
            if ident == "r" && c.get(i) == Some(&'#') && c.get(i + 1).is_some_and(|&ch| is_ident_char(ch)) {
                let start = i + 1;
                i = start;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
                ident = c[start..i].iter().collect();
            }
            out.push((Tok::Ident(ident), line));
        } else if ch.is_ascii_digit() {
            while i < c.len()
                && (is_ident_char(c[i]) || (c[i] == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            out.push((Tok::Literal, line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Sep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

fn ident(t: &[Token], i: usize) -> Option<&str> {
    match t.get(i) {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

fn is(t: &[Token], i: usize, tok: Tok) -> bool {
    t.get(i).is_some_and(|(x, _)| *x == tok)
}

/// Index of the token that closes the bracket opened at `open`.
fn matching(t: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (j, (tok, _)) in t.iter().enumerate().skip(open) {
        match tok {
            Tok::Punct('{' | '(' | '[') => depth += 1,
            Tok::Punct('}' | ')' | ']') => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    t.len() - 1
}

/// The tokens without `#[cfg(test)] mod name { .. }` / `#[cfg(test)] mod name;`.
fn without_test_modules(t: Vec<Token>) -> Vec<Token> {
    let attr = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
    ];
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        let cfg_test = attr.iter().enumerate().all(|(k, tok)| is(&t, i + k, tok.clone()))
            && ident(&t, i + 4) == Some("test")
            && is(&t, i + 5, Tok::Punct(')'))
            && is(&t, i + 6, Tok::Punct(']'));
        if cfg_test {
            // Skip further attributes and a visibility, then look for `mod`.
            let mut j = i + 7;
            loop {
                if is(&t, j, Tok::Punct('#')) && is(&t, j + 1, Tok::Punct('[')) {
                    j = matching(&t, j + 1) + 1;
                } else if ident(&t, j) == Some("pub") {
                    j += if is(&t, j + 1, Tok::Punct('(')) {
                        matching(&t, j + 1) + 1 - j
                    } else {
                        1
                    };
                } else {
                    break;
                }
            }
            if ident(&t, j) == Some("mod") && ident(&t, j + 1).is_some() {
                if is(&t, j + 2, Tok::Punct('{')) {
                    i = matching(&t, j + 2) + 1;
                    continue;
                }
                if is(&t, j + 2, Tok::Punct(';')) {
                    i = j + 3;
                    continue;
                }
            }
        }
        out.push(t[i].clone());
        i += 1;
    }
    out
}

/// The `mod name;` declarations; an inline `mod name { .. }` is an error.
fn declared_modules(t: &[Token]) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for i in 0..t.len() {
        if let (Some("mod"), Some(name)) = (ident(t, i), ident(t, i + 1)) {
            if is(t, i + 2, Tok::Punct(';')) {
                out.insert(name.to_string());
            } else if is(t, i + 2, Tok::Punct('{')) {
                return Err(format!(
                    "line {}: inline `mod {name} {{ .. }}` is not modelled by this test",
                    t[i].1
                ));
            }
        }
    }
    Ok(out)
}

/// A path out of a use tree or code: its segments (`self` leaves folded into
/// their parent) and the name it binds in a `use` (None for globs, `as _`
/// and paths in code).
struct Leaf {
    path: Vec<String>,
    binds: Option<String>,
}

/// Parses the use tree or path at `*i`, appending its leaves.
fn parse_tree(t: &[Token], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Leaf>) {
    let mut path = prefix;
    if is(t, *i, Tok::Sep) {
        path.push("::".into()); // `::name`: always another crate
        *i += 1;
    }
    loop {
        if let Some(name) = ident(t, *i) {
            path.push(name.to_string());
            *i += 1;
            if is(t, *i, Tok::Sep) && !is(t, *i + 1, Tok::Punct('<')) {
                *i += 1;
                continue;
            }
            let mut binds = Some(name.to_string());
            if name == "self" && path.len() > 1 {
                path.pop();
                binds = path.last().cloned();
            }
            if ident(t, *i) == Some("as") {
                binds = ident(t, *i + 1).filter(|&n| n != "_").map(str::to_string);
                *i += 2;
            }
            out.push(Leaf { path, binds });
        } else if is(t, *i, Tok::Punct('{')) {
            *i += 1;
            while *i < t.len() && !is(t, *i, Tok::Punct('}')) {
                let before = *i;
                parse_tree(t, i, path.clone(), out);
                if is(t, *i, Tok::Punct(',')) || *i == before {
                    *i += 1;
                }
            }
            *i += 1;
        } else {
            // `*`, or a path in code ending in something else.
            *i += usize::from(is(t, *i, Tok::Punct('*')));
            out.push(Leaf { path, binds: None });
        }
        return;
    }
}

/// The names a module's own `use` declarations (at module level) bind.
fn module_imports(t: &[Token]) -> BTreeMap<String, Vec<String>> {
    let (mut depth, mut out, mut i) = (0i32, BTreeMap::new(), 0);
    while i < t.len() {
        match &t[i].0 {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => depth -= 1,
            Tok::Ident(kw) if kw == "use" && depth == 0 => {
                i += 1;
                let mut leaves = Vec::new();
                parse_tree(t, &mut i, Vec::new(), &mut leaves);
                for leaf in leaves {
                    if let Some(name) = leaf.binds {
                        out.insert(name, leaf.path);
                    }
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Every path starting with `crate::`, `super::` or `self::`, with its line.
fn crate_paths(t: &[Token]) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let starts = matches!(ident(t, i), Some("crate" | "super" | "self")) && is(t, i + 1, Tok::Sep);
        let after_sep_or_macro = i > 0 && matches!(t[i - 1].0, Tok::Sep | Tok::Punct('$'));
        let visibility = i > 1 && ident(t, i - 1) == Some("in") && is(t, i - 2, Tok::Punct('('));
        if starts && !after_sep_or_macro && !visibility {
            let line = t[i].1;
            let mut leaves = Vec::new();
            parse_tree(t, &mut i, Vec::new(), &mut leaves);
            out.extend(leaves.into_iter().map(|leaf| (leaf.path, line)));
        } else {
            i += 1;
        }
    }
    out
}

/// The parser, resolver and cycle finder on small inline crates.
mod model {
    use super::*;

    fn graph(files: &[(&str, &str)]) -> Graph {
        let files: BTreeMap<String, String> = files.iter().map(|(p, s)| (p.to_string(), s.to_string())).collect();
        Graph::scan("lib.rs", &|p: &str| files.get(p).cloned()).expect("the inline crate scans")
    }

    fn edges(g: &Graph) -> Vec<String> {
        g.edges.keys().map(|(a, b)| format!("{a} -> {b}")).collect()
    }

    #[test]
    fn grouped_use_trees_give_one_edge_per_module() {
        let g = graph(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            ("a.rs", "use crate::{b, c::{X, Y as Z}};\nuse crate::b::{self, W};\n"),
            ("b.rs", ""),
            ("c.rs", "pub struct X; pub struct Y;"),
        ]);
        assert_eq!(edges(&g), ["a.rs -> b.rs", "a.rs -> c.rs"]);
    }

    #[test]
    fn multi_line_use_and_inline_paths_count() {
        let g = graph(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            (
                "a.rs",
                "use crate::b::{\n    One,\n    Two,\n};\nfn f() { let x = crate::c::make::<u8>(1); }\n",
            ),
            ("b.rs", ""),
            ("c.rs", ""),
        ]);
        assert_eq!(edges(&g), ["a.rs -> b.rs", "a.rs -> c.rs"]);
        assert_eq!(g.edges[&("a.rs".into(), "c.rs".into())], "a.rs:5 `crate::c::make`");
    }

    #[test]
    fn super_is_relative_to_the_module_not_the_file() {
        let g = graph(&[
            ("lib.rs", "mod top; mod a;"),
            ("top.rs", ""),
            // a/mod.rs is module `a`: its super is the root.
            ("a/mod.rs", "mod b; mod c; use super::top::T;"),
            // a/b.rs is module `a::b`: its super is `a`.
            ("a/b.rs", "use super::c::C; use super::super::top;"),
            ("a/c.rs", "pub struct C;"),
        ]);
        assert_eq!(
            edges(&g),
            ["a/b.rs -> a/c.rs", "a/b.rs -> top.rs", "a/mod.rs -> top.rs"]
        );
    }

    #[test]
    fn children_of_a_non_mod_file_live_in_its_folder() {
        let g = graph(&[
            ("lib.rs", "pub(crate) mod a; mod z;"),
            ("a.rs", "pub mod b;"),
            ("a/b.rs", "use crate::z::Z; fn f() { self::g(); }"),
            ("z.rs", ""),
        ]);
        assert_eq!(g.files[&vec!["a".to_string(), "b".to_string()]], "a/b.rs");
        assert_eq!(edges(&g), ["a/b.rs -> z.rs"]);
    }

    #[test]
    fn re_exports_are_followed_to_the_defining_module() {
        let g = graph(&[
            (
                "lib.rs",
                "mod a; mod w; mod user;\npub use a::{Output, Renamed as Other};",
            ),
            ("a.rs", "pub struct Output; pub struct Renamed;"),
            // w re-exports from its child (no edge: its own submodule), which
            // takes it from `crate::a`.
            (
                "w/mod.rs",
                "mod inner; pub use inner::Thing;\npub use self::inner::Deep as D;",
            ),
            ("w/inner.rs", "pub use crate::a::Output as Thing; pub struct Deep;"),
            (
                "user.rs",
                "use crate::{Output, Other};\nuse crate::w::Thing;\nfn f() { crate::w::D::new(); }\nuse std::fmt;",
            ),
        ]);
        assert_eq!(
            edges(&g),
            ["user.rs -> a.rs", "user.rs -> w/inner.rs", "w/inner.rs -> a.rs"]
        );
    }

    #[test]
    fn a_re_export_from_another_crate_is_no_edge() {
        let g = graph(&[
            ("lib.rs", "mod p; mod user;"),
            ("p/mod.rs", "mod url; pub use url::Transport;"),
            ("p/url.rs", "pub use proto::Transport;"),
            ("user.rs", "use crate::p::Transport;"),
        ]);
        assert!(edges(&g).is_empty(), "{:?}", edges(&g));
    }

    #[test]
    fn comments_and_literals_are_not_code() {
        let g = graph(&[
            ("lib.rs", "//! uses crate::b::X\nmod a; mod b; mod c;"),
            (
                "a.rs",
                "/// see crate::b::X\n// use crate::b;\n/* crate::b /* nested */ crate::b */\n\
                 const S: &str = \"crate::b::X // \"; const R: &str = r#\"crate::b\"#;\n\
                 const C: char = '\"'; fn f<'a>(x: &'a str) { crate::c::g(); }",
            ),
            ("b.rs", ""),
            ("c.rs", ""),
        ]);
        assert_eq!(edges(&g), ["a.rs -> c.rs"]);
    }

    #[test]
    fn the_test_module_is_not_code_but_what_follows_is() {
        let g = graph(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            (
                "a.rs",
                "fn f() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::b::B;\n}\n",
            ),
            (
                "b.rs",
                "#[cfg(test)]\nmod tests { use crate::a; }\nfn after() { crate::c::g() }",
            ),
            ("c.rs", ""),
        ]);
        assert_eq!(edges(&g), ["b.rs -> c.rs"]);
    }

    #[test]
    fn mod_declarations_and_visibility_paths_are_no_edges() {
        let g = graph(&[
            ("lib.rs", "mod a; mod b;"),
            ("a/mod.rs", "pub mod inner; pub(in crate::b) fn f() {}"),
            ("a/inner.rs", ""),
            ("b.rs", ""),
        ]);
        assert!(edges(&g).is_empty(), "{:?}", edges(&g));
    }

    #[test]
    fn an_inline_module_is_reported_not_misread() {
        let files = [("lib.rs", "mod a;"), ("a.rs", "mod inner { use super::X; }")];
        let read = |p: &str| files.iter().find(|(f, _)| *f == p).map(|(_, s)| s.to_string());
        let err = Graph::scan("lib.rs", &read).err().expect("an error");
        assert!(err.contains("a.rs: line 1: inline `mod inner"), "{err}");
    }

    #[test]
    fn a_two_module_cycle_is_found_and_named() {
        let g = graph(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            ("a.rs", "use crate::b::B; pub struct A;"),
            ("b.rs", "use crate::a::A; use crate::c::C; pub struct B;"),
            ("c.rs", "pub struct C;"),
        ]);
        assert_eq!(g.cycles(), [["a.rs", "b.rs", "a.rs"]]);
    }

    #[test]
    fn every_cycle_of_a_component_is_listed() {
        let g = graph(&[
            ("lib.rs", "mod hub; mod x; mod y; mod z;"),
            ("hub.rs", "use crate::{x, y};"),
            ("x.rs", "use crate::hub::Hub;"),
            ("y.rs", "use crate::z::Z;"),
            ("z.rs", "use crate::hub::Hub;"),
        ]);
        let cycles: Vec<String> = g.cycles().iter().map(|c| c.join(" -> ")).collect();
        assert_eq!(cycles, ["hub.rs -> x.rs -> hub.rs", "hub.rs -> y.rs -> z.rs -> hub.rs"]);
    }
}
