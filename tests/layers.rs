//! The import graph of `proxy/src` follows the layers documented in `proxy/src/lib.rs`.
//!
//! The test reads the layer table from the `## Layers` section of the crate docs (so the
//! table and this check cannot drift apart), parses every file of the crate with `syn`,
//! and resolves each path that names something in the crate (`crate::`, `super::`,
//! `self::`, a child module, an imported name, `switchyard::` in `main.rs`; in `use`
//! trees, grouped or not, and inline in code and macro arguments) to the file that
//! defines it, following re-exports. A re-export alone (`pub use child::Item` that the
//! file does not use itself) is not a dependency of the re-exporting file. Code under
//! `#[cfg(test)]` is left out. It then fails, naming the file and the import, when
//!
//! - a file imports from a module in a higher layer, or
//! - files import each other, directly or through others (a cycle between files).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Imports allowed to cross the layers upwards, as (importing module, imported module,
/// why). Empty, and meant to stay so: an entry is a debt with its reason beside it, and
/// one that no longer occurs fails the test, so the list can only shrink.
const KNOWN_UPWARD: &[(&str, &str, &str)] = &[];

/// Modules whose own files still import each other in a cycle, as (module, why); the
/// same rule as [`KNOWN_UPWARD`] applies.
const KNOWN_CYCLES_INSIDE: &[(&str, &str)] = &[];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn imports_follow_the_documented_layers_and_form_no_cycle() {
    let failures = check(&src_dir(), KNOWN_UPWARD, KNOWN_CYCLES_INSIDE);
    assert!(failures.is_empty(), "\n{failures}");
}

