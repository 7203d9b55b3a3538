//! The MySQL counter's fast path: 64 bytes of `VALUES (…),(…)` at a time, classified into bit
//! masks (quotes, backslashes, parentheses, separators) with SSE2, strings found with a prefix
//! XOR of the unescaped quotes (escapes found as in simdjson), then only the parentheses outside
//! strings walked one by one (two per row). Same results as the byte-wise path, which handles
//! what this one does not (`"` strings, a backslash outside a string, a block's tail).

/// Where the scan stands between blocks.
pub(super) struct Scan {
    pub depth: u32,
    pub in_string: bool,
    /// The block ended in an odd run of backslashes inside a string: the next byte is escaped.
    pub odd_backslashes: bool,
    pub rows: u64,
}

pub(super) enum Outcome {
    /// The whole block was read.
    Read,
    /// The rows end at this offset (the first byte between tuples that is not `,`, a space or
    /// `(`); nothing was changed past it.
    Ended(usize),
    /// The block needs the byte-wise path; `scan` is unchanged.
    Unsure,
}

#[derive(Default)]
struct Masks {
    quote: u64,
    backslash: u64,
    open: u64,
    close: u64,
    /// `,`, space, tab, CR, LF and `(`: what may stand between tuples.
    separator: u64,
}

const EVEN_BITS: u64 = 0x5555_5555_5555_5555;

pub(super) fn scan(block: &[u8; 64], state: &mut Scan) -> Outcome {
    let m = classify(block);
    let mut carry = u64::from(state.in_string && state.odd_backslashes);
    let escaped = find_escaped(m.backslash, &mut carry);
    let quotes = m.quote & !escaped;
    let mut in_string = prefix_xor(quotes);
    if state.in_string {
        in_string = !in_string;
    }
    // Bytes strictly inside strings (the opening quote counts as inside, the closing one not).
    let content = in_string & !quotes;
    if m.backslash & !in_string != 0 {
        // A backslash outside a string: not mysqldump's output; the byte-wise path decides.
        return Outcome::Unsure;
    }
    let parens = (m.open | m.close) & !in_string;
    let stray = !m.separator & !content;
    let mut depth = state.depth;
    let mut rows = state.rows;
    let mut zero_from = 0u32;
    let mut events = parens;
    while events != 0 {
        let p = events.trailing_zeros();
        if depth == 0 {
            if let Some(end) = first_in(stray, zero_from, p) {
                return end_at(state, end, rows);
            }
            if m.close & (1 << p) != 0 {
                return end_at(state, p, rows);
            }
        }
        if m.open & (1 << p) != 0 {
            if depth == 0 {
                rows += 1;
            }
            depth += 1;
        } else {
            depth -= 1;
            if depth == 0 {
                zero_from = p + 1;
            }
        }
        events &= events - 1;
    }
    if depth == 0 {
        if let Some(end) = first_in(stray, zero_from, 64) {
            return end_at(state, end, rows);
        }
    }
    state.depth = depth;
    state.rows = rows;
    state.in_string = in_string >> 63 == 1;
    state.odd_backslashes = carry == 1;
    Outcome::Read
}

fn end_at(state: &mut Scan, at: u32, rows: u64) -> Outcome {
    state.rows = rows;
    state.depth = 0;
    Outcome::Ended(at as usize)
}

/// The lowest set bit of `mask` in `[from, to)`.
fn first_in(mask: u64, from: u32, to: u32) -> Option<u32> {
    if from >= to {
        return None;
    }
    let width = to - from;
    let window = if width == 64 { u64::MAX } else { ((1u64 << width) - 1) << from };
    let hits = mask & window;
    (hits != 0).then(|| hits.trailing_zeros())
}

/// Bits of the bytes escaped by a backslash (simdjson's branchless `find_escaped`); `carry` is 1
/// when the first byte is escaped, and is left 1 when the next block's first byte is.
fn find_escaped(backslash: u64, carry: &mut u64) -> u64 {
    let backslash = backslash & !*carry;
    let follows_escape = (backslash << 1) | *carry;
    let odd_sequence_starts = backslash & !EVEN_BITS & !follows_escape;
    let (sequences_starting_on_even_bits, overflow) = odd_sequence_starts.overflowing_add(backslash);
    *carry = u64::from(overflow);
    let invert_mask = sequences_starting_on_even_bits << 1;
    (EVEN_BITS ^ invert_mask) & follows_escape
}

/// Bit i set when an odd number of bits of `x` are set at or below i.
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

#[cfg(target_arch = "x86_64")]
fn classify(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let mut m = Masks::default();
    for k in 0..4 {
        // SAFETY: SSE2 is part of the x86_64 baseline, and the 16 bytes read lie inside `block`
        // (unaligned loads are allowed).
        unsafe {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
            let eq = |c: u8| u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8))) as u16);
            let open = eq(b'(');
            let separator = eq(b',') | eq(b' ') | eq(b'\n') | eq(b'\r') | eq(b'\t') | open;
            m.quote |= eq(b'\'') << (16 * k);
            m.backslash |= eq(b'\\') << (16 * k);
            m.open |= open << (16 * k);
            m.close |= eq(b')') << (16 * k);
            m.separator |= separator << (16 * k);
        }
    }
    m
}

#[cfg(not(target_arch = "x86_64"))]
fn classify(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (i, &b) in block.iter().enumerate() {
        let bit = 1u64 << i;
        match b {
            b'\'' => m.quote |= bit,
            b'\\' => m.backslash |= bit,
            b'(' => {
                m.open |= bit;
                m.separator |= bit;
            }
            b')' => m.close |= bit,
            b',' | b' ' | b'\n' | b'\r' | b'\t' => m.separator |= bit,
            _ => {}
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_follow_odd_runs_of_backslashes_across_blocks() {
        let mut carry = 0;
        // `\\\'` at bits 0..3: bit 3 (the quote) is escaped, bit 1 (second backslash) too.
        assert_eq!(find_escaped(0b0111, &mut carry), 0b1010);
        assert_eq!(carry, 0);
        // A run ending on bit 63 escapes the next block's first byte.
        assert_eq!(find_escaped(1 << 63, &mut carry), 0);
        assert_eq!(carry, 1);
        assert_eq!(find_escaped(0b1, &mut carry) & 1, 1);
    }

    #[test]
    fn prefix_xor_marks_the_inside_of_quotes() {
        // Quotes at bits 1, 4 and 7: inside from 1 to 3, and from 7 on.
        assert_eq!(prefix_xor(0b1001_0010), (u64::MAX << 7) | 0b1110);
    }
}
