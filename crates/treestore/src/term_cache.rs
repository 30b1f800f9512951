//! The word-to-term cache used when indexing documents for search.
//!
//! Indexing a document looks up every word of its text (about a thousand per
//! node). [`TermCache`] remembers, across documents, what each folded word
//! stems to, so each distinct word is stemmed once per cache rather than once
//! per document, and numbers terms densely within the document being indexed.
//! Keys live in one byte arena with an open-addressing table of 32-byte
//! slots over it that hold keys of up to 16 bytes themselves (most words),
//! so a lookup usually reads one slot and never allocates. A word's slot also
//! remembers the word's id in the current document, so a word seen before in
//! the document costs that one slot read. Callers that look words up one
//! after another can make a [`WordKey`] first and [`TermCache::prefetch`] its
//! slot a few words ahead: the table is larger than the CPU's nearer caches,
//! and a lookup otherwise waits for its slot to arrive from memory.
//! A cache grows to at most [`MAX_WORDS`] words and then starts afresh.

use crate::analyzer::{Analyzer, MAX_TERM_LEN};

/// Distinct words a cache remembers before it is cleared (a cache then
/// holds at most about 16 MiB: arena, entries and slots of words and terms).
pub const MAX_WORDS: usize = 1 << 18;

/// Value of a word that is not indexed (stop word, overlong word).
const NOT_INDEXED: u32 = u32::MAX;
const EMPTY: u32 = u32::MAX;

/// The zero-padded little-endian value of up to 8 bytes, read with at most
/// two fixed-size loads (a copy of a variable length would be a call to
/// memmove for every word).
fn le_word(bytes: &[u8]) -> u64 {
    let load4 = |b: &[u8]| {
        let mut w = [0u8; 4];
        w.copy_from_slice(b);
        u64::from(u32::from_le_bytes(w))
    };
    match bytes.len() {
        0 => 0,
        n @ 1..=3 => bytes[..n]
            .iter()
            .enumerate()
            .fold(0u64, |v, (i, &b)| v | u64::from(b) << (8 * i)),
        // The two 4-byte loads overlap on equal bytes, so OR joins them.
        n @ 4..=7 => load4(&bytes[..4]) | load4(&bytes[n - 4..n]) << (8 * (n - 4)),
        _ => {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[..8]);
            u64::from_le_bytes(w)
        }
    }
}

/// A key made ready for lookups: its hash (the table takes the high bits)
/// and, for a key of at most [`INLINE`] bytes, the two words it is kept as
/// in its slot.
#[derive(Clone, Copy)]
struct Probe {
    h: u64,
    lo: u64,
    hi: u64,
}

impl Probe {
    /// 8 bytes at a time, multiplied and rotated, with the length mixed in.
    #[inline(always)]
    fn of(key: &[u8]) -> Probe {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let step = |h: u64, w: u64| (h.rotate_left(23) ^ w).wrapping_mul(K);
        let start = (key.len() as u64).wrapping_mul(K);
        let (h, lo, hi) = if key.len() <= INLINE {
            let (lo, hi) = (
                le_word(&key[..key.len().min(8)]),
                le_word(key.get(8..).unwrap_or_default()),
            );
            (step(step(start, lo), hi), lo, hi)
        } else {
            let h = key.chunks(8).fold(start, |h, c| step(h, le_word(c)));
            (h, 0, 0)
        };
        Probe {
            h: h ^ (h >> 29),
            lo,
            hi,
        }
    }
}

/// Whether two byte strings of equal length are equal, compared 8 bytes at
/// a time inline (a call to memcmp per lookup cost more than the
/// comparison).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    for (p, q) in (&mut x).zip(&mut y) {
        if le_word(p) != le_word(q) {
            return false;
        }
    }
    x.remainder().iter().zip(y.remainder()).all(|(p, q)| p == q)
}

/// Keys up to this many bytes are kept in their slot.
const INLINE: usize = 16;

/// A slot of a [`BytesMap`]: the key itself when it has at most [`INLINE`]
/// bytes (zero padded; as most words do, so a probe reads nothing but its
/// slot), else its place in the arena (`lo` = start), the value, and a
/// (stamp, id) pair its user may keep there. 32 bytes, aligned to 32 so a
/// slot never straddles two cache lines.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    lo: u64,
    hi: u64,
    value: u32,
    /// Key length; [`EMPTY`] for a free slot.
    len: u32,
    /// For the words map: the document (stamp) in which `local` is the
    /// word's id; 0 for none.
    stamp: u32,
    local: u32,
}

