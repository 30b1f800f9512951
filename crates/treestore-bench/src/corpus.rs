//! Seeded generator of PageIndex-shaped corpora for benchmarks.
//!
//! Each document is one policy version: a single root (the document title) and
//! sections below it, built breadth-first with a fan-out of 3 to 12 children per
//! node and a depth (levels below the root) drawn from 2 to 6, stopping at
//! [`CorpusSpec::doc_nodes`] nodes (300 by default; shallow documents end up
//! smaller). Titles have 3 to 10 words, summaries 40 to 120, text 200 to 1,500,
//! drawn from a Zipf-distributed vocabulary (exponent 1) of English function
//! words, synthetic words and prior-authorization domain terms placed at
//! medium ranks. Pages are assigned in document order: each leaf covers 1 to 3
//! pages, a section the pages of its descendants. The same seed always yields
//! the same corpus.

use serde_json::{json, Value};
use treestore::{Document, Node};

/// Domain terms, spread over ranks 40 to ~2,000 of the vocabulary.
const DOMAIN: &[&str] = &[
    "authorization",
    "coverage",
    "medically",
    "necessary",
    "criteria",
    "member",
    "benefit",
    "exclusion",
    "provider",
    "claim",
    "therapy",
    "diagnosis",
    "documentation",
    "imaging",
    "surgery",
    "mri",
    "lumbar",
    "spine",
    "knee",
    "arthroscopy",
    "physical",
    "radiology",
    "oncology",
    "chemotherapy",
    "infusion",
    "biologic",
    "formulary",
    "dosage",
    "inpatient",
    "outpatient",
    "referral",
    "specialist",
    "copayment",
    "deductible",
    "appeal",
    "denial",
    "precertification",
    "utilization",
    "review",
    "guideline",
    "contraindication",
    "trial",
    "conservative",
    "treatment",
    "symptom",
    "duration",
    "weeks",
    "months",
    "pediatric",
    "adult",
    "orthopedic",
    "cardiology",
    "echocardiogram",
    "catheterization",
    "stent",
    "dialysis",
    "transplant",
    "genetic",
    "testing",
    "prosthetic",
    "orthotic",
    "wheelchair",
    "oxygen",
    "sleep",
    "apnea",
    "cpap",
    "bariatric",
    "obesity",
    "diabetes",
    "insulin",
    "pump",
    "glucose",
    "monitor",
    "hospice",
    "rehabilitation",
    "occupational",
    "speech",
    "behavioral",
    "psychiatric",
    "substance",
    "telehealth",
    "ambulance",
    "emergency",
];

const FUNCTION_WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "for",
    "that",
    "be",
    "or",
    "with",
    "as",
    "by",
    "on",
    "are",
    "this",
    "not",
    "may",
    "if",
    "an",
    "must",
    "when",
    "which",
    "from",
    "at",
    "will",
    "all",
    "any",
    "each",
    "such",
    "other",
    "than",
    "under",
    "these",
    "following",
];

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ren", "tor", "va", "sel", "dun", "pre", "quo", "ral", "ben", "cy", "tis",
    "mon", "gra", "fel", "hu", "ix", "nor", "pa", "ste", "vin", "zo", "ul", "ent", "ard", "bri",
    "co", "dro",
];

