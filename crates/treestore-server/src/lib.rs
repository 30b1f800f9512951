//! TreeStore's gRPC server: the wire contract (`proto/treestore.proto`) served
//! on the embedded stores, with health, reflection, metrics, TLS, bearer
//! tokens, rate and concurrency limits, deadlines and graceful shutdown.
//!
//! - [`pb`]: generated messages, service trait and client.
//! - [`config`]: settings from flags, environment, TOML file and defaults.
//! - [`convert`]: wire messages to and from the store's model.
//! - [`status`]: store errors as gRPC status codes.
//! - [`service`]: one module per RPC group (documents, versions, metadata,
//!   prompts, batches and server info).
//! - [`gate`]: the layer every request passes (auth, rate limit, concurrency,
//!   deadline, metrics, request logs).
//! - [`http`]: the metrics port (`/metrics`, `/healthz`, `/readyz`, CPU profile).
//! - [`serve`]: starting, running and stopping the server.

pub mod config;
pub mod convert;
pub mod gate;
pub mod http;
pub mod pb;
pub mod serve;
pub mod service;
pub mod status;
