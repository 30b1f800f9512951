//! Document and node RPCs: StoreDocument, GetDocument, DeleteDocument,
//! GetNode, GetNodes, GetChildren, GetSubtree, GetAncestorPath,
//! GetNodesByPage, GetBySectionPath, SearchByKeyword, InsertNodes, and the
//! streaming StreamDocument and StreamSubtree. Each query runs on one
//! snapshot, resolving "the version in force" once, so every node it returns
//! comes from the same version.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use tonic::Status;
use treestore::{NodeItem, Reader, SearchScope};

use super::{Ctx, ServerStream};
use crate::convert::{self, nodes_to_pb};
use crate::gate::Permit;
use crate::pb;
use crate::status::{from_error, invalid, limit, opt};

/// Nodes per message of a stream, and the byte budget that closes a message
/// earlier (well under the default message size limit).
const STREAM_NODES: usize = 500;
const STREAM_BYTES: usize = 1024 * 1024;

pub fn store_document(
    ctx: &Ctx,
    r: pb::StoreDocumentRequest,
) -> Result<pb::StoreDocumentResponse, Status> {
    let (doc, nodes, mut spec) = convert::store_request(r)?;
    let (policy, version) = (doc.policy_id.clone(), doc.version_id.clone());
    // The request can only say when the version starts and what it
    // supersedes: keep the rest of an earlier registration (end, provenance).
    if let Some(spec) = spec.as_mut() {
        if let Ok(old) = ctx.store.versions().get(&policy, &version) {
            spec.effective_end = old.effective_end;
            spec.created_by = old.created_by;
            spec.description = old.description;
            spec.tags = old.tags;
            if spec.supersedes.is_none() {
                spec.supersedes = old.supersedes;
            }
        }
    }
    let report = ctx
        .store
        .store_document_with(doc, nodes, spec.as_ref())
        .map_err(|e| crate::status::in_field("", super::admin::DOCUMENT_FIELDS, e))?;
    Ok(pb::StoreDocumentResponse {
        success: true,
        message: format!(
            "stored {} nodes as {policy}/{version}{}",
            report.nodes,
            if report.replaced { " (replaced)" } else { "" }
        ),
        node_count: report.nodes as i64,
    })
}

pub fn get_document(
    ctx: &Ctx,
    r: pb::GetDocumentRequest,
) -> Result<pb::GetDocumentResponse, Status> {
    let (version, (doc, nodes)) = at_version(ctx, &r.policy_id, &r.version_id, |reader, v| {
        reader.get_document(&r.policy_id, Some(v))
    })?;
    Ok(pb::GetDocumentResponse {
        document: Some(convert::document_to_pb(doc)),
        nodes: nodes_to_pb(nodes, &r.policy_id, &version),
    })
}

pub fn delete_document(
    ctx: &Ctx,
    r: pb::DeleteDocumentRequest,
) -> Result<pb::DeleteDocumentResponse, Status> {
    let deleted = ctx
        .store
        .delete_document(&r.policy_id, opt(&r.version_id))
        .map_err(from_error)?;
    Ok(pb::DeleteDocumentResponse {
        success: true,
        message: format!(
            "deleted {} version(s) of {}: {}",
            deleted.len(),
            r.policy_id,
            deleted.join(", ")
        ),
    })
}

pub fn get_node(ctx: &Ctx, r: pb::GetNodeRequest) -> Result<pb::GetNodeResponse, Status> {
    let (version, node) = at_version(ctx, &r.policy_id, &r.version_id, |reader, v| {
        reader.get_node(&r.policy_id, Some(v), &r.node_id)
    })?;
    Ok(pb::GetNodeResponse {
        node: Some(convert::node_to_pb(node, &r.policy_id, &version)),
    })
}