/// A small, fast, seeded PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf-distributed vocabulary, sampled in O(1) with Vose's alias method.
pub struct Vocab {
    pub words: Vec<String>,
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Vocab {
    /// `size` words; rank r (1-based) has weight 1/r.
    pub fn new(seed: u64, size: usize) -> Self {
        let mut rng = Rng::new(seed ^ 0x5EED);
        let mut words: Vec<String> = FUNCTION_WORDS.iter().map(|w| w.to_string()).collect();
        let mut seen: std::collections::HashSet<String> = words.iter().cloned().collect();
        seen.extend(DOMAIN.iter().map(|w| w.to_string()));
        while words.len() < size {
            let n = rng.range(2, 4);
            let w: String = (0..n)
                .map(|_| SYLLABLES[rng.range(0, SYLLABLES.len() - 1)])
                .collect();
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        // Domain terms at ranks 40, 64, 88, ...: medium frequency.
        for (i, d) in DOMAIN.iter().enumerate() {
            let at = (40 + i * 24).min(words.len());
            words.insert(at, d.to_string());
        }
        words.truncate(size.max(DOMAIN.len() + FUNCTION_WORDS.len()));
        let n = words.len();
        let weights: Vec<f64> = (1..=n).map(|r| 1.0 / r as f64).collect();
        let total: f64 = weights.iter().sum();
        let mut prob: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias = vec![0u32; n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| prob[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            alias[s] = l as u32;
            prob[l] -= 1.0 - prob[s];
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        for i in large.into_iter().chain(small) {
            prob[i] = 1.0;
        }
        Vocab { words, prob, alias }
    }

    pub fn sample(&self, rng: &mut Rng) -> &str {
        let i = (rng.next_u64() % self.words.len() as u64) as usize;
        if rng.unit() < self.prob[i] {
            &self.words[i]
        } else {
            &self.words[self.alias[i] as usize]
        }
    }

    /// `n` words joined by spaces.
    pub fn phrase(&self, rng: &mut Rng, n: usize, out: &mut String) {
        out.clear();
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(self.sample(rng));
        }
    }

    /// The domain terms.
    pub fn domain_terms() -> &'static [&'static str] {
        DOMAIN
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct CorpusSpec {
    pub seed: u64,
    /// Total nodes over all documents.
    pub total_nodes: usize,
    /// Cap on nodes per document.
    pub doc_nodes: usize,
    /// Vocabulary size.
    pub vocab: usize,
}

impl CorpusSpec {
    pub fn new(seed: u64, total_nodes: usize) -> Self {
        CorpusSpec {
            seed,
            total_nodes,
            doc_nodes: 300,
            vocab: 30_000,
        }
    }
}

/// One generated document version.
pub struct GeneratedDoc {
    pub document: Document,
    /// In document order; `nodes[0]` is the root. `depth` and `child_ids` are
    /// filled in.
    pub nodes: Vec<Node>,
    /// Levels below the root.
    pub depth: usize,
    pub pages: u32,
}

/// Generates the documents of a corpus one at a time.
pub struct Corpus {
    spec: CorpusSpec,
    vocab: Vocab,
    rng: Rng,
    produced: usize,
    docs: usize,
}

impl Corpus {
    pub fn new(spec: CorpusSpec) -> Self {
        Corpus {
            vocab: Vocab::new(spec.seed, spec.vocab),
            rng: Rng::new(spec.seed),
            spec,
            produced: 0,
            docs: 0,
        }
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Policy id of the `i`-th document.
    pub fn policy_id(i: usize) -> String {
        format!("policy-{i:06}")
    }

    fn document(&mut self) -> GeneratedDoc {
        let rng = &mut self.rng;
        let cap = self
            .spec
            .doc_nodes
            .min(self.spec.total_nodes - self.produced)
            .max(1);
        let depth = rng.range(2, 6);
        // Breadth-first shape: parent index and depth of each node.
        let mut parent: Vec<Option<usize>> = vec![None];
        let mut level: Vec<usize> = vec![0];
        let mut at = 0;
        while at < parent.len() && parent.len() < cap {
            if level[at] < depth {
                let fan = rng.range(3, 12);
                for _ in 0..fan {
                    if parent.len() >= cap {
                        break;
                    }
                    parent.push(Some(at));
                    level.push(level[at] + 1);
                }
            }
            at += 1;
        }
        let n = parent.len();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, p) in parent.iter().enumerate() {
            if let Some(p) = p {
                children[*p].push(i);
            }
        }
        // Document order (pre-order) and page ranges.
        let mut order = Vec::with_capacity(n);
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            order.push(i);
            stack.extend(children[i].iter().rev());
        }
        let mut pos = vec![0usize; n];
        for (o, &i) in order.iter().enumerate() {
            pos[i] = o;
        }
        let mut pages = vec![(0u32, 0u32); n];
        let mut next_page = 1u32;
        for &i in &order {
            if children[i].is_empty() {
                let span = rng.range(1, 3) as u32;
                pages[i] = (next_page, next_page + span - 1);
                next_page += span;
            }
        }
        for &i in order.iter().rev() {
            if let (Some(first), Some(last)) = (children[i].first(), children[i].last()) {
                pages[i] = (pages[*first].0, pages[*last].1);
            }
        }
        let policy = Corpus::policy_id(self.docs);
        let mut document = Document::new(&policy, "v1");
        document.pageindex_doc_id = format!("{policy}.pdf");
        let mut nodes = Vec::with_capacity(n);
        let mut buf = String::new();
        for &i in &order {
            let id = |i: usize| format!("{:04}", pos[i]);
            let words = rng.range(3, 10);
            self.vocab.phrase(rng, words, &mut buf);
            let mut node = Node::new(id(i), parent[i].map(id).as_deref(), buf.clone(), pages[i]);
            node.depth = level[i] as u32;
            node.child_ids = children[i].iter().map(|&c| id(c)).collect();
            let words = rng.range(40, 120);
            self.vocab.phrase(rng, words, &mut buf);
            node.summary = buf.clone();
            let words = rng.range(200, 1500);
            self.vocab.phrase(rng, words, &mut buf);
            node.text = buf.clone();
            nodes.push(node);
        }
        self.produced += n;
        self.docs += 1;
        GeneratedDoc {
            document,
            nodes,
            depth: level.iter().copied().max().unwrap_or(0),
            pages: next_page - 1,
        }
    }
}

impl Iterator for Corpus {
    type Item = GeneratedDoc;
    fn next(&mut self) -> Option<GeneratedDoc> {
        (self.produced < self.spec.total_nodes).then(|| self.document())
    }
}

/// The document in PageIndex's open-source output shape (`doc_name`,
/// `structure`, nested `nodes`), for tools that import JSON.
pub fn to_pageindex_json(doc: &GeneratedDoc) -> Value {
    let index: std::collections::HashMap<&str, &Node> =
        doc.nodes.iter().map(|n| (n.node_id.as_str(), n)).collect();
    fn build(n: &Node, index: &std::collections::HashMap<&str, &Node>) -> Value {
        let mut v = json!({
            "title": n.title,
            "node_id": n.node_id,
            "start_index": n.page_start,
            "end_index": n.page_end,
            "summary": n.summary,
            "text": n.text,
        });
        if !n.child_ids.is_empty() {
            v["nodes"] = n
                .child_ids
                .iter()
                .map(|c| build(index[c.as_str()], index))
                .collect();
        }
        v
    }
    json!({
        "doc_name": doc.document.pageindex_doc_id,
        "structure": doc.nodes.iter().filter(|n| n.parent_id.is_none()).map(|n| build(n, &index)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_and_shaped_as_specified() {
        let spec = CorpusSpec::new(7, 3_000);
        let a: Vec<GeneratedDoc> = Corpus::new(spec).collect();
        let b: Vec<GeneratedDoc> = Corpus::new(spec).collect();
        assert_eq!(a.iter().map(|d| d.nodes.len()).sum::<usize>(), 3_000);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.nodes, y.nodes);
        }
        for d in &a {
            assert!(d.nodes.len() <= 300);
            assert!((1..=6).contains(&d.depth), "depth {}", d.depth);
            for n in &d.nodes {
                let words = |s: &str| s.split(' ').count();
                assert!((3..=10).contains(&words(&n.title)));
                assert!((40..=120).contains(&words(&n.summary)));
                assert!((200..=1500).contains(&words(&n.text)));
                assert!(n.page_start >= 1 && n.page_start <= n.page_end);
                if !n.child_ids.is_empty() {
                    let fan = d
                        .nodes
                        .iter()
                        .filter(|c| c.parent_id.as_deref() == Some(&n.node_id))
                        .count();
                    assert!(fan <= 12);
                }
            }
            // Storable as generated, and as PageIndex JSON.
            let imported = treestore::pageindex::from_value(&to_pageindex_json(d)).unwrap();
            assert_eq!(imported.nodes.len(), d.nodes.len());
        }
    }

    #[test]
    fn vocabulary_is_zipf_distributed() {
        let v = Vocab::new(1, 30_000);
        let mut rng = Rng::new(2);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..200_000 {
            *counts.entry(v.sample(&mut rng).to_string()).or_insert(0u32) += 1;
        }
        let c = |w: &str| counts.get(w).copied().unwrap_or(0) as f64;
        // Rank 1 ("the") about twice rank 2 ("of"), ten times rank 10.
        let r1 = c(&v.words[0]);
        assert!(
            (1.6..2.4).contains(&(r1 / c(&v.words[1]))),
            "{}",
            r1 / c(&v.words[1])
        );
        assert!((7.0..13.0).contains(&(r1 / c(&v.words[9]))));
        assert!(c("mri") > 0.0 || c("authorization") > 0.0);
    }
}
