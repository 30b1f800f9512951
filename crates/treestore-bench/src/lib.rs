//! TreeStore's end-to-end benchmarks and the synthetic workloads they run:
//! [`corpus`], a seeded generator of PageIndex-shaped corpora, and [`docbench`],
//! the document-layer benchmark (ingest, node, children, subtree, ancestors,
//! page, search) behind `treestore-bench docs`.

pub mod corpus;
pub mod docbench;