pub fn get_nodes(ctx: &Ctx, r: pb::GetNodesRequest) -> Result<pb::GetNodesResponse, Status> {
    let (version, (nodes, missing_ids)) =
        at_version(ctx, &r.policy_id, &r.version_id, |reader, v| {
            reader.get_nodes(&r.policy_id, Some(v), &r.node_ids)
        })?;
    Ok(pb::GetNodesResponse {
        nodes: nodes_to_pb(nodes, &r.policy_id, &version),
        missing_ids,
    })
}

pub fn get_children(
    ctx: &Ctx,
    r: pb::GetChildrenRequest,
) -> Result<pb::GetChildrenResponse, Status> {
    let (version, nodes) = at_version(ctx, &r.policy_id, &r.version_id, |reader, v| {
        reader.get_children(&r.policy_id, Some(v), opt(&r.parent_id))
    })?;
    Ok(pb::GetChildrenResponse {
        children: nodes_to_pb(nodes, &r.policy_id, &version),
    })
}

fn max_depth(v: i32) -> Result<u32, Status> {
    u32::try_from(v).map_err(|_| invalid("max_depth", format!("{v} is negative")))
}

pub fn get_subtree(ctx: &Ctx, r: pb::GetSubtreeRequest) -> Result<pb::GetSubtreeResponse, Status> {
    let depth = max_depth(r.max_depth)?;
    let (version, nodes) = at_version(ctx, &r.policy_id, &r.version_id, |reader, v| {
        reader.get_subtree(&r.policy_id, Some(v), &r.node_id, depth)
    })?;
    Ok(pb::GetSubtreeResponse {
        nodes: nodes_to_pb(nodes, &r.policy_id, &version),
    })
}

pub fn get_ancestor_path(
    ctx: &Ctx,
    r: pb::GetAncestorPathRequest,
) -> Result<pb::GetAncestorPathResponse, Status> {
    let (version, nodes) = at_version(ctx, &r.policy_id, &r.version_id, |reader, v| {
        reader.get_ancestor_path(&r.policy_id, Some(v), &r.node_id)
    })?;
    Ok(pb::GetAncestorPathResponse {
        ancestors: nodes_to_pb(nodes, &r.policy_id, &version),
    })
}

pub fn get_nodes_by_page(
    ctx: &Ctx,
    r: pb::GetNodesByPageRequest,
) -> Result<pb::GetNodesByPageResponse, Status> {
    let page = u32::try_from(r.page_number)
        .map_err(|_| invalid("page_number", format!("{} is negative", r.page_number)))?;
    let (version, nodes) = at_version(ctx, &r.policy_id, &r.version_id, |reader, v| {
        reader.get_nodes_by_page(&r.policy_id, Some(v), page)
    })?;
    Ok(pb::GetNodesByPageResponse {
        nodes: nodes_to_pb(nodes, &r.policy_id, &version),
    })
}

pub fn get_by_section_path(
    ctx: &Ctx,
    r: pb::GetBySectionPathRequest,
) -> Result<pb::GetNodeResponse, Status> {
    crate::status::require("section_path", &r.section_path)?;
    let (version, nodes) = at_version(ctx, &r.policy_id, &r.version_id, |reader, v| {
        reader.get_by_section_path(&r.policy_id, Some(v), &r.section_path)
    })?;
    let node = nodes.into_iter().next().ok_or_else(|| {
        Status::not_found(format!(
            "no node with section path {:?} in policy {:?} version {version:?}",
            r.section_path, r.policy_id
        ))
    })?;
    Ok(pb::GetNodeResponse {
        node: Some(convert::node_to_pb(node, &r.policy_id, &version)),
    })
}

pub fn search(ctx: &Ctx, r: pb::SearchRequest) -> Result<pb::SearchResponse, Status> {
    let limit = limit("limit", r.limit)?;
    let reader = ctx.store.read();
    let scope = match opt(&r.policy_id) {
        None if !r.version_id.is_empty() => {
            return Err(invalid("version_id", "needs a policy_id"));
        }
        None => SearchScope::AllPolicies,
        Some(policy) => SearchScope::Document {
            policy,
            version: opt(&r.version_id),
        },
    };
    let hits = reader.search(scope, &r.query, limit).map_err(from_error)?;
    Ok(pb::SearchResponse {
        results: hits
            .into_iter()
            .map(|h| pb::SearchResult {
                score: h.score as f32,
                node: Some(convert::node_to_pb(h.node, &h.policy_id, &h.version_id)),
                policy_id: h.policy_id,
                version_id: h.version_id,
            })
            .collect(),
    })
}