const FREE: Slot = Slot {
    lo: 0,
    hi: 0,
    value: 0,
    len: EMPTY,
    stamp: 0,
    local: 0,
};

/// A map from byte strings to `u32`, insert-only (until cleared).
#[derive(Default)]
struct BytesMap {
    /// Open addressing with linear probing, indexed by the hash's high bits;
    /// a power of two long, at most half full.
    slots: Vec<Slot>,
    /// (start, length) in `arena` of each key, in insertion order.
    keys: Vec<(u32, u32)>,
    arena: Vec<u8>,
}

impl BytesMap {
    /// The slot holding `key` (`p` = its probe), or the free slot where it
    /// would go.
    fn slot_of(&self, key: &[u8], p: &Probe) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = (p.h >> 32) as usize & mask;
        loop {
            let s = &self.slots[i];
            if s.len == EMPTY {
                return Err(i);
            }
            if s.len as usize == key.len() {
                let same = if key.len() <= INLINE {
                    s.lo == p.lo && s.hi == p.hi
                } else {
                    same_bytes(&self.arena[s.lo as usize..s.lo as usize + key.len()], key)
                };
                if same {
                    return Ok(i);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Asks the CPU to start loading the slot where the probe `p` starts.
    fn prefetch(&self, p: &Probe) {
        if let Some(s) = self
            .slots
            .get((p.h >> 32) as usize & self.slots.len().wrapping_sub(1))
        {
            prefetch_slot(s);
        }
    }

    /// The index of the slot holding `key`, if present.
    fn find(&self, key: &[u8], p: &Probe) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        self.slot_of(key, p).ok()
    }

    fn get(&self, key: &[u8], p: &Probe) -> Option<u32> {
        self.find(key, p).map(|i| self.slots[i].value)
    }

    /// Inserts `key` with `value` (a key already present keeps its value).
    fn insert(&mut self, key: &[u8], p: &Probe, value: u32) {
        if (self.keys.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let Err(i) = self.slot_of(key, p) else {
            return;
        };
        let start = self.arena.len() as u32;
        let (lo, hi) = if key.len() <= INLINE {
            (p.lo, p.hi)
        } else {
            (u64::from(start), 0)
        };
        self.slots[i] = Slot {
            lo,
            hi,
            value,
            len: key.len() as u32,
            stamp: 0,
            local: 0,
        };
        self.keys.push((start, key.len() as u32));
        self.arena.extend_from_slice(key);
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(1024);
        let old = std::mem::replace(&mut self.slots, vec![FREE; size]);
        let mask = size - 1;
        for s in old.into_iter().filter(|s| s.len != EMPTY) {
            let len = s.len as usize;
            let h = if len <= INLINE {
                let mut b = [0u8; INLINE];
                b[..8].copy_from_slice(&s.lo.to_le_bytes());
                b[8..].copy_from_slice(&s.hi.to_le_bytes());
                Probe::of(&b[..len]).h
            } else {
                Probe::of(&self.arena[s.lo as usize..s.lo as usize + len]).h
            };
            let mut i = (h >> 32) as usize & mask;
            while self.slots[i].len != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    /// The key inserted `index`-th (0-based).
    fn key(&self, index: u32) -> &[u8] {
        let (start, len) = self.keys[index as usize];
        &self.arena[start as usize..(start + len) as usize]
    }

    fn len(&self) -> usize {
        self.keys.len()
    }
}

/// A word made ready for a lookup ([`TermCache::key`]). All four fields
/// are 8 bytes wide: no padding, so copying a key just built needs no
/// partial store forwarded.
#[derive(Clone, Copy)]
pub(crate) struct WordKey {
    probe: Probe,
    len: u64,
}

impl WordKey {
    /// The key of the empty word (a filler for arrays of keys).
    pub const EMPTY: WordKey = WordKey {
        probe: Probe { h: 0, lo: 0, hi: 0 },
        len: 0,
    };
}

/// Asks the CPU to start loading the cache line holding `slot`.
fn prefetch_slot(slot: &Slot) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs the `sse` target feature, which every
    // x86_64 CPU has (it is part of the architecture's baseline). A prefetch
    // is only a hint: it never faults and changes no memory, and `slot` is
    // a live reference.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (slot as *const Slot).cast(),
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

/// Word to term, across documents, and term to its dense id in the document
/// being indexed.
#[derive(Default)]
pub(crate) struct TermCache {
    /// Folded word to global term id (or [`NOT_INDEXED`]).
    words: BytesMap,
    /// Term text to global term id (its entry index).
    terms: BytesMap,
    /// Per global term id: the document stamp and the id in that document.
    local: Vec<(u32, u32)>,
    stamp: u32,
    /// Global ids of the current document's terms, by document id.
    doc_terms: Vec<u32>,
}

impl TermCache {
    /// Starts numbering the terms of a new document from 0.
    pub fn begin_document(&mut self) {
        if self.words.len() > MAX_WORDS {
            *self = TermCache::default();
        }
        self.doc_terms.clear();
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            // Stamps of earlier documents could come round again.
            self.local.iter_mut().for_each(|l| *l = (0, 0));
            self.words.slots.iter_mut().for_each(|s| s.stamp = 0);
            self.stamp = 1;
        }
    }

    /// The document-local id of the term a folded word is indexed under, or
    /// `None` when it is not indexed.
    pub fn id(&mut self, analyzer: &Analyzer, word: &str) -> Option<u32> {
        if word.len() > MAX_TERM_LEN {
            return None;
        }
        self.lookup(analyzer, word.as_bytes(), &Probe::of(word.as_bytes()))
    }

    /// A folded word of at most 16 bytes made ready for
    /// [`TermCache::id_of`] (`None` for a longer word: use
    /// [`TermCache::id`]).
    pub fn key(word: &str) -> Option<WordKey> {
        (word.len() <= INLINE).then(|| WordKey {
            probe: Probe::of(word.as_bytes()),
            len: word.len() as u64,
        })
    }

    /// Asks the CPU to start loading the slot `key` is looked up in.
    pub fn prefetch(&self, key: &WordKey) {
        self.words.prefetch(&key.probe);
    }

    /// [`TermCache::id`] of the word `key` was made from.
    pub fn id_of(&mut self, analyzer: &Analyzer, key: &WordKey) -> Option<u32> {
        let mut bytes = [0u8; INLINE];
        bytes[..8].copy_from_slice(&key.probe.lo.to_le_bytes());
        bytes[8..].copy_from_slice(&key.probe.hi.to_le_bytes());
        // At most INLINE, as `key` made it.
        let len = (key.len as usize).min(INLINE);
        self.lookup(analyzer, &bytes[..len], &key.probe)
    }

    /// The document-local id of `word` (probe `p`), stemming and numbering
    /// it the first time.
    fn lookup(&mut self, analyzer: &Analyzer, word: &[u8], p: &Probe) -> Option<u32> {
        let global = match self.words.find(word, p) {
            Some(i) => {
                let slot = self.words.slots[i];
                if slot.value == NOT_INDEXED {
                    return None;
                }
                if slot.stamp == self.stamp {
                    return Some(slot.local);
                }
                let local =
                    Self::local_id(&mut self.local, &mut self.doc_terms, self.stamp, slot.value);
                let slot = &mut self.words.slots[i];
                slot.stamp = self.stamp;
                slot.local = local;
                return Some(local);
            }
            None => {
                let g = self.global_term(analyzer, word);
                self.words.insert(word, p, g);
                g
            }
        };
        if global == NOT_INDEXED {
            return None;
        }
        Some(Self::local_id(
            &mut self.local,
            &mut self.doc_terms,
            self.stamp,
            global,
        ))
    }

    /// The global id of the term a word not seen before stems to (numbering
    /// a new term), or [`NOT_INDEXED`].
    fn global_term(&mut self, analyzer: &Analyzer, word: &[u8]) -> u32 {
        // Words come from `&str` only, so `word` is UTF-8.
        let text = std::str::from_utf8(word).unwrap_or_default();
        let Some(term) = analyzer.term_of(text) else {
            return NOT_INDEXED;
        };
        let tp = Probe::of(term.as_bytes());
        if let Some(g) = self.terms.get(term.as_bytes(), &tp) {
            return g;
        }
        let g = self.terms.len() as u32;
        self.terms.insert(term.as_bytes(), &tp, g);
        self.local.push((0, 0));
        g
    }

    /// The id in the current document (`stamp`) of global term `global`,
    /// numbering it if it is new to the document.
    fn local_id(
        local: &mut [(u32, u32)],
        doc_terms: &mut Vec<u32>,
        stamp: u32,
        global: u32,
    ) -> u32 {
        let slot = &mut local[global as usize];
        if slot.0 != stamp {
            *slot = (stamp, doc_terms.len() as u32);
            doc_terms.push(global);
        }
        slot.1
    }

    /// Number of distinct terms in the current document.
    pub fn doc_term_count(&self) -> usize {
        self.doc_terms.len()
    }

    /// The text of the current document's term `id`.
    #[cfg(test)]
    pub fn doc_term(&self, id: u32) -> &str {
        // Terms are inserted from `&str` only.
        std::str::from_utf8(self.doc_term_bytes(id)).unwrap_or_default()
    }

    /// The bytes of the current document's term `id` (for sorting, which
    /// orders strings as their bytes).
    pub fn doc_term_bytes(&self, id: u32) -> &[u8] {
        self.terms.key(self.doc_terms[id as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_terms_per_document_and_remembers_words() {
        let a = Analyzer::new();
        let mut c = TermCache::default();
        c.begin_document();
        assert_eq!(c.id(&a, "scans"), Some(0));
        assert_eq!(c.id(&a, "the"), None);
        assert_eq!(c.id(&a, "scan"), Some(0), "same stem, same id");
        assert_eq!(c.id(&a, "knee"), Some(1));
        assert_eq!(
            (c.doc_term_count(), c.doc_term(0), c.doc_term(1)),
            (2, "scan", "knee")
        );
        c.begin_document();
        assert_eq!(c.id(&a, "knee"), Some(0), "ids restart per document");
        assert_eq!(c.doc_term(0), "knee");
        assert_eq!(c.doc_term_count(), 1);
    }

    /// Lookups through a prefetched key give what plain lookups give, in
    /// document after document; words too long for a key have none.
    #[test]
    fn keyed_lookups_equal_plain_ones() {
        let a = Analyzer::new();
        let words = [
            "scans",
            "the",
            "scan",
            "knee",
            "arthroscopy",
            "scanning",
            "knee",
            "of",
            "a-sixteen-bytes!",
            "seventeen-bytes!!",
            "scans",
            "mri",
        ];
        let (mut plain, mut keyed) = (TermCache::default(), TermCache::default());
        for doc in 0..3 {
            plain.begin_document();
            keyed.begin_document();
            for w in words.iter().skip(doc).chain(words.iter().take(doc)) {
                let want = plain.id(&a, w);
                let got = match TermCache::key(w) {
                    Some(k) => {
                        keyed.prefetch(&k);
                        keyed.id_of(&a, &k)
                    }
                    None => {
                        assert!(w.len() > INLINE, "{w}");
                        keyed.id(&a, w)
                    }
                };
                assert_eq!(got, want, "{w} in document {doc}");
            }
            let terms = |c: &TermCache| -> Vec<String> {
                (0..c.doc_term_count() as u32)
                    .map(|i| c.doc_term(i).to_string())
                    .collect()
            };
            assert_eq!(terms(&keyed), terms(&plain));
        }
    }

    /// A word's slot remembers its id in one document only: in the next
    /// one the word is numbered afresh (also when the document stamp wraps
    /// round to a value an old slot still holds), and two words of one term
    /// share its id.
    #[test]
    fn a_word_remembered_from_an_earlier_document_is_numbered_afresh() {
        let a = Analyzer::new();
        let mut c = TermCache::default();
        c.begin_document();
        assert_eq!((c.id(&a, "knee"), c.id(&a, "scan")), (Some(0), Some(1)));
        assert_eq!(c.id(&a, "scan"), Some(1), "from the slot");
        c.begin_document();
        assert_eq!(c.id(&a, "scan"), Some(0));
        assert_eq!(c.id(&a, "scans"), Some(0), "same term");
        assert_eq!(c.id(&a, "knee"), Some(1));
        let stamp = c.stamp;
        c.stamp = u32::MAX;
        c.begin_document();
        assert_eq!(c.stamp, 1);
        assert!(stamp >= 1);
        // "scan"'s slot was stamped 2 above; stamps restart at 1.
        c.begin_document();
        assert_eq!(c.stamp, 2);
        assert_eq!(c.id(&a, "mri"), Some(0));
        assert_eq!(
            c.id(&a, "scan"),
            Some(1),
            "not the id kept from the old document"
        );
        assert_eq!(c.doc_term_count(), 2);
    }

    #[test]
    fn a_full_cache_starts_afresh_at_the_next_document() {
        let a = Analyzer::new();
        let mut c = TermCache::default();
        c.begin_document();
        for i in 0..=MAX_WORDS {
            c.id(&a, &format!("w{i}x"));
        }
        assert!(c.words.len() > MAX_WORDS);
        c.begin_document();
        assert_eq!(c.words.len(), 0, "cleared");
        assert_eq!(c.id(&a, "knees"), Some(0));
        assert_eq!(c.doc_term(0), "knee");
    }

    /// Keys short enough to sit in their slot and longer ones in the arena,
    /// some differing only in their last byte or in length, all found
    /// after the table has grown several times; absent ones are not.
    #[test]
    fn maps_short_and_long_keys_through_growth() {
        let key = |i: u32| -> Vec<u8> {
            let len = 1 + (i as usize % 40);
            let mut k: Vec<u8> = (0..len)
                .map(|j| b'a' + ((i as usize + j) % 26) as u8)
                .collect();
            // Distinct keys: the number in the last bytes.
            let tail = i.to_le_bytes();
            let n = k.len().min(4);
            let at = k.len() - n;
            k[at..].copy_from_slice(&tail[..n]);
            k
        };
        let mut m = BytesMap::default();
        let mut want = std::collections::HashMap::new();
        for i in 0..5_000u32 {
            let k = key(i);
            if want.contains_key(&k) {
                continue;
            }
            m.insert(&k, &Probe::of(&k), i);
            want.insert(k, i);
        }
        assert!(m.slots.len() >= 8_192, "grew to {}", m.slots.len());
        for (k, v) in &want {
            assert_eq!(m.get(k, &Probe::of(k)), Some(*v), "{k:?}");
            let mut other = k.clone();
            *other.last_mut().expect("non-empty") ^= 0x80;
            if !want.contains_key(&other) {
                assert_eq!(m.get(&other, &Probe::of(&other)), None, "{other:?}");
            }
            let longer = [k.as_slice(), b"\0"].concat();
            if !want.contains_key(&longer) {
                assert_eq!(m.get(&longer, &Probe::of(&longer)), None);
            }
        }
        let (start, len) = m.keys[0];
        assert_eq!(&m.arena[start as usize..(start + len) as usize], m.key(0));
    }

    /// The words of a key read by overlapping loads equal its bytes zero
    /// padded, at every length.
    #[test]
    fn reads_words_of_every_length() {
        let bytes: Vec<u8> = (1..=20).collect();
        for len in 0..=8 {
            let mut padded = [0u8; 8];
            padded[..len].copy_from_slice(&bytes[..len]);
            assert_eq!(le_word(&bytes[..len]), u64::from_le_bytes(padded), "{len}");
        }
        for len in 0..=INLINE {
            let p = Probe::of(&bytes[..len]);
            let mut padded = [0u8; INLINE];
            padded[..len].copy_from_slice(&bytes[..len]);
            let lo = u64::from_le_bytes(padded[..8].try_into().unwrap());
            let hi = u64::from_le_bytes(padded[8..].try_into().unwrap());
            assert_eq!((p.lo, p.hi), (lo, hi), "{len}");
        }
    }

    #[test]
    fn compares_bytes_of_every_length() {
        for len in 0..40 {
            let a: Vec<u8> = (0..len as u8).collect();
            assert!(same_bytes(&a, &a.clone()));
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same_bytes(&a, &b), "len {len}, differing at {at}");
            }
        }
    }

    #[test]
    fn many_words_survive_growth() {
        let a = Analyzer::new();
        let mut c = TermCache::default();
        c.begin_document();
        let words: Vec<String> = (0..20_000).map(|i| format!("w{i}x")).collect();
        let ids: Vec<_> = words.iter().map(|w| c.id(&a, w)).collect();
        for (w, id) in words.iter().zip(&ids) {
            assert_eq!(c.id(&a, w), *id);
            let id = id.expect("indexed");
            assert_eq!(Some(c.doc_term(id).to_string()), a.term_of(w));
        }
    }
}
