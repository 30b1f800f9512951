//! Server settings. Each comes from, in order of precedence: a command-line
//! flag, a `TREESTORE_*` environment variable, the TOML file given by
//! `--config`, then the built-in default. Defaults suit a loopback-only
//! development server: listen on 127.0.0.1, no TLS, no tokens.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Deserialize;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// `treestore serve` flags. Every one is optional: unset falls back to the
/// environment, then the config file, then the default shown.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Data directory [default: ./treestore-data]
    #[arg(long, value_name = "DIR", env = "TREESTORE_DATA")]
    pub data: Option<PathBuf>,
    /// TOML file with any of these settings (keys as the flags, with `_`)
    #[arg(long, value_name = "FILE", env = "TREESTORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1]
    #[arg(long, value_name = "ADDR", env = "TREESTORE_HOST")]
    pub host: Option<IpAddr>,
    /// gRPC port [default: 50051]
    #[arg(long, env = "TREESTORE_PORT")]
    pub port: Option<u16>,
    /// Port of /metrics, /healthz, /readyz and /debug/pprof/profile; 0 turns
    /// them off [default: 9090]
    #[arg(long, env = "TREESTORE_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Log level or tracing filter (error, warn, info, debug, trace)
    /// [default: info]
    #[arg(long, value_name = "LEVEL", env = "TREESTORE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log line format [default: pretty]
    #[arg(long, value_enum, env = "TREESTORE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// PEM certificate chain: turns TLS on (needs --tls-key)
    #[arg(long, value_name = "FILE", env = "TREESTORE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", env = "TREESTORE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: clients must present a certificate it signed
    #[arg(long, value_name = "FILE", env = "TREESTORE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// File of bearer tokens, one per line (# comments): turns auth on.
    /// Tokens may also be listed as `auth_tokens` in the config file
    #[arg(long, value_name = "FILE", env = "TREESTORE_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Requests per second allowed per client address; 0 = unlimited
    /// [default: 0]
    #[arg(long, value_name = "N", env = "TREESTORE_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Burst above the rate a client may use [default: 2 x rate, at least 1]
    #[arg(long, value_name = "N", env = "TREESTORE_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Largest request or response message, bytes [default: 67108864]
    #[arg(long, value_name = "BYTES", env = "TREESTORE_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Requests served at once; more are refused with RESOURCE_EXHAUSTED
    /// [default: 512]
    #[arg(long, value_name = "N", env = "TREESTORE_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// Longest a request may run when the client sets no shorter deadline,
    /// seconds [default: 30]
    #[arg(long, value_name = "SECS", env = "TREESTORE_REQUEST_TIMEOUT")]
    pub request_timeout: Option<f64>,
    /// Requests slower than this are logged at warn, milliseconds
    /// [default: 1000]
    #[arg(long, value_name = "MS", env = "TREESTORE_SLOW_REQUEST_MS")]
    pub slow_request_ms: Option<u64>,
    /// Buffer pool size, MiB [default: 256]
    #[arg(long, value_name = "MIB", env = "TREESTORE_CACHE_MIB")]
    pub cache_mib: Option<usize>,
    /// After SIGTERM or SIGINT, longest wait for in-flight requests and
    /// streams to finish; then the server checkpoints and exits anyway,
    /// seconds [default: 10]
    #[arg(long, value_name = "SECS", env = "TREESTORE_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<f64>,
}

/// The same settings in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    host: Option<IpAddr>,
    port: Option<u16>,
    metrics_port: Option<u16>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    auth_token_file: Option<PathBuf>,
    auth_tokens: Option<Vec<String>>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    max_message_bytes: Option<usize>,
    max_concurrent_requests: Option<usize>,
    request_timeout: Option<f64>,
    slow_request_ms: Option<u64>,
    cache_mib: Option<usize>,
    shutdown_grace: Option<f64>,
}

/// TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub data: PathBuf,
    pub host: IpAddr,
    pub port: u16,
    /// `None` = no metrics endpoint.
    pub metrics_port: Option<u16>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub tls: Option<TlsFiles>,
    /// Accepted bearer tokens; empty = authentication off.
    pub tokens: BTreeSet<String>,
    /// Requests per second per client; `None` = unlimited.
    pub rate_limit: Option<u32>,
    pub rate_burst: u32,
    pub max_message_bytes: usize,
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    pub slow_request: Duration,
    pub cache_bytes: usize,
    /// How long a shutdown waits for in-flight requests and streams.
    pub shutdown_grace: Duration,
}

