//! The layer every gRPC request passes before its handler: bearer-token
//! authentication (health checks exempt), per-client rate limiting, a cap on
//! requests in flight, the deadline (the client's `grpc-timeout` or the
//! server's request timeout, whichever is shorter: DEADLINE_EXCEEDED when it
//! passes), and per-RPC metrics and request logs.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};
use tower::{Layer, Service};

/// Paths served without a token: load balancers and probes must reach them.
fn is_health_check(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path == "/treestore.TreeStoreService/Health"
}

/// Settings and shared state of the gate.
pub struct GateState {
    tokens: BTreeSet<String>,
    limiter: Option<RateLimiter>,
    permits: Arc<Semaphore>,
    request_timeout: Duration,
    slow_request: Duration,
}

impl GateState {
    pub fn new(
        tokens: BTreeSet<String>,
        rate: Option<(u32, u32)>,
        max_in_flight: usize,
        request_timeout: Duration,
        slow_request: Duration,
    ) -> Self {
        GateState {
            tokens,
            limiter: rate.map(|(rate, burst)| RateLimiter::new(rate, burst)),
            permits: Arc::new(Semaphore::new(max_in_flight)),
            request_timeout,
            slow_request,
        }
    }

    /// The status a request is refused with before it reaches its handler.
    fn admit(&self, req: &http::Request<Body>) -> Result<(), Status> {
        let path = req.uri().path();
        if !self.tokens.is_empty() && !is_health_check(path) {
            let token = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match token {
                None => return Err(Status::unauthenticated("missing bearer token")),
                Some(t) if !self.tokens.contains(t) => {
                    return Err(Status::unauthenticated("invalid bearer token"))
                }
                Some(_) => {}
            }
        }
        if let Some(limiter) = &self.limiter {
            if !is_health_check(path) && !limiter.try_take(peer_ip(req), Instant::now()) {
                return Err(Status::resource_exhausted("rate limit exceeded; slow down"));
            }
        }
        Ok(())
    }
}

fn peer_ip(req: &http::Request<Body>) -> Option<IpAddr> {
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(|t| t.get_ref())
        })
        .and_then(|c| c.remote_addr())
        .map(|a| a.ip())
}

/// A token bucket per client address.
struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<Option<IpAddr>, (f64, Instant)>>,
}

impl RateLimiter {
    fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn try_take(&self, client: Option<IpAddr>, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // Forget clients whose buckets are full again (idle ones).
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(client).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The client's deadline from a `grpc-timeout` header (`<digits><unit>`).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status code of a response (trailers-only responses carry it in
/// the headers; a response that streams its status in trailers is counted as
/// OK here).
fn response_code(res: &http::Response<Body>) -> Code {
    res.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from)
        .unwrap_or(Code::Ok)
}

/// The full paths (`/package.Service/Method`) of every RPC the server
/// serves: TreeStoreService, health and reflection (read from their
/// descriptor sets, so the list follows the protos).
fn known_methods() -> &'static HashSet<String> {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut out = HashSet::new();
        for set in [
            crate::pb::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = <prost_types::FileDescriptorSet as prost::Message>::decode(set) else {
                continue;
            };
            for file in &set.file {
                let package = file.package();
                for service in &file.service {
                    for method in &service.method {
                        let service = service.name();
                        let method = method.name();
                        out.insert(if package.is_empty() {
                            format!("/{service}/{method}")
                        } else {
                            format!("/{package}.{service}/{method}")
                        });
                    }
                }
            }
        }
        out
    })
}

/// The `rpc` label and log name of a request path
/// (`/treestore.TreeStoreService/GetNode` -> `GetNode`; the other services'
/// RPCs keep their full path). Any path that is not an RPC the server serves
/// is `unknown`, so arbitrary paths cannot grow the metrics' label sets.
pub fn rpc_name(path: &str) -> String {
    if !known_methods().contains(path) {
        return UNKNOWN_RPC.to_string();
    }
    match path.strip_prefix("/treestore.TreeStoreService/") {
        Some(rpc) => rpc.to_string(),
        None => path.trim_start_matches('/').to_string(),
    }
}

/// The `rpc` label of a path that names no RPC of the server.
pub const UNKNOWN_RPC: &str = "unknown";

