//! ternd's configuration: typed sections with `deny_unknown_fields`, loaded in
//! layers (built-in defaults < file < environment < command line) with the
//! `config` crate, then checked once so the rest of the program only sees
//! valid values.

mod alternate;
mod byte_size;
mod duration;
mod external_ip;
mod one_or_many;
mod password_algorithms;
mod peer_nets;
mod proxy_listener;
mod quantity;
mod rate;
mod relay_ip;
mod restart;
mod secret;
mod suggest;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::amplification::MAX_REALM_LEN;
use proto::nonce::MAX_NONCE_LIFETIME;
use proto::policy::IpNet;
use serde::Deserialize;

use one_or_many::one_or_many;

pub use byte_size::{parse_byte_size, ByteSize};
pub use duration::{format_duration, parse_duration, ConfigDuration};
pub use external_ip::ExternalIp;
pub use password_algorithms::{ConfigPasswordAlgorithm, ConfigRestHmac};
pub use proxy_listener::ProxyListener;
pub use relay_ip::RelayIp;
pub use restart::{ReloadPlan, RESTART_KEYS};
pub use secret::Secret;

/// The longest `server.software`: it is sent on every authenticated response
/// (never before authentication), so it stays short.
pub const MAX_SOFTWARE_LEN: usize = 32;

/// The longest `turn.permission_lifetime` and `turn.channel_lifetime`: past
/// an hour a stale permission would outlive most allocations it guards.
pub const MAX_BINDING_LIFETIME: Duration = Duration::from_secs(3600);

/// The reference config file, which is also the built-in default.
pub const DEFAULT_TOML: &str = include_str!("../../config/ternd.toml");

/// Environment variables with this prefix (and `__` between parts) override
/// config keys: `TERND__LOG__LEVEL=debug`.
pub const ENV_PREFIX: &str = "TERND";

/// Keys whose values are lists: from the environment and `--set` they are
/// written comma-separated; in a file, an array or a single string (each
/// such field is read with `one_or_many`).
pub const LIST_KEYS: &[&str] = &[
    "listen.udp",
    "listen.tcp",
    "listen.tls",
    "listen.dtls",
    "listen.proxy_protocol",
    "listen.proxy_trusted",
    "turn.secrets",
    "turn.secret_files",
    "turn.password_algorithms",
    "tls.alpn",
    "relay.external_ip",
    "peers.allow",
    "peers.deny",
    "http.listen",
    "http.api_keys",
    "http.allowed_origins",
    "fastpath.interfaces",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub listen: ListenSection,
    pub tls: TlsSection,
    pub stream: StreamSection,
    pub udp: UdpSection,
    pub turn: TurnSection,
    pub relay: RelaySection,
    pub peers: PeersSection,
    pub http: HttpSection,
    pub signaling: SignalingSection,
    pub cluster: ClusterSection,
    pub usage: UsageSection,
    pub log: LogSection,
    pub fastpath: FastpathSection,
}

/// `[cluster]`: several nodes sharing one Redis (empty `redis_url`: one node).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// May carry a password: hidden by `{:?}`, never logged whole.
    pub redis_url: Secret,
    pub node_id: String,
    pub advertise: String,
    pub region: String,
    pub heartbeat: ConfigDuration,
}

impl ClusterSection {
    pub fn enabled(&self) -> bool {
        !self.redis_url.expose().is_empty()
    }
}

/// `[usage]`: one record per closed allocation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSection {
    pub file: PathBuf,
    pub stream_max_records: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    #[serde(deserialize_with = "one_or_many")]
    pub listen: Vec<SocketAddr>,
    pub tls: bool,
    pub public_host: String,
    #[serde(deserialize_with = "one_or_many")]
    pub api_keys: Vec<Secret>,
    #[serde(deserialize_with = "one_or_many")]
    pub allowed_origins: Vec<String>,
    pub default_ttl: ConfigDuration,
    pub max_ttl: ConfigDuration,
    /// Open HTTP(S) connections in total, WebSockets included.
    pub max_connections: usize,
    /// Open HTTP(S) connections from one source (an IPv4 address or IPv6 /64).
    pub max_connections_per_ip: usize,
    /// Time to send a request head, from connect or from the previous response.
    pub header_timeout: ConfigDuration,
    /// Time without a byte read or written before a connection is closed.
    pub idle_timeout: ConfigDuration,
}

impl HttpSection {
    /// No API key and no allowed origin: nothing restricts the iceServers API.
    pub fn unprotected(&self) -> bool {
        self.api_keys.is_empty() && self.allowed_origins.is_empty()
    }

