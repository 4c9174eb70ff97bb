//! Just enough of Rust's lexical structure for the tidy rules: which text is code (not a
//! comment, string or character literal), which lines are test code, and where each function
//! with a body starts and ends. It reads text; it does not parse Rust, and it is exact only
//! for code that rustfmt has formatted.

/// `text` with every comment, string literal and character literal replaced by spaces
/// (line breaks kept), so that braces, keywords and clock reads can be found by plain search.
pub(crate) fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let end = literal_or_comment_end(&chars, i);
        if end == i {
            out.push(chars[i]);
            i += 1;
        } else {
            out.extend(
                chars[i..end]
                    .iter()
                    .map(|&c| if c == '\n' { '\n' } else { ' ' }),
            );
            i = end;
        }
    }
    out.into_iter().collect()
}

/// Where the comment or literal starting at `i` ends (exclusive), or `i` when none starts
/// there.
fn literal_or_comment_end(chars: &[char], i: usize) -> usize {
    let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
    let word_before = i > 0 && (at(i - 1).is_alphanumeric() || at(i - 1) == '_');
    match at(i) {
        '/' if at(i + 1) == '/' => (i..chars.len())
            .find(|&k| chars[k] == '\n')
            .unwrap_or(chars.len()),
        '/' if at(i + 1) == '*' => block_comment_end(chars, i),
        '"' => string_end(chars, i + 1),
        'b' if !word_before && at(i + 1) == '"' => string_end(chars, i + 2),
        'b' if !word_before && at(i + 1) == '\'' => char_end(chars, i + 1).unwrap_or(i),
        'r' | 'b' if !word_before => raw_string_end(chars, i).unwrap_or(i),
        '\'' => char_end(chars, i).unwrap_or(i),
        _ => i,
    }
}

fn block_comment_end(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut k = start;
    while k + 1 < chars.len() {
        if chars[k] == '/' && chars[k + 1] == '*' {
            depth += 1;
            k += 2;
        } else if chars[k] == '*' && chars[k + 1] == '/' {
            depth -= 1;
            k += 2;
            if depth == 0 {
                return k;
            }
        } else {
            k += 1;
        }
    }
    chars.len()
}

/// The end of a string whose contents start at `k`.
fn string_end(chars: &[char], mut k: usize) -> usize {
    while k < chars.len() {
        match chars[k] {
            '\\' => k += 2,
            '"' => return k + 1,
            _ => k += 1,
        }
    }
    chars.len()
}

/// `r"…"`, `r#"…"#`, `br"…"` and the like, starting at `i`.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let mut k = i;
    if chars.get(k) == Some(&'b') {
        k += 1;
    }
    if chars.get(k) != Some(&'r') {
        return None;
    }
    k += 1;
    let hashes = chars[k..].iter().take_while(|&&c| c == '#').count();
    k += hashes;
    if chars.get(k) != Some(&'"') {
        return None;
    }
    k += 1;
    while k < chars.len() {
        if chars[k] == '"'
            && chars[k + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return Some(k + 1 + hashes);
        }
        k += 1;
    }
    Some(chars.len())
}

/// A character literal at `i` (`'a'`, `'\n'`, `'\u{1F600}'`), not a lifetime (`'a`).
fn char_end(chars: &[char], i: usize) -> Option<usize> {
    if chars.get(i + 1) == Some(&'\\') {
        let close = (i + 2..chars.len().min(i + 14)).find(|&k| chars[k] == '\'')?;
        return Some(close + 1);
    }
    (chars.get(i + 2) == Some(&'\'')).then_some(i + 3)
}

/// For each line of `code` (as [`code_only`] returns it), whether it is test code: an item
/// under `#[cfg(test)]` (usually `mod tests { … }`) from the attribute to the item's end.
pub(crate) fn test_lines(code: &str) -> Vec<bool> {
    let lines: Vec<&str> = code.lines().collect();
    let mut test = vec![false; lines.len()];
    let mut n = 0;
    while n < lines.len() {
        if lines[n].trim() != "#[cfg(test)]" {
            n += 1;
            continue;
        }
        let end = item_end(&lines, n + 1);
        for flag in &mut test[n..=end] {
            *flag = true;
        }
        n = end + 1;
    }
    test
}

