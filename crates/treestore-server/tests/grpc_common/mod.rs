//! Harness of the gRPC integration tests: starts the real `treestore serve`
//! binary on free ports and a data directory, waits until the standard gRPC
//! health check says SERVING, hands out connected clients, and stops the
//! server with SIGTERM (asserting exit status 0) or SIGKILL. Dropping a
//! [`Server`] kills its process.
//!
//! Also small builders of wire messages shared by the test files.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use treestore_server::pb;
use treestore_server::pb::tree_store_service_client::TreeStoreServiceClient;

pub type Client = TreeStoreServiceClient<Channel>;

pub const BIN: &str = env!("CARGO_BIN_EXE_treestore");

/// How long a server may take to answer SERVING.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERMed server may take to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// `TREESTORE_SCALE` (default 1): multiplies the work of the long tests.
pub fn scale() -> u64 {
    std::env::var("TREESTORE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// A port nothing listens on right now (bind port 0, read it, let it go).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `N` distinct ports nothing listens on right now: all are bound at once
/// while probing, so no two are the same.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// The directory of the test fixtures (`tests/data`).
pub fn data_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// How the harness's own clients (health polling, [`Server::client`]) reach a
/// TLS server.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// CA certificate (PEM) the server's certificate must chain to.
    pub ca: PathBuf,
    /// Client certificate and key (PEM), for servers that verify clients.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate is checked against.
    pub domain: String,
}

impl ClientTls {
    /// The committed test fixtures: trust the test CA; with `with_cert`, present
    /// the test client certificate.
    pub fn fixtures(with_cert: bool) -> Self {
        ClientTls {
            ca: data_file("tls/ca.pem"),
            identity: with_cert.then(|| (data_file("tls/client.pem"), data_file("tls/client.key"))),
            domain: "localhost".into(),
        }
    }

    pub fn config(&self) -> ClientTlsConfig {
        let ca = std::fs::read(&self.ca).unwrap();
        let mut c = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(self.domain.clone());
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(
                std::fs::read(cert).unwrap(),
                std::fs::read(key).unwrap(),
            ));
        }
        c
    }
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct ServerBuilder {
    data: Option<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Fixed gRPC port; `None` = a free one at every start.
    port: Option<u16>,
    /// Whether to pass `--port` (off when the port comes from a config file
    /// or the environment).
    port_flag: bool,
    tls: Option<ClientTls>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            data: None,
            args: Vec::new(),
            env: Vec::new(),
            port: None,
            port_flag: true,
            tls: None,
        }
    }
}

impl ServerBuilder {
    /// Use this data directory (default: a fresh temporary one).
    pub fn data(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data = Some(dir.into());
        self
    }

    /// Extra command-line arguments.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|s| s.as_ref().to_string()));
        self
    }

    /// An environment variable of the server process (every other
    /// `TREESTORE_*` variable is removed).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// The server listens on this port (passed with `--port` unless
    /// [`Self::no_port_flag`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Do not pass `--port`: the port comes from a config file or the
    /// environment, and [`Self::port`] says which one to expect.
    pub fn no_port_flag(mut self) -> Self {
        self.port_flag = false;
        self
    }

    /// Connect over TLS like this.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Starts the server and waits until it serves.
    pub async fn start(self) -> Server {
        let tmp = Arc::new(tempfile::tempdir().unwrap());
        let data = self.data.clone().unwrap_or_else(|| tmp.path().join("data"));
        let mut server = Server {
            child: None,
            port: 0,
            metrics_port: 0,
            data,
            log: tmp.path().join("stderr.log"),
            _tmp: tmp,
            builder: self,
        };
        server.launch().await;
        server
    }
}

/// A running `treestore serve`.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub metrics_port: u16,
    pub data: PathBuf,
    /// The server's stderr (appended to across restarts).
    log: PathBuf,
    _tmp: Arc<tempfile::TempDir>,
    builder: ServerBuilder,
}

