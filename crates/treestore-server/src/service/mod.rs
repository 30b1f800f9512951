//! The TreeStoreService: every RPC of `proto/treestore.proto`, each a thin
//! handler over the embedded stores in the module of its group. Handlers run
//! on the blocking thread pool (the stores do synchronous I/O and durable
//! commits fsync), so a slow commit never stalls the async runtime, and a
//! panic in one becomes INTERNAL without a stack in the reply.

pub mod admin;
pub mod documents;
pub mod metadata;
pub mod prompts;
pub mod versions;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use treestore::TreeStore;

use crate::gate::Permit;
use crate::pb;
use crate::pb::tree_store_service_server::TreeStoreService;

/// State shared by every request.
pub struct Shared {
    /// Set once recovery has finished and the store is open.
    store: OnceLock<Arc<TreeStore>>,
    started: Instant,
    /// Requests served per RPC (the baseline Stats RPC's operation_counts).
    ops: Mutex<BTreeMap<&'static str, i64>>,
    /// Set when the shutdown's grace period is over: stream producers stop.
    shutdown: watch::Sender<bool>,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Shared {
            store: OnceLock::new(),
            started: Instant::now(),
            ops: Mutex::new(BTreeMap::new()),
            shutdown: watch::Sender::new(false),
        })
    }

    /// Tells the work still running (stream producers) to stop: the server
    /// is going away.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Whether [`Self::begin_shutdown`] was called, as a watch.
    pub fn shutdown_watch(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Makes the store available to requests (once).
    pub fn set_store(&self, store: Arc<TreeStore>) {
        let _ = self.store.set(store);
    }

    /// The store, once open.
    pub fn store(&self) -> Option<&Arc<TreeStore>> {
        self.store.get()
    }

    fn count(&self, op: &'static str) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        *ops.entry(op).or_insert(0) += 1;
    }
}

/// What a handler gets.
pub struct Ctx {
    pub store: Arc<TreeStore>,
    pub shared: Arc<Shared>,
    /// The request's place under the concurrency cap, held until the
    /// handler's blocking work (or a stream's producer) ends.
    pub permit: Option<Permit>,
    /// How long a stream's producer waits for the client to take a message.
    pub stream_stall: Duration,
}

impl Ctx {
    pub fn uptime_seconds(&self) -> i64 {
        self.shared.started.elapsed().as_secs() as i64
    }

    pub fn operation_counts(&self) -> BTreeMap<&'static str, i64> {
        self.shared
            .ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The service.
#[derive(Clone)]
pub struct Svc {
    shared: Arc<Shared>,
    /// Largest response message (unary responses above it are refused with
    /// RESOURCE_EXHAUSTED pointing to the streaming RPCs).
    max_message_bytes: usize,
    /// How long a stream's producer waits for the client to take the next
    /// message before it ends the stream (DEADLINE_EXCEEDED).
    stream_stall: Duration,
}

type Handler<Q, R> = fn(&Ctx, Q) -> Result<R, Status>;

impl Svc {
    pub fn new(shared: Arc<Shared>, max_message_bytes: usize, stream_stall: Duration) -> Self {
        Svc {
            shared,
            max_message_bytes,
            stream_stall,
        }
    }

    /// The handler context of a request (its concurrency permit taken from
    /// `request`'s extensions).
    fn ctx<Q>(&self, request: &Request<Q>) -> Result<Ctx, Status> {
        let store =
            self.shared.store().cloned().ok_or_else(|| {
                Status::unavailable("the store is still recovering; retry shortly")
            })?;
        Ok(Ctx {
            store,
            shared: self.shared.clone(),
            permit: Permit::of(request.extensions()),
            stream_stall: self.stream_stall,
        })
    }

    /// Counts the request and splits it into its handler context and message.
    fn start<Q>(&self, op: &'static str, request: Request<Q>) -> Result<(Ctx, Q), Status> {
        self.shared.count(op);
        let ctx = self.ctx(&request)?;
        Ok((ctx, request.into_inner()))
    }

    async fn unary<Q: Send + 'static, R: prost::Message + Send + 'static>(
        &self,
        op: &'static str,
        request: Request<Q>,
        handler: Handler<Q, R>,
    ) -> Result<Response<R>, Status> {
        let (ctx, req) = self.start(op, request)?;
        // The closure owns `ctx` and with it the permit: a request whose
        // deadline passed keeps its place until this work ends.
        let out = tokio::task::spawn_blocking(move || handler(&ctx, req))
            .await
            .map_err(|e| e.to_string());
        self.reply(op, out)
    }

