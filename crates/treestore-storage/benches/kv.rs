//! Key/value benchmark of TreeStore's engine against redb and LMDB (heed), after
//! redb's published workload: 24-byte random keys, 150-byte values; bulk load of
//! 1,000,000 pairs in one transaction; random point gets with a warm cache; scans
//! of 10 consecutive keys from random starts; 100 batches of 1,000 random puts;
//! removal of half the keys; file size before and after.
//!
//! Every engine runs the same code path in the same process and run. Commits are
//! durable for all three (redb `Durability::Immediate`, LMDB default sync, TreeStore
//! default). Run: `cargo bench -p treestore-storage --bench kv`; set
//! `TREESTORE_BENCH_N` for another data-set size. One-shot measurements (removal,
//! file sizes) are written to `target/criterion/kv-oneshot.json`;
//! `scripts/bench-table.py` turns both into the table in `docs/benchmarks.md`.

use std::hint::black_box;
use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use heed::types::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redb::{ReadableDatabase, TableDefinition};

const KEY_LEN: usize = 24;
const VALUE_LEN: usize = 150;
const OPS_PER_ITER: usize = 1000;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn pairs(n: usize, seed: u64) -> Pairs {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut k = vec![0u8; KEY_LEN];
            let mut v = vec![0u8; VALUE_LEN];
            rng.fill(&mut k[..]);
            rng.fill(&mut v[..]);
            (k, v)
        })
        .collect()
}

