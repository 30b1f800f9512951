//! `treestore-bench grpc`: the server end to end. Starts the real `treestore
//! serve` binary on a fresh data directory, stores a generated corpus over
//! gRPC (StoreDocument; or, with `--preloaded`, serves a directory the `docs`
//! benchmark filled with the same corpus), then drives GetNode, GetChildren, GetSubtree (a whole
//! ~300-node document) and SearchByKeyword (one policy) with 1, 8 and 32
//! concurrent clients over loopback, each client on its own connection, for a
//! fixed time per cell: throughput, p50 and p99 latency.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tonic::transport::Channel;
use treestore_server::pb;
use treestore_server::pb::tree_store_service_client::TreeStoreServiceClient;

use crate::corpus::{Corpus, CorpusSpec, Rng};

pub struct GrpcBenchOptions {
    /// The `treestore` binary.
    pub bin: PathBuf,
    pub nodes: usize,
    pub seed: u64,
    /// Data directory (must not exist).
    pub dir: PathBuf,
    pub clients: Vec<usize>,
    /// Measuring time per (RPC, clients) cell.
    pub seconds: f64,
    pub port: u16,
    /// The data directory already holds this corpus (stored by `docs` with
    /// the same seed and node count): skip the ingest over gRPC.
    pub preloaded: bool,
    /// The server's buffer pool, MiB.
    pub cache_mib: usize,
    /// Query only the first N documents, each read once before measuring
    /// (a hot working set); `None`: every document, no warm-up read.
    pub working_set: Option<usize>,
}

