//! serde's errors made to name their place: the file, the line and the
//! dotted key (`tenants.acme.dirs[1].mode`), in words a user reads.

use std::ops::Range;

use toml::Spanned;

use super::ConfigError;

/// The 1-based line of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

pub(super) fn toml_error(text: &str, file: &str, error: &toml::de::Error) -> ConfigError {
    let (line, key) = match error.span() {
        Some(span) => (
            Some(line_of(text, span.start)),
            key_at(text, span.start).or_else(|| key_on_line(text, span.start)),
        ),
        None => (None, None),
    };
    ConfigError {
        file: file.to_string(),
        line,
        key,
        message: humanize(error.message()),
    }
}

/// The dotted path of the deepest key or value at `offset`, when the text
/// is valid TOML (a type error or an unknown key).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut best = Vec::new();
    walk_table(doc.get_ref(), offset, &mut Vec::new(), &mut best);
    (!best.is_empty()).then(|| join_path(&best))
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

fn walk_table(
    table: &toml::de::DeTable<'_>,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Vec<String>,
) {
    for (key, value) in table {
        path.push(key_segment(key.get_ref()));
        // An unknown key points at the key, a bad value at the value.
        if contains(&key.span(), offset) && path.len() > best.len() {
            best.clone_from(path);
        }
        visit(value, offset, path, best);
        path.pop();
    }
}

fn visit(
    value: &Spanned<toml::de::DeValue<'_>>,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Vec<String>,
) {
    if contains(&value.span(), offset) && path.len() > best.len() {
        best.clone_from(path);
    }
    match value.get_ref() {
        toml::de::DeValue::Table(table) => walk_table(table, offset, path, best),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                visit(item, offset, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

fn join_path(segments: &[String]) -> String {
    let mut out = String::new();
    for segment in segments {
        if !out.is_empty() && !segment.starts_with('[') {
            out.push('.');
        }
        out.push_str(segment);
    }
    out
}

/// A key as TOML would write it: bare when it can be, quoted otherwise.
pub(super) fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// For a syntax error, where no tree exists: the key on the error's line
/// under the nearest table header above it. A best effort for plain files
/// (bare keys, one key a line); `None` when the line does not look like that.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    fn plain(s: &str) -> Option<&str> {
        let s = s.trim();
        let ok = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-. ".contains(&b));
        ok.then_some(s)
    }
    fn header(line: &str) -> Option<&str> {
        let line = line.trim();
        let inner = line.strip_prefix('[')?;
        let end = inner.find(']')?;
        plain(inner[..end].trim_start_matches('['))
    }
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    if let Some(h) = header(line) {
        return Some(h.replace(' ', ""));
    }
    let key = plain(line.split_once('=')?.0)?.replace(' ', "");
    let table = text[..start].lines().rev().find_map(header);
    Some(match table {
        Some(t) => format!("{}.{key}", t.replace(' ', "")),
        None => key,
    })
}

/// serde's wording, in the file's terms: keys not fields, tables not maps,
/// and what was expected before what was found.
fn humanize(message: &str) -> String {
    let message = message.replace('\n', " ");
    let message = message.trim();
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        && let Some((got, expected)) = rest.rsplit_once(", expected ")
    {
        return format!("expected {}, got {got}", expected_name(expected));
    }
    message
        .replacen("unknown field", "unknown key", 1)
        .replacen("missing field", "missing key", 1)
}

fn expected_name(expected: &str) -> &str {
    match expected {
        "u64" | "usize" => "a non-negative integer",
        "u32" => "a non-negative 32-bit integer",
        "f64" => "a number",
        "a sequence" => "an array",
        "a map" => "a table",
        s if s.starts_with("struct ") => "a table",
        s => s,
    }
}