    /// Every HTTP listener is on a loopback address.
    pub fn loopback_only(&self) -> bool {
        self.listen.iter().all(|a| a.ip().is_loopback())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalingSection {
    pub max_message_bytes: ByteSize,
    pub max_room_size: usize,
    pub max_messages_per_sec: u32,
    pub resume_grace: ConfigDuration,
    pub ping_interval: ConfigDuration,
    pub max_queued_bytes_per_peer: ByteSize,
    pub max_queued_bytes: ByteSize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnSection {
    pub realm: String,
    #[serde(deserialize_with = "one_or_many")]
    pub secrets: Vec<Secret>,
    #[serde(deserialize_with = "one_or_many")]
    pub secret_files: Vec<PathBuf>,
    pub nonce_lifetime: ConfigDuration,
    pub default_lifetime: ConfigDuration,
    pub max_lifetime: ConfigDuration,
    /// RFC 8656 §9 permission lifetime; other than 5m for tests and labs only.
    pub permission_lifetime: ConfigDuration,
    /// RFC 8656 §12 channel binding lifetime; other than 10m for tests and labs only.
    pub channel_lifetime: ConfigDuration,
    pub max_allocations: usize,
    pub max_allocations_per_user: usize,
    /// Allocations per source prefix (IPv4 /32, IPv6 /64).
    pub max_allocations_per_ip: usize,
    /// Bytes per second per allocation (written in bytes or bits); 0: unlimited.
    #[serde(deserialize_with = "rate::deserialize_rate")]
    pub bandwidth_limit: ByteSize,
    pub legacy_channel_numbers: bool,
    /// RFC 6062 TCP relay allocations.
    pub tcp_relay: bool,
    /// RFC 8656 §11.5: ICMP errors about relayed datagrams go to the client.
    pub relay_icmp: bool,
    pub unauthenticated_rate: u32,
    /// Unauthenticated requests per second from all sources together.
    pub unauthenticated_rate_total: u32,
    /// Static users: name to password.
    pub users: BTreeMap<String, Secret>,
    /// Password algorithms offered (RFC 8489 §9.2), in order of preference.
    #[serde(deserialize_with = "one_or_many")]
    pub password_algorithms: Vec<ConfigPasswordAlgorithm>,
    /// Accept USERHASH (RFC 8489 §14.4) for static users.
    pub userhash: bool,
    /// The HMAC of REST passwords.
    pub rest_hmac: ConfigRestHmac,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    #[serde(deserialize_with = "RelayIp::v4")]
    pub ipv4: RelayIp,
    #[serde(deserialize_with = "RelayIp::v6")]
    pub ipv6: RelayIp,
    #[serde(deserialize_with = "one_or_many")]
    pub external_ip: Vec<ExternalIp>,
    pub port_min: u16,
    pub port_max: u16,
    pub recv_buffer_bytes: ByteSize,
    pub send_buffer_bytes: ByteSize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersSection {
    #[serde(deserialize_with = "peer_nets::deserialize_nets")]
    pub allow: Vec<IpNet>,
    #[serde(deserialize_with = "peer_nets::deserialize_nets")]
    pub deny: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub drain_timeout: ConfigDuration,
    pub shards: usize,
    pub software: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    #[serde(deserialize_with = "one_or_many")]
    pub udp: Vec<SocketAddr>,
    #[serde(deserialize_with = "one_or_many")]
    pub tcp: Vec<SocketAddr>,
    #[serde(deserialize_with = "one_or_many")]
    pub tls: Vec<SocketAddr>,
    /// TURN over DTLS (RFC 7350) listeners; empty = off.
    #[serde(deserialize_with = "one_or_many")]
    pub dtls: Vec<SocketAddr>,
    /// Stream listeners that expect a PROXY protocol header.
    #[serde(deserialize_with = "one_or_many")]
    pub proxy_protocol: Vec<ProxyListener>,
    /// Sources allowed to send PROXY protocol headers.
    #[serde(deserialize_with = "peer_nets::deserialize_nets")]
    pub proxy_trusted: Vec<IpNet>,
    /// RFC 5780 NAT behaviour discovery: the alternate UDP address (another
    /// IP and another port than the first of `udp`); None = off.
    #[serde(deserialize_with = "alternate::deserialize")]
    pub alternate: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub handshake_timeout: ConfigDuration,
    /// How often the certificate files are checked for a change (0 = never).
    pub watch_interval: ConfigDuration,
    /// ALPN protocols (RFC 7443) the TURN TLS listeners accept.
    #[serde(deserialize_with = "one_or_many")]
    pub alpn: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSection {
    pub idle_timeout: ConfigDuration,
    pub auth_timeout: ConfigDuration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_message_bytes: ByteSize,
    pub max_queued_bytes: ByteSize,
    pub max_queued_bytes_total: ByteSize,
    pub write_stall_timeout: ConfigDuration,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpSection {
    pub recv_buffer_bytes: ByteSize,
    pub send_buffer_bytes: ByteSize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub level: String,
    pub format: LogFormat,
}

/// How the kernel fast path (XDP, issue 14) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FastpathMode {
    /// Userspace only.
    Off,
    /// Native (driver) XDP; fails at start if it cannot attach.
    Xdp,
    /// Generic (skb) XDP, for interfaces without native support such as `lo`.
    XdpGeneric,
    /// Native, else generic, else off with a warning.
    Auto,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastpathSection {
    pub mode: FastpathMode,
    #[serde(deserialize_with = "one_or_many")]
    pub interfaces: Vec<String>,
}

/// A config that could not be loaded; the message names the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(String),
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("--set expects KEY=VALUE, got `{0}`")]
    BadOverride(String),
    /// More than one of the above, each on its own line.
    #[error("{} config errors:\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// Ok for none, the error itself for one, [`ConfigError::Several`] beyond.
    fn all(mut errors: Vec<ConfigError>) -> Result<(), ConfigError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(ConfigError::Several(errors)),
        }
    }
}

/// Where config comes from, beyond the built-in defaults.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// Environment variables (only `TERND__*` ones are used). Passed in
    /// rather than read here so tests do not race on the process environment.
    pub env: HashMap<String, String>,
    /// `key=value` overrides from the command line, applied last.
    pub overrides: Vec<(String, String)>,
}

impl Sources {
    /// Sources with the real process environment.
    pub fn from_process_env(file: Option<PathBuf>, overrides: Vec<(String, String)>) -> Self {
        Sources {
            file,
            env: std::env::vars().collect(),
            overrides,
        }
    }
}

/// Puts serde's complaints in the words users write config in: an unknown
/// field becomes an unknown key named in full (`section.x`), and a bad value
/// names its key first (`config key `relay.ipv4`: …`), as validation does.
fn explain(e: config::ConfigError) -> ConfigError {
    let (message, key, origin) = match e {
        config::ConfigError::At {
            error,
            key: Some(key),
            origin,
        } => (error.to_string(), key, origin),
        config::ConfigError::Type {
            unexpected,
            expected,
            key: Some(key),
            origin,
        } => (format!("invalid type: {unexpected}, expected {expected}"), key, origin),
        other => {
            let msg = other.to_string();
            return ConfigError::Load(match unknown_field(&msg) {
                Some((field, expected)) => {
                    format!(
                        "unknown config section `{field}`{expected}{}",
                        did_you_mean("", field, expected)
                    )
                }
                None => msg,
            });
        }
    };
    if let Some((field, expected)) = unknown_field(&message) {
        return ConfigError::Load(format!(
            "unknown config key `{key}.{field}`{expected}{}",
            did_you_mean(&format!("{key}."), field, expected)
        ));
    }
    let message = match origin {
        Some(origin) => format!("{message} (in {origin})"),
        None => message,
    };
    ConfigError::Invalid { key, message }
}

/// "; did you mean `prefix.known`?" when a name in serde's `expected` list is
/// a likely typo of `field`; empty otherwise.
fn did_you_mean(prefix: &str, field: &str, expected: &str) -> String {
    suggest::closest(field, suggest::expected_names(expected))
        .map(|known| format!("; did you mean `{prefix}{known}`?"))
        .unwrap_or_default()
}

/// Splits serde's "unknown field `x`, expected …" into `x` and the rest.
fn unknown_field(msg: &str) -> Option<(&str, &str)> {
    msg.strip_prefix("unknown field `")?.split_once('`')
}

/// Accepts "LEVEL" or comma-separated "target=LEVEL" directives. Stricter
/// than tracing's own parser, which would read a misspelt level as a target.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!("`{directive}`: the level must be one of {}", LEVELS.join(", ")));
        }
    }
    Ok(())
}

