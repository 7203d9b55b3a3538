//! How a file is cut into multipart parts, and the ETag an S3 server computes for it: the MD5 of
//! the body for a single PUT, or `md5(md5(part 1) ‖ … ‖ md5(part N))-N` for a multipart upload.
//! Comparing that ETag with the one computed locally proves the server stored our bytes.

use md5::{Digest, Md5};

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// Some S3-compatible providers stop at 1,000 parts per upload (AWS allows 10,000).
pub const MAX_PARTS: u64 = 1000;
/// Bytes of parts held in memory at once, across the parts being sent.
pub const IN_FLIGHT_BUDGET: u64 = 12 * MIB;

/// Part size for a file of `len` bytes: 5 MiB, or more (whole MiB) so that no upload needs more
/// than [`MAX_PARTS`] parts.
pub fn part_size(len: u64) -> u64 {
    let needed = len.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    needed.max(MIN_PART_SIZE)
}

/// Number of parts for `len` bytes (at least one).
pub fn part_count(len: u64) -> u64 {
    len.div_ceil(part_size(len)).max(1)
}

/// Parts sent at once: as many as fit in [`IN_FLIGHT_BUDGET`], at least one, at most two.
pub fn parts_in_flight(len: u64) -> usize {
    (IN_FLIGHT_BUDGET / part_size(len)).clamp(1, 2) as usize
}

/// The ETag expected for a body, fed in order, cut at `part_size` boundaries when `multipart`.
pub struct EtagBuilder {
    part_size: u64,
    multipart: bool,
    whole: Md5,
    part: Md5,
    in_part: u64,
    part_digests: Vec<u8>,
    parts: u64,
}

impl EtagBuilder {
    pub fn single() -> Self {
        Self::new(u64::MAX, false)
    }

    pub fn multipart(part_size: u64) -> Self {
        Self::new(part_size, true)
    }

    fn new(part_size: u64, multipart: bool) -> Self {
        EtagBuilder {
            part_size,
            multipart,
            whole: Md5::new(),
            part: Md5::new(),
            in_part: 0,
            part_digests: Vec::new(),
            parts: 0,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        if !self.multipart {
            self.whole.update(data);
            return;
        }
        while !data.is_empty() {
            let room = (self.part_size - self.in_part).min(data.len() as u64) as usize;
            self.part.update(&data[..room]);
            self.in_part += room as u64;
            data = &data[room..];
            if self.in_part == self.part_size {
                self.close_part();
            }
        }
    }

    fn close_part(&mut self) {
        let digest = std::mem::take(&mut self.part).finalize();
        self.part_digests.extend_from_slice(&digest);
        self.parts += 1;
        self.in_part = 0;
    }

    pub fn finish(mut self) -> String {
        if !self.multipart {
            return hex::encode(self.whole.finalize());
        }
        if self.in_part > 0 || self.parts == 0 {
            self.close_part();
        }
        format!("{}-{}", hex::encode(Md5::digest(&self.part_digests)), self.parts)
    }
}

/// The hex MD5 of one part, as its ETag should read.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The ETag of a multipart upload from its parts' raw MD5s.
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = Md5::new();
    for d in part_md5s {
        h.update(d);
    }
    format!("{}-{}", hex::encode(h.finalize()), part_md5s.len())
}

/// An ETag without its quotes, lowercased.
pub fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_ascii_lowercase()
}

/// Whether `etag` has the MD5 form (`<32 hex>` or `<32 hex>-<parts>`); servers that encrypt at
/// rest (SSE-KMS, SSE-C) return something else, and then only reading back can prove the bytes.
pub fn is_md5_etag(etag: &str) -> bool {
    let (hash, parts) = match etag.split_once('-') {
        Some((h, p)) => (h, Some(p)),
        None => (etag, None),
    };
    hash.len() == 32
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && parts.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_within_the_limit_and_never_below_5_mib() {
        assert_eq!(part_size(0), MIN_PART_SIZE);
        assert_eq!(part_size(1), MIN_PART_SIZE);
        assert_eq!(part_size(1 << 30), MIN_PART_SIZE);
        assert_eq!(part_count(1 << 30), 205);
        for len in [5 * (1 << 30), 15 * (1u64 << 30), 5_000_000_000_000, MIN_PART_SIZE * MAX_PARTS + 1] {
            assert!(part_count(len) <= MAX_PARTS, "{len}: {} parts", part_count(len));
            assert_eq!(part_size(len) % MIB, 0);
        }
        assert_eq!(part_count(MIN_PART_SIZE * MAX_PARTS), MAX_PARTS);
        assert_eq!(part_size(MIN_PART_SIZE * MAX_PARTS + 1), 6 * MIB);
    }

    #[test]
    fn memory_in_flight_stays_within_the_budget() {
        for len in [1, 1 << 30, 100 * (1u64 << 30)] {
            let n = parts_in_flight(len) as u64;
            assert!(n >= 1 && (n * part_size(len) <= IN_FLIGHT_BUDGET || n == 1), "{len}");
        }
    }

    #[test]
    fn etags_match_the_s3_definition() {
        // Known values: md5("") and md5("abc").
        let mut single = EtagBuilder::single();
        single.update(b"abc");
        assert_eq!(single.finish(), "900150983cd24fb0d6963f7d28e17f72");
        let mut multi = EtagBuilder::multipart(2);
        for chunk in [&b"a"[..], b"bc", b"de"] {
            multi.update(chunk);
        }
        let parts = [b"ab", b"cd", b"e".as_slice()].map(|p| <[u8; 16]>::from(Md5::digest(p)));
        assert_eq!(multi.finish(), multipart_etag(&parts));
        assert!(multipart_etag(&parts).ends_with("-3"));
    }

    #[test]
    fn recognises_md5_etags_only() {
        assert!(is_md5_etag("900150983cd24fb0d6963f7d28e17f72"));
        assert!(is_md5_etag("900150983cd24fb0d6963f7d28e17f72-12"));
        assert_eq!(normalize_etag("\"ABC\""), "abc");
        for other in ["", "abc", "900150983cd24fb0d6963f7d28e17f72-", "900150983cd24fb0d6963f7d28e17f7z"] {
            assert!(!is_md5_etag(other), "{other}");
        }
    }
}