#[test]
fn the_check_names_upward_imports_and_cycles_and_ignores_test_code() {
    // A small crate written to a temporary directory. `b` re-exports `Thing` from its
    // child `b::inner`; `a` reaches it through a grouped import and an inline path,
    // and calls up into `c`; `b::inner` reaches back into `a` through `super::super`;
    // `c` names `a` inside a macro, and `b` only in test code.
    let dir = std::env::temp_dir().join(format!("layers-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("b")).expect("temp dir");
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("write");
    write(
        "lib.rs",
        "//! ## Layers\n//!\n//! | layer | modules | why |\n//! |---|---|---|\n\
         //! | low | [`a`], [`b`] | below |\n//! | high | [`c`], `main` | above |\n\
         pub mod a;\npub mod b;\npub mod c;\n",
    );
    write(
        "a.rs",
        "use crate::{b::{self, Thing}, c};\n\
         pub struct Here;\n\
         pub fn f() -> Thing { c::g(); b::make() }\n",
    );
    write("b/mod.rs", "mod inner;\npub use inner::{Thing, make};\n");
    write(
        "b/inner.rs",
        "pub struct Thing;\npub fn make() -> Thing { let _ = super::super::a::Here; Thing }\n",
    );
    write(
        "c.rs",
        "pub fn g() { tracing::info!(x = ?crate::a::Here); }\n\
         #[cfg(test)]\nmod tests { use crate::b::Thing; }\n",
    );
    let graph = Crate::load(&dir).edges();
    let failures = check(&dir, &[], &[]);
    let excused = check(&dir, &[("a", "c", "on its way out")], &[]);
    let _ = std::fs::remove_dir_all(&dir);

    let targets = |from: &str| -> BTreeSet<String> {
        graph
            .edges
            .get(from)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(
        targets("a.rs"),
        BTreeSet::from(["b/inner.rs".to_string(), "c.rs".to_string()]),
        "the grouped import and the inline calls resolve through the re-export"
    );
    assert!(
        targets("b/mod.rs").is_empty(),
        "a re-export alone is no dependency"
    );
    assert_eq!(targets("b/inner.rs"), BTreeSet::from(["a.rs".to_string()]));
    assert_eq!(
        targets("c.rs"),
        BTreeSet::from(["a.rs".to_string()]),
        "a path inside a macro counts; test code does not"
    );
    assert!(
        failures.contains(
            "proxy/src/a.rs (layer `low`) imports from proxy/src/c.rs (layer `high`, above it): line 3: `c::g`"
        ),
        "{failures}"
    );
    assert!(
        failures.contains("3 files import each other (a.rs, b/inner.rs, c.rs); one loop:")
            && failures.contains(
                "proxy/src/b/inner.rs -> proxy/src/a.rs (line 2: `super::super::a::Here`)"
            ),
        "{failures}"
    );
    assert!(
        !excused.contains("imports from") && excused.contains("files import each other"),
        "a known upward import is excused, a cycle is not: {excused}"
    );
}

/// Everything wrong with the imports of the crate at `src`, one line per finding
/// (empty when all is well); `known_upward` and `known_cycles` as [`KNOWN_UPWARD`]
/// and [`KNOWN_CYCLES_INSIDE`].
fn check(src: &Path, known_upward: &[(&str, &str, &str)], known_cycles: &[(&str, &str)]) -> String {
    let krate = Crate::load(src);
    let layers = Layers::from_lib_docs(&src.join("lib.rs"));
    layers.check_covers(&krate);
    let edges = krate.edges();

    let mut failures = String::new();
    let mut used_upward = BTreeSet::new();
    for (from, to, evidence) in edges.iter_edges() {
        let (from_module, to_module) = (top_module(from), top_module(to));
        let (Some(low), Some(high)) = (layers.of(&to_module), layers.of(&from_module)) else {
            continue;
        };
        if low.0 <= high.0 {
            continue;
        }
        if known_upward
            .iter()
            .any(|(a, b, _)| *a == from_module && *b == to_module)
        {
            used_upward.insert((from_module.clone(), to_module.clone()));
            continue;
        }
        let _ = writeln!(
            failures,
            "proxy/src/{from} (layer `{}`) imports from proxy/src/{to} (layer `{}`, above it): {}",
            high.1,
            low.1,
            evidence.describe()
        );
    }
    for (a, b, why) in known_upward {
        if !used_upward.contains(&(a.to_string(), b.to_string())) {
            let _ = writeln!(
                failures,
                "KNOWN_UPWARD lists `{a}` -> `{b}` ({why}), which no longer occurs: remove it"
            );
        }
    }

    let mut excused = BTreeSet::new();
    for cycle in edges.cycles() {
        let modules: BTreeSet<String> = cycle.iter().map(|f| top_module(f)).collect();
        if modules.len() == 1
            && let Some((m, _)) = known_cycles.iter().find(|(m, _)| modules.contains(*m))
        {
            excused.insert(m.to_string());
            continue;
        }
        let _ = writeln!(
            failures,
            "{} files import each other ({}); one loop:{}",
            cycle.len(),
            cycle.join(", "),
            edges.describe_cycle(&cycle)
        );
    }
    for (m, why) in known_cycles {
        if !excused.contains(*m) {
            let _ = writeln!(
                failures,
                "KNOWN_CYCLES_INSIDE lists `{m}` ({why}), which has no cycle any more: remove it"
            );
        }
    }
    failures
}

// ---------------------------------------------------------------------------------
// The layer table.

struct Layers {
    /// Module name -> (layer index from the bottom, layer name).
    of: HashMap<String, (usize, String)>,
}

impl Layers {
    /// Reads the table of the `## Layers` section of the crate docs: one row per layer,
    /// bottom first; the first column names the layer, the second lists its modules in
    /// backticks.
    fn from_lib_docs(lib: &Path) -> Layers {
        let text = std::fs::read_to_string(lib).expect("read lib.rs");
        let docs: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(str::trim)
            .collect();
        let start = docs
            .iter()
            .position(|l| *l == "## Layers")
            .expect("lib.rs docs have a `## Layers` section");
        let mut of = HashMap::new();
        let mut index = 0;
        for row in docs[start + 1..]
            .iter()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
        {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            if cells.len() < 2 || cells[0].starts_with("---") || cells[0] == "layer" {
                continue;
            }
            let name = cells[0].trim_matches('`').to_string();
            for module in backticked(cells[1]) {
                let previous = of.insert(module.clone(), (index, name.clone()));
                assert!(
                    previous.is_none(),
                    "lib.rs layer table lists `{module}` twice"
                );
            }
            index += 1;
        }
        assert!(index > 1, "lib.rs layer table has no rows");
        Layers { of }
    }

    fn of(&self, module: &str) -> Option<&(usize, String)> {
        self.of.get(module)
    }

    /// Every module the crate declares sits in a layer, and the table names no module
    /// the crate lacks.
    fn check_covers(&self, krate: &Crate) {
        let declared: BTreeSet<String> = krate.top_modules();
        let listed: BTreeSet<String> = self.of.keys().cloned().collect();
        let missing: Vec<_> = declared.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&declared).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "the lib.rs layer table and the crate disagree: modules in no layer: {missing:?}; \
             names in the table that are no module: {extra:?}"
        );
    }
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The module a file belongs to at the top of the crate (`upstream` for
/// `upstream/pool.rs`, `main` for the binary's `main.rs`, `lib` for the root).
fn top_module(file: &str) -> String {
    let first = file.split('/').next().unwrap_or(file);
    first.trim_end_matches(".rs").to_string()
}

// ---------------------------------------------------------------------------------
// The crate: modules, the names their `use` items bind, and the files they live in.

type ModId = usize;

struct Module {
    path: Vec<String>,
    /// Relative to `src`, with `/`.
    file: String,
    parent: Option<ModId>,
    children: HashMap<String, ModId>,
    /// Names bound by `use` at module level (not in function bodies).
    bindings: HashMap<String, Vec<String>>,
    /// Paths of `use ...::*` at module level.
    globs: Vec<Vec<String>>,
}

struct Crate {
    src: PathBuf,
    modules: Vec<Module>,
    /// Parsed files, by relative path, with the module each one is.
    files: BTreeMap<String, (syn::File, ModId)>,
}

/// How a path resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Resolved {
    /// The path names a module itself.
    Module(ModId),
    /// The path names an item defined in (or reached through) this module.
    Item(ModId),
}

const ROOT: ModId = 0;
/// The pseudo-module of `main.rs`, whose `switchyard::` paths name the crate root.
const MAIN: ModId = 1;

impl Crate {
    fn load(src: &Path) -> Crate {
        let mut krate = Crate {
            src: src.to_path_buf(),
            modules: Vec::new(),
            files: BTreeMap::new(),
        };
        krate.add_module(Vec::new(), "lib.rs".into(), None);
        krate.add_module(vec!["main".into()], "main.rs".into(), None);
        krate.load_file("lib.rs", ROOT);
        if src.join("main.rs").exists() {
            krate.load_file("main.rs", MAIN);
        }
        krate
    }

    fn add_module(&mut self, path: Vec<String>, file: String, parent: Option<ModId>) -> ModId {
        let id = self.modules.len();
        if let Some(p) = parent {
            let name = path.last().cloned().unwrap_or_default();
            self.modules[p].children.insert(name, id);
        }
        self.modules.push(Module {
            path,
            file,
            parent,
            children: HashMap::new(),
            bindings: HashMap::new(),
            globs: Vec::new(),
        });
        id
    }

    fn load_file(&mut self, rel: &str, module: ModId) {
        let text = std::fs::read_to_string(self.src.join(rel))
            .unwrap_or_else(|e| panic!("read proxy/src/{rel}: {e}"));
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("parse proxy/src/{rel}: {e}"));
        // Where `mod x;` in this file looks for `x`.
        let dir = if rel == "lib.rs" || rel == "main.rs" || rel.ends_with("/mod.rs") {
            Path::new(rel)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        } else {
            PathBuf::from(rel.trim_end_matches(".rs"))
        };
        self.load_items(&file.items, module, rel, &dir);
        self.files.insert(rel.to_string(), (file, module));
    }

    fn load_items(&mut self, items: &[syn::Item], module: ModId, rel: &str, dir: &Path) {
        for item in items {
            if is_test_only(item_attrs(item)) {
                continue;
            }
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    let mut path = self.modules[module].path.clone();
                    path.push(name.clone());
                    match &m.content {
                        Some((_, inner)) => {
                            let id = self.add_module(path, rel.to_string(), Some(module));
                            self.load_items(inner, id, rel, &dir.join(&name));
                        }
                        None => {
                            let flat = dir.join(format!("{name}.rs"));
                            let nested = dir.join(&name).join("mod.rs");
                            let child = if self.src.join(&flat).exists() {
                                flat
                            } else {
                                nested
                            };
                            let child = child.to_string_lossy().replace('\\', "/");
                            let id = self.add_module(path, child.clone(), Some(module));
                            self.load_file(&child, id);
                        }
                    }
                }
                syn::Item::Use(u) if u.leading_colon.is_none() => {
                    for leaf in expand_use(&u.tree) {
                        match leaf.bound {
                            Bound::Name(name) => {
                                self.modules[module].bindings.insert(name, leaf.path);
                            }
                            Bound::Glob => self.modules[module].globs.push(leaf.path),
                            Bound::Anonymous => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn top_modules(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.modules[ROOT].children.keys().cloned().collect();
        names.insert("main".into());
        names
    }

    /// Resolves `segments` as written in module `scope`.
    fn resolve(&self, scope: ModId, segments: &[String], depth: usize) -> Option<Resolved> {
        if depth > 16 || segments.is_empty() {
            return None;
        }
        let first = segments[0].as_str();
        let (mut at, mut rest) = match first {
            "crate" | "$crate" => (ROOT, &segments[1..]),
            "switchyard" if scope == MAIN => (ROOT, &segments[1..]),
            "self" | "super" => {
                let mut at = scope;
                let mut rest = segments;
                while let Some(s) = rest.first() {
                    match s.as_str() {
                        "self" => {}
                        "super" => at = self.modules[at].parent?,
                        _ => break,
                    }
                    rest = &rest[1..];
                }
                (at, rest)
            }
            name => {
                if let Some(&child) = self.modules[scope].children.get(name) {
                    (child, &segments[1..])
                } else if let Some(target) = self.modules[scope].bindings.get(name) {
                    match self.resolve(scope, target, depth + 1)? {
                        Resolved::Module(m) => (m, &segments[1..]),
                        item => return Some(item),
                    }
                } else {
                    return None;
                }
            }
        };
        while let Some(segment) = rest.first() {
            let module = &self.modules[at];
            if let Some(&child) = module.children.get(segment) {
                at = child;
            } else if let Some(target) = module.bindings.get(segment) {
                match self.resolve(at, target, depth + 1)? {
                    Resolved::Module(m) => at = m,
                    item => return Some(item),
                }
            } else {
                for glob in &module.globs {
                    let mut through = glob.clone();
                    through.extend(rest.iter().cloned());
                    if let Some(found) = self.resolve(at, &through, depth + 1) {
                        return Some(found);
                    }
                }
                return Some(Resolved::Item(at));
            }
            rest = &rest[1..];
        }
        Some(Resolved::Module(at))
    }

    fn edges(&self) -> Graph {
        let mut graph = Graph::default();
        for (rel, (file, module)) in &self.files {
            graph.edges.entry(rel.clone()).or_default();
            let mut walker = Walker {
                krate: self,
                scopes: vec![*module],
                found: Vec::new(),
                reexports: Vec::new(),
                used_names: BTreeSet::new(),
            };
            walker.visit_file(file);
            let Walker {
                mut found,
                reexports,
                used_names,
                ..
            } = walker;
            // A re-exported name counts only when the file uses it itself.
            found.extend(
                reexports
                    .into_iter()
                    .filter(|(name, _)| used_names.contains(name))
                    .map(|(_, e)| e),
            );
            for (target, evidence) in found {
                let to = &self.modules[target].file;
                if to != rel {
                    graph
                        .edges
                        .entry(rel.clone())
                        .or_default()
                        .entry(to.clone())
                        .or_default()
                        .push(evidence);
                }
            }
        }
        graph
    }
}

/// Where one dependency shows in the source.
#[derive(Clone, Debug)]
struct Evidence {
    line: usize,
    text: String,
}

impl Evidence {
    fn describe(&self) -> String {
        format!("line {}: `{}`", self.line, self.text)
    }
}

enum Bound {
    Name(String),
    Glob,
    /// `use path as _;`
    Anonymous,
}

struct UseLeaf {
    path: Vec<String>,
    bound: Bound,
    line: usize,
}

fn expand_use(tree: &syn::UseTree) -> Vec<UseLeaf> {
    fn walk(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<UseLeaf>) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                walk(&p.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let name = n.ident.to_string();
                let mut path = prefix.clone();
                let bound = if name == "self" {
                    prefix.last().cloned().unwrap_or_default()
                } else {
                    path.push(name.clone());
                    name
                };
                out.push(UseLeaf {
                    path,
                    bound: Bound::Name(bound),
                    line: n.ident.span().start().line,
                });
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                if r.ident != "self" {
                    path.push(r.ident.to_string());
                }
                let rename = r.rename.to_string();
                out.push(UseLeaf {
                    path,
                    bound: if rename == "_" {
                        Bound::Anonymous
                    } else {
                        Bound::Name(rename)
                    },
                    line: r.ident.span().start().line,
                });
            }
            syn::UseTree::Glob(g) => out.push(UseLeaf {
                path: prefix.clone(),
                bound: Bound::Glob,
                line: g.star_token.span.start().line,
            }),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    walk(t, prefix, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item::*;
    match item {
        Const(i) => &i.attrs,
        Enum(i) => &i.attrs,
        ExternCrate(i) => &i.attrs,
        Fn(i) => &i.attrs,
        ForeignMod(i) => &i.attrs,
        Impl(i) => &i.attrs,
        Macro(i) => &i.attrs,
        Mod(i) => &i.attrs,
        Static(i) => &i.attrs,
        Struct(i) => &i.attrs,
        Trait(i) => &i.attrs,
        TraitAlias(i) => &i.attrs,
        Type(i) => &i.attrs,
        Union(i) => &i.attrs,
        Use(i) => &i.attrs,
        _ => &[],
    }
}

/// `#[cfg(test)]` or a `cfg` that needs `test` (and is not `not(test)`).
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && match &a.meta {
                syn::Meta::List(list) => {
                    let tokens: Vec<String> = flat_idents(list.tokens.clone());
                    tokens.iter().any(|t| t == "test") && !tokens.iter().any(|t| t == "not")
                }
                _ => false,
            }
    })
}

fn flat_idents(tokens: TokenStream) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokens {
        match t {
            TokenTree::Ident(i) => out.push(i.to_string()),
            TokenTree::Group(g) => out.extend(flat_idents(g.stream())),
            _ => {}
        }
    }
    out
}

/// Walks one file and collects what it depends on.
struct Walker<'a> {
    krate: &'a Crate,
    scopes: Vec<ModId>,
    found: Vec<(ModId, Evidence)>,
    /// `pub use` leaves, by bound name: dependencies only if the file uses the name.
    reexports: Vec<(String, (ModId, Evidence))>,
    /// Every identifier that appears in code outside `use` items.
    used_names: BTreeSet<String>,
}

impl Walker<'_> {
    fn scope(&self) -> ModId {
        *self.scopes.last().unwrap_or(&ROOT)
    }

    fn record_path(&mut self, segments: &[String], line: usize) {
        if segments.len() < 2 {
            return;
        }
        let scope = self.scope();
        match self.krate.resolve(scope, segments, 0) {
            Some(Resolved::Item(m) | Resolved::Module(m)) => self.found.push((
                m,
                Evidence {
                    line,
                    text: segments.join("::"),
                },
            )),
            None => {}
        }
    }

    /// Paths inside macro arguments: runs of `ident :: ident ...`.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(g) => {
                    self.scan_tokens(g.stream());
                    i += 1;
                }
                TokenTree::Ident(ident) => {
                    let line = ident.span().start().line;
                    let mut segments = vec![ident.to_string()];
                    if i > 0
                        && let TokenTree::Punct(p) = &tokens[i - 1]
                        && p.as_char() == '$'
                    {
                        segments[0] = format!("${}", segments[0]);
                    }
                    self.used_names.insert(ident.to_string());
                    let mut j = i + 1;
                    while j + 2 < tokens.len() && is_path_sep(&tokens[j], &tokens[j + 1]) {
                        match &tokens[j + 2] {
                            TokenTree::Ident(next) => {
                                segments.push(next.to_string());
                                self.used_names.insert(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    self.record_path(&segments, line);
                    i = j.max(i + 1);
                }
                _ => i += 1,
            }
        }
    }
}