fn data_set_size() -> usize {
    std::env::var("TREESTORE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Bytes of all files under `path`, subdirectories included (TreeStore's log).
fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The operations every engine implements identically.
trait Engine: Sized {
    const NAME: &'static str;
    fn open(dir: &Path) -> Self;
    /// Inserts or deletes (`None`) in one durable transaction.
    fn write(&self, ops: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>);
    /// Point gets in one read transaction; returns bytes read.
    fn gets(&self, keys: &[&[u8]]) -> usize;
    /// Scans of 10 consecutive entries from each start, in one read transaction.
    fn scans(&self, starts: &[&[u8]]) -> usize;
    /// Brings the files up to date before they are measured (TreeStore writes
    /// its tree pages at checkpoints; the others at every commit).
    fn settle(&self) {}
}

struct TreeStore(treestore_storage::Db);

impl Engine for TreeStore {
    const NAME: &'static str = "treestore";
    fn open(dir: &Path) -> Self {
        let opts = treestore_storage::Options {
            cache_bytes: 1 << 30,
            ..Default::default()
        };
        TreeStore(treestore_storage::Db::open(dir, opts).unwrap())
    }
    fn write(&self, ops: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) {
        let mut txn = self.0.begin_write();
        for (k, v) in ops {
            match v {
                Some(v) => txn.put(k, v).unwrap(),
                None => txn.delete(k).unwrap(),
            }
        }
        txn.commit().unwrap();
    }
    fn gets(&self, keys: &[&[u8]]) -> usize {
        let txn = self.0.begin_read();
        keys.iter()
            .map(|k| txn.get_with(k, <[u8]>::len).unwrap().unwrap_or(0))
            .sum()
    }
    fn settle(&self) {
        self.0.checkpoint().unwrap();
    }
    fn scans(&self, starts: &[&[u8]]) -> usize {
        let txn = self.0.begin_read();
        starts
            .iter()
            .map(|s| {
                txn.range(Bound::Included(s), Bound::Unbounded)
                    .take(10)
                    .map(|r| r.unwrap().1.len())
                    .sum::<usize>()
            })
            .sum()
    }
}

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");

struct Redb(redb::Database);

impl Engine for Redb {
    const NAME: &'static str = "redb";
    fn open(dir: &Path) -> Self {
        let db = redb::Builder::new()
            .set_cache_size(1 << 30)
            .create(dir.join("redb.db"))
            .unwrap();
        Redb(db)
    }
    fn write(&self, ops: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) {
        let txn = self.0.begin_write().unwrap();
        {
            let mut t = txn.open_table(TABLE).unwrap();
            for (k, v) in ops {
                match v {
                    Some(v) => {
                        t.insert(k, v).unwrap();
                    }
                    None => {
                        t.remove(k).unwrap();
                    }
                }
            }
        }
        txn.commit().unwrap();
    }
    fn gets(&self, keys: &[&[u8]]) -> usize {
        let txn = self.0.begin_read().unwrap();
        let t = txn.open_table(TABLE).unwrap();
        keys.iter()
            .map(|k| t.get(*k).unwrap().map_or(0, |v| v.value().len()))
            .sum()
    }
    fn scans(&self, starts: &[&[u8]]) -> usize {
        let txn = self.0.begin_read().unwrap();
        let t = txn.open_table(TABLE).unwrap();
        starts
            .iter()
            .map(|s| {
                t.range::<&[u8]>(*s..)
                    .unwrap()
                    .take(10)
                    .map(|r| r.unwrap().1.value().len())
                    .sum::<usize>()
            })
            .sum()
    }
}

struct Lmdb {
    env: heed::Env,
    db: heed::Database<'static, Bytes, Bytes>,
}

impl Engine for Lmdb {
    const NAME: &'static str = "lmdb";
    fn open(dir: &Path) -> Self {
        // SAFETY: heed requires that the environment is not opened twice in one
        // process; every benchmark opens a fresh directory exactly once.
        let env = unsafe {
            heed::EnvOpenOptions::new()
                .map_size(8 << 30)
                .open(dir)
                .unwrap()
        };
        let wtxn = env.write_txn().unwrap();
        let db = env
            .create_databases_and_commit(wtxn, |wdo, wtxn| {
                let db: heed::Database<Bytes, Bytes> = wdo.create_database(wtxn, None)?;
                heed::Result::Ok(heed::CommitOrAbort::<_, ()>::Commit(db))
            })
            .unwrap()
            .unwrap_commit();
        Lmdb { env, db }
    }
    fn write(&self, ops: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) {
        let mut txn = self.env.write_txn().unwrap();
        for (k, v) in ops {
            match v {
                Some(v) => self.db.put(&mut txn, k, v).unwrap(),
                None => {
                    self.db.delete(&mut txn, k).unwrap();
                }
            }
        }
        txn.commit().unwrap();
    }
    fn gets(&self, keys: &[&[u8]]) -> usize {
        let txn = self.env.read_txn().unwrap();
        keys.iter()
            .map(|k| self.db.get(&txn, k).unwrap().map_or(0, |v| v.len()))
            .sum()
    }
    fn scans(&self, starts: &[&[u8]]) -> usize {
        let txn = self.env.read_txn().unwrap();
        starts
            .iter()
            .map(|s| {
                let range = (Bound::Included(*s), Bound::Unbounded);
                self.db
                    .range(&txn, &range)
                    .unwrap()
                    .take(10)
                    .map(|r| r.unwrap().1.len())
                    .sum::<usize>()
            })
            .sum()
    }
}

/// Times `op` on batches of `OPS_PER_ITER` keys drawn at random from `keys`
/// (drawing them is not timed).
fn read_group(
    c: &mut Criterion,
    group: &str,
    name: &str,
    keys: &[&[u8]],
    rng: &mut StdRng,
    op: impl Fn(&[&[u8]]) -> usize,
) {
    let mut g = c.benchmark_group(group);
    g.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<&[u8]> = (0..OPS_PER_ITER)
                    .map(|_| keys[rng.random_range(0..keys.len())])
                    .collect();
                let t = Instant::now();
                black_box(op(&batch));
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn insert_all<E: Engine>(e: &E, data: &Pairs) {
    e.write(&mut data.iter().map(|(k, v)| (k.as_slice(), Some(v.as_slice()))));
}

/// One-shot results (not repeated by criterion) per engine.
#[derive(Default)]
struct OneShot {
    lines: Vec<String>,
}

fn run_engine<E: Engine>(c: &mut Criterion, data: &Pairs, shots: &mut OneShot) {
    let name = E::NAME;
    // Bulk load of the whole data set in one transaction, fresh database each time.
    {
        let mut g = c.benchmark_group("bulk_load");
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_secs(1));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let e = E::open(dir.path());
                    let t = Instant::now();
                    insert_all(&e, data);
                    total += t.elapsed();
                }
                total
            })
        });
        g.finish();
    }

    let dir = tempfile::tempdir().unwrap();
    let e = E::open(dir.path());
    insert_all(&e, data);
    e.settle();
    let loaded_size = dir_size(dir.path());
    let mut rng = StdRng::seed_from_u64(7);

    // Random point gets (warm: every key read once first).
    let keys: Vec<&[u8]> = data.iter().map(|(k, _)| k.as_slice()).collect();
    black_box(e.gets(&keys));
    read_group(c, "random_get_x1000", name, &keys, &mut rng, |batch| {
        e.gets(batch)
    });
    read_group(c, "scan10_x1000", name, &keys, &mut rng, |batch| {
        e.scans(batch)
    });
    // 100 durable batches of 1,000 random puts (new keys).
    let mut added = 0usize;
    {
        let mut g = c.benchmark_group("put_100_batches_x1000");
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_secs(1));
        let mut seed = 1000u64;
        let added = &mut added;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    seed += 1;
                    let fresh = pairs(100 * 1000, seed);
                    *added += fresh.len();
                    let t = Instant::now();
                    for chunk in fresh.chunks(1000) {
                        insert_all(&e, &chunk.to_vec());
                    }
                    total += t.elapsed();
                }
                total
            })
        });
        g.finish();
    }
    // Removal of half of the original keys in one transaction (one shot).
    e.settle();
    let before_removal = dir_size(dir.path());
    let t = Instant::now();
    e.write(&mut data.iter().step_by(2).map(|(k, _)| (k.as_slice(), None)));
    let removal = t.elapsed();
    // Settle: one more small commit lets engines that free space lazily do so.
    insert_all(&e, &pairs(1, 424242));
    e.settle();
    insert_all(&e, &pairs(1, 424243));
    e.settle();
    let after_size = dir_size(dir.path());
    let live_after = (data.len() - data.len().div_ceil(2) + added + 2) * (KEY_LEN + VALUE_LEN);
    shots.lines.push(format!(
        "  \"{name}\": {{\"removal_s\": {:.4}, \"size_after_load\": {loaded_size}, \"size_before_removal\": {before_removal}, \"size_after_removal\": {after_size}, \"live_payload_after_removal\": {live_after}}}",
        removal.as_secs_f64()
    ));
    eprintln!(
        "{name}: removal {removal:?}, size after load {loaded_size}, after removal {after_size}"
    );
}

fn bench(c: &mut Criterion) {
    let n = data_set_size();
    let data = pairs(n, 42);
    let mut shots = OneShot::default();
    run_engine::<TreeStore>(c, &data, &mut shots);
    run_engine::<Redb>(c, &data, &mut shots);
    run_engine::<Lmdb>(c, &data, &mut shots);
    let payload = n * (KEY_LEN + VALUE_LEN);
    let json = format!(
        "{{\n  \"n\": {n},\n  \"payload_bytes\": {payload},\n{}\n}}\n",
        shots.lines.join(",\n")
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/criterion/kv-oneshot.json");
    if let Some(parent) = out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&out, json).unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
