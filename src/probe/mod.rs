//! `ternd probe URL...`: a STUN/TURN client that checks a server (ternd or
//! any other, e.g. coturn) from where the user sits: Binding over each
//! transport, Allocate with credentials, a relay round trip between two
//! allocations, and the NAT's mapping and filtering behaviour (filtering
//! against an RFC 5780 server only). A one-line verdict first,
//! one line per check, then diagnoses (what the results mean and what to
//! change); exit code 0 when nothing failed, 1 otherwise.

mod checks;
mod conn;
mod deadline;
mod diagnosis;
mod dtls;
mod filtering;
mod ice_servers;
mod mapping;
mod report;
mod reporter;
mod session;
mod tcp_relay;
mod tls;
mod turn;
mod untrusted;
mod url;
mod verdict;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use checks::{Options, Target};
use diagnosis::Diagnosis;
use report::{Check, Status};
use reporter::Reporter;
pub use session::Credentials;
pub use url::{ServerUrl, Transport, UrlArg};

#[derive(Debug, Clone, Args)]
// A heading of their own keeps the probe's options apart from the server's
// global ones (--config, --set, ...) that clap also lists here.
#[command(next_help_heading = "Probe options")]
#[command(after_help = "Examples:\n  \
    ternd probe stun:turn.example.org\n  \
    ternd probe --json turn.example.org:3478 | jq .verdict\n  \
    TERND_PROBE_SECRET=S ternd probe turn:turn.example.org turn:turn.example.org?transport=tcp turns:turn.example.org\n  \
    TERND_PROBE_PASSWORD=pw ternd probe --user alice --alt-server 203.0.113.2 turn:203.0.113.1\n  \
    TERND_PROBE_KEY=KEY ternd probe --ice-servers http://127.0.0.1:8080/api/ice-servers --json\n\n\
    Secrets (--password, --secret, --key) are better given in the environment on shared machines.\n\n\
    Exit code: 0 when no check failed, 1 when one did, 2 for usage errors.")]
pub struct ProbeArgs {
    /// Servers to check: stun:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp], turns:HOST[:PORT]
    /// (RFC 7064/7065; default ports 3478, TLS 5349). A bare HOST[:PORT] is probed as stun:HOST[:PORT].
    #[arg(value_name = "URL", required_unless_present = "ice_servers")]
    pub urls: Vec<UrlArg>,
    /// Username of static long-term credentials (used instead of --secret when both are given).
    #[arg(long, requires = "password")]
    pub user: Option<String>,
    /// Password of static long-term credentials, for --user. Prefer the environment on shared
    /// machines: the command line is visible to every user (ps, /proc).
    // Secrets from the environment do not `requires` other options: an
    // exported variable must not turn every other probe into a usage error.
    #[arg(long, env = "TERND_PROBE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// TURN REST shared secret: mint credentials (username `EXPIRY:NAME`, password base64(HMAC-SHA1)).
    #[arg(long, env = "TERND_PROBE_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// The NAME part of minted REST usernames.
    #[arg(long, value_name = "NAME", default_value = "probe", requires = "secret")]
    pub rest_user: String,
    /// The HMAC of minted REST passwords, as the server's turn.rest_hmac: sha1 or sha256.
    #[arg(long, value_name = "HMAC", default_value = "sha1", value_parser = parse_rest_hmac, requires = "secret")]
    pub rest_hmac: proto::auth::RestHmac,
    /// Fetch {"iceServers":[...]} from this http:// or https:// URL and probe every URL in it
    /// with its username/credential.
    #[arg(long, value_name = "URL")]
    pub ice_servers: Option<String>,
    /// API key for --ice-servers (sent as Authorization: Bearer KEY).
    #[arg(long, value_name = "KEY", env = "TERND_PROBE_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// A second address of the same server (HOST[:PORT], default: the primary port) for the NAT mapping test
    /// (default: the server's RFC 5780 OTHER-ADDRESS IP, if it sends one).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub alt_server: Option<String>,
    /// A second port on the primary address for the NAT mapping test (default: the
    /// server's RFC 5780 OTHER-ADDRESS port, if it sends one).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub alt_port: Option<u16>,
    /// Local address to bind (default: the unspecified address of the server's family).
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// CA certificate(s) (PEM) to trust for turns:/https://, besides the system's CA store
    /// (SSL_CERT_FILE/SSL_CERT_DIR or the OS default). A self-signed certificate needs --ca or --insecure.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// Do not verify TLS certificates (still encrypted; for self-signed test servers).
    #[arg(long)]
    pub insecure: bool,
    /// Overall timeout of each check (UDP retransmits from 500 ms, doubling), e.g. 5s, 1500ms.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Machine-readable output: one JSON document {"verdict":"...","ok":...,"diagnoses":[{"code":...}],"checks":[...]}.
    #[arg(long)]
    pub json: bool,
}

