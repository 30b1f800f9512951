//! Finding a node by id without the id index, when its id is its position.
//!
//! PageIndex numbers a document's nodes in pre-order, zero padded: the node
//! at document position (ord) 7 is `"0007"`. For an id of ASCII digits the
//! reader first reads the node record at that position and keeps it if the
//! record carries the id. Ids are unique within a document version, so that
//! check is exact: a guess never returns a wrong node, it only saves the
//! id-index lookup (one B+tree descent) when it is right.
//!
//! A document whose ids are numbers that are not positions would pay a wasted
//! record read on every lookup, so wrong guesses are remembered per document
//! in a small lossy table ([`Guesses`]): after [`MISS_LIMIT`] wrong guesses in
//! a row the guess is skipped for that document, except one lookup in
//! [`RETRY_EVERY`] (the document may have been replaced by one that follows
//! the scheme, or share its slot with one that does).

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use crate::schema::fnv1a;

/// Slots of the table (a power of two).
const SLOTS: usize = 4096;
/// Wrong guesses in a row after which a document's ids are not guessed.
pub const MISS_LIMIT: u8 = 4;
/// While guessing is off for a document, one lookup in this many guesses.
pub const RETRY_EVERY: u32 = 64;

/// The position an id names when it is a PageIndex-style number: 1 to 9
/// ASCII digits.
pub fn position_of(id: &str) -> Option<u32> {
    if id.is_empty() || id.len() > 9 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// Per document (by hash of its key prefix, lossy): how many guesses in a row
/// were wrong.
pub struct Guesses {
    misses: Box<[AtomicU8]>,
    skipped: AtomicU32,
}

impl Default for Guesses {
    fn default() -> Self {
        Guesses {
            misses: (0..SLOTS).map(|_| AtomicU8::new(0)).collect(),
            skipped: AtomicU32::new(0),
        }
    }
}

impl Guesses {
    /// The wrong-guess count of the document with this key prefix (hashed
    /// once per lookup).
    pub fn for_document(&self, doc_prefix: &[u8]) -> DocGuesses<'_> {
        DocGuesses {
            misses: &self.misses[(fnv1a(doc_prefix) as usize) & (SLOTS - 1)],
            skipped: &self.skipped,
        }
    }
}

/// One document's slot of [`Guesses`].
pub struct DocGuesses<'g> {
    misses: &'g AtomicU8,
    skipped: &'g AtomicU32,
}

impl DocGuesses<'_> {
    /// Whether to guess for the document.
    pub fn worth_trying(&self) -> bool {
        self.misses.load(Ordering::Relaxed) < MISS_LIMIT
            || self
                .skipped
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(RETRY_EVERY)
    }

    /// Records whether a guess for the document was right.
    pub fn record(&self, right: bool) {
        let now = self.misses.load(Ordering::Relaxed);
        // Racing updates may lose a count: the table is only a hint.
        if right {
            // No write when already zero: hits are the common case, and a
            // store would bounce the cache line between reader threads.
            if now != 0 {
                self.misses.store(0, Ordering::Relaxed);
            }
        } else {
            self.misses.store(now.saturating_add(1), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_plain_digit_ids() {
        assert_eq!(position_of("0000"), Some(0));
        assert_eq!(position_of("0042"), Some(42));
        assert_eq!(position_of("123456789"), Some(123_456_789));
        for not in ["", "1234567890", "+1", "-1", "1.2", "12a", " 1", "١"] {
            assert_eq!(position_of(not), None, "{not:?}");
        }
    }

    #[test]
    fn misses_turn_guessing_off_and_a_hit_turns_it_back_on() {
        let g = Guesses::default();
        let (doc, other) = (g.for_document(b"doc-a"), g.for_document(b"doc-b"));
        assert!(!std::ptr::eq(doc.misses, other.misses), "separate slots");
        for _ in 0..MISS_LIMIT {
            assert!(doc.worth_trying());
            doc.record(false);
        }
        assert!(other.worth_trying(), "other documents keep guessing");
        // Off, except one retry in RETRY_EVERY.
        let tries = (0..RETRY_EVERY * 4).filter(|_| doc.worth_trying()).count();
        assert_eq!(tries, 4);
        doc.record(true);
        assert!(doc.worth_trying());
        assert!(doc.worth_trying());
    }
}