fn is_path_sep(a: &TokenTree, b: &TokenTree) -> bool {
    matches!((a, b), (TokenTree::Punct(x), TokenTree::Punct(y))
        if x.as_char() == ':' && y.as_char() == ':' && x.spacing() == proc_macro2::Spacing::Joint)
}

impl<'ast> Visit<'ast> for Walker<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if !is_test_only(item_attrs(item)) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let Some((_, items)) = &m.content else {
            return;
        };
        let name = m.ident.to_string();
        let Some(&child) = self.krate.modules[self.scope()].children.get(&name) else {
            return;
        };
        self.scopes.push(child);
        for item in items {
            self.visit_item(item);
        }
        self.scopes.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if u.leading_colon.is_some() {
            return;
        }
        let public = !matches!(u.vis, syn::Visibility::Inherited);
        let scope = self.scope();
        for leaf in expand_use(&u.tree) {
            let Some(resolved) = self.krate.resolve(scope, &leaf.path, 0) else {
                continue;
            };
            let evidence = Evidence {
                line: leaf.line,
                text: format!("use {}", leaf.path.join("::")),
            };
            match (resolved, &leaf.bound) {
                // A module brought into scope: the paths through it count where used.
                (Resolved::Module(_), Bound::Name(_)) => {}
                (Resolved::Module(m), _) | (Resolved::Item(m), Bound::Glob | Bound::Anonymous) => {
                    self.found.push((m, evidence))
                }
                (Resolved::Item(m), Bound::Name(name)) if public => {
                    self.reexports.push((name.clone(), (m, evidence)))
                }
                (Resolved::Item(m), Bound::Name(_)) => self.found.push((m, evidence)),
            }
        }
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        for s in &segments {
            self.used_names.insert(s.clone());
        }
        if path.leading_colon.is_none()
            && let Some(first) = path.segments.first()
        {
            self.record_path(&segments, first.ident.span().start().line);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.scan_tokens(mac.tokens.clone());
    }
}

