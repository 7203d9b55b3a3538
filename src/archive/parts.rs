//! Entries of archives written as a stream, which cannot seek back to a header: each entry's
//! compressed data is held in memory (a [`PartBuffer`], up to [`PART_LIMIT`] bytes) until its
//! size is known, then written behind a header that states it. An entry that outgrows the buffer
//! is stored as consecutive parts `<name>.part-000001`, `<name>.part-000002`, … which the reader
//! joins back into one entry (`cat <name>.part-* > <name>` after a plain `tar -x`).

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// Compressed bytes of one entry held in memory before they are written out as a part.
pub const PART_LIMIT: usize = 4 << 20;

const PART_MARK: &str = ".part-";
const FIRST_PART: &str = ".part-000001";

/// The tar name of part `index` (from 1) of entry `name`.
pub(super) fn part_name(name: &str, index: u32) -> String {
    format!("{name}{PART_MARK}{index:06}")
}

/// The entry `name` starts, when it is the first part of one.
pub(super) fn first_part_of(name: &str) -> Option<&str> {
    name.strip_suffix(FIRST_PART)
}

/// A shared, growable buffer: the compressor (possibly on its own threads) writes into it, the
/// entry writer takes what it holds once the compressor has finished.
#[derive(Clone, Default)]
pub(super) struct PartBuffer(Arc<Mutex<Vec<u8>>>);

impl PartBuffer {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding it cannot leave a Vec half-updated in a way that matters here.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Hands the bytes held to `out`, then empties the buffer (keeping its capacity).
    pub(super) fn drain_into(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut held = self.lock();
        let result = out.write_all(&held);
        held.clear();
        result
    }

    /// Forgets the bytes held (an empty last part is not written).
    pub(super) fn clear(&self) {
        self.lock().clear();
    }
}

impl Write for PartBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_sort_and_only_the_first_starts_an_entry() {
        assert_eq!(part_name("databases/app.sql", 1), "databases/app.sql.part-000001");
        assert_eq!(part_name("a", 1_000_000), "a.part-1000000");
        assert_eq!(first_part_of("databases/app.sql.part-000001"), Some("databases/app.sql"));
        assert_eq!(first_part_of("databases/app.sql.part-000002"), None);
        assert_eq!(first_part_of("databases/app.sql"), None);
    }
}