/// A request's place under the concurrency cap. The gate puts one in the
/// request's extensions; handlers move a clone into the blocking work (or a
/// stream's producer) they start, so the place is given back only when that
/// work has finished, not when the handler future ends (at its deadline or
/// when a stream's headers go out).
#[derive(Clone)]
pub struct Permit {
    _inner: Arc<PermitInner>,
}

/// Holds the semaphore permit and counts the request as in flight.
struct PermitInner {
    _permit: OwnedSemaphorePermit,
}

impl PermitInner {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!("treestore_grpc_requests_in_flight").increment(1.0);
        PermitInner { _permit: permit }
    }
}

impl Drop for PermitInner {
    fn drop(&mut self) {
        metrics::gauge!("treestore_grpc_requests_in_flight").decrement(1.0);
    }
}

impl Permit {
    /// The permit of a request, if the gate gave it one.
    pub fn of(extensions: &http::Extensions) -> Option<Permit> {
        extensions.get::<Permit>().cloned()
    }
}

/// Rewrites tonic's OUT_OF_RANGE for an oversized message to
/// RESOURCE_EXHAUSTED, the code gRPC specifies for it.
fn fix_size_status(mut res: http::Response<Body>) -> http::Response<Body> {
    let oversized = res
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        == Some("11")
        && res
            .headers()
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            });
    if oversized {
        res.headers_mut().insert(
            "grpc-status",
            http::HeaderValue::from_static("8"), // RESOURCE_EXHAUSTED
        );
    }
    res
}

/// The layer; wraps every service of the server.
#[derive(Clone)]
pub struct GateLayer {
    state: Arc<GateState>,
}

impl GateLayer {
    pub fn new(state: GateState) -> Self {
        GateLayer {
            state: Arc::new(state),
        }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;
    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service the layer makes.
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    state: Arc<GateState>,
}

type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S> Service<http::Request<Body>> for Gate<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // Take the service that was driven to readiness; leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            let start = Instant::now();
            let rpc = rpc_name(req.uri().path());
            let peer = peer_ip(&req);
            let result = match state.admit(&req) {
                Err(status) => Ok(status.into_http()),
                Ok(()) => match state.permits.clone().try_acquire_owned() {
                    Err(_) => Ok(Status::resource_exhausted(
                        "too many concurrent requests; retry later",
                    )
                    .into_http()),
                    Ok(permit) => {
                        // A client deadline is cut 2 ms short, so this answer
                        // (DEADLINE_EXCEEDED) beats tonic's own timer (which
                        // would say CANCELLED); an already expired one is
                        // refused before any work.
                        let deadline = match grpc_timeout(req.headers()) {
                            Some(d) => d
                                .saturating_sub(CLIENT_DEADLINE_MARGIN)
                                .min(state.request_timeout),
                            None => state.request_timeout,
                        };
                        if deadline.is_zero() {
                            return finish(
                                &rpc,
                                peer,
                                start,
                                &state,
                                Ok(Status::deadline_exceeded(
                                    "deadline exceeded before the request ran",
                                )
                                .into_http()),
                            );
                        }
                        let mut req = req;
                        let permit = Permit {
                            _inner: Arc::new(PermitInner::new(permit)),
                        };
                        req.extensions_mut().insert(permit.clone());
                        let out = tokio::time::timeout(deadline, inner.call(req)).await;
                        // Blocking work the handler started keeps its clone.
                        drop(permit);
                        match out {
                            Ok(r) => r.map(fix_size_status),
                            Err(_) => Ok(Status::deadline_exceeded(format!(
                                "deadline of {deadline:?} exceeded"
                            ))
                            .into_http()),
                        }
                    }
                },
            };
            finish(&rpc, peer, start, &state, result)
        })
    }
}

/// How much earlier than the client's deadline the gate gives up.
const CLIENT_DEADLINE_MARGIN: Duration = Duration::from_millis(2);

/// Records a finished request and passes its response on.
fn finish<E>(
    rpc: &str,
    peer: Option<IpAddr>,
    start: Instant,
    state: &GateState,
    result: Result<http::Response<Body>, E>,
) -> Result<http::Response<Body>, E> {
    let code = match &result {
        Ok(res) => response_code(res),
        Err(_) => Code::Internal,
    };
    record(rpc, code, start.elapsed(), peer, state.slow_request);
    result
}