pub fn insert_nodes(
    ctx: &Ctx,
    r: pb::InsertNodesRequest,
) -> Result<pb::InsertNodesResponse, Status> {
    let nodes = convert::nodes_from_pb(r.nodes, &r.policy_id, &r.version_id)?;
    if nodes.is_empty() {
        crate::status::require("policy_id", &r.policy_id)?;
        crate::status::require("version_id", &r.version_id)?;
        return Ok(pb::InsertNodesResponse {
            success: true,
            message: "no nodes given".into(),
            inserted: 0,
        });
    }
    let n = ctx
        .store
        .insert_nodes(&r.policy_id, &r.version_id, nodes)
        .map_err(from_error)?;
    Ok(pb::InsertNodesResponse {
        success: true,
        message: format!("wrote {n} nodes into {}/{}", r.policy_id, r.version_id),
        inserted: n as i64,
    })
}

/// Runs `query` on one snapshot at the version a request addresses (the one
/// named, or the one in force now); returns that version with the result, so
/// every node of a reply is labelled with the version it came from.
fn at_version<T>(
    ctx: &Ctx,
    policy: &str,
    version: &str,
    query: impl FnOnce(&Reader<'_>, &str) -> treestore::Result<T>,
) -> Result<(String, T), Status> {
    let reader = ctx.store.read();
    let v = reader
        .resolve_version(policy, opt(version))
        .map_err(from_error)?;
    let out = query(&reader, &v).map_err(from_error)?;
    Ok((v, out))
}

/// Approximate encoded size of a node (for the stream byte budget).
fn node_bytes(n: &pb::Node) -> usize {
    n.text.len() + n.summary.len() + n.title.len() + 64 * (1 + n.child_ids.len())
}

/// The producer side of a server stream, on a blocking thread. It waits
/// while the client applies back-pressure (the channel is full), but never
/// forever: it stops when the client is gone, when the client has taken no
/// message for the stall timeout, or when the server shuts down. A stream it
/// gave up on ends with that error after the messages already queued, so a
/// cut-short stream never looks complete. It holds the request's place
/// under the concurrency cap until it ends.
struct Producer<T> {
    tx: tokio::sync::mpsc::Sender<Result<T, Status>>,
    handle: tokio::runtime::Handle,
    stall: Duration,
    shutdown: watch::Receiver<bool>,
    /// The error the stream ends with, set when the producer gives up.
    ended: Arc<Mutex<Option<Status>>>,
    _permit: Option<Permit>,
}

/// Why a send did not go through.
enum SendFailure {
    /// The client went away (the stream was dropped).
    Gone,
    /// The stream ends with this error.
    End(Status),
}

impl<T: Send + 'static> Producer<T> {
    /// A producer and the stream the client reads. Call from the async
    /// handler (it captures the runtime handle).
    fn new(ctx: &Ctx) -> (Producer<T>, ServerStream<T>) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<T, Status>>(4);
        let ended = Arc::new(Mutex::new(None::<Status>));
        let tail = ended.clone();
        // After the last queued message: the error the producer gave up
        // with, if any (evaluated only once the channel is drained).
        let end = tokio_stream::iter(std::iter::from_fn(move || {
            tail.lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .map(Err)
        }));
        let stream = ReceiverStream::new(rx).chain(end);
        let producer = Producer {
            tx,
            handle: tokio::runtime::Handle::current(),
            stall: ctx.stream_stall,
            shutdown: ctx.shared.shutdown_watch(),
            ended,
            _permit: ctx.permit.clone(),
        };
        (producer, Box::pin(stream))
    }

    /// Sends one message; false when the stream is over (stop producing).
    fn send(&mut self, item: Result<T, Status>) -> bool {
        let (tx, stall, shutdown) = (&self.tx, self.stall, &mut self.shutdown);
        let outcome = self.handle.block_on(async move {
            tokio::select! {
                biased;
                sent = tx.send(item) => sent.map_err(|_| SendFailure::Gone),
                _ = tokio::time::sleep(stall) => Err(SendFailure::End(Status::deadline_exceeded(
                    format!("the client took no message of the stream for {stall:?}"),
                ))),
                _ = async {
                    if shutdown.wait_for(|s| *s).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => Err(SendFailure::End(Status::unavailable("the server is shutting down"))),
            }
        });
        match outcome {
            Ok(()) => true,
            Err(SendFailure::Gone) => false,
            Err(SendFailure::End(status)) => {
                tracing::warn!(status = %status.message(), "stream ended early");
                *self.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
                false
            }
        }
    }
}

