//! No import circles between the files of a crate: the files form layers, and a lower file
//! does not import an upper one.
//!
//! Each crate's files form a graph. An arrow goes from a file to every other file of the same
//! crate that its non-test code names: through a `use` (brace groups expanded, nested ones
//! too; `pub use` re-exports count like any `use`), or through a path in code starting with
//! `crate::`, `super::` (`super::super::` too), `self::`, or the name of a child module with a
//! file of its own (`use conn::Conn` in `shard/mod.rs`). A path leads to the file of its
//! longest prefix that is a module with a file of its own: `super::MqttWork` from
//! `shard/event_loop.rs` leads to `shard/mod.rs`, `super::settings::ServerConfig` to
//! `shard/settings.rs`. External crates, `mod` declarations and references to the file itself
//! are not arrows. Every strongly connected component of two or more files is a problem.
//!
//! A crate is a `src` folder holding `lib.rs` or `main.rs`, or a binary under `src/bin/`
//! (`src/bin/x.rs`, or `src/bin/x/main.rs` and its modules). A `main.rs` beside a `lib.rs` is
//! a crate of that one file (it uses the library by its name). `src/a.rs` and `src/a/mod.rs`
//! are module `a`, `src/a/b.rs` is `a::b`; `#[path]` attributes are not followed (only tests
//! use them). Test files and `#[cfg(test)]` items are left out.

use std::collections::{BTreeMap, BTreeSet};

use super::budgets::{RustFile, is_test_file};
use super::source::{code_only, test_lines};

/// Where a file sits: its crate (the crate's source folder, or a one-file crate's path) and
/// its module path in that crate (empty for the crate root).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    krate: String,
    module: Vec<String>,
}

/// The files of every crate by crate and module path, as indices into the checked files.
type ModuleIndex<'a> = BTreeMap<(&'a str, &'a [String]), usize>;

/// The arrows leaving each file: target file and the first name it takes from there.
type Arrows = Vec<BTreeMap<usize, String>>;

/// The problems of the rule over `files`: one per import circle, sorted.
pub(crate) fn check(files: &[RustFile]) -> Vec<String> {
    let files: Vec<&RustFile> = (files.iter()).filter(|f| !is_test_file(&f.path)).collect();
    let paths: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let places: Vec<Option<Place>> = files.iter().map(|f| place(&f.path, &paths)).collect();
    let index: ModuleIndex = (places.iter().enumerate())
        .filter_map(|(n, p)| Some(((p.as_ref()?.krate.as_str(), &p.as_ref()?.module[..]), n)))
        .collect();
    let arrows: Arrows = (files.iter().zip(&places).enumerate())
        .map(|(n, (file, place))| match place {
            Some(place) => arrows_of(n, file, place, &index),
            None => BTreeMap::new(),
        })
        .collect();
    let mut problems: Vec<String> = (components(&arrows).into_iter())
        .filter(|component| component.len() > 1)
        .map(|component| describe(&component, &files, &places, &arrows))
        .collect();
    problems.sort();
    problems
}

/// The crate and module of the file at `path` (one of `paths`), or `None` when it is in no
/// crate's source tree.
fn place(path: &str, paths: &BTreeSet<&str>) -> Option<Place> {
    let has = |dir: &str, name: &str| paths.contains(format!("{dir}/{name}").as_str());
    let (dir, name) = path.rsplit_once('/')?;
    let lone_main = name == "main.rs" && is_named(dir, "src") && has(dir, "lib.rs");
    if is_named(dir, "src/bin") || lone_main {
        return Some(Place {
            krate: path.to_owned(),
            module: Vec::new(),
        });
    }
    let mut at = Some(dir);
    while let Some(candidate) = at {
        let parent = candidate.rsplit_once('/').map(|(parent, _)| parent);
        if parent.is_some_and(|p| is_named(p, "src/bin")) {
            return has(candidate, "main.rs").then(|| module_place(candidate, path));
        }
        if is_named(candidate, "src") && (has(candidate, "lib.rs") || has(candidate, "main.rs")) {
            return Some(module_place(candidate, path));
        }
        at = parent;
    }
    None
}

/// Whether the folder `dir` is `name` or ends in `/name`.
fn is_named(dir: &str, name: &str) -> bool {
    dir == name || dir.ends_with(&format!("/{name}"))
}

/// The place of the file at `path` in the crate whose source folder is `krate`.
fn module_place(krate: &str, path: &str) -> Place {
    let relative = &path[krate.len() + 1..];
    let mut module: Vec<String> = (relative.trim_end_matches(".rs").split('/'))
        .map(str::to_owned)
        .collect();
    if ["lib.rs", "main.rs"].contains(&relative) || module.last().is_some_and(|m| m == "mod") {
        module.pop();
    }
    Place {
        krate: krate.to_owned(),
        module,
    }
}

