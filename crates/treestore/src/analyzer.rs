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

/// Byte class: an ASCII letter or digit.
const ALNUM: u8 = 1;
/// Byte class: an ASCII upper-case letter.
const UPPER: u8 = 4;
/// Byte class: part of a piece of text that may hold words: ASCII letters
/// and digits, the ASCII punctuation UAX #29 can join words or numbers
/// across (`'` `"` `.` `,` `:` `;` `_`), and every byte of a non-ASCII
/// character.
const PIECE: u8 = 2;

/// The classes of each byte value, looked up once per byte of text.
const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_uppercase() {
            t[b] = ALNUM | PIECE | UPPER;
        } else if c.is_ascii_alphanumeric() {
            t[b] = ALNUM | PIECE;
        } else if c >= 0x80 || matches!(c, b'\'' | b'"' | b'.' | b',' | b':' | b';' | b'_') {
            t[b] = PIECE;
        }
        b += 1;
    }
    t
};

fn class(b: u8) -> u8 {
    CLASSES[usize::from(b)]
}

/// Case-folds `word` into `out`.
fn fold_into(out: &mut String, word: &str) {
    out.clear();
    if word.is_ascii() {
        out.push_str(word);
        out.make_ascii_lowercase();
    } else {
        for c in word.chars() {
            // Typographic apostrophes as ASCII ones, so "policy’s" stems like
            // "policy's".
            let c = if c == '\u{2019}' { '\'' } else { c };
            out.extend(c.to_lowercase());
        }
    }
}

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
    ///
    /// ASCII text takes a fast path that gives the same words as the UAX #29
    /// segmenter (a property test checks this): the text is cut at ASCII
    /// characters that no word rule joins across (spaces, controls and
    /// punctuation other than `' " . , : ; _`), which UAX #29 always breaks at.
    /// A piece that is ASCII letters and digits, with the joining punctuation
    /// only where it cannot join (not between two letters or digits), is its
    /// runs of letters and digits; any other piece (non-ASCII, `_`, or joining
    /// punctuation inside, as in `2.5` or `patient's`) goes to the segmenter.
    pub fn for_each_word(&self, text: &str, mut f: impl FnMut(&str)) {
        let mut folded = String::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        // End of the previous piece: the segmenter gets the cut bytes before
        // a piece too, since a cut character absorbs the combining marks
        // that follow it (UAX #29 WB4), and some of those are letters.
        let mut prev_end = 0;
        while i < bytes.len() {
            if class(bytes[i]) & PIECE == 0 {
                i += 1;
                continue;
            }
            let start = i;
            let mut simple = true;
            while i < bytes.len() {
                let c = class(bytes[i]);
                if c & ALNUM != 0 {
                    i += 1;
                    continue;
                }
                if c & PIECE == 0 {
                    break;
                }
                // Non-ASCII, `_` (which joins on either side), or joining
                // punctuation between two letters or digits.
                let b = bytes[i];
                let joins = i > start
                    && class(bytes[i - 1]) & ALNUM != 0
                    && bytes.get(i + 1).is_some_and(|&n| class(n) & ALNUM != 0);
                if b >= 0x80 || b == b'_' || joins {
                    simple = false;
                }
                i += 1;
            }
            if simple {
                // The piece is ASCII: its words are its runs of letters and
                // digits. Most are lower case already and are passed as
                // they are.
                let mut w = start;
                while w < i {
                    while w < i && class(bytes[w]) & ALNUM == 0 {
                        w += 1;
                    }
                    let (word_start, mut upper) = (w, false);
                    while w < i {
                        let c = class(bytes[w]);
                        if c & ALNUM == 0 {
                            break;
                        }
                        upper |= c & UPPER != 0;
                        w += 1;
                    }
                    if word_start == w {
                        continue;
                    }
                    // Both ends sit next to ASCII bytes (or the piece's
                    // ends), so they are character boundaries.
                    let word = &text[word_start..w];
                    if upper {
                        folded.clear();
                        folded.push_str(word);
                        folded.make_ascii_lowercase();
                        f(&folded);
                    } else {
                        f(word);
                    }
                }
            } else {
                for word in text[prev_end..i].unicode_words() {
                    fold_into(&mut folded, word);
                    f(&folded);
                }
            }
            prev_end = i;
        }
    }

    /// [`Analyzer::for_each_word`] by the UAX #29 segmenter alone (the
    /// reference the fast path is tested against).
    #[cfg(test)]
    fn for_each_word_segmenter(&self, text: &str, mut f: impl FnMut(&str)) {
        let mut folded = String::new();
        for word in text.unicode_words() {
            fold_into(&mut folded, word);
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

    fn words(a: &Analyzer, text: &str, reference: bool) -> Vec<String> {
        let mut out = Vec::new();
        if reference {
            a.for_each_word_segmenter(text, |w| out.push(w.to_string()));
        } else {
            a.for_each_word(text, |w| out.push(w.to_string()));
        }
        out
    }

    #[test]
    fn fast_path_handles_joining_punctuation() {
        let a = Analyzer::new();
        for text in [
            "patient's knee, e.g. 2.5 mg; 1,000 units: a:b x_y _z 3.x a.'b",
            "end. 'quoted' (paren) [x]/y-z 42% #1 a;b 7;8 ,lead trail,",
            "café naïve 東京 policy’s x\u{301}y \u{301}abc 🙂 a\u{200d}b",
            "צה\"ל ארה\"ב a\"b x \u{93E} -\u{5B4} 1\"2 \u{5D0}'\u{5D1}",
        ] {
            assert_eq!(words(&a, text, false), words(&a, text, true), "{text:?}");
        }
        assert_eq!(words(&a, "Knee-MRI, 2.5", false), ["knee", "mri", "2.5"]);
    }

    proptest::proptest! {
        #[test]
        fn fast_path_equals_the_segmenter(
            text in proptest::string::string_regex(
                "([a-zA-Z0-9]{0,4}[ '.,:;_\\-()!?\"/\t\n\r]{0,2}(é|ü|’|\u{301}|\u{200d}|東|🙂|\u{a0}|\u{2028}|\u{5D0}|\u{5D1}|\u{5B4}|\u{93E}|\u{915})?){0,40}"
            ).expect("regex")
        ) {
            let a = Analyzer::new();
            proptest::prop_assert_eq!(words(&a, &text, false), words(&a, &text, true));
        }
    }

    #[test]
    fn skips_overlong_words() {
        let a = Analyzer::new();
        let long = "x".repeat(MAX_TERM_LEN + 1);
        assert_eq!(a.terms(&format!("{long} knee")), ["knee"]);
    }
}