/// Streams a whole document in document order: the document and the first
/// nodes in the first message, then batches of nodes. Read from one snapshot
/// without holding the document in memory; the bounded channel applies the
/// client's back-pressure to the reader (see [`Producer`]).
pub fn stream_document(
    ctx: Ctx,
    r: pb::GetDocumentRequest,
) -> Result<ServerStream<pb::DocumentChunk>, Status> {
    let (mut out, stream) = Producer::new(&ctx);
    tokio::task::spawn_blocking(move || {
        let reader = ctx.store.read();
        let version = match reader.resolve_version(&r.policy_id, opt(&r.version_id)) {
            Ok(v) => v,
            Err(e) => {
                out.send(Err(from_error(e)));
                return;
            }
        };
        let mut chunk = pb::DocumentChunk::default();
        let mut bytes = 0;
        let mut open = true;
        let result = reader.for_each_node(&r.policy_id, Some(&version), |item| {
            match item {
                NodeItem::Document(d) => chunk.document = Some(convert::document_to_pb(d)),
                NodeItem::Node(n) => {
                    let n = convert::node_to_pb(n, &r.policy_id, &version);
                    bytes += node_bytes(&n);
                    chunk.nodes.push(n);
                    if chunk.nodes.len() >= STREAM_NODES || bytes >= STREAM_BYTES {
                        bytes = 0;
                        open = out.send(Ok(std::mem::take(&mut chunk)));
                    }
                }
            }
            open
        });
        let last = match result {
            Ok(()) if chunk.document.is_some() || !chunk.nodes.is_empty() => Ok(chunk),
            Ok(()) => return,
            Err(e) => Err(from_error(e)),
        };
        if open {
            out.send(last);
        }
    });
    Ok(stream)
}

/// Streams a subtree (node first, then breadth-first) in batches.
pub fn stream_subtree(
    ctx: Ctx,
    r: pb::GetSubtreeRequest,
) -> Result<ServerStream<pb::NodeBatch>, Status> {
    let depth = max_depth(r.max_depth)?;
    let (mut out, stream) = Producer::new(&ctx);
    tokio::task::spawn_blocking(move || {
        let subtree = at_version(&ctx, &r.policy_id, &r.version_id, |reader, v| {
            reader.get_subtree(&r.policy_id, Some(v), &r.node_id, depth)
        });
        let (version, nodes) = match subtree {
            Ok(x) => x,
            Err(status) => {
                out.send(Err(status));
                return;
            }
        };
        let mut batch = pb::NodeBatch::default();
        let mut bytes = 0;
        for n in nodes {
            let n = convert::node_to_pb(n, &r.policy_id, &version);
            bytes += node_bytes(&n);
            batch.nodes.push(n);
            if batch.nodes.len() >= STREAM_NODES || bytes >= STREAM_BYTES {
                bytes = 0;
                if !out.send(Ok(std::mem::take(&mut batch))) {
                    return;
                }
            }
        }
        if !batch.nodes.is_empty() {
            out.send(Ok(batch));
        }
    });
    Ok(stream)
}
