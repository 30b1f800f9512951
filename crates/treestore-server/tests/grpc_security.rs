//! Security and limits of the real `treestore serve`: TLS off and on, client
//! certificates, bearer tokens (health checks exempt), per-client rate
//! limiting, the message size limit (requests and responses), the cap on
//! concurrent requests, and the precedence of flags, environment and config
//! file.
//!
//! The TLS fixtures are in `tests/data/tls` (see its README).

mod grpc_common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use grpc_common::*;
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use treestore_server::pb;

fn tls_args(client_ca: bool) -> Vec<String> {
    let mut a = vec![
        "--tls-cert".to_string(),
        data_file("tls/server.pem").display().to_string(),
        "--tls-key".to_string(),
        data_file("tls/server.key").display().to_string(),
    ];
    if client_ca {
        a.push("--tls-client-ca".into());
        a.push(data_file("tls/ca.pem").display().to_string());
    }
    a
}

/// Connects with `ep` and calls the baseline Health RPC; the error (as text)
/// if the connection or the call fails or takes over 10 s.
async fn try_health(ep: Endpoint) -> Result<(), String> {
    let call = async {
        let ch = ep.connect().await.map_err(|e| format!("connect: {e:?}"))?;
        let mut c = client_of(ch);
        c.health(pb::HealthRequest {})
            .await
            .map(drop)
            .map_err(|e| format!("call: {e:?}"))
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

async fn store_and_read(c: &mut Client) {
    ok(
        c.store_document(store_req("pol", "v1", vec![node("a", "", "Alpha")]))
            .await,
    );
    let n = ok(c
        .get_node(pb::GetNodeRequest {
            policy_id: "pol".into(),
            node_id: "a".into(),
            version_id: String::new(),
        })
        .await);
    assert_eq!(n.node.unwrap().title, "Alpha");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_server_refuses_tls_clients() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    store_and_read(&mut c).await;
    let tls = ClientTls::fixtures(false);
    let e = try_health(endpoint(
        &format!("https://127.0.0.1:{}", srv.port),
        Some(&tls),
    ))
    .await;
    assert!(e.is_err(), "a TLS client talked to a plaintext server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_serves_tls_clients_only() {
    let srv = Server::builder()
        .args(tls_args(false))
        .tls(ClientTls::fixtures(false))
        .start()
        .await;
    let mut c = srv.client().await;
    store_and_read(&mut c).await;
    // The standard health check over TLS.
    let mut h = HealthClient::new(srv.channel().await);
    let r = ok(h
        .check(HealthCheckRequest {
            service: "treestore.TreeStoreService".into(),
        })
        .await);
    assert_eq!(r.status, ServingStatus::Serving as i32);

    // Plaintext against the TLS port fails.
    let e = try_health(endpoint(&format!("http://127.0.0.1:{}", srv.port), None)).await;
    assert!(e.is_err(), "a plaintext client talked to a TLS server");
    // A client that does not trust the server's CA fails.
    let untrusting = ClientTls {
        ca: data_file("tls/other-ca.pem"),
        identity: None,
        domain: "localhost".into(),
    };
    let e = try_health(endpoint(&srv.url(), Some(&untrusting))).await;
    assert!(e.is_err(), "the server's certificate was not checked");
    // The certificate is for localhost, not for another name.
    let wrong_name = ClientTls {
        domain: "example.com".into(),
        ..ClientTls::fixtures(false)
    };
    let e = try_health(endpoint(&srv.url(), Some(&wrong_name))).await;
    assert!(e.is_err(), "the certificate's name was not checked");
    // The server still serves.
    store_and_read(&mut srv.client().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_with_a_client_ca() {
    let srv = Server::builder()
        .args(tls_args(true))
        .tls(ClientTls::fixtures(true))
        .start()
        .await;
    // With the test client certificate: works.
    let mut c = srv.client().await;
    store_and_read(&mut c).await;

    // Without a certificate: refused.
    let e = try_health(endpoint(&srv.url(), Some(&ClientTls::fixtures(false)))).await;
    assert!(e.is_err(), "a client without a certificate was served");
    // With a certificate from another CA: refused.
    let other = ClientTls {
        identity: Some((
            data_file("tls/other-client.pem"),
            data_file("tls/other-client.key"),
        )),
        ..ClientTls::fixtures(false)
    };
    let e = try_health(endpoint(&srv.url(), Some(&other))).await;
    assert!(
        e.is_err(),
        "a client with an untrusted certificate was served"
    );
    // Plaintext: refused.
    let e = try_health(endpoint(&format!("http://127.0.0.1:{}", srv.port), None)).await;
    assert!(e.is_err());
    // And a good client still works.
    let ep = Endpoint::from_shared(srv.url())
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(
                    std::fs::read(data_file("tls/ca.pem")).unwrap(),
                ))
                .domain_name("localhost")
                .identity(Identity::from_pem(
                    std::fs::read(data_file("tls/client.pem")).unwrap(),
                    std::fs::read(data_file("tls/client.key")).unwrap(),
                )),
        )
        .unwrap();
    try_health(ep).await.unwrap();
}

fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {t}")).unwrap(),
        );
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "# test tokens\ns3cret-one\n\n  s3cret-two  \n# s3cret-commented\n",
    )
    .unwrap();
    let srv = Server::builder()
        .args(["--auth-token-file", tokens.to_str().unwrap()])
        .start()
        .await;
    let mut c = srv.client().await;
    let get = || pb::GetNodeRequest {
        policy_id: "pol".into(),
        node_id: "a".into(),
        version_id: String::new(),
    };

    // Missing and wrong tokens.
    assert_code(
        c.get_node(with_token(get(), None)).await,
        Code::Unauthenticated,
    );
    for wrong in ["nope", "s3cret-on", "s3cret-commented", "S3CRET-ONE"] {
        assert_code(
            c.get_node(with_token(get(), Some(wrong))).await,
            Code::Unauthenticated,
        );
    }
    let mut raw = Request::new(get());
    raw.metadata_mut()
        .insert("authorization", MetadataValue::from_static("s3cret-one"));
    assert_code(c.get_node(raw).await, Code::Unauthenticated);
    assert_code(
        c.store_document(with_token(
            store_req("pol", "v1", vec![node("a", "", "A")]),
            Some("bad"),
        ))
        .await,
        Code::Unauthenticated,
    );
    assert_code(
        c.stats(with_token(pb::StatsRequest {}, None)).await,
        Code::Unauthenticated,
    );

    // Either right token works.
    ok(c.store_document(with_token(
        store_req("pol", "v1", vec![node("a", "", "A")]),
        Some("s3cret-one"),
    ))
    .await);
    let n = ok(c.get_node(with_token(get(), Some("s3cret-two"))).await);
    assert_eq!(n.node.unwrap().title, "A");
    // A refused write wrote nothing.
    let s = ok(c
        .stats(with_token(pb::StatsRequest {}, Some("s3cret-one")))
        .await);
    assert_eq!(s.total_versions, 1);

    // Health checks need no token.
    let mut h = HealthClient::new(srv.channel().await);
    let r = ok(h
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await);
    assert_eq!(r.status, ServingStatus::Serving as i32);
    let r = ok(c.health(with_token(pb::HealthRequest {}, None)).await);
    assert!(r.healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_per_client() {
    let srv = Server::builder()
        .args(["--rate-limit", "5", "--rate-burst", "5"])
        .start()
        .await;
    let mut c = srv.client().await;
    ok(
        c.store_document(store_req("pol", "v1", vec![node("a", "", "A")]))
            .await,
    );
    // Let the bucket fill up again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let get = || pb::GetNodeRequest {
        policy_id: "pol".into(),
        node_id: "a".into(),
        version_id: String::new(),
    };
    let start = Instant::now();
    let (mut passed, mut limited) = (0u32, 0u32);
    for _ in 0..30 {
        match c.get_node(get()).await {
            Ok(_) => passed += 1,
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(s.message().contains("rate"), "{s:?}");
                limited += 1
            }
            Err(s) => panic!("unexpected {s:?}"),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // The burst, plus what the rate refilled while the calls ran.
    let most = 5 + (5.0 * elapsed).ceil() as u32 + 1;
    assert!(
        passed >= 5 && passed <= most,
        "{passed} passed, {limited} limited in {elapsed:.3} s (at most {most} may pass)"
    );
    assert!(limited >= 1, "nothing was rate limited");
    // Health checks are not rate limited.
    let mut h = HealthClient::new(srv.channel().await);
    for _ in 0..10 {
        ok(h.check(HealthCheckRequest {
            service: String::new(),
        })
        .await);
    }
    // The bucket refills at the rate.
    tokio::time::sleep(Duration::from_millis(450)).await;
    ok(c.get_node(get()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_and_the_server_keeps_serving() {
    let mut srv = Server::builder()
        .args(["--max-message-bytes", "65536"])
        .start()
        .await;
    let mut c = srv.client().await;
    let mut big = node("a", "", "Big");
    big.text = "lorem ipsum ".repeat(200_000 / 12);
    let e = c.store_document(store_req("pol", "v1", vec![big])).await;
    assert_code(e, Code::ResourceExhausted);
    let mut t = tool_result("t", "A", "big");
    t.result_data = format!("\"{}\"", "x".repeat(100_000));
    let e = c
        .store_tool_result(pb::StoreToolResultRequest { result: Some(t) })
        .await;
    assert_code(e, Code::ResourceExhausted);
    // Still serving, on the same connection and on new ones.
    assert!(ok(c.health(pb::HealthRequest {}).await).healthy);
    let mut small = node("a", "", "Small");
    small.text = "x".repeat(30_000);
    ok(c.store_document(store_req("pol", "v1", vec![small])).await);
    let mut c2 = srv.client().await;
    let n = ok(c2
        .get_node(pb::GetNodeRequest {
            policy_id: "pol".into(),
            node_id: "a".into(),
            version_id: String::new(),
        })
        .await);
    assert_eq!(n.node.unwrap().text.len(), 30_000);
    assert!(srv.try_exit().is_none(), "the server exited");
}

/// A response over the limit is RESOURCE_EXHAUSTED ("too large: use
/// StreamDocument"), and StreamDocument delivers the same document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_responses_are_resource_exhausted() {
    let srv = Server::builder()
        .args(["--max-message-bytes", "65536"])
        .start()
        .await;
    let mut c = srv.client().await;
    // ~40 KB of request, well over 64 KB of response (the server adds
    // timestamps, versions, section paths and child lists to every node).
    const N: usize = 1500;
    let nodes = tree(N, 4, |_| "t".into());
    ok(c.store_document(store_req("p", "v", nodes)).await);
    let e = c
        .get_document(pb::GetDocumentRequest {
            policy_id: "p".into(),
            version_id: String::new(),
        })
        .await;
    assert_code(e, Code::ResourceExhausted);
    let mut s = ok(c
        .stream_document(pb::GetDocumentRequest {
            policy_id: "p".into(),
            version_id: String::new(),
        })
        .await);
    let mut n = 0;
    while let Some(chunk) = s.next().await {
        n += chunk.expect("stream chunk").nodes.len();
    }
    assert_eq!(n, N);
    assert!(ok(c.health(pb::HealthRequest {}).await).healthy);
}

/// With `--max-concurrent-requests 1`, parallel slow requests see
/// RESOURCE_EXHAUSTED for some (the others succeed). Rounds of 8 parallel
/// GetDocument calls of a 3,000-node document until one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_request_cap() {
    let srv = Server::builder()
        .args(["--max-concurrent-requests", "1"])
        .start()
        .await;
    let mut c = srv.client().await;
    let nodes = tree(3000, 8, |i| {
        format!("a long enough title for node number {i}")
    });
    ok(c.store_document(store_req("big", "v1", nodes)).await);
    let (mut passed, mut refused) = (0, 0);
    for _round in 0..20 {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let mut c = c.clone();
            tasks.push(tokio::spawn(async move {
                c.get_document(pb::GetDocumentRequest {
                    policy_id: "big".into(),
                    version_id: String::new(),
                })
                .await
                .map(|r| r.into_inner().nodes.len())
            }));
        }
        for t in tasks {
            match t.await.unwrap() {
                Ok(n) => {
                    assert_eq!(n, 3000);
                    passed += 1;
                }
                Err(s) if s.code() == Code::ResourceExhausted => {
                    assert!(s.message().contains("concurrent"), "{s:?}");
                    refused += 1;
                }
                Err(s) => panic!("unexpected {s:?}"),
            }
        }
        if refused > 0 && passed > 0 {
            break;
        }
    }
    assert!(passed > 0, "nothing passed");
    assert!(
        refused > 0,
        "the cap of 1 never refused anything ({passed} passed)"
    );
    // Sequential requests are all served.
    for _ in 0..5 {
        ok(c.health(pb::HealthRequest {}).await);
    }
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Flags beat `TREESTORE_*` variables, which beat the `--config` file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_environment_and_flag_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("treestore.toml");
    let [p_file, p_env, p_flag] = free_ports();
    std::fs::write(&file, format!("port = {p_file}\nrate_limit = 0\n")).unwrap();
    let config = ["--config".to_string(), file.display().to_string()];

    // The file alone.
    let mut srv = Server::builder()
        .no_port_flag()
        .port(p_file)
        .args(&config)
        .start()
        .await;
    store_and_read(&mut srv.client().await).await;
    srv.stop();

    // A flag beats the file.
    let mut srv = Server::builder().port(p_flag).args(&config).start().await;
    assert!(!listening(p_file), "the file's port is in use");
    srv.stop();

    // The environment beats the file.
    let mut srv = Server::builder()
        .no_port_flag()
        .port(p_env)
        .env("TREESTORE_PORT", p_env.to_string())
        .args(&config)
        .start()
        .await;
    assert!(!listening(p_file), "the file's port is in use");
    srv.stop();

    // A flag beats the environment.
    let mut srv = Server::builder()
        .port(p_flag)
        .env("TREESTORE_PORT", p_env.to_string())
        .args(&config)
        .start()
        .await;
    assert!(!listening(p_env), "the environment's port is in use");
    assert!(!listening(p_file));
    srv.stop();

    // The config file may come from the environment too.
    let mut srv = Server::builder()
        .no_port_flag()
        .port(p_file)
        .env("TREESTORE_CONFIG", file.display().to_string())
        .start()
        .await;
    srv.stop();

    // A bad file is an error, not a silent default.
    std::fs::write(&file, "prot = 1\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&file)
        .args(["--port", &free_port().to_string(), "--metrics-port", "0"])
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prot"), "{err}");
}