impl Server {
    /// A server with a fresh data directory and no extra flags.
    pub async fn start() -> Server {
        ServerBuilder::default().start().await
    }

    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The server's stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    pub fn url(&self) -> String {
        let scheme = if self.builder.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// An endpoint of the server with the harness's TLS settings.
    pub fn endpoint(&self) -> Endpoint {
        endpoint(&self.url(), self.builder.tls.as_ref())
    }

    pub async fn channel(&self) -> Channel {
        self.endpoint()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e:?}\n{}", self.url(), self.stderr()))
    }

    /// A connected client (no client-side message size limits).
    pub async fn client(&self) -> Client {
        client_of(self.channel().await)
    }

    async fn launch(&mut self) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.port = self.builder.port.unwrap_or_else(free_port);
            // A fixed gRPC port is not bound while we probe, so the kernel may
            // hand the same number out again: never use it for metrics too.
            self.metrics_port = free_port();
            while self.metrics_port == self.port {
                self.metrics_port = free_port();
            }
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            let mut cmd = Command::new(BIN);
            cmd.arg("serve").arg("--data").arg(&self.data);
            if self.builder.port_flag {
                cmd.args(["--port", &self.port.to_string()]);
            }
            cmd.args(["--metrics-port", &self.metrics_port.to_string()])
                .args(["--log-level", "warn"])
                .args(&self.builder.args);
            for (k, _) in std::env::vars() {
                if k.starts_with("TREESTORE_") {
                    cmd.env_remove(k);
                }
            }
            for (k, v) in &self.builder.env {
                cmd.env(k, v);
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log));
            let logged_before = self.stderr().len();
            self.child = Some(cmd.spawn().expect("spawning treestore serve"));
            match self.wait_serving().await {
                Ok(()) => return,
                Err(status) => {
                    // Only what this attempt wrote: the log is kept across starts.
                    let stderr = self
                        .stderr()
                        .get(logged_before..)
                        .unwrap_or_default()
                        .to_string();
                    let port_taken = stderr.contains("cannot listen")
                        || stderr.contains("Address already in use")
                        || stderr.contains("address in use");
                    // The metrics port is always probed afresh; the gRPC port
                    // only when the test did not fix it.
                    let retryable = self.builder.port.is_none()
                        || stderr.contains("cannot listen on metrics port");
                    if port_taken && retryable && attempts < 5 {
                        // Another process took a port between our probe and the bind.
                        continue;
                    }
                    panic!(
                        "treestore serve did not start ({status}) on port {}:\n{stderr}",
                        self.port
                    );
                }
            }
        }
    }

    /// Polls the standard health check until SERVING; `Err` if the process
    /// exits or the time runs out.
    async fn wait_serving(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let ep = self.endpoint().connect_timeout(Duration::from_secs(2));
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exited with {status}"));
            }
            match ep.connect().await {
                Ok(ch) => {
                    let mut h = HealthClient::new(ch);
                    match h
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                    {
                        Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => {
                            return Ok(())
                        }
                        Ok(r) => last = format!("health status {}", r.get_ref().status),
                        Err(e) => last = format!("health check: {e}"),
                    }
                }
                Err(e) => last = format!("connect: {e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!("not SERVING after {START_TIMEOUT:?}; last: {last}"))
    }

    /// Sends SIGTERM and asserts the server exits with status 0.
    pub fn stop(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "SIGTERM: treestore serve exited with {status}\n{}",
            self.stderr()
        );
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server not running");
        let out = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(out.success(), "kill -TERM failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "treestore serve did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL (no chance to clean up).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts the server again on the same data directory (new ports unless
    /// fixed); the previous process must be gone.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running server");
        self.launch().await;
    }

    /// The server process's exit status if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// GET `path` on the metrics port: (status code, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_port, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An endpoint for `url` (https with `tls`).
pub fn endpoint(url: &str, tls: Option<&ClientTls>) -> Endpoint {
    let mut ep = Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        ep = ep.tls_config(tls.config()).unwrap();
    }
    ep
}

pub fn client_of(ch: Channel) -> Client {
    TreeStoreServiceClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// A plain HTTP/1.1 GET over a raw TCP stream: (status code, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response: {raw:?}"));
    (code, body.to_string())
}

// ---------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------

/// Asserts `r` failed with `code` and a message containing `needle`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, needle: &str) {
    match r {
        Ok(v) => panic!("expected {code:?} ({needle:?}), got OK: {v:?}"),
        Err(s) => {
            assert_eq!(
                s.code(),
                code,
                "expected {code:?} ({needle:?}), got {:?}: {}",
                s.code(),
                s.message()
            );
            assert!(
                s.message().contains(needle),
                "{code:?} message {:?} does not contain {needle:?}",
                s.message()
            );
        }
    }
}