    /// [`Svc::unary`] for handlers that answer from a few index lookups
    /// (a node, its children, its ancestors, a page). They first run right
    /// on the async worker with reads limited to the buffer pool
    /// ([`treestore_storage::cache_only`]): served from memory they take
    /// microseconds, and handing them to another thread would cost more
    /// than the work. Only if a page must come from the disk is that attempt
    /// thrown away and the handler run again inside `block_in_place`, which
    /// moves the worker's other tasks to another thread while it waits
    /// (counted in `treestore_grpc_disk_fallbacks_total`). A panic still
    /// becomes INTERNAL.
    async fn unary_small<Q: Clone + Send + 'static, R: prost::Message + Send + 'static>(
        &self,
        op: &'static str,
        request: Request<Q>,
        handler: Handler<Q, R>,
    ) -> Result<Response<R>, Status> {
        let (ctx, req) = self.start(op, request)?;
        let run =
            |req: Q| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&ctx, req)));
        let out = match treestore_storage::cache_only(|| run(req.clone())) {
            (out, false) => out,
            (_, true) => {
                metrics::counter!("treestore_grpc_disk_fallbacks_total", "rpc" => op).increment(1);
                tokio::task::block_in_place(|| run(req))
            }
        }
        .map_err(|p| {
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string())
        });
        self.reply(op, out)
    }

    /// The response of a handler: its reply (if within the message limit) or
    /// its status; a failed handler (`Err` outside) is logged and INTERNAL.
    fn reply<R: prost::Message>(
        &self,
        op: &'static str,
        out: Result<Result<R, Status>, String>,
    ) -> Result<Response<R>, Status> {
        match out {
            Ok(Ok(reply)) => {
                let len = reply.encoded_len();
                if len > self.max_message_bytes {
                    return Err(Status::resource_exhausted(format!(
                        "the response is {len} bytes, over the {} byte message limit; \
                         ask for less (limit, max_depth) or use StreamDocument / StreamSubtree",
                        self.max_message_bytes
                    )));
                }
                Ok(Response::new(reply))
            }
            Ok(Err(status)) => Err(status),
            Err(e) => {
                tracing::error!(rpc = op, error = %e, "handler failed");
                Err(Status::internal("internal error"))
            }
        }
    }
}