fn record(rpc: &str, code: Code, elapsed: Duration, peer: Option<IpAddr>, slow: Duration) {
    let code_name = format!("{code:?}");
    metrics::counter!("treestore_grpc_requests_total", "rpc" => rpc.to_string(), "code" => code_name.clone())
        .increment(1);
    metrics::histogram!("treestore_grpc_request_duration_seconds", "rpc" => rpc.to_string(), "code" => code_name.clone())
        .record(elapsed.as_secs_f64());
    let micros = elapsed.as_micros() as u64;
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    if elapsed >= slow {
        tracing::warn!(rpc, code = %code_name, micros, peer, "slow request");
    } else {
        tracing::debug!(rpc, code = %code_name, micros, peer, "request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_buckets_refill_at_the_rate() {
        let l = RateLimiter::new(10, 2);
        let t0 = Instant::now();
        let a = Some(IpAddr::from([127, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 1]));
        assert!(l.try_take(a, t0));
        assert!(l.try_take(a, t0));
        assert!(!l.try_take(a, t0), "burst of 2 used up");
        assert!(l.try_take(b, t0), "other clients have their own bucket");
        assert!(
            l.try_take(a, t0 + Duration::from_millis(100)),
            "one token after 1/rate"
        );
        assert!(!l.try_take(a, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn grpc_timeouts_parse() {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-timeout", http::HeaderValue::from_static("250m"));
        assert_eq!(grpc_timeout(&h), Some(Duration::from_millis(250)));
        h.insert("grpc-timeout", http::HeaderValue::from_static("3S"));
        assert_eq!(grpc_timeout(&h), Some(Duration::from_secs(3)));
        h.insert("grpc-timeout", http::HeaderValue::from_static("x"));
        assert_eq!(grpc_timeout(&h), None);
        assert_eq!(rpc_name("/treestore.TreeStoreService/GetNode"), "GetNode");
        assert!(is_health_check("/grpc.health.v1.Health/Check"));
    }

    #[test]
    fn only_served_rpcs_get_their_own_label() {
        assert_eq!(rpc_name("/treestore.TreeStoreService/GetNode"), "GetNode");
        assert_eq!(
            rpc_name("/treestore.TreeStoreService/StreamDocument"),
            "StreamDocument"
        );
        assert_eq!(
            rpc_name("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(
            rpc_name("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        );
        for bogus in [
            "/treestore.TreeStoreService/NoSuchRpc",
            "/treestore.TreeStoreService/",
            "/evil.Service/x1",
            "/",
            "",
        ] {
            assert_eq!(rpc_name(bogus), UNKNOWN_RPC, "{bogus}");
        }
    }

    /// A handler that moves the request's permit into blocking work lasting
    /// `work` and waits for it.
    #[derive(Clone)]
    struct BlockingHandler {
        work: Duration,
    }

    impl Service<http::Request<Body>> for BlockingHandler {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            let permit = Permit::of(req.extensions());
            let work = self.work;
            Box::pin(async move {
                let _ = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    std::thread::sleep(work);
                })
                .await;
                Ok(http::Response::new(Body::empty()))
            })
        }
    }

    fn status_of(res: &http::Response<Body>) -> Option<String> {
        res.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The cap's place of a request whose deadline passed stays taken until
    /// its blocking work ends: detached work cannot pile up beyond the cap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_permit_lives_until_the_blocking_work_ends() {
        let state = GateState::new(
            BTreeSet::new(),
            None,
            1,
            Duration::from_millis(50),
            Duration::from_secs(60),
        );
        let mut gate = GateLayer::new(state).layer(BlockingHandler {
            work: Duration::from_millis(700),
        });
        let req = || {
            http::Request::builder()
                .uri("/treestore.TreeStoreService/GetNode")
                .body(Body::empty())
                .unwrap()
        };
        let first = gate.call(req()).await.unwrap();
        assert_eq!(status_of(&first).as_deref(), Some("4"), "deadline exceeded");
        let second = gate.call(req()).await.unwrap();
        assert_eq!(
            status_of(&second).as_deref(),
            Some("8"),
            "the first request's work still holds the only place"
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let third = gate.call(req()).await.unwrap();
        assert_eq!(
            status_of(&third).as_deref(),
            Some("4"),
            "admitted again once the work ended (and timed out itself)"
        );
    }
}
