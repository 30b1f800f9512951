//! The metrics port: `/metrics` (Prometheus text format: per-RPC request
//! counts and latency histograms from [`crate::gate`], plus the engine's
//! buffer pool, log, checkpoint and file figures and the document and node
//! counts, read at scrape time), `/healthz` (the process is up), `/readyz`
//! (recovery has finished and requests are served) and
//! `/debug/pprof/profile?seconds=N` (a CPU profile as a flame graph SVG).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;

use crate::service::Shared;

/// Installs the process-wide metrics recorder.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let buckets = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("treestore_grpc_request_duration_seconds".into()),
            &buckets,
        )?
        .install_recorder()?)
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    prometheus: PrometheusHandle,
}

/// Binds the metrics port; an error names the address (the server refuses
/// to start without the metrics port it was asked for).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on metrics port {addr}"))
}

/// Serves the metrics port on `listener` (from [`bind`]) until `shutdown`
/// resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    prometheus: PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/debug/pprof/profile", get(profile))
        .with_state(AppState { shared, prometheus });
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.shared.store().is_some() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering\n").into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    if let Some(store) = s.shared.store().cloned() {
        // Engine figures are read at scrape time (off the async threads).
        let _ = tokio::task::spawn_blocking(move || record_engine(&store)).await;
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.prometheus.render(),
    )
        .into_response()
}

fn record_engine(store: &treestore::TreeStore) {
    if let Ok(st) = store.db().stats() {
        metrics::counter!("treestore_buffer_pool_hits_total").absolute(st.pool.hits);
        metrics::counter!("treestore_buffer_pool_misses_total").absolute(st.pool.misses);
        metrics::counter!("treestore_buffer_pool_evictions_total").absolute(st.pool.evictions);
        metrics::gauge!("treestore_buffer_pool_resident_bytes").set(st.pool.resident_bytes as f64);
        metrics::gauge!("treestore_buffer_pool_capacity_bytes").set(st.pool.capacity_bytes as f64);
        metrics::counter!("treestore_wal_bytes_total").absolute(st.wal.appended_bytes);
        metrics::counter!("treestore_wal_records_total").absolute(st.wal.appended_records);
        metrics::counter!("treestore_wal_fsyncs_total").absolute(st.wal.fsyncs);
        metrics::gauge!("treestore_wal_segments").set(st.wal.segments as f64);
        metrics::counter!("treestore_checkpoints_total").absolute(st.checkpoints);
        metrics::counter!("treestore_checkpoint_duration_seconds_total")
            .absolute(st.checkpoint_nanos_total / 1_000_000_000);
        metrics::gauge!("treestore_checkpoint_last_duration_seconds")
            .set(st.last_checkpoint_nanos as f64 / 1e9);
        metrics::gauge!("treestore_log_bytes_since_checkpoint")
            .set(st.log_bytes_since_checkpoint as f64);
        metrics::gauge!("treestore_file_bytes").set(st.file_bytes as f64);
        metrics::gauge!("treestore_free_pages").set(st.free_pages as f64);
    }
    if let Ok(t) = store.versions().totals() {
        metrics::gauge!("treestore_policies").set(t.policies as f64);
        metrics::gauge!("treestore_documents").set(t.versions as f64);
        metrics::gauge!("treestore_nodes").set(t.nodes as f64);
    }
}

#[derive(Deserialize)]
struct ProfileParams {
    seconds: Option<u64>,
}

/// Samples the CPU for `seconds` (default 10, at most 120) at 99 Hz and
/// returns a flame graph.
async fn profile(Query(p): Query<ProfileParams>) -> Response {
    let secs = p.seconds.unwrap_or(10).clamp(1, 120);
    let result = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(99)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_secs(secs));
        let report = guard.report().build().map_err(|e| e.to_string())?;
        if report.data.is_empty() {
            return Err(format!(
                "no CPU samples in {secs} s: the server was idle; profile while it works"
            ));
        }
        let mut svg = Vec::new();
        report.flamegraph(&mut svg).map_err(|e| e.to_string())?;
        Ok(svg)
    })
    .await;
    match result {
        Ok(Ok(svg)) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("profile failed: {e}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "profile failed\n").into_response(),
    }
}