/// How long REST credentials minted by the probe stay valid.
const REST_TTL: Duration = Duration::from_secs(3600);

fn parse_rest_hmac(s: &str) -> Result<proto::auth::RestHmac, String> {
    match s {
        "sha1" => Ok(proto::auth::RestHmac::Sha1),
        "sha256" => Ok(proto::auth::RestHmac::Sha256),
        _ => Err(format!("`{s}`: sha1 or sha256")),
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = crate::config::parse_duration(s)?;
    if d.is_zero() || d > Duration::from_secs(600) {
        return Err(format!("`{s}`: the timeout must be between 1 ms and 10 min"));
    }
    Ok(d)
}

/// The first credentials of the iceServers document at `url` (plain
/// http:// on this host; see `ternd credentials`).
pub fn fetch_credentials(url: &str, timeout: Duration) -> Result<(String, String), String> {
    let tls = tls::client_config(None, false).map_err(|e| format!("{e:#}"))?;
    ice_servers::fetch(url, None, timeout, &tls)?
        .into_iter()
        .find_map(|(_, c)| c.map(|c| (c.username, c.password)))
        .ok_or_else(|| "the iceServers document holds no credentials".to_string())
}

/// Runs the probe: 0 when every check passed, 1 when one failed, 2 for
/// bad input found after parsing (an unreadable --ca file, a bad --alt-server).
pub fn run(args: &ProbeArgs) -> ExitCode {
    match run_checks(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ternd probe: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_checks(args: &ProbeArgs) -> anyhow::Result<bool> {
    let opts = Options {
        bind: args.bind,
        timeout: args.timeout,
        tls: tls::client_config(args.ca.as_deref(), args.insecure)?,
        dtls: dtls::client_context(args.ca.as_deref(), args.insecure)?,
        extra_ca: args.ca.is_some(),
    };
    let alt_server = args
        .alt_server
        .as_deref()
        .map(|s| url::split_host_port(s).map_err(|e| anyhow::anyhow!("--alt-server: {e}")))
        .transpose()?;
    let global = global_credentials(args)?;
    let mut report = Reporter::new(args.json);
    let mut early: Vec<Diagnosis> = Vec::new();

    let mut entries: Vec<(ServerUrl, Option<Credentials>)> = Vec::new();
    for a in &args.urls {
        if let Some(written) = &a.bare {
            early.push(diagnosis::url_without_scheme(written, &a.url.to_string()));
        }
        entries.push((a.url.clone(), global.clone()));
    }
    if let Some(url) = &args.ice_servers {
        fetch_ice_servers(url, args, &opts, &global, &mut report, &mut entries);
    }
    // Before sending anything: credentials that can only get a 401.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    for (_, creds) in &entries {
        if let Some(d) = creds
            .as_ref()
            .and_then(|c| diagnosis::rest_username_expired(&c.username, now))
        {
            if !early.contains(&d) {
                early.push(d);
            }
        }
    }

    let mut bound: HashSet<(Transport, SocketAddr)> = HashSet::new();
    let mut dead: HashSet<(Transport, SocketAddr)> = HashSet::new();
    let mut turned: HashSet<(Transport, SocketAddr, Option<Credentials>)> = HashSet::new();
    let mut primary_udp: Option<SocketAddr> = None;
    for (url, creds) in entries {
        let addr = match resolve(&url.host, url.port, args.bind) {
            Ok(a) => a,
            Err(e) => {
                report.add(
                    Check::new(Status::Fail, "binding", format!("binding {}", url), e)
                        .with("transport", url.transport.name())
                        .with("url", url.to_string()),
                );
                continue;
            }
        };
        if url.transport == Transport::Udp && primary_udp.is_none() {
            primary_udp = Some(addr);
        }
        let target = Target { url, addr, creds };
        let key = (target.url.transport, addr);
        if bound.insert(key) {
            let c = checks::binding(&target, &opts);
            if c.fields.get("dead").and_then(|d| d.as_bool()) == Some(true) {
                dead.insert(key);
            }
            report.add(c);
        }
        if !target.url.turn || !turned.insert((target.url.transport, addr, target.creds.clone())) {
            continue;
        }
        if dead.contains(&key) {
            // No Binding answer, so an Allocate cannot get one either.
            let t = target.url.transport.name();
            report.add(
                Check::new(
                    Status::Skip,
                    "allocate",
                    format!("allocate {t} {addr}"),
                    "skipped: the Binding got no answer",
                )
                .with("transport", t)
                .with("server", addr.to_string())
                .with("url", target.url.to_string()),
            );
            continue;
        }
        for c in checks::turn(&target, &opts) {
            report.add(c);
        }
        // RFC 6062 TCP relays are asked for over TCP or TLS only (§5.1:
        // anything else is 400).
        if target.url.transport.is_stream() {
            report.add(tcp_relay::check(&target, &opts));
        }
    }
    // UDP silent: does TCP answer on the same port? (Then UDP is blocked on the way.)
    let mut udp_dead: Vec<SocketAddr> = dead
        .iter()
        .filter(|(t, a)| *t == Transport::Udp && !bound.contains(&(Transport::Tcp, *a)))
        .map(|(_, a)| *a)
        .collect();
    udp_dead.sort();
    for addr in udp_dead {
        report.add(fallback_binding(addr, &opts));
    }

    match primary_udp {
        Some(primary) if !dead.contains(&(Transport::Udp, primary)) => {
            let alt_server = match alt_server {
                Some((host, port)) => Some(
                    resolve(&host, port.unwrap_or(primary.port()), Some(primary.ip()))
                        .map_err(|e| anyhow::anyhow!("--alt-server: {e}"))?,
                ),
                None => None,
            };
            // Filtering first, on a socket of its own: it learns the RFC 5780
            // OTHER-ADDRESS, which stands in for --alt-server/--alt-port.
            let filtering = filtering::nat_filtering(primary, &opts);
            let other: Option<SocketAddr> = filtering
                .fields
                .get("other_address")
                .and_then(|v| v.as_str()?.parse().ok());
            let (alt_server, alt_port) = match (alt_server, args.alt_port, other) {
                (None, None, Some(o)) => (Some(SocketAddr::new(o.ip(), primary.port())), Some(o.port())),
                (s, p, _) => (s, p),
            };
            let probes = mapping::Probes {
                primary,
                alt_server,
                alt_port: alt_port.map(|p| SocketAddr::new(primary.ip(), p)),
            };
            report.add(mapping::nat_mapping(&probes, &opts));
            report.add(filtering);
        }
        Some(_) => report.add(Check::new(
            Status::Skip,
            "nat-mapping",
            "nat mapping",
            "skipped: the primary UDP Binding got no answer",
        )),
        None if args.alt_server.is_some() || args.alt_port.is_some() => report.add(Check::new(
            Status::Fail,
            "nat-mapping",
            "nat mapping",
            "needs a UDP server URL (stun: or turn:...?transport=udp) as the primary address",
        )),
        None => {}
    }
    let diagnoses = merge_diagnoses(diagnosis::diagnose(report.checks()), early);
    Ok(report.finish(&diagnoses))
}

/// The checks' diagnoses first (the verdict cites the first error), then
/// those found before sending; an expired REST username takes the place of
/// the 401 it explains.
fn merge_diagnoses(mut found: Vec<Diagnosis>, early: Vec<Diagnosis>) -> Vec<Diagnosis> {
    for d in early {
        match found.iter().position(|f| f.code == "credentials-rejected") {
            Some(i) if d.code == "rest-username-expired" => found[i] = d,
            _ => found.push(d),
        }
    }
    found
}

/// A TCP Binding to `addr` after UDP got no answer there: reported as INFO
/// (the user did not ask for it), and read by the diagnoses.
fn fallback_binding(addr: SocketAddr, opts: &Options) -> Check {
    let url = ServerUrl {
        scheme: "stun",
        host: addr.ip().to_string(),
        port: addr.port(),
        transport: Transport::Tcp,
        turn: false,
    };
    let c = checks::binding(&Target { url, addr, creds: None }, opts);
    let detail = match c.status {
        Status::Pass => format!("TCP answers where UDP does not: {}", c.detail),
        _ => format!("no answer over TCP either: {}", c.detail),
    };
    Check {
        status: Status::Info,
        kind: "fallback-binding",
        what: format!("binding tcp {addr} (fallback)"),
        detail,
        fields: c.fields,
    }
}

/// `--ice-servers URL`: the document's URLs join `entries`, with its
/// credentials (else the command line's).
fn fetch_ice_servers(
    url: &str,
    args: &ProbeArgs,
    opts: &Options,
    global: &Option<Credentials>,
    report: &mut Reporter,
    entries: &mut Vec<(ServerUrl, Option<Credentials>)>,
) {
    // The URL may carry a key in its userinfo or query: never printed.
    let source = untrusted::redact_url(url);
    match ice_servers::fetch(url, args.key.as_deref(), args.timeout, &opts.tls) {
        Ok(list) => {
            report.add(
                Check::new(
                    Status::Pass,
                    "ice-servers",
                    "ice servers",
                    format!("{} URL(s) from {source}", list.len()),
                )
                .with("source", source.as_str()),
            );
            let (list, skipped) = ice_servers::cap(list);
            if skipped > 0 {
                report.add(Check::new(
                    Status::Warn,
                    "ice-servers",
                    "ice servers",
                    format!(
                        "{skipped} more URL(s) not probed (at most {} per document)",
                        ice_servers::MAX_URLS
                    ),
                ));
            }
            for (u, creds) in list {
                match u {
                    // Credentials from the document win; else the command line's.
                    Ok(u) => entries.push((u, creds.or_else(|| global.clone()))),
                    Err(e) => report.add(Check::new(Status::Fail, "ice-servers", "ice servers url", e)),
                }
            }
        }
        Err(e) => report.add(
            Check::new(Status::Fail, "ice-servers", "ice servers", format!("{source}: {e}"))
                .with("source", source.as_str()),
        ),
    }
}

/// --user/--password, or REST credentials minted from --secret.
fn global_credentials(args: &ProbeArgs) -> anyhow::Result<Option<Credentials>> {
    if let (Some(u), Some(p)) = (&args.user, &args.password) {
        return Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }));
    }
    let Some(secret) = &args.secret else { return Ok(None) };
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + REST_TTL.as_secs();
    let (username, password) =
        proto::auth::rest_credentials(args.rest_hmac, secret.as_bytes(), &args.rest_user, expiry);
    Ok(Some(Credentials { username, password }))
}

/// The first address of `host` in the family of `like` (the --bind address
/// or the primary server), else the first one.
fn resolve(host: &str, port: u16, like: Option<IpAddr>) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .collect();
    let pick = match like {
        Some(ip) => addrs.iter().find(|a| a.is_ipv4() == ip.is_ipv4()),
        None => addrs.first(),
    };
    pick.copied().ok_or_else(|| match like {
        Some(ip) => format!("`{host}` has no address of the same family as {ip}"),
        None => format!("`{host}` has no address"),
    })
}
