//! Text analysis for search: Unicode word segmentation (UAX #29), case folding,
//! English stop words and Snowball English stemming. Documents and queries go
//! through the same steps, so a query term matches the words it was derived from.

use rust_stemmers::{Algorithm, Stemmer};
use unicode_segmentation::UnicodeSegmentation;

/// Longest term indexed, in bytes; longer words (base64 blobs, URLs without
/// breaks) are skipped rather than indexed.
pub const MAX_TERM_LEN: usize = 64;

/// English stop words, sorted (binary-searched). Negations (`no`, `not`, `nor`)
/// are kept: in policy text they change what a criterion means.
const STOP_WORDS: &[&str] = &[
    "a", "about", "an", "and", "are", "as", "at", "be", "been", "being", "but", "by", "can",
    "could", "did", "do", "does", "doing", "for", "from", "had", "has", "have", "having", "he",
    "her", "here", "hers", "him", "his", "i", "if", "in", "into", "is", "it", "its", "itself",
    "me", "my", "of", "on", "or", "our", "ours", "she", "should", "so", "such", "than", "that",
    "the", "their", "theirs", "them", "then", "there", "these", "they", "this", "those", "to",
    "too", "very", "was", "we", "were", "what", "which", "while", "who", "whom", "will", "with",
    "would", "you", "your", "yours",
];

/// Splits text into search terms.
pub struct Analyzer {
    stemmer: Stemmer,
}

impl Default for Analyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl Analyzer {
    pub fn new() -> Self {
        Analyzer {
            stemmer: Stemmer::create(Algorithm::English),
        }
    }

    /// Calls `f` with every word of `text` (UAX #29 word segmentation), case
    /// folded, before stop-word removal and stemming.
    pub fn for_each_word(&self, text: &str, mut f: impl FnMut(&str)) {
        let mut folded = String::new();
        for word in text.unicode_words() {
            folded.clear();
            if word.is_ascii() {
                folded.push_str(word);
                folded.make_ascii_lowercase();
            } else {
                for c in word.chars() {
                    // Typographic apostrophes as ASCII ones, so "policy’s" stems
                    // like "policy's".
                    let c = if c == '\u{2019}' { '\'' } else { c };
                    folded.extend(c.to_lowercase());
                }
            }
            f(&folded);
        }
    }

    /// The term a folded word is indexed under, or `None` for a stop word or an
    /// overlong word.
    pub fn term_of(&self, folded: &str) -> Option<String> {
        if folded.len() > MAX_TERM_LEN || STOP_WORDS.binary_search(&folded).is_ok() {
            return None;
        }
        let stem = self.stemmer.stem(folded);
        let stem = stem.trim_end_matches('\'');
        (!stem.is_empty()).then(|| stem.to_string())
    }

    /// Calls `f` with every term of `text`, in order, repeats included.
    pub fn for_each_term(&self, text: &str, mut f: impl FnMut(&str)) {
        self.for_each_word(text, |w| {
            if let Some(t) = self.term_of(w) {
                f(&t);
            }
        });
    }

    /// Every term of `text`, in order, repeats included.
    pub fn terms(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_term(text, |t| out.push(t.to_string()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn segments_folds_stems_and_drops_stop_words() {
        let a = Analyzer::new();
        assert_eq!(
            a.terms("The MRI scans were Covered, for the patients' imaging!"),
            ["mri", "scan", "cover", "patient", "imag"]
        );
        assert_eq!(
            a.terms("Prior-Authorization: 2.5 mg"),
            ["prior", "author", "2.5", "mg"]
        );
        assert_eq!(a.terms("Policy’s RÉSUMÉ"), a.terms("policy's résumé"));
        assert_eq!(a.terms("not covered"), ["not", "cover"]);
        assert!(a.terms("the of and").is_empty());
        assert!(a.terms("  ,;  ").is_empty());
    }

    #[test]
    fn skips_overlong_words() {
        let a = Analyzer::new();
        let long = "x".repeat(MAX_TERM_LEN + 1);
        assert_eq!(a.terms(&format!("{long} knee")), ["knee"]);
    }
}