/// Splits a `--set` argument into key and value.
pub fn parse_override(s: &str) -> Result<(String, String), ConfigError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_ascii_lowercase(), v.to_string())),
        _ => Err(ConfigError::BadOverride(s.to_string())),
    }
}

impl Default for Config {
    fn default() -> Self {
        // The embedded file is checked by the test suite; failing here would
        // mean the binary was built from a broken reference config.
        Config::load(&Sources::default()).expect("the embedded default config is valid")
    }
}

impl Config {
    /// Loads and validates config from `sources` on top of the built-in defaults.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        use config::{Environment, File, FileFormat};

        let mut b = config::Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = &sources.file {
            if !path.exists() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            b = b.add_source(File::from(path.as_path()).format(FileFormat::Toml).required(true));
        }
        let env: config::Map<String, String> = sources
            .env
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut env_source = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .source(Some(env));
        for key in LIST_KEYS {
            env_source = env_source.with_list_parse_key(key);
        }
        b = b.add_source(env_source);
        for (key, value) in &sources.overrides {
            b = if LIST_KEYS.contains(&key.as_str()) {
                let items: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                b.set_override(key.as_str(), items)
            } else {
                b.set_override(key.as_str(), value.as_str())
            }
            .map_err(|e| ConfigError::Load(format!("--set {key}: {e}")))?;
        }
        let merged = b.build().map_err(|e| ConfigError::Load(e.to_string()))?;
        let cfg: Config = merged.try_deserialize().map_err(explain)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads a single file on top of the defaults (for `check-config`).
    pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
        Config::load(&Sources {
            file: Some(path.to_path_buf()),
            ..Sources::default()
        })
    }

    /// Checks what serde cannot: relations between keys and value ranges.
    /// Reports every failure, not just the first, so one edit fixes them all.
    fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut invalid = |key: &str, message: &str| {
            errors.push(ConfigError::Invalid {
                key: key.to_string(),
                message: message.to_string(),
            })
        };
        if self.listen.udp.is_empty()
            && self.listen.tcp.is_empty()
            && self.listen.tls.is_empty()
            && self.listen.dtls.is_empty()
        {
            invalid(
                "listen",
                "no listener configured (listen.udp, listen.tcp, listen.tls and listen.dtls are all empty)",
            );
        }
        if let Some(alt) = self.listen.alternate {
            match self.listen.udp.first() {
                None => invalid(
                    "listen.alternate",
                    "needs a UDP listener (listen.udp) as the primary address",
                ),
                Some(p) if p.ip().is_unspecified() || alt.ip().is_unspecified() => invalid(
                    "listen.alternate",
                    "needs specific addresses (not a wildcard) for it and the first of listen.udp",
                ),
                Some(p) if p.port() == 0 || alt.port() == 0 => invalid(
                    "listen.alternate",
                    "needs fixed ports for it and the first of listen.udp",
                ),
                Some(p) if p.ip() == alt.ip() || p.port() == alt.port() || p.is_ipv4() != alt.is_ipv4() => invalid(
                    "listen.alternate",
                    "must differ from the first of listen.udp in both IP and port, in the same family",
                ),
                Some(_) => {}
            }
        }
        if !self.listen.dtls.is_empty()
            && (self.tls.cert_file.as_os_str().is_empty() || self.tls.key_file.as_os_str().is_empty())
        {
            invalid(
                "listen.dtls",
                "needs tls.cert_file and tls.key_file (the DTLS certificate)",
            );
        }
        if !self.listen.tls.is_empty() {
            if self.tls.cert_file.as_os_str().is_empty() {
                invalid("tls.cert_file", "required when listen.tls is not empty");
            }
            if self.tls.key_file.as_os_str().is_empty() {
                invalid("tls.key_file", "required when listen.tls is not empty");
            }
        }
        if self.server.shards > 1024 {
            invalid("server.shards", "at most 1024");
        }
        if self.software().is_some_and(|s| s.len() > MAX_SOFTWARE_LEN) {
            invalid(
                "server.software",
                "at most 32 bytes (it rides in every authenticated response)",
            );
        }
        if !(548..=65555).contains(&self.stream.max_message_bytes.bytes()) {
            invalid("stream.max_message_bytes", "must be between 548 and 65555");
        }
        for (key, limit) in [
            ("stream.max_connections", self.stream.max_connections),
            ("stream.max_connections_per_ip", self.stream.max_connections_per_ip),
            ("http.max_connections", self.http.max_connections),
            ("http.max_connections_per_ip", self.http.max_connections_per_ip),
        ] {
            if limit == 0 {
                invalid(key, "must be at least 1");
            }
        }
        if self.stream.idle_timeout.0 < Duration::from_secs(1) {
            invalid("stream.idle_timeout", "must be at least 1s");
        }
        if self.stream.auth_timeout.0 < Duration::from_secs(1) {
            invalid("stream.auth_timeout", "must be at least 1s");
        }
        if self.stream.write_stall_timeout.0 < Duration::from_secs(1) {
            invalid("stream.write_stall_timeout", "must be at least 1s");
        }
        if self.stream.max_queued_bytes.bytes() < 4096 {
            invalid("stream.max_queued_bytes", "must be at least 4096");
        }
        if self.stream.max_queued_bytes_total.bytes() < self.stream.max_queued_bytes.bytes() {
            invalid(
                "stream.max_queued_bytes_total",
                "must be at least stream.max_queued_bytes",
            );
        }
        if self.tls.handshake_timeout.0 < Duration::from_millis(100) {
            invalid("tls.handshake_timeout", "must be at least 100ms");
        }
        if self.fastpath.mode != FastpathMode::Off && self.fastpath.interfaces.is_empty() {
            invalid(
                "fastpath.interfaces",
                "list the interfaces to attach to when fastpath.mode is not \"off\"",
            );
        }
        if let Err(e) = check_log_filter(&self.log.level) {
            invalid("log.level", &e);
        }
        if let Some(p) = self
            .tls
            .alpn
            .iter()
            .find(|p| !crate::tls::STUN_ALPN.contains(&p.as_str()))
        {
            invalid(
                "tls.alpn",
                &format!("`{p}` is not a STUN ALPN protocol (RFC 7443): \"stun.turn\" or \"stun.nat-discovery\""),
            );
        }
        for p in &self.listen.proxy_protocol {
            let listeners = if p.tls { &self.listen.tls } else { &self.listen.tcp };
            if !listeners.contains(&p.addr) {
                let key = if p.tls { "listen.tls" } else { "listen.tcp" };
                invalid(
                    "listen.proxy_protocol",
                    &format!("{} is not in {key} (name a listener as it is configured there)", p.addr),
                );
            }
        }
        if !self.listen.proxy_protocol.is_empty() && self.listen.proxy_trusted.is_empty() {
            invalid(
                "listen.proxy_trusted",
                "must name the load balancers' addresses when listen.proxy_protocol is set",
            );
        }
        if let Err(e) = password_algorithms::check(&self.turn.password_algorithms) {
            invalid("turn.password_algorithms", e);
        }
        if self.turn.realm.is_empty() || self.turn.realm.len() > MAX_REALM_LEN {
            invalid(
                "turn.realm",
                "must be 1 to 16 bytes (it rides in every 401, which must stay within 1.7 times \
                 the request it answers)",
            );
        }
        // A static name shaped like a REST one would be charged to the
        // REST user part for quotas (proto::auth::quota_user).
        if let Some(name) = self
            .turn
            .users
            .keys()
            .find(|u| proto::auth::quota_user(u) != u.as_str())
        {
            invalid(
                "turn.users",
                &format!("`{name}` looks like a REST username (EXPIRY:USER); pick another name"),
            );
        }
        if self.turn.secrets.iter().any(|s| s.expose().len() < 16) {
            invalid("turn.secrets", "each secret must be at least 16 characters");
        }
        if self.turn.default_lifetime.0 < Duration::from_secs(60) {
            invalid("turn.default_lifetime", "must be at least 1m");
        }
        if self.turn.max_lifetime.0 < self.turn.default_lifetime.0 {
            invalid("turn.max_lifetime", "must not be shorter than turn.default_lifetime");
        }
        for (key, lifetime) in [
            ("turn.permission_lifetime", self.turn.permission_lifetime.0),
            ("turn.channel_lifetime", self.turn.channel_lifetime.0),
        ] {
            if lifetime < Duration::from_secs(1) || lifetime > MAX_BINDING_LIFETIME {
                invalid(
                    key,
                    "must be between 1s and 1h (RFC 8656: 5m for permissions, 10m for channels)",
                );
            }
        }
        if self.turn.nonce_lifetime.0 < Duration::from_secs(10) || self.turn.nonce_lifetime.0 > MAX_NONCE_LIFETIME {
            invalid("turn.nonce_lifetime", "must be between 10s and 4h15m");
        }
        if self.turn.max_allocations == 0 {
            invalid("turn.max_allocations", "must be at least 1");
        }
        if self.turn.max_allocations_per_ip == 0 {
            invalid("turn.max_allocations_per_ip", "must be at least 1");
        }
        if self.relay.port_min == 0 || self.relay.port_min > self.relay.port_max {
            invalid("relay.port_min", "must be at least 1 and not above relay.port_max");
        }
        if self.http.tls && (self.tls.cert_file.as_os_str().is_empty() || self.tls.key_file.as_os_str().is_empty()) {
            invalid("http.tls", "needs tls.cert_file and tls.key_file");
        }
        if self.http.default_ttl.0 < Duration::from_secs(60) || self.http.default_ttl.0 > self.http.max_ttl.0 {
            invalid("http.default_ttl", "must be at least 1m and not above http.max_ttl");
        }
        if self.http.header_timeout.0 < Duration::from_millis(100) {
            invalid("http.header_timeout", "must be at least 100ms");
        }
        if self.http.idle_timeout.0 < self.http.header_timeout.0 {
            invalid("http.idle_timeout", "must not be shorter than http.header_timeout");
        }
        if self.http.idle_timeout.0 <= self.signaling.ping_interval.0 {
            invalid(
                "http.idle_timeout",
                "must be longer than signaling.ping_interval (an idle signaling socket would be cut between pings)",
            );
        }
        if self.http.api_keys.iter().any(|k| k.expose().len() < 16) {
            invalid("http.api_keys", "each key must be at least 16 characters");
        }
        if !self.http.listen.is_empty() && self.http.unprotected() && !self.http.loopback_only() {
            invalid(
                "http.api_keys",
                "an HTTP listener on a non-loopback address needs http.api_keys or http.allowed_origins \
                 (the iceServers API would hand TURN credentials to anyone)",
            );
        }
        for o in &self.http.allowed_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                invalid(
                    "http.allowed_origins",
                    &format!("`{o}` is not an origin like https://app.example.org"),
                );
            }
        }
        if self.signaling.max_room_size < 2 {
            invalid("signaling.max_room_size", "must be at least 2");
        }
        if self.signaling.max_message_bytes.bytes() < 1024 {
            invalid("signaling.max_message_bytes", "must be at least 1024");
        }
        if self.signaling.max_messages_per_sec == 0 {
            invalid("signaling.max_messages_per_sec", "must be at least 1");
        }
        if self.signaling.max_queued_bytes_per_peer.bytes() < 2 * self.signaling.max_message_bytes.bytes() {
            invalid(
                "signaling.max_queued_bytes_per_peer",
                "must be at least twice signaling.max_message_bytes",
            );
        }
        if self.signaling.max_queued_bytes.bytes() < self.signaling.max_queued_bytes_per_peer.bytes() {
            invalid(
                "signaling.max_queued_bytes",
                "must be at least signaling.max_queued_bytes_per_peer",
            );
        }
        let c = &self.cluster;
        if c.enabled() {
            let url = c.redis_url.expose();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                invalid("cluster.redis_url", "must start with redis:// or rediss://");
            } else if redis::Client::open(url).is_err() {
                invalid("cluster.redis_url", "is not a valid Redis URL");
            }
        }
        if c.heartbeat.0 < Duration::from_millis(100) || c.heartbeat.0 > Duration::from_secs(60) {
            invalid("cluster.heartbeat", "must be between 100ms and 1m");
        }
        // A Kubernetes node name (spec.nodeName) is up to 253 characters.
        for (key, value, max) in [("cluster.node_id", &c.node_id, 253), ("cluster.region", &c.region, 64)] {
            let name_char = |ch: char| ch.is_ascii_alphanumeric() || "._-".contains(ch);
            if value.len() > max || !value.chars().all(name_char) {
                invalid(key, &format!("must be at most {max} characters of A-Z a-z 0-9 . _ -"));
            }
        }
        if c.advertise.len() > 253 || c.advertise.chars().any(|ch| ch.is_whitespace() || "/?#@".contains(ch)) {
            invalid("cluster.advertise", "must be a host name or an IP address");
        }
        if self.usage.stream_max_records == 0 {
            invalid("usage.stream_max_records", "must be at least 1");
        }
        ConfigError::all(errors)
    }

    /// The number of shards to run: `server.shards`, or one per core.
    pub fn shard_count(&self) -> usize {
        match self.server.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The RFC 5780 setup (`listen.alternate` with the first of `listen.udp`).
    pub fn nat_discovery(&self) -> Option<proto::nat_discovery::NatDiscovery> {
        let alternate = self.listen.alternate?;
        let primary = *self.listen.udp.first()?;
        Some(proto::nat_discovery::NatDiscovery { primary, alternate })
    }

    pub fn software(&self) -> Option<&str> {
        Some(self.server.software.as_str()).filter(|s| !s.is_empty())
    }

    /// Valid settings that break an RFC MUST, said at start (`ternd serve`
    /// and `check-config`): lifetimes other than RFC 8656's, which coturn
    /// also offers (`--permission-lifetime`, `--channel-lifetime`) and warns
    /// are not for production.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, value, rfc, section) in [
            (
                "turn.permission_lifetime",
                self.turn.permission_lifetime.0,
                proto::allocation::PERMISSION_LIFETIME,
                "§9",
            ),
            (
                "turn.channel_lifetime",
                self.turn.channel_lifetime.0,
                proto::allocation::CHANNEL_LIFETIME,
                "§12",
            ),
        ] {
            if value != rfc {
                out.push(format!(
                    "config key `{key}` is {} where RFC 8656 {section} says {}: clients refresh on the RFC's \
                     schedule, so a shorter value cuts their relaying; for tests and labs only, not production",
                    format_duration(value),
                    format_duration(rfc)
                ));
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The defaults with `--set key=value` for each pair.
    pub(crate) fn load_with(sets: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Sources {
            overrides: sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Sources::default()
        })
    }

    /// The error for `--set key=value` on top of the defaults.
    pub(crate) fn load_error(key: &str, value: &str) -> String {
        load_with(&[(key, value)]).expect_err("must be refused").to_string()
    }

    #[test]
    fn listen_dtls_is_off_by_default_and_needs_the_tls_certificate() {
        assert!(load_with(&[]).unwrap().listen.dtls.is_empty());
        let e = load_error("listen.dtls", "0.0.0.0:5349");
        assert!(e.starts_with("config key `listen.dtls`: "), "{e}");
        assert!(e.contains("tls.cert_file"), "{e}");
        let ok = load_with(&[
            ("listen.dtls", "0.0.0.0:5349,[::]:5349"),
            ("tls.cert_file", "/etc/ternd/tls/cert.pem"),
            ("tls.key_file", "/etc/ternd/tls/key.pem"),
        ])
        .unwrap();
        assert_eq!(ok.listen.dtls.len(), 2);
        // A DTLS listener alone is a listener.
        let only = load_with(&[
            ("listen.udp", ""),
            ("listen.tcp", ""),
            ("listen.dtls", "127.0.0.1:5349"),
            ("tls.cert_file", "c.pem"),
            ("tls.key_file", "k.pem"),
        ]);
        assert!(only.is_ok(), "{only:?}");
    }

    #[test]
    fn listen_alternate_needs_another_ip_and_port_than_the_primary() {
        let ok = load_with(&[("listen.udp", "127.0.0.1:3478"), ("listen.alternate", "127.0.0.2:3479")]).unwrap();
        let nd = ok.nat_discovery().expect("RFC 5780 on");
        assert_eq!(nd.alternate, "127.0.0.2:3479".parse().unwrap());
        assert!(load_with(&[]).unwrap().nat_discovery().is_none(), "off by default");
        for (udp, alternate) in [
            ("0.0.0.0:3478", "127.0.0.2:3479"),
            ("127.0.0.1:3478", "127.0.0.1:3479"),
            ("127.0.0.1:3478", "127.0.0.2:3478"),
            ("127.0.0.1:0", "127.0.0.2:3479"),
            ("127.0.0.1:3478", "[::1]:3479"),
        ] {
            let e = load_with(&[("listen.udp", udp), ("listen.alternate", alternate)])
                .expect_err("must be refused")
                .to_string();
            assert!(
                e.starts_with("config key `listen.alternate`: "),
                "{udp} {alternate}: {e}"
            );
        }
        let e = load_error("listen.alternate", "nonsense");
        assert!(e.contains("listen.alternate"), "{e}");
    }

    #[test]
    fn debug_output_hides_every_secret() {
        const SECRET: &str = "rest-secret-0123456789";
        const API_KEY: &str = "api-key-0123456789abcdef";
        const PASSWORD: &str = "alice-password-xyz";
        let c = load_with(&[
            ("turn.secrets", SECRET),
            ("http.api_keys", API_KEY),
            ("turn.users.alice", PASSWORD),
        ])
        .unwrap();
        assert_eq!(c.turn.secrets[0].expose(), SECRET);
        assert_eq!(c.http.api_keys[0].expose(), API_KEY);
        assert_eq!(c.turn.users["alice"].expose(), PASSWORD);
        for shown in [format!("{c:?}"), format!("{c:#?}")] {
            for secret in [SECRET, API_KEY, PASSWORD] {
                assert!(!shown.contains(secret), "{secret} printed in {shown}");
            }
            assert!(shown.contains("alice"), "user names are not secret: {shown}");
        }
    }

    #[test]
    fn stream_budgets_have_safe_defaults_and_refuse_unsafe_values() {
        let c = Config::default();
        assert_eq!(c.stream.max_queued_bytes.bytes(), 128 << 10);
        assert_eq!(c.stream.max_queued_bytes_total.bytes(), 64 << 20);
        assert_eq!(c.stream.write_stall_timeout.0, Duration::from_secs(30));
        assert_eq!(c.stream.auth_timeout.0, Duration::from_secs(20));
        for (key, value, why) in [
            ("stream.max_queued_bytes", "1000", "at least 4096"),
            (
                "stream.max_queued_bytes_total",
                "65536",
                "at least stream.max_queued_bytes",
            ),
            ("stream.write_stall_timeout", "500ms", "at least 1s"),
            ("stream.auth_timeout", "0s", "at least 1s"),
        ] {
            let e = load_error(key, value);
            assert!(
                e.starts_with(&format!("config key `{key}`: ")) && e.contains(why),
                "{e}"
            );
        }
    }

    #[test]
    fn cluster_keys_are_checked_and_the_redis_password_never_shows() {
        let c = Config::default();
        assert!(!c.cluster.enabled(), "a single node by default");
        assert_eq!(c.cluster.heartbeat.0, Duration::from_secs(1));
        for (key, value) in [
            ("cluster.redis_url", "http://redis:6379"),
            ("cluster.redis_url", "redis://[bad"),
            ("cluster.heartbeat", "10ms"),
            ("cluster.node_id", "no spaces"),
            ("cluster.advertise", "a/b"),
            ("cluster.region", "eu west"),
            ("usage.stream_max_records", "0"),
        ] {
            let e = load_error(key, value);
            assert!(e.contains(&format!("`{key}`")), "{key}={value}: {e}");
        }
        let c = load_with(&[(
            "cluster.redis_url",
            "rediss://ternd:hunter2-secret@redis.example:6380/1",
        )])
        .unwrap();
        assert!(c.cluster.enabled());
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn permission_and_channel_lifetimes_default_to_the_rfc_and_warn_otherwise() {
        let c = Config::default();
        assert_eq!(c.turn.permission_lifetime.0, Duration::from_secs(300));
        assert_eq!(c.turn.channel_lifetime.0, Duration::from_secs(600));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        for key in ["turn.permission_lifetime", "turn.channel_lifetime"] {
            for value in ["0s", "500ms", "2h"] {
                let e = load_error(key, value);
                assert!(
                    e.starts_with(&format!("config key `{key}`: ")) && e.contains("between 1s and 1h"),
                    "{key}={value}: {e}"
                );
            }
        }
        let c = load_with(&[("turn.permission_lifetime", "3s"), ("turn.channel_lifetime", "1h")]).unwrap();
        assert_eq!(c.turn.permission_lifetime.0, Duration::from_secs(3));
        let w = c.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("`turn.permission_lifetime` is 3s where RFC 8656 §9 says 5m"),
            "{w:?}"
        );
        assert!(
            w[1].contains("`turn.channel_lifetime` is 1h where RFC 8656 §12 says 10m"),
            "{w:?}"
        );
        assert!(w.iter().all(|w| w.contains("not production")), "{w:?}");
        // Live: a reload takes them (for permissions and channels made after it).
        let plan = ReloadPlan::new(&Config::default(), &c);
        assert!(plan.needs_restart.is_empty());
        assert_eq!(plan.applied.turn.channel_lifetime, c.turn.channel_lifetime);
    }

    #[test]
    fn bad_values_name_the_key_first() {
        let e = load_error("stream.idle_timeout", "5 fortnights");
        assert!(e.starts_with("config key `stream.idle_timeout`: "), "{e}");
        let e = load_error("udp.recv_buffer_bytes", "lots");
        assert!(e.starts_with("config key `udp.recv_buffer_bytes`: "), "{e}");
    }

    #[test]
    fn http_connection_budgets_are_validated() {
        for (key, value) in [
            ("http.max_connections", "0"),
            ("http.max_connections_per_ip", "0"),
            ("http.header_timeout", "10ms"),
        ] {
            assert!(load_error(key, value).contains(key), "{key}={value}");
        }
        let e = load_with(&[("http.header_timeout", "30s"), ("http.idle_timeout", "20s")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.idle_timeout"), "{e}");
        let e = load_with(&[("http.idle_timeout", "15s"), ("signaling.ping_interval", "15s")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("signaling.ping_interval"), "{e}");
        let c = load_with(&[]).unwrap();
        assert_eq!(c.http.max_connections, 1024);
        assert_eq!(c.http.max_connections_per_ip, 64);
        assert_eq!(c.http.header_timeout.0, Duration::from_secs(10));
        assert_eq!(c.http.idle_timeout.0, Duration::from_secs(60));
    }

    #[test]
    fn hardening_keys_have_safe_defaults_and_are_checked() {
        let c = Config::default();
        assert_eq!(c.turn.max_allocations_per_ip, 64);
        assert_eq!(c.turn.unauthenticated_rate_total, 10000);
        for (key, value) in [
            ("turn.max_allocations_per_ip", "0"),
            ("turn.realm", "a-realm-of-17-byt"),
            ("server.software", &"s".repeat(33)),
            ("turn.nonce_lifetime", "5h"),
        ] {
            let e = load_error(key, value);
            assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
        }
        load_with(&[("turn.realm", "turn.example.org"), ("server.software", &"s".repeat(32))]).unwrap();
        let mut c = Config::default();
        c.turn.users.insert("1700000000:eve".into(), "password-1".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("`turn.users`"), "{e}");
    }
}