/// The last line of the item starting at line `from`: the line of the brace that closes its
/// first `{`, or of its `;` when a `;` comes first (`mod tests;`).
fn item_end(lines: &[&str], from: usize) -> usize {
    let mut depth = 0usize;
    for (n, line) in lines.iter().enumerate().skip(from) {
        for c in line.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return n;
                    }
                }
                ';' if depth == 0 => return n,
                _ => {}
            }
        }
    }
    lines.len().saturating_sub(1)
}

/// A function with a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Function {
    pub(crate) name: String,
    /// First line (the one with `fn`), 1-based.
    pub(crate) first: usize,
    /// Lines from `fn` to the closing brace, both included.
    pub(crate) lines: usize,
}

/// Every function with a body in `code` (as [`code_only`] returns it), nested ones included.
pub(crate) fn functions(code: &str) -> Vec<Function> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let mut rest = *line;
        while let Some(at) = find_fn_keyword(rest) {
            let after = rest[at + 2..].trim_start();
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + 2..];
            if name.is_empty() {
                continue;
            }
            if let Some(end) = body_end(&lines, n, line.len() - rest.len()) {
                found.push(Function {
                    name,
                    first: n + 1,
                    lines: end - n + 1,
                });
            }
        }
    }
    found
}

/// The byte position of a `fn` keyword in `line` (a whole word followed by a space).
fn find_fn_keyword(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(at) = line[from..].find("fn ").map(|a| a + from) {
        let before_ok =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        if before_ok {
            return Some(at);
        }
        from = at + 3;
    }
    None
}

/// The line of the brace closing the body of the function whose signature starts at line
/// `n`, byte `col`; `None` for a declaration without a body.
fn body_end(lines: &[&str], n: usize, col: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut opened = false;
    // Brackets and parentheses of the signature: a `;` inside them (`[u8; 12]`) does not end
    // a declaration.
    let mut nested = 0usize;
    for (k, line) in lines.iter().enumerate().skip(n) {
        let text = if k == n { &line[col..] } else { line };
        for c in text.chars() {
            match c {
                '(' | '[' if !opened => nested += 1,
                ')' | ']' if !opened => nested = nested.saturating_sub(1),
                ';' if !opened && nested == 0 => return None,
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' if opened => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(k);
                    }
                }
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_strings_and_chars_are_blanked_lifetimes_kept() {
        let text = "let a = \"{ Instant::now }\"; // fn x() {\nlet b = '{'; fn f<'a>(x: &'a str) {}\n/* fn y() { */ let c = r#\"}\"#;";
        let code = code_only(text);
        assert_eq!(code.lines().count(), 3);
        assert!(!code.contains("Instant"), "{code}");
        assert!(code.contains("&'a str"), "{code}");
        assert_eq!(code.matches('{').count(), 1, "{code}");
        assert_eq!(functions(&code).len(), 1, "{code}");
    }

    #[test]
    fn test_items_are_marked_to_their_end() {
        let code = code_only(
            "fn a() {}\n#[cfg(test)]\nfn helper() {\n    x();\n}\nfn b() {}\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n",
        );
        let test = test_lines(&code);
        assert_eq!(
            test,
            [false, true, true, true, true, false, true, true, true, true]
        );
    }

    #[test]
    fn functions_span_from_fn_to_their_closing_brace() {
        let code = code_only(
            "pub(crate) fn long(\n    a: [u8; 2],\n) -> u8 {\n    if a > 1 {\n        a\n    } else { 0 }\n}\ntrait T {\n    fn declared(&self);\n    fn provided(&self) {}\n}\n",
        );
        let found = functions(&code);
        let spans: Vec<(&str, usize, usize)> = found
            .iter()
            .map(|f| (f.name.as_str(), f.first, f.lines))
            .collect();
        assert_eq!(spans, [("long", 1, 7), ("provided", 10, 1)]);
    }
}