/// A server stream of `T`.
pub type ServerStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl TreeStoreService for Svc {
    async fn store_document(
        &self,
        r: Request<pb::StoreDocumentRequest>,
    ) -> Result<Response<pb::StoreDocumentResponse>, Status> {
        self.unary("StoreDocument", r, documents::store_document)
            .await
    }
    async fn get_document(
        &self,
        r: Request<pb::GetDocumentRequest>,
    ) -> Result<Response<pb::GetDocumentResponse>, Status> {
        self.unary("GetDocument", r, documents::get_document).await
    }
    async fn delete_document(
        &self,
        r: Request<pb::DeleteDocumentRequest>,
    ) -> Result<Response<pb::DeleteDocumentResponse>, Status> {
        self.unary("DeleteDocument", r, documents::delete_document)
            .await
    }
    async fn get_node(
        &self,
        r: Request<pb::GetNodeRequest>,
    ) -> Result<Response<pb::GetNodeResponse>, Status> {
        self.unary_small("GetNode", r, documents::get_node).await
    }
    async fn get_children(
        &self,
        r: Request<pb::GetChildrenRequest>,
    ) -> Result<Response<pb::GetChildrenResponse>, Status> {
        self.unary_small("GetChildren", r, documents::get_children)
            .await
    }
    async fn get_subtree(
        &self,
        r: Request<pb::GetSubtreeRequest>,
    ) -> Result<Response<pb::GetSubtreeResponse>, Status> {
        self.unary("GetSubtree", r, documents::get_subtree).await
    }
    async fn get_ancestor_path(
        &self,
        r: Request<pb::GetAncestorPathRequest>,
    ) -> Result<Response<pb::GetAncestorPathResponse>, Status> {
        self.unary_small("GetAncestorPath", r, documents::get_ancestor_path)
            .await
    }
    async fn search_by_keyword(
        &self,
        r: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        self.unary("SearchByKeyword", r, documents::search).await
    }
    async fn get_nodes_by_page(
        &self,
        r: Request<pb::GetNodesByPageRequest>,
    ) -> Result<Response<pb::GetNodesByPageResponse>, Status> {
        self.unary_small("GetNodesByPage", r, documents::get_nodes_by_page)
            .await
    }
    async fn get_version_as_of(
        &self,
        r: Request<pb::GetVersionAsOfRequest>,
    ) -> Result<Response<pb::PolicyVersion>, Status> {
        self.unary("GetVersionAsOf", r, versions::get_version_as_of)
            .await
    }
    async fn list_versions(
        &self,
        r: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        self.unary("ListVersions", r, versions::list_versions).await
    }
    async fn store_tool_result(
        &self,
        r: Request<pb::StoreToolResultRequest>,
    ) -> Result<Response<pb::StoreToolResultResponse>, Status> {
        self.unary("StoreToolResult", r, metadata::store_tool_result)
            .await
    }
    async fn get_tool_results(
        &self,
        r: Request<pb::GetToolResultsRequest>,
    ) -> Result<Response<pb::GetToolResultsResponse>, Status> {
        self.unary("GetToolResults", r, metadata::get_tool_results)
            .await
    }
    async fn store_trajectory(
        &self,
        r: Request<pb::StoreTrajectoryRequest>,
    ) -> Result<Response<pb::StoreTrajectoryResponse>, Status> {
        self.unary("StoreTrajectory", r, metadata::store_trajectory)
            .await
    }
    async fn get_trajectories(
        &self,
        r: Request<pb::GetTrajectoriesRequest>,
    ) -> Result<Response<pb::GetTrajectoriesResponse>, Status> {
        self.unary("GetTrajectories", r, metadata::get_trajectories)
            .await
    }
    async fn store_cross_reference(
        &self,
        r: Request<pb::StoreCrossReferenceRequest>,
    ) -> Result<Response<pb::StoreCrossReferenceResponse>, Status> {
        self.unary("StoreCrossReference", r, metadata::store_cross_reference)
            .await
    }
    async fn get_cross_references(
        &self,
        r: Request<pb::GetCrossReferencesRequest>,
    ) -> Result<Response<pb::GetCrossReferencesResponse>, Status> {
        self.unary("GetCrossReferences", r, metadata::get_cross_references)
            .await
    }
    async fn store_contradiction(
        &self,
        r: Request<pb::StoreContradictionRequest>,
    ) -> Result<Response<pb::StoreContradictionResponse>, Status> {
        self.unary("StoreContradiction", r, metadata::store_contradiction)
            .await
    }
    async fn store_prompt(
        &self,
        r: Request<pb::StorePromptRequest>,
    ) -> Result<Response<pb::StorePromptResponse>, Status> {
        self.unary("StorePrompt", r, prompts::store_prompt).await
    }
    async fn get_prompt(
        &self,
        r: Request<pb::GetPromptRequest>,
    ) -> Result<Response<pb::GetPromptResponse>, Status> {
        self.unary("GetPrompt", r, prompts::get_prompt).await
    }
    async fn record_prompt_usage(
        &self,
        r: Request<pb::RecordPromptUsageRequest>,
    ) -> Result<Response<pb::RecordPromptUsageResponse>, Status> {
        self.unary("RecordPromptUsage", r, prompts::record_prompt_usage)
            .await
    }
    async fn health(
        &self,
        r: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        self.shared.count("Health");
        let _ = r;
        Ok(Response::new(admin::health(&self.shared)))
    }
    async fn stats(
        &self,
        r: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        self.unary("Stats", r, admin::stats).await
    }
    async fn get_nodes(
        &self,
        r: Request<pb::GetNodesRequest>,
    ) -> Result<Response<pb::GetNodesResponse>, Status> {
        self.unary("GetNodes", r, documents::get_nodes).await
    }
    async fn insert_nodes(
        &self,
        r: Request<pb::InsertNodesRequest>,
    ) -> Result<Response<pb::InsertNodesResponse>, Status> {
        self.unary("InsertNodes", r, documents::insert_nodes).await
    }
    async fn get_by_section_path(
        &self,
        r: Request<pb::GetBySectionPathRequest>,
    ) -> Result<Response<pb::GetNodeResponse>, Status> {
        self.unary("GetBySectionPath", r, documents::get_by_section_path)
            .await
    }

    type StreamDocumentStream = ServerStream<pb::DocumentChunk>;
    async fn stream_document(
        &self,
        r: Request<pb::GetDocumentRequest>,
    ) -> Result<Response<Self::StreamDocumentStream>, Status> {
        self.shared.count("StreamDocument");
        documents::stream_document(self.ctx(&r)?, r.into_inner()).map(Response::new)
    }

    type StreamSubtreeStream = ServerStream<pb::NodeBatch>;
    async fn stream_subtree(
        &self,
        r: Request<pb::GetSubtreeRequest>,
    ) -> Result<Response<Self::StreamSubtreeStream>, Status> {
        self.shared.count("StreamSubtree");
        documents::stream_subtree(self.ctx(&r)?, r.into_inner()).map(Response::new)
    }

    async fn register_version(
        &self,
        r: Request<pb::RegisterVersionRequest>,
    ) -> Result<Response<pb::RegisterVersionResponse>, Status> {
        self.unary("RegisterVersion", r, versions::register_version)
            .await
    }
    async fn get_latest_version(
        &self,
        r: Request<pb::GetLatestVersionRequest>,
    ) -> Result<Response<pb::PolicyVersion>, Status> {
        self.unary("GetLatestVersion", r, versions::get_latest_version)
            .await
    }
    async fn diff_versions(
        &self,
        r: Request<pb::DiffVersionsRequest>,
    ) -> Result<Response<pb::DiffVersionsResponse>, Status> {
        self.unary("DiffVersions", r, versions::diff_versions).await
    }
    async fn get_tool_stats(
        &self,
        r: Request<pb::GetToolStatsRequest>,
    ) -> Result<Response<pb::GetToolStatsResponse>, Status> {
        self.unary("GetToolStats", r, metadata::get_tool_stats)
            .await
    }
    async fn get_most_visited_nodes(
        &self,
        r: Request<pb::GetMostVisitedNodesRequest>,
    ) -> Result<Response<pb::GetMostVisitedNodesResponse>, Status> {
        self.unary("GetMostVisitedNodes", r, metadata::get_most_visited_nodes)
            .await
    }
    async fn get_trajectory_stats(
        &self,
        r: Request<pb::GetTrajectoryStatsRequest>,
    ) -> Result<Response<pb::GetTrajectoryStatsResponse>, Status> {
        self.unary("GetTrajectoryStats", r, metadata::get_trajectory_stats)
            .await
    }
    async fn get_contradictions(
        &self,
        r: Request<pb::GetContradictionsRequest>,
    ) -> Result<Response<pb::GetContradictionsResponse>, Status> {
        self.unary("GetContradictions", r, metadata::get_contradictions)
            .await
    }
    async fn resolve_contradiction(
        &self,
        r: Request<pb::ResolveContradictionRequest>,
    ) -> Result<Response<pb::ResolveContradictionResponse>, Status> {
        self.unary("ResolveContradiction", r, metadata::resolve_contradiction)
            .await
    }
    async fn list_prompt_versions(
        &self,
        r: Request<pb::ListPromptVersionsRequest>,
    ) -> Result<Response<pb::ListPromptVersionsResponse>, Status> {
        self.unary("ListPromptVersions", r, prompts::list_prompt_versions)
            .await
    }
    async fn get_prompt_usages(
        &self,
        r: Request<pb::GetPromptUsagesRequest>,
    ) -> Result<Response<pb::GetPromptUsagesResponse>, Status> {
        self.unary("GetPromptUsages", r, prompts::get_prompt_usages)
            .await
    }
    async fn get_prompt_effectiveness(
        &self,
        r: Request<pb::GetPromptEffectivenessRequest>,
    ) -> Result<Response<pb::GetPromptEffectivenessResponse>, Status> {
        self.unary(
            "GetPromptEffectiveness",
            r,
            prompts::get_prompt_effectiveness,
        )
        .await
    }
    async fn apply_writes(
        &self,
        r: Request<pb::ApplyWritesRequest>,
    ) -> Result<Response<pb::ApplyWritesResponse>, Status> {
        self.unary("ApplyWrites", r, admin::apply_writes).await
    }
}