/// One (RPC, clients) cell.
#[derive(Debug, Clone)]
pub struct Row {
    pub rpc: &'static str,
    pub clients: usize,
    pub requests: usize,
    pub per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

pub struct GrpcBenchReport {
    pub nodes: usize,
    pub documents: usize,
    /// Documents the queries pick from (the working set).
    pub queried_documents: usize,
    /// Time to read the working set once before measuring.
    pub warm: Duration,
    /// Time to store the corpus over gRPC (`None` when preloaded).
    pub ingest: Option<Duration>,
    pub rows: Vec<Row>,
}

impl GrpcBenchReport {
    pub fn to_json(&self) -> Value {
        json!({
            "nodes": self.nodes,
            "documents": self.documents,
            "queried_documents": self.queried_documents,
            "warm_seconds": self.warm.as_secs_f64(),
            "ingest_seconds": self.ingest.map(|d| d.as_secs_f64()),
            "ingest_nodes_per_sec": self.ingest.map(|d| self.nodes as f64 / d.as_secs_f64()),
            "rows": self.rows.iter().map(|r| json!({
                "rpc": r.rpc, "clients": r.clients, "requests": r.requests,
                "per_sec": r.per_sec, "p50_us": r.p50_us, "p99_us": r.p99_us,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn to_markdown(&self) -> String {
        let stored = match self.ingest {
            Some(d) => format!(
                "stored over gRPC in {:.1} s ({:.0} nodes/s)",
                d.as_secs_f64(),
                self.nodes as f64 / d.as_secs_f64()
            ),
            None => "preloaded".to_string(),
        };
        let mut s = format!(
            "{} nodes in {} documents, {stored}; queries pick from {} documents (read once beforehand in {:.1} s)\n\n\
             | RPC | clients | requests/s | p50 (us) | p99 (us) |\n|---|---:|---:|---:|---:|\n",
            self.nodes,
            self.documents,
            self.queried_documents,
            self.warm.as_secs_f64(),
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {:.0} |\n",
                r.rpc, r.clients, r.per_sec, r.p50_us, r.p99_us
            ));
        }
        s
    }
}

/// The server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the queries pick from: per document, its policy, node ids, the ids
/// of nodes with children, and the root.
struct Target {
    policy: String,
    nodes: Vec<String>,
    parents: Vec<String>,
}

fn to_pb(doc: &crate::corpus::GeneratedDoc) -> pb::StoreDocumentRequest {
    pb::StoreDocumentRequest {
        document: Some(pb::Document {
            policy_id: doc.document.policy_id.clone(),
            version_id: doc.document.version_id.clone(),
            pageindex_doc_id: doc.document.pageindex_doc_id.clone(),
            ..Default::default()
        }),
        nodes: doc
            .nodes
            .iter()
            .map(|n| pb::Node {
                node_id: n.node_id.clone(),
                parent_id: n.parent_id.clone().unwrap_or_default(),
                title: n.title.clone(),
                page_start: n.page_start as i32,
                page_end: n.page_end as i32,
                summary: n.summary.clone(),
                text: n.text.clone(),
                keywords: n.keywords.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

async fn connect(port: u16) -> Result<TreeStoreServiceClient<Channel>> {
    let ch = Channel::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect()
        .await?;
    Ok(TreeStoreServiceClient::new(ch).max_decoding_message_size(256 << 20))
}

/// Runs the benchmark; `opts.dir` is new, or holds the corpus when
/// `opts.preloaded` (the caller checks which).
pub fn run(opts: &GrpcBenchOptions) -> Result<GrpcBenchReport> {
    let server = Server(
        Command::new(&opts.bin)
            .args(["serve", "--data"])
            .arg(&opts.dir)
            .args(["--port", &opts.port.to_string(), "--metrics-port", "0"])
            .args(["--log-level", "warn", "--cache-mib"])
            .arg(opts.cache_mib.to_string())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", opts.bin.display()))?,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(bench(opts));
    drop(server);
    report
}

async fn bench(opts: &GrpcBenchOptions) -> Result<GrpcBenchReport> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = loop {
        if let Ok(mut c) = connect(opts.port).await {
            if c.health(pb::HealthRequest {})
                .await
                .is_ok_and(|r| r.get_ref().healthy)
            {
                break c;
            }
        }
        if Instant::now() > deadline {
            bail!("server did not become healthy");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Ingest, 4 requests in flight.
    let mut targets = Vec::new();
    let started = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    let mut nodes = 0;
    for doc in Corpus::new(CorpusSpec::new(opts.seed, opts.nodes)) {
        nodes += doc.nodes.len();
        targets.push(Target {
            policy: doc.document.policy_id.clone(),
            nodes: doc.nodes.iter().map(|n| n.node_id.clone()).collect(),
            parents: doc
                .nodes
                .iter()
                .filter(|n| !n.child_ids.is_empty())
                .map(|n| n.node_id.clone())
                .collect(),
        });
        if opts.preloaded {
            continue;
        }
        let req = to_pb(&doc);
        let mut c = client.clone();
        pending.spawn(async move { c.store_document(req).await.map(|_| ()) });
        if pending.len() >= 4 {
            if let Some(r) = pending.join_next().await {
                r??;
            }
        }
    }
    while let Some(r) = pending.join_next().await {
        r??;
    }
    let ingest = started.elapsed();
    let _ = client.stats(pb::StatsRequest {}).await?;

    // The queried documents: all, or the first `working_set`, read once
    // whole (so the measured cells start with them in the cache).
    let total_documents = targets.len();
    let mut warm = Duration::ZERO;
    if let Some(n) = opts.working_set {
        targets.truncate(n.max(1));
        let t = Instant::now();
        for target in &targets {
            client
                .get_document(pb::GetDocumentRequest {
                    policy_id: target.policy.clone(),
                    ..Default::default()
                })
                .await?;
        }
        warm = t.elapsed();
    }
    let targets = Arc::new(targets);
    let mut rows = Vec::new();
    for rpc in ["GetNode", "GetChildren", "GetSubtree", "SearchByKeyword"] {
        for &clients in &opts.clients {
            rows.push(cell(opts, rpc, clients, targets.clone()).await?);
        }
    }
    Ok(GrpcBenchReport {
        nodes,
        documents: total_documents,
        queried_documents: targets.len(),
        warm,
        ingest: (!opts.preloaded).then_some(ingest),
        rows,
    })
}

/// Runs one RPC with `clients` concurrent clients for the configured time.
async fn cell(
    opts: &GrpcBenchOptions,
    rpc: &'static str,
    clients: usize,
    targets: Arc<Vec<Target>>,
) -> Result<Row> {
    let run_for = Duration::from_secs_f64(opts.seconds);
    let warmup = Duration::from_millis(300);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let mut client = connect(opts.port).await?;
        let targets = targets.clone();
        let seed = opts.seed ^ ((c as u64 + 1) << 32) ^ rpc.len() as u64;
        tasks.spawn(async move {
            let mut rng = Rng::new(seed);
            let mut lat = Vec::new();
            let start = Instant::now();
            let terms = crate::corpus::Vocab::domain_terms();
            loop {
                let t = &targets[rng.range(0, targets.len() - 1)];
                let began = Instant::now();
                let ok = match rpc {
                    "GetNode" => client
                        .get_node(pb::GetNodeRequest {
                            policy_id: t.policy.clone(),
                            node_id: t.nodes[rng.range(0, t.nodes.len() - 1)].clone(),
                            ..Default::default()
                        })
                        .await
                        .is_ok(),
                    "GetChildren" => client
                        .get_children(pb::GetChildrenRequest {
                            policy_id: t.policy.clone(),
                            parent_id: match t.parents.len() {
                                0 => t.nodes[0].clone(),
                                n => t.parents[rng.range(0, n - 1)].clone(),
                            },
                            ..Default::default()
                        })
                        .await
                        .is_ok(),
                    "GetSubtree" => client
                        .get_subtree(pb::GetSubtreeRequest {
                            policy_id: t.policy.clone(),
                            node_id: t.nodes[0].clone(),
                            ..Default::default()
                        })
                        .await
                        .is_ok(),
                    _ => client
                        .search_by_keyword(pb::SearchRequest {
                            policy_id: t.policy.clone(),
                            query: format!(
                                "{} {}",
                                terms[rng.range(0, terms.len() - 1)],
                                terms[rng.range(0, terms.len() - 1)]
                            ),
                            limit: 10,
                            ..Default::default()
                        })
                        .await
                        .is_ok(),
                };
                let now = Instant::now();
                if !ok {
                    return Err(anyhow::anyhow!("{rpc} failed"));
                }
                if now.duration_since(start) >= warmup {
                    lat.push(now.duration_since(began));
                }
                if now.duration_since(start) >= warmup + run_for {
                    return Ok(lat);
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    all.sort();
    let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    Ok(Row {
        rpc,
        clients,
        requests: all.len(),
        per_sec: all.len() as f64 / run_for.as_secs_f64(),
        p50_us: at(0.5),
        p99_us: at(0.99),
    })
}
