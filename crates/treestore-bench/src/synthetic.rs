//! Deterministic synthetic policy documents in PageIndex's open-source output
//! shape: `doc_name`, `doc_description`, and `structure`, a list of top-level
//! nodes with `title`, `node_id` (4 digits, in document order), `start_index`,
//! `end_index`, `summary`, `text`, and children in `nodes`.
//!
//! The same seed always yields the same document. Text is drawn from a small
//! vocabulary of prior-authorization policy language, so keyword searches over
//! generated documents have realistic term overlap.

use serde_json::{json, Value};

/// Shape of a generated document.
#[derive(Debug, Clone, Copy)]
pub struct DocShape {
    /// Number of nodes in the whole tree (at least 1).
    pub nodes: usize,
    /// Deepest level allowed (1 = only top-level sections).
    pub max_depth: usize,
    /// Approximate bytes of `text` per node.
    pub text_bytes: usize,
}

const WORDS: &[&str] = &[
    "coverage",
    "prior",
    "authorization",
    "medically",
    "necessary",
    "criteria",
    "member",
    "plan",
    "benefit",
    "exclusion",
    "provider",
    "claim",
    "therapy",
    "diagnosis",
    "documentation",
    "imaging",
    "surgery",
    "outpatient",
    "inpatient",
    "formulary",
    "step",
    "trial",
    "failure",
    "contraindication",
    "physician",
    "review",
    "appeal",
    "policy",
    "effective",
    "date",
    "requirement",
    "approved",
    "denied",
    "limitation",
    "dosage",
    "duration",
    "renewal",
    "evidence",
    "clinical",
    "guideline",
    "specialist",
    "referral",
    "emergency",
    "service",
];

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn words(&mut self, bytes: usize) -> String {
        let mut s = String::with_capacity(bytes + 16);
        while s.len() < bytes {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(WORDS[self.below(WORDS.len())]);
        }
        s
    }
}

/// Generates one document of the given shape.
pub fn document(seed: u64, name: &str, shape: DocShape) -> Value {
    let mut rng = Rng(seed);
    let total = shape.nodes.max(1);
    let depth = shape.max_depth.max(1);
    // Decide each node's level in document order: a node is a child of the most
    // recent node one level up, so the outline stays well formed.
    let mut levels = Vec::with_capacity(total);
    let mut current = 0usize;
    for i in 0..total {
        let level = if i == 0 {
            0
        } else {
            match rng.below(3) {
                0 if current + 1 < depth => current + 1,
                1 if current > 0 => current - 1,
                _ => current,
            }
        };
        levels.push(level);
        current = level;
    }
    let mut page = 1i64;
    let mut next_id = 0usize;
    let structure = build(
        &levels,
        &mut 0,
        0,
        &mut rng,
        &mut page,
        &mut next_id,
        shape.text_bytes,
    );
    json!({
        "doc_name": name,
        "doc_description": rng.words(80),
        "structure": structure,
    })
}

fn build(
    levels: &[usize],
    at: &mut usize,
    level: usize,
    rng: &mut Rng,
    page: &mut i64,
    next_id: &mut usize,
    text_bytes: usize,
) -> Vec<Value> {
    let mut out = Vec::new();
    while *at < levels.len() && levels[*at] == level {
        *at += 1;
        let id = format!("{:04}", *next_id);
        *next_id += 1;
        let start = *page;
        *page += rng.below(3) as i64;
        let title = format!(
            "{} {}",
            capitalize(WORDS[rng.below(WORDS.len())]),
            rng.words(20)
        );
        let summary = rng.words(60);
        let text = rng.words(text_bytes);
        let children = build(levels, at, level + 1, rng, page, next_id, text_bytes);
        let mut node = json!({
            "title": title,
            "node_id": id,
            "start_index": start,
            "end_index": *page,
            "summary": summary,
            "text": text,
        });
        if !children.is_empty() {
            node["nodes"] = Value::Array(children);
        }
        out.push(node);
    }
    out
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(nodes: &[Value], depth: usize, seen: &mut Vec<String>, max_depth: &mut usize) {
        for n in nodes {
            *max_depth = (*max_depth).max(depth);
            let id = n["node_id"].as_str().unwrap().to_string();
            assert_eq!(id.len(), 4);
            seen.push(id);
            let (s, e) = (
                n["start_index"].as_i64().unwrap(),
                n["end_index"].as_i64().unwrap(),
            );
            assert!(1 <= s && s <= e, "page range {s}..{e}");
            assert!(!n["title"].as_str().unwrap().is_empty());
            if let Some(children) = n.get("nodes").and_then(Value::as_array) {
                assert!(!children.is_empty());
                walk(children, depth + 1, seen, max_depth);
            }
        }
    }

    #[test]
    fn documents_have_the_requested_shape_and_are_deterministic() {
        let shape = DocShape {
            nodes: 150,
            max_depth: 4,
            text_bytes: 300,
        };
        let doc = document(7, "policy-7", shape);
        let mut ids = Vec::new();
        let mut depth = 0;
        walk(
            doc["structure"].as_array().unwrap(),
            1,
            &mut ids,
            &mut depth,
        );
        assert_eq!(ids.len(), 150);
        assert!((2..=4).contains(&depth), "depth {depth}");
        let expected: Vec<String> = (0..150).map(|i| format!("{i:04}")).collect();
        assert_eq!(ids, expected, "ids in document order");
        assert_eq!(doc, document(7, "policy-7", shape));
        assert_ne!(doc, document(8, "policy-7", shape));
        // Round-trips through JSON text like a file on disk.
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), doc);
    }
}