/// Asserts `r` failed with `code`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(r: Result<T, Status>, code: Code) {
    assert_status(r, code, "")
}

/// The response of an OK call (panics with the status otherwise).
#[track_caller]
pub fn ok<T>(r: Result<tonic::Response<T>, Status>) -> T {
    match r {
        Ok(r) => r.into_inner(),
        Err(s) => panic!("expected OK, got {:?}: {}", s.code(), s.message()),
    }
}

// ---------------------------------------------------------------------------
// Message builders
// ---------------------------------------------------------------------------

pub fn ts(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

/// Seconds since the epoch of a UTC date at midnight.
pub fn date(y: i64, m: i64, d: i64) -> i64 {
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A node with pages 1..=1.
pub fn node(id: &str, parent: &str, title: &str) -> pb::Node {
    pb::Node {
        node_id: id.into(),
        parent_id: parent.into(),
        title: title.into(),
        page_start: 1,
        page_end: 1,
        ..Default::default()
    }
}

pub fn doc(policy: &str, version: &str) -> pb::Document {
    pb::Document {
        policy_id: policy.into(),
        version_id: version.into(),
        ..Default::default()
    }
}

pub fn store_req(policy: &str, version: &str, nodes: Vec<pb::Node>) -> pb::StoreDocumentRequest {
    pb::StoreDocumentRequest {
        document: Some(doc(policy, version)),
        nodes,
        ..Default::default()
    }
}

/// A tree of `n` nodes `n0..n{n-1}`: n0 is the only top-level node and node
/// i > 0 is a child of node (i - 1) / fanout, so ids in creation order are
/// breadth-first order. Titles come from `title(i)`.
pub fn tree(n: usize, fanout: usize, title: impl Fn(usize) -> String) -> Vec<pb::Node> {
    (0..n)
        .map(|i| {
            let parent = if i == 0 {
                String::new()
            } else {
                format!("n{}", (i - 1) / fanout)
            };
            let mut nd = node(&format!("n{i}"), &parent, &title(i));
            nd.page_start = i as i32 + 1;
            nd.page_end = i as i32 + 1;
            nd
        })
        .collect()
}

/// The ids of `tree(n, fanout, ..)` in document (pre-)order.
pub fn tree_preorder(n: usize, fanout: usize) -> Vec<String> {
    fn walk(i: usize, n: usize, fanout: usize, out: &mut Vec<String>) {
        out.push(format!("n{i}"));
        for c in (i * fanout + 1)..=(i * fanout + fanout) {
            if c < n {
                walk(c, n, fanout, out);
            }
        }
    }
    let mut out = Vec::new();
    if n > 0 {
        walk(0, n, fanout, &mut out);
    }
    out
}

pub fn ids(nodes: &[pb::Node]) -> Vec<&str> {
    nodes.iter().map(|n| n.node_id.as_str()).collect()
}

/// A tool result of `tool` for `case` with the given id.
pub fn tool_result(tool: &str, case: &str, id: &str) -> pb::ToolResult {
    pb::ToolResult {
        tool_name: tool.into(),
        execution_id: id.into(),
        case_id: case.into(),
        result_data: format!("{{\"id\":\"{id}\"}}"),
        success: true,
        ..Default::default()
    }
}

#[test]
fn dates_are_unix_seconds() {
    assert_eq!(date(1970, 1, 1), 0);
    assert_eq!(date(2000, 3, 1), 951_868_800);
    assert_eq!(date(2024, 1, 1), 1_704_067_200);
    assert_eq!(
        tree_preorder(7, 2),
        ["n0", "n1", "n3", "n4", "n2", "n5", "n6"]
    );
}