/// The arrows leaving file `me` (`file`, at `place`): each other file of its crate it names,
/// with the first name it takes from there.
fn arrows_of(
    me: usize,
    file: &RustFile,
    place: &Place,
    index: &ModuleIndex,
) -> BTreeMap<usize, String> {
    let mut arrows = BTreeMap::new();
    for path in references(&file.text) {
        let Some(target) = resolve(place, &path, index) else {
            continue;
        };
        let name = path.iter().rev().find(|s| *s != "self");
        if target != me {
            arrows
                .entry(target)
                .or_insert_with(|| name.cloned().unwrap_or_default());
        }
    }
    arrows
}

/// The file that `path` (as written in the file at `place`) leads to: the file of its longest
/// prefix that is a module of the crate. `None` for a path outside the crate.
fn resolve(place: &Place, path: &[String], index: &ModuleIndex) -> Option<usize> {
    let first = path.first()?.as_str();
    let child = || [&place.module[..], &[first.to_owned()]].concat();
    let (mut module, skip) = match first {
        "crate" | "$crate" => (Vec::new(), 1),
        "self" => (place.module.clone(), 1),
        "super" => (place.module.clone(), 0),
        // A bare name is a path relative to this module when a child module with a file of
        // its own has that name (`use child::X` in the parent); otherwise it is another crate
        // or something of this file.
        _ if index.contains_key(&(place.krate.as_str(), &child()[..])) => (place.module.clone(), 0),
        _ => return None,
    };
    for segment in &path[skip..] {
        match segment.as_str() {
            "super" => {
                module.pop()?;
            }
            "self" | "*" => {}
            name => module.push(name.to_owned()),
        }
    }
    (0..=module.len())
        .rev()
        .find_map(|k| index.get(&(place.krate.as_str(), &module[..k])).copied())
}

/// The paths the non-test code of `text` names, in the order they appear: every path of
/// every `use` (brace groups expanded), and every path of two or more names in code.
fn references(text: &str) -> Vec<Vec<String>> {
    let code = non_test_code(text);
    let mut rest = code.clone();
    let mut found: Vec<(usize, Vec<String>)> = Vec::new();
    for (start, end) in use_statements(&code) {
        let tokens = tokens(&code[start + "use".len()..end]);
        let mut paths = Vec::new();
        use_tree(&tokens, &mut 0, Vec::new(), &mut paths);
        found.extend(paths.into_iter().map(|path| (start, path)));
        rest.replace_range(start..end, &" ".repeat(end - start));
    }
    found.extend(inline_paths(&rest));
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, path)| path).collect()
}

/// `text` without comments, literals and `#[cfg(test)]` items (their lines left empty).
fn non_test_code(text: &str) -> String {
    let code = code_only(text);
    let test = test_lines(&code);
    let lines = code.lines().enumerate();
    let kept: Vec<&str> = lines
        .map(|(n, line)| if test.get(n) == Some(&true) { "" } else { line })
        .collect();
    kept.join("\n")
}

/// Whether `byte` can be part of an identifier (any non-ASCII byte counts).
fn is_ident_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80
}

/// The byte span of each `use` declaration in `code`: from the keyword to its `;`, included.
fn use_statements(code: &str) -> Vec<(usize, usize)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("use").map(|at| at + from) {
        from = at + "use".len();
        let before = at.checked_sub(1).map(|k| bytes[k]);
        let word = !before.is_some_and(|b| is_ident_byte(b) || b == b'#' || b == b'$');
        let spaced = bytes.get(from).is_some_and(u8::is_ascii_whitespace);
        if let Some(end) = code[from..].find(';').filter(|_| word && spaced) {
            found.push((at, from + end + 1));
            from += end + 1;
        }
    }
    found
}

/// One token of a `use` tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Name(String),
    Colons,
    Open,
    Close,
    Comma,
    Glob,
}

/// The tokens of `text`, a `use` tree; anything else (the closing `;`) is skipped.
fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut k = 0;
    while k < chars.len() {
        let name_char = |c: char| c.is_alphanumeric() || c == '_' || c == '$' || c == '#';
        let single = match chars[k] {
            '{' => Some(Token::Open),
            '}' => Some(Token::Close),
            ',' => Some(Token::Comma),
            '*' => Some(Token::Glob),
            ':' if chars.get(k + 1) == Some(&':') => {
                k += 1;
                Some(Token::Colons)
            }
            _ => None,
        };
        if let Some(token) = single {
            tokens.push(token);
            k += 1;
        } else if name_char(chars[k]) {
            let end = (k..chars.len())
                .find(|&e| !name_char(chars[e]))
                .unwrap_or(chars.len());
            let name: String = chars[k..end].iter().collect();
            tokens.push(Token::Name(name.trim_start_matches("r#").to_owned()));
            k = end;
        } else {
            k += 1;
        }
    }
    tokens
}

