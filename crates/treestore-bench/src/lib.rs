//! TreeStore's end-to-end benchmarks and the synthetic workloads they run:
//! [`corpus`], a seeded generator of PageIndex-shaped corpora, and [`docbench`],
//! the document-layer benchmark (ingest, node, children, subtree, ancestors,
//! page, search) behind `treestore-bench docs`, and [`metabench`], the
//! metadata benchmark (durable tool-result appends, tool-result queries and
//! aggregates) behind `treestore-bench meta`, and [`grpcbench`], the server
//! benchmark over gRPC behind `treestore-bench grpc`.

pub mod corpus;
pub mod docbench;
pub mod grpcbench;
pub mod metabench;
