//! `treestore serve`: starts the gRPC server and the metrics port, opens the
//! store (recovery) while already answering health checks with NOT_SERVING,
//! switches to SERVING once the store is open, and on SIGTERM or SIGINT stops
//! accepting, lets in-flight requests finish (for at most the shutdown grace
//! period, then drops what is left), checkpoints and exits 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use treestore::{Options, TreeStore};

use crate::config::{Config, LogFormat};
use crate::gate::{GateLayer, GateState};
use crate::pb::tree_store_service_server::TreeStoreServiceServer;
use crate::service::{Shared, Svc};

/// Sets up logging to stderr as configured.
pub fn init_logging(cfg: &Config) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .with_context(|| format!("invalid log level {:?}", cfg.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// Runs the server until a shutdown signal; returns once the store is
/// checkpointed and closed.
pub async fn run(cfg: Config) -> Result<()> {
    let prometheus = crate::http::install_recorder()?;
    let shared = Shared::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<TreeStoreServiceServer<Svc>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building reflection service")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building reflection service")?;
    let svc = TreeStoreServiceServer::new(Svc::new(
        shared.clone(),
        cfg.max_message_bytes,
        cfg.request_timeout,
    ))
    .max_decoding_message_size(cfg.max_message_bytes)
    .max_encoding_message_size(cfg.max_message_bytes);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let listener = tokio::net::TcpListener::bind(SocketAddr::new(cfg.host, cfg.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", cfg.host, cfg.port))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        tls = cfg.tls.is_some(),
        auth = !cfg.tokens.is_empty(),
        "gRPC listening"
    );
    // The metrics port is bound before anything is served: a port that
    // cannot be bound fails the start, naming it.
    let metrics_task = match cfg.metrics_port {
        Some(port) => {
            let listener = crate::http::bind(SocketAddr::new(cfg.host, port)).await?;
            let stop = stopped(stop_rx.clone());
            Some(tokio::spawn(crate::http::serve(
                listener,
                shared.clone(),
                prometheus,
                stop,
            )))
        }
        None => None,
    };

    let mut builder = Server::builder()
        // Find dead clients: ping idle connections, close unanswered ones.
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT));
    if let Some(tls) = &cfg.tls {
        let cert = std::fs::read(&tls.cert)
            .with_context(|| format!("reading TLS certificate {}", tls.cert.display()))?;
        let key = std::fs::read(&tls.key)
            .with_context(|| format!("reading TLS key {}", tls.key.display()))?;
        let mut tls_config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &tls.client_ca {
            let ca =
                std::fs::read(ca).with_context(|| format!("reading client CA {}", ca.display()))?;
            tls_config = tls_config.client_ca_root(Certificate::from_pem(ca));
        }
        builder = builder
            .tls_config(tls_config)
            .context("TLS configuration")?;
    }
    let gate = GateLayer::new(GateState::new(
        cfg.tokens.clone(),
        cfg.rate_limit.map(|r| (r, cfg.rate_burst)),
        cfg.max_concurrent_requests,
        cfg.request_timeout,
        cfg.slow_request,
    ));
    let router = builder
        .layer(gate)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(svc);
    let mut grpc = tokio::spawn(
        router.serve_with_incoming_shutdown(
            // Replies are small and latency-bound: no Nagle delay.
            TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .with_keepalive(Some(TCP_KEEPALIVE)),
            stopped(stop_rx.clone()),
        ),
    );

    // Signals: stop accepting and drain, for at most the grace period.
    let signal_tx = stop_tx.clone();
    let (grace_tx, grace_rx) = watch::channel(false);
    let grace = cfg.shutdown_grace;
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(?grace, "shutdown requested; finishing in-flight requests");
        let _ = signal_tx.send(true);
        tokio::time::sleep(grace).await;
        let _ = grace_tx.send(true);
    });

    // Recovery runs while health checks already answer NOT_SERVING.
    let dir = cfg.data.clone();
    let options = Options {
        create_if_missing: true,
        cache_bytes: cfg.cache_bytes,
        ..Options::default()
    };
    let opened = tokio::task::spawn_blocking(move || TreeStore::open(&dir, options)).await;
    let store = match opened {
        Ok(Ok(store)) => Arc::new(store),
        Ok(Err(e)) => {
            let _ = stop_tx.send(true);
            return Err(anyhow::Error::new(e).context(format!("opening {}", cfg.data.display())));
        }
        Err(e) => {
            let _ = stop_tx.send(true);
            anyhow::bail!("opening {} failed: {e}", cfg.data.display());
        }
    };
    let recovery = store.db().stats().map(|s| s.recovery).ok();
    tracing::info!(data = %cfg.data.display(), recovery = ?recovery, "store open; serving");
    shared.set_store(store.clone());
    health.set_serving::<TreeStoreServiceServer<Svc>>().await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    // The server returns once every connection has finished; a client that
    // stops reading a stream could hold that off forever, so after the grace
    // period the remaining connections are dropped.
    let served = tokio::select! {
        served = &mut grpc => Some(served.context("gRPC server task")?),
        _ = stopped(grace_rx.clone()) => None,
    };
    if served.is_none() {
        tracing::warn!(
            ?grace,
            "in-flight requests did not finish within the shutdown grace period; closing them"
        );
        shared.begin_shutdown();
        grpc.abort();
    }
    health
        .set_not_serving::<TreeStoreServiceServer<Svc>>()
        .await;
    if let Some(mut t) = metrics_task {
        let done = tokio::select! {
            done = &mut t => Some(done),
            _ = stopped(grace_rx.clone()) => None,
        };
        match done {
            Some(Ok(Err(e))) => tracing::warn!(error = %e, "metrics server failed"),
            Some(Err(e)) => tracing::warn!(error = %e, "metrics server task failed"),
            Some(Ok(Ok(()))) => {}
            None => t.abort(),
        }
    }
    if let Some(served) = served {
        served.context("gRPC server")?;
    }
    // In-flight requests are done (or were given up on); streams or
    // timed-out handlers may still hold the store briefly, so checkpoint
    // through the shared handle.
    tokio::task::spawn_blocking(move || store.db().checkpoint())
        .await
        .context("checkpoint task")?
        .context("final checkpoint")?;
    tracing::info!("checkpointed; bye");
    Ok(())
}

/// Interval of HTTP/2 pings on a connection.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// A connection whose ping is not answered within this is closed.
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Idle time before TCP keepalive probes start.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
