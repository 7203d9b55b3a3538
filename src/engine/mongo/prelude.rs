//! The prelude of a `mongodump --archive` stream: the magic number, a header document (format,
//! server and tool versions), one document per collection or view (`db`, `collection`,
//! `metadata`, `type`), then the terminator. mongodump writes all of it before any data, so the
//! first bytes of a dump name the server version and every database without a shell.

use super::{ARCHIVE_MAGIC, ARCHIVE_TERMINATOR};

/// What a prelude says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prelude {
    pub server_version: String,
    /// Databases with at least one collection or view, in archive order, each once.
    pub databases: Vec<String>,
}

/// Reads the prelude at the start of `bytes` (anything after it is ignored).
pub fn read_prelude(bytes: &[u8]) -> Result<Prelude, String> {
    if !bytes.starts_with(&ARCHIVE_MAGIC) {
        return Err(format!(
            "the output does not start with the mongodump archive magic number ({} bytes)",
            bytes.len()
        ));
    }
    let mut at = ARCHIVE_MAGIC.len();
    let header = document_at(bytes, at)?;
    let server_version =
        string_field(header, "server_version")?.ok_or("the archive header has no server_version")?.to_string();
    at += header.len();
    let mut databases: Vec<String> = Vec::new();
    loop {
        if bytes.get(at..at + 4) == Some(&ARCHIVE_TERMINATOR[..]) {
            return Ok(Prelude { server_version, databases });
        }
        let doc = document_at(bytes, at)?;
        let db = string_field(doc, "db")?.ok_or("a collection entry of the archive prelude has no db")?;
        if !databases.iter().any(|d| d == db) {
            databases.push(db.to_string());
        }
        at += doc.len();
    }
}

/// The whole BSON document starting at `at`.
fn document_at(bytes: &[u8], at: usize) -> Result<&[u8], String> {
    let len = i32_at(bytes, at).ok_or_else(|| cut_short(bytes))?;
    let len =
        usize::try_from(len).ok().filter(|&l| l >= 5).ok_or_else(|| format!("bad BSON length {len} at byte {at}"))?;
    let doc = bytes.get(at..at + len).ok_or_else(|| cut_short(bytes))?;
    if doc[len - 1] != 0 {
        return Err(format!("the BSON document at byte {at} does not end with a NUL"));
    }
    Ok(doc)
}

fn cut_short(bytes: &[u8]) -> String {
    format!("the archive prelude ends before its terminator (got {} bytes)", bytes.len())
}

fn i32_at(bytes: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The value of a top-level string field of `doc`, if present.
fn string_field<'a>(doc: &'a [u8], name: &str) -> Result<Option<&'a str>, String> {
    let end = doc.len() - 1;
    let mut at = 4;
    while at < end {
        let kind = doc[at];
        let key_end = at + 1 + doc[at + 1..end].iter().position(|&b| b == 0).ok_or("a BSON key is not terminated")?;
        let key = &doc[at + 1..key_end];
        let value = key_end + 1;
        let len = value_len(kind, doc, value)?;
        if value + len > end {
            return Err(format!("a BSON value of type 0x{kind:02x} runs past its document"));
        }
        if kind == 0x02 && key == name.as_bytes() {
            let text = &doc[value + 4..value + len - 1];
            return std::str::from_utf8(text).map(Some).map_err(|_| format!("BSON field {name} is not UTF-8"));
        }
        at = value + len;
    }
    Ok(None)
}

/// Length of a BSON value of type `kind` starting at `at`.
fn value_len(kind: u8, doc: &[u8], at: usize) -> Result<usize, String> {
    let prefixed = |extra: usize| -> Result<usize, String> {
        let n = i32_at(doc, at).and_then(|n| usize::try_from(n).ok()).ok_or("a BSON length is missing or negative")?;
        Ok(4 + n + extra)
    };
    let cstring = |from: usize| -> Result<usize, String> {
        doc.get(from..)
            .and_then(|s| s.iter().position(|&b| b == 0))
            .map(|p| p + 1)
            .ok_or("a BSON cstring is not terminated".into())
    };
    match kind {
        0x01 | 0x09 | 0x11 | 0x12 => Ok(8),
        0x02 | 0x0D | 0x0E => prefixed(0),
        0x03 | 0x04 | 0x0F => prefixed(0).map(|n| n - 4),
        0x05 => prefixed(1),
        0x06 | 0x0A | 0x7F | 0xFF => Ok(0),
        0x07 => Ok(12),
        0x08 => Ok(1),
        0x0B => {
            let pattern = cstring(at)?;
            Ok(pattern + cstring(at + pattern)?)
        }
        0x0C => prefixed(12),
        0x10 => Ok(4),
        0x13 => Ok(16),
        other => Err(format!("unknown BSON type 0x{other:02x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BSON document of string fields, built by hand.
    pub(crate) fn doc(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in fields {
            body.push(0x02);
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(&((v.len() + 1) as i32).to_le_bytes());
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        let mut out = ((body.len() + 5) as i32).to_le_bytes().to_vec();
        out.extend(body);
        out.push(0);
        out
    }

    fn prelude(collections: &[(&str, &str)]) -> Vec<u8> {
        let mut out = ARCHIVE_MAGIC.to_vec();
        // An int32 before the strings, as mongodump writes it.
        let mut header = vec![0u8; 4];
        header.extend_from_slice(&[0x10, b'c', 0, 4, 0, 0, 0]);
        let strings = doc(&[("version", "0.1"), ("server_version", "8.2.11"), ("tool_version", "100.8.0")]);
        header.extend_from_slice(&strings[4..strings.len() - 1]);
        header.push(0);
        let len = header.len() as i32;
        header[..4].copy_from_slice(&len.to_le_bytes());
        out.extend(header);
        for (db, coll) in collections {
            out.extend(doc(&[("db", db), ("collection", coll), ("metadata", "{}"), ("type", "collection")]));
        }
        out.extend_from_slice(&ARCHIVE_TERMINATOR);
        out
    }

    #[test]
    fn reads_version_and_databases_once_each() {
        let mut bytes = prelude(&[("crm", "people"), ("shop", "items"), ("crm", "notes")]);
        bytes.extend_from_slice(b"data that follows the prelude");
        let p = read_prelude(&bytes).unwrap();
        assert_eq!(p.server_version, "8.2.11");
        assert_eq!(p.databases, vec!["crm", "shop"]);
    }

    #[test]
    fn a_prelude_cut_before_its_terminator_is_an_error() {
        let bytes = prelude(&[("crm", "people")]);
        let err = read_prelude(&bytes[..bytes.len() - 10]).unwrap_err();
        assert!(err.contains("ends before its terminator"), "{err}");
        assert!(read_prelude(b"MongoServerError").unwrap_err().contains("magic number"));
    }

    #[test]
    fn hostile_lengths_are_errors_not_panics() {
        let mut bytes = prelude(&[("crm", "people")]);
        let at = ARCHIVE_MAGIC.len();
        bytes[at..at + 4].copy_from_slice(&(-5i32).to_le_bytes());
        assert!(read_prelude(&bytes).is_err());
        bytes[at..at + 4].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(read_prelude(&bytes).is_err());
        let mut bytes = prelude(&[("crm", "people")]);
        // A string length pointing past the document.
        bytes[at + 4 + 7 + 1 + 8] = 0x7f;
        assert!(read_prelude(&bytes).is_err());
    }
}
