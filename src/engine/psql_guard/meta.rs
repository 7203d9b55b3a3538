//! The meta-commands pg_dump and pg_dumpall write, and nothing else.

/// Whether the text of a backslash command (after the `\\`, to the end of its line) is one
/// pg_dump writes; `database` is the one a `\\connect` may name (`None`: none may).
pub(super) fn allowed(text: &[u8], database: Option<&str>) -> Result<(), String> {
    let shown = || String::from_utf8_lossy(&text[..text.len().min(80)]).into_owned();
    let refused = |why: &str| Err(format!("psql meta-command \\{} is not one pg_dump writes{why}", shown()));
    let Ok(line) = std::str::from_utf8(text) else {
        return refused("");
    };
    let line = line.trim_end_matches('\r');
    let (command, args) = line.split_once(' ').unwrap_or((line, ""));
    match command {
        "restrict" | "unrestrict" if is_word(args, |c| c.is_ascii_alphanumeric()) => Ok(()),
        "encoding" if is_word(args, |c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => Ok(()),
        "connect" => match (database, connect_target(args)) {
            (Some(database), Some(target)) if target == database => Ok(()),
            (Some(_), _) => refused(" (only to the entry's own database)"),
            (None, _) => refused(""),
        },
        _ => refused(""),
    }
}

fn is_word(s: &str, ok: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(ok)
}

/// The database of pg_dump's `\connect` arguments: `name`, `"Name"`, or
/// `-reuse-previous=on "dbname='…'"` (conninfo quoting inside psql double quotes).
fn connect_target(args: &str) -> Option<String> {
    if let Some(quoted) = args.strip_prefix("-reuse-previous=on ") {
        let conninfo = unquote_double(quoted)?;
        let value = conninfo.strip_prefix("dbname=")?;
        return unquote_conninfo(value);
    }
    // pg_dump names only [A-Za-z0-9_.] databases this way; anything else (`=`, `://`) psql
    // would read as connection parameters, a host among them.
    let name = if args.starts_with('"') { unquote_double(args)? } else { args.to_ascii_lowercase() };
    let simple = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    (simple && !name.is_empty()).then_some(name)
}

/// `"a""b"` → `a"b`; the whole of `s` must be one quoted argument.
fn unquote_double(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' && chars.next() != Some('"') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// A conninfo value: `'a\'b\\c'` or a bare word.
fn unquote_conninfo(s: &str) -> Option<String> {
    let Some(inner) = s.strip_prefix('\'') else {
        return (!s.is_empty() && !s.contains([' ', '\'', '\\'])).then(|| s.to_string());
    };
    let inner = inner.strip_suffix('\'')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '\'' => return None,
            _ => out.push(c),
        }
    }
    Some(out)
}
