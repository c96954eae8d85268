//! `ternd probe URL...`: a STUN/TURN client that checks a server (ternd or
//! any other, e.g. coturn) from where the user sits: Binding over each
//! transport, Allocate with credentials, a relay round trip between two
//! allocations, and the NAT's mapping behaviour. One line per check with a
//! verdict, exit code 0 when nothing failed, 1 otherwise.

mod checks;
mod conn;
mod ice_servers;
mod mapping;
mod report;
mod session;
mod tcp_relay;
mod tls;
mod turn;
mod untrusted;
mod url;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use checks::{Options, Target};
use report::{Check, Reporter, Status};
pub use session::Credentials;
pub use url::{ServerUrl, Transport};

#[derive(Debug, Clone, Args)]
// A heading of their own keeps the probe's options apart from the server's
// global ones (--config, --set, ...) that clap also lists here.
#[command(next_help_heading = "Probe options")]
#[command(after_help = "Examples:\n  \
    ternd probe stun:turn.example.org\n  \
    TERND_PROBE_SECRET=S ternd probe turn:turn.example.org turn:turn.example.org?transport=tcp turns:turn.example.org\n  \
    TERND_PROBE_PASSWORD=pw ternd probe --user alice --alt-server 203.0.113.2 turn:203.0.113.1\n  \
    TERND_PROBE_KEY=KEY ternd probe --ice-servers http://127.0.0.1:8080/api/ice-servers --json\n\n\
    Secrets (--password, --secret, --key) are better given in the environment on shared machines.\n\n\
    Exit code: 0 when no check failed, 1 when one did, 2 for usage errors.")]
pub struct ProbeArgs {
    /// Servers to check: stun:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp], turns:HOST[:PORT]
    /// (RFC 7064/7065; default ports 3478, TLS 5349).
    #[arg(value_name = "URL", required_unless_present = "ice_servers")]
    pub urls: Vec<ServerUrl>,
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
    /// Fetch {"iceServers":[...]} from this http:// or https:// URL and probe every URL in it
    /// with its username/credential.
    #[arg(long, value_name = "URL")]
    pub ice_servers: Option<String>,
    /// API key for --ice-servers (sent as Authorization: Bearer KEY).
    #[arg(long, value_name = "KEY", env = "TERND_PROBE_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// A second address of the same server (HOST[:PORT], default: the primary port) for the NAT mapping test.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub alt_server: Option<String>,
    /// A second port on the primary address for the NAT mapping test.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub alt_port: Option<u16>,
    /// Local address to bind (default: the unspecified address of the server's family).
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// CA certificate(s) (PEM) to trust for turns:/https://. There are no system roots:
    /// a private or self-signed certificate needs --ca or --insecure.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// Do not verify TLS certificates (still encrypted; for self-signed test servers).
    #[arg(long)]
    pub insecure: bool,
    /// Overall timeout of each check (UDP retransmits from 500 ms, doubling), e.g. 5s, 1500ms.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Machine-readable output: one JSON object per check, then {"summary":true,"ok":...}.
    #[arg(long)]
    pub json: bool,
}

/// How long REST credentials minted by the probe stay valid.
const REST_TTL: Duration = Duration::from_secs(3600);

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = crate::config::parse_duration(s)?;
    if d.is_zero() || d > Duration::from_secs(600) {
        return Err(format!("`{s}`: the timeout must be between 1 ms and 10 min"));
    }
    Ok(d)
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
    };
    let alt_server = args
        .alt_server
        .as_deref()
        .map(|s| url::split_host_port(s).map_err(|e| anyhow::anyhow!("--alt-server: {e}")))
        .transpose()?;
    let global = global_credentials(args)?;
    let mut report = Reporter::new(args.json);

    let mut entries: Vec<(ServerUrl, Option<Credentials>)> =
        args.urls.iter().map(|u| (u.clone(), global.clone())).collect();
    if let Some(url) = &args.ice_servers {
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

    let mut bound: HashSet<(Transport, SocketAddr)> = HashSet::new();
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
        if bound.insert((target.url.transport, addr)) {
            report.add(checks::binding(&target, &opts));
        }
        if target.url.turn && turned.insert((target.url.transport, addr, target.creds.clone())) {
            for c in checks::turn(&target, &opts) {
                report.add(c);
            }
            if target.url.transport != Transport::Udp {
                report.add(tcp_relay::check(&target, &opts));
            }
        }
    }

    match primary_udp {
        Some(primary) => {
            let alt_server = match alt_server {
                Some((host, port)) => Some(
                    resolve(&host, port.unwrap_or(primary.port()), Some(primary.ip()))
                        .map_err(|e| anyhow::anyhow!("--alt-server: {e}"))?,
                ),
                None => None,
            };
            let probes = mapping::Probes {
                primary,
                alt_server,
                alt_port: args.alt_port.map(|p| SocketAddr::new(primary.ip(), p)),
            };
            report.add(mapping::nat_mapping(&probes, &opts));
        }
        None if args.alt_server.is_some() || args.alt_port.is_some() => report.add(Check::new(
            Status::Fail,
            "nat-mapping",
            "nat mapping",
            "needs a UDP server URL (stun: or turn:...?transport=udp) as the primary address",
        )),
        None => {}
    }
    Ok(report.finish())
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
    let (username, password) = proto::auth::rest_credentials(secret.as_bytes(), &args.rest_user, expiry);
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