// ---------------------------------------------------------------------------------
// The file graph.

#[derive(Default)]
struct Graph {
    /// From file -> to file -> where.
    edges: BTreeMap<String, BTreeMap<String, Vec<Evidence>>>,
}

impl Graph {
    fn iter_edges(&self) -> impl Iterator<Item = (&String, &String, &Evidence)> {
        self.edges.iter().flat_map(|(from, tos)| {
            tos.iter()
                .filter_map(move |(to, ev)| ev.first().map(|e| (from, to, e)))
        })
    }

    /// Strongly connected components of more than one file (Tarjan), each sorted.
    fn cycles(&self) -> Vec<Vec<String>> {
        struct State<'g> {
            graph: &'g Graph,
            index: HashMap<&'g str, usize>,
            low: HashMap<&'g str, usize>,
            stack: Vec<&'g str>,
            on_stack: BTreeSet<&'g str>,
            next: usize,
            found: Vec<Vec<String>>,
        }
        fn strong<'g>(s: &mut State<'g>, v: &'g str) {
            s.index.insert(v, s.next);
            s.low.insert(v, s.next);
            s.next += 1;
            s.stack.push(v);
            s.on_stack.insert(v);
            let graph = s.graph;
            for w in graph.edges.get(v).into_iter().flat_map(|m| m.keys()) {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    strong(s, w);
                    let lw = s.low[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(lw));
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(iw));
                }
            }
            if s.low[v] == s.index[v] {
                let mut component = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    s.found.push(component);
                }
            }
        }
        let mut state = State {
            graph: self,
            index: HashMap::new(),
            low: HashMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            next: 0,
            found: Vec::new(),
        };
        for v in self.edges.keys() {
            if !state.index.contains_key(v.as_str()) {
                strong(&mut state, v);
            }
        }
        state.found.sort();
        state.found
    }

    /// One shortest loop through a group of files that import each other, each step
    /// with the import that makes it: the place to start untangling the group.
    fn describe_cycle(&self, files: &[String]) -> String {
        let members: BTreeSet<&str> = files.iter().map(String::as_str).collect();
        let next = |from: &str| -> Vec<&str> {
            self.edges
                .get(from)
                .into_iter()
                .flat_map(|tos| tos.keys())
                .map(String::as_str)
                .filter(|to| members.contains(to))
                .collect()
        };
        let mut shortest: Option<Vec<&str>> = None;
        for start in &members {
            // Breadth-first from `start` back to itself, within the group.
            let mut came_from: HashMap<&str, &str> = HashMap::new();
            let mut queue = std::collections::VecDeque::from([*start]);
            let mut closed = None;
            while let Some(at) = queue.pop_front() {
                for to in next(at) {
                    if to == *start {
                        closed = Some(at);
                        break;
                    }
                    if !came_from.contains_key(to) {
                        came_from.insert(to, at);
                        queue.push_back(to);
                    }
                }
                if closed.is_some() {
                    break;
                }
            }
            let Some(mut at) = closed else { continue };
            let mut path = vec![*start];
            while at != *start {
                path.push(at);
                at = came_from[at];
            }
            path.push(*start);
            let last = path.len() - 1;
            path[1..last].reverse();
            if shortest.as_ref().is_none_or(|p| path.len() < p.len()) {
                shortest = Some(path);
            }
        }
        let mut out = String::new();
        for pair in shortest.unwrap_or_default().windows(2) {
            let (from, to) = (pair[0], pair[1]);
            let how = self.edges[from][to]
                .iter()
                .take(2)
                .map(Evidence::describe)
                .collect::<Vec<_>>()
                .join(", ");
            let _ = write!(out, "\n    proxy/src/{from} -> proxy/src/{to} ({how})");
        }
        out
    }
}