impl Config {
    /// Resolves flags (with their environment fallbacks, which clap applied)
    /// over the config file over the defaults.
    pub fn resolve(args: ServeArgs) -> Result<Config> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        macro_rules! pick {
            ($f:ident, $default:expr) => {
                args.$f.clone().or(file.$f.clone()).unwrap_or($default)
            };
        }
        let tls_cert = args.tls_cert.clone().or(file.tls_cert.clone());
        let tls_key = args.tls_key.clone().or(file.tls_key.clone());
        let tls_client_ca = args.tls_client_ca.clone().or(file.tls_client_ca.clone());
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca: tls_client_ca,
            }),
            (None, None) if tls_client_ca.is_none() => None,
            (None, None) => bail!("tls_client_ca needs tls_cert and tls_key"),
            (Some(_), None) => bail!("tls_cert needs tls_key"),
            (None, Some(_)) => bail!("tls_key needs tls_cert"),
        };
        let mut tokens: BTreeSet<String> = file
            .auth_tokens
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if let Some(path) = args
            .auth_token_file
            .clone()
            .or(file.auth_token_file.clone())
        {
            tokens.extend(read_tokens(&path)?);
        }
        if tokens
            .iter()
            .any(|t| t.is_empty() || t.chars().any(char::is_whitespace))
        {
            bail!("auth tokens must be non-empty and contain no whitespace");
        }
        let rate = pick!(rate_limit, 0);
        let timeout = pick!(request_timeout, 30.0);
        if !(timeout.is_finite() && timeout > 0.0) {
            bail!("request_timeout must be a positive number of seconds, not {timeout}");
        }
        let max_message_bytes = pick!(max_message_bytes, 64 * 1024 * 1024);
        if max_message_bytes < 1024 {
            bail!("max_message_bytes must be at least 1024");
        }
        let max_concurrent_requests = pick!(max_concurrent_requests, 512);
        if max_concurrent_requests == 0 {
            bail!("max_concurrent_requests must be at least 1");
        }
        let metrics_port = pick!(metrics_port, 9090);
        let grace = pick!(shutdown_grace, 10.0);
        if !(grace.is_finite() && grace >= 0.0) {
            bail!("shutdown_grace must be a number of seconds >= 0, not {grace}");
        }
        Ok(Config {
            data: pick!(data, PathBuf::from("./treestore-data")),
            host: pick!(host, IpAddr::from([127, 0, 0, 1])),
            port: pick!(port, 50051),
            metrics_port: (metrics_port != 0).then_some(metrics_port),
            log_level: pick!(log_level, "info".to_string()),
            log_format: pick!(log_format, LogFormat::Pretty),
            tls,
            tokens,
            rate_limit: (rate != 0).then_some(rate),
            rate_burst: pick!(rate_burst, rate.saturating_mul(2)).max(1),
            max_message_bytes,
            max_concurrent_requests,
            request_timeout: Duration::try_from_secs_f64(timeout)
                .map_err(|e| anyhow::anyhow!("request_timeout {timeout}: {e}"))?,
            slow_request: Duration::from_millis(pick!(slow_request_ms, 1000)),
            cache_bytes: pick!(cache_mib, 256).saturating_mul(1024 * 1024),
            shutdown_grace: Duration::try_from_secs_f64(grace)
                .map_err(|e| anyhow::anyhow!("shutdown_grace {grace}: {e}"))?,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

fn read_tokens(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading token file {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "port = 6000\nmetrics_port = 0\nlog_format = \"json\"\nauth_tokens = [\"abc\"]\nrate_limit = 5\nshutdown_grace = 3.5\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            port: Some(7000),
            ..Default::default()
        };
        let c = Config::resolve(args).unwrap();
        assert_eq!(c.port, 7000, "flag wins");
        assert_eq!(c.metrics_port, None, "file turns metrics off");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.tokens.iter().collect::<Vec<_>>(), ["abc"]);
        assert_eq!((c.rate_limit, c.rate_burst), (Some(5), 10));
        assert_eq!(c.host, IpAddr::from([127, 0, 0, 1]), "default");
        assert_eq!(c.data, PathBuf::from("./treestore-data"));
        assert_eq!(c.shutdown_grace, Duration::from_millis(3500), "file");
        let c = Config::resolve(ServeArgs {
            config: Some(file.clone()),
            shutdown_grace: Some(0.25),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.shutdown_grace, Duration::from_millis(250), "flag wins");
        let c = Config::resolve(ServeArgs::default()).unwrap();
        assert_eq!(c.shutdown_grace, Duration::from_secs(10), "default");
        let e = Config::resolve(ServeArgs {
            shutdown_grace: Some(-1.0),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("shutdown_grace"), "{e}");
        std::fs::write(&file, "prot = 1\n").unwrap();
        let e = Config::resolve(ServeArgs {
            config: Some(file),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("prot"), "{e:#}");
        let e = Config::resolve(ServeArgs {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("tls_key"));
    }
}