/// Expands the `use` tree starting at token `at` under `prefix` into full paths (`x::{self}`
/// gives `x::self`, `x::*` gives `x::*`; a rename is dropped), pushed to `out`.
fn use_tree(tokens: &[Token], at: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    while let Some(token) = tokens.get(*at) {
        *at += 1;
        match token {
            // A leading `::` names an external crate: keep a segment that resolves nowhere.
            Token::Colons if path.is_empty() => path.push("::".to_owned()),
            Token::Open => return use_group(tokens, at, &path, out),
            Token::Glob => {
                path.push("*".to_owned());
                break;
            }
            Token::Name(name) => {
                path.push(name.clone());
                if tokens.get(*at) != Some(&Token::Colons) {
                    if tokens.get(*at) == Some(&Token::Name("as".to_owned())) {
                        *at += 2;
                    }
                    break;
                }
                *at += 1;
            }
            _ => return,
        }
    }
    out.push(path);
}

/// The trees of a brace group whose `{` is just before token `at`, to its `}`.
fn use_group(tokens: &[Token], at: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    while let Some(token) = tokens.get(*at) {
        match token {
            Token::Close => {
                *at += 1;
                return;
            }
            Token::Comma => *at += 1,
            _ => {
                let before = *at;
                use_tree(tokens, at, prefix.to_vec(), out);
                if *at == before {
                    return;
                }
            }
        }
    }
}

/// Every path of two or more names in `code` (`crate::x`, `super::x`, `child::x`, but also
/// `std::x` or `Type::x`, which lead to no file), with the byte where it starts. It ends
/// before a `::` not followed by a name (`::<`, `::{`).
fn inline_paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let bytes = code.as_bytes();
    let name_end = |from: usize| (from..bytes.len()).find(|&e| !is_ident_byte(bytes[e]));
    let mut found = Vec::new();
    let mut k = 0;
    while k < bytes.len() {
        let starts_word = k == 0 || !(is_ident_byte(bytes[k - 1]) || bytes[k - 1] == b':');
        if !starts_word || !is_ident_byte(bytes[k]) {
            k += 1;
            continue;
        }
        let end = name_end(k).unwrap_or(bytes.len());
        let first = &code[k..end];
        let after_colons = bytes.get(end + 2).is_some_and(|&b| is_ident_byte(b));
        if !code[end..].starts_with("::") || !after_colons {
            k = end;
            continue;
        }
        let dollar = k > 0 && bytes[k - 1] == b'$';
        let mut path = vec![if dollar { "$crate" } else { first }.to_owned()];
        let mut at = end;
        while code[at..].starts_with("::") && bytes.get(at + 2).is_some_and(|&b| is_ident_byte(b)) {
            let segment_end = name_end(at + 2).unwrap_or(bytes.len());
            path.push(code[at + 2..segment_end].to_owned());
            at = segment_end;
        }
        found.push((k, path));
        k = at;
    }
    found
}

/// Tarjan's strongly connected components of the graph `arrows`, each sorted.
fn components(arrows: &[BTreeMap<usize, String>]) -> Vec<Vec<usize>> {
    let mut tarjan = Tarjan {
        arrows,
        order: vec![None; arrows.len()],
        low: vec![0; arrows.len()],
        on_stack: vec![false; arrows.len()],
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in 0..arrows.len() {
        if tarjan.order[node].is_none() {
            tarjan.visit(node);
        }
    }
    tarjan.found
}

/// The state of Tarjan's algorithm.
struct Tarjan<'a> {
    arrows: &'a [BTreeMap<usize, String>],
    /// When each node was first visited.
    order: Vec<Option<usize>>,
    /// The earliest visit each node reaches through nodes still on the stack.
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    found: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    /// Visits `node` and what it reaches, closing each component whose root it finds.
    fn visit(&mut self, node: usize) {
        self.order[node] = Some(self.next);
        self.low[node] = self.next;
        self.next += 1;
        self.stack.push(node);
        self.on_stack[node] = true;
        let arrows = self.arrows;
        for &target in arrows[node].keys() {
            match self.order[target] {
                None => {
                    self.visit(target);
                    self.low[node] = self.low[node].min(self.low[target]);
                }
                Some(order) if self.on_stack[target] => {
                    self.low[node] = self.low[node].min(order);
                }
                Some(_) => {}
            }
        }
        if self.order[node] != Some(self.low[node]) {
            return;
        }
        let mut component = Vec::new();
        while let Some(member) = self.stack.pop() {
            self.on_stack[member] = false;
            component.push(member);
            if member == node {
                break;
            }
        }
        component.sort_unstable();
        self.found.push(component);
    }
}

/// The problem line of one import circle: every arrow inside it, sorted, with its first name.
fn describe(
    component: &[usize],
    files: &[&RustFile],
    places: &[Option<Place>],
    arrows: &[BTreeMap<usize, String>],
) -> String {
    let mut inside: Vec<(&str, &str, &str)> = Vec::new();
    for &from in component {
        for (to, name) in arrows[from].iter().filter(|(to, _)| component.contains(to)) {
            inside.push((&files[from].path, &files[*to].path, name));
        }
    }
    inside.sort_unstable();
    let listed: Vec<String> = (inside.iter())
        .map(|(from, to, name)| format!("{from} -> {to} ({name})"))
        .collect();
    let krate = (places[component[0]].as_ref()).map_or("", |p| p.krate.as_str());
    format!(
        "import circle in {krate}: {}: make the lower file not import the upper one",
        listed.join(", ")
    )
}
