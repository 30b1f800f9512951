//! Micro-benchmark of the document write path: `store_document` of one
//! generated 250-node document (validation, search indexing, encoding, the
//! commit and its B+tree writes), with the log on its timer so that no
//! fsync wait is measured. Each iteration stores a new version, as an ingest
//! does. The allocator is mimalloc, as in `treestore-bench`.
//! `cargo bench -p treestore-bench --bench ingest`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use treestore::{Durability, Options, TreeStore};
use treestore_bench::corpus::{Corpus, CorpusSpec};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn store_document(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = Options {
        durability: Durability::Timer {
            interval: Duration::from_millis(10),
        },
        ..Options::default()
    };
    let store = TreeStore::open(dir.path(), options).expect("open the store");
    let doc = Corpus::new(CorpusSpec::new(42, 2_000))
        .min_by_key(|d| d.nodes.len().abs_diff(250))
        .expect("a generated document");
    let name = format!("store_document ({} nodes)", doc.nodes.len());
    let mut version = 0u64;
    c.bench_function(&name, |b| {
        b.iter_batched(
            || {
                version += 1;
                let mut d = doc.document.clone();
                d.version_id = format!("v{version}");
                (d, doc.nodes.clone())
            },
            |(d, nodes)| store.store_document(d, nodes).expect("store"),
            BatchSize::PerIteration,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(10));
    targets = store_document
}
criterion_main!(benches);
