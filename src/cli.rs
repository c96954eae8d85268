//! The command line (clap): `ternd [serve]`, `ternd check-config FILE`,
//! `ternd credentials`, `ternd probe URL...`, `ternd firewall`, and the
//! shell completions and man page generated from this definition.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::{parse_override, Config, Sources};

#[derive(Debug, Parser)]
#[command(
    name = "ternd",
    version,
    about = "ternd: a STUN/TURN server for WebRTC NAT traversal",
    long_about = "ternd: a STUN/TURN server for WebRTC NAT traversal.\n\n\
        Run `ternd` with no arguments to serve STUN on UDP and TCP port 3478 with the built-in \
        defaults (see config/ternd.toml, which documents every key). Settings come from, lowest \
        to highest priority: built-in defaults, --config FILE, TERND__SECTION__KEY environment \
        variables, and the options below.",
    after_help = "Examples:\n  \
        ternd                                   serve with the built-in defaults\n  \
        ternd --config /etc/ternd/ternd.toml    serve with a config file\n  \
        ternd --set listen.udp=127.0.0.1:3478   override one key\n  \
        TERND__LOG__LEVEL=debug ternd           override through the environment\n  \
        ternd check-config /etc/ternd/ternd.toml"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the STUN/TURN server (the default when no command is given).
    Serve(ServeArgs),
    /// Check a config file, with the TERND__* environment and --set overrides
    /// `serve` would apply, and exit 0 if it is valid, 1 if not (for systemd ExecStartPre).
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
    },
    /// Mint short-lived TURN REST credentials from the configured secret (turn.secrets).
    Credentials(CredentialArgs),
    /// Check a STUN/TURN server (ternd, coturn, ...) from here: binding, allocate, relay round trip, NAT mapping.
    Probe(crate::probe::ProbeArgs),
    /// Print firewall rules (nftables, ufw or firewalld) opening every port of the config:
    /// the STUN/TURN and HTTP listeners and the relay port range.
    Firewall(FirewallArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), e.g. `ternd man | man -l -`, or write one page per
    /// command (ternd.1, ternd-probe.1, ...) into a directory.
    Man {
        /// Write ternd.1 and a page per subcommand here instead of printing ternd.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct FirewallArgs {
    /// The rule syntax.
    #[arg(long, value_enum, default_value = "nftables")]
    pub format: crate::firewall::Format,
    #[command(flatten)]
    pub config: ServeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CredentialArgs {
    /// The user the credentials are for (appears in logs as EXPIRY:USER).
    #[arg(long, default_value = "user")]
    pub user: String,
    /// How long they stay valid, e.g. 10m, 1h, 1d (at least 1s).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: std::time::Duration,
    /// Print an RTCPeerConnection iceServers JSON object instead.
    #[arg(long)]
    pub json: bool,
    /// Host name or address clients use to reach this server (for --json).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[command(flatten)]
    pub config: ServeArgs,
}

/// A TTL under a second would mint credentials that are already expired.
fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    let ttl = crate::config::parse_duration(s)?;
    if ttl.as_secs() == 0 {
        return Err("must be at least 1s (shorter credentials are expired before anyone can use them)".into());
    }
    Ok(ttl)
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Config file (TOML). Without it, the built-in defaults apply.
    #[arg(short, long, value_name = "FILE", env = "TERND_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Override a config key, e.g. --set log.level=debug or --set listen.udp=127.0.0.1:3478,[::1]:3478
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub set: Vec<String>,
    /// Log level or filter (same as --set log.level=...).
    #[arg(long, value_name = "LEVEL", global = true)]
    pub log_level: Option<String>,
    /// Log format: human or json (same as --set log.format=...).
    #[arg(long, value_name = "FORMAT", global = true)]
    pub log_format: Option<String>,
    /// Number of shards; 0 = one per core (same as --set server.shards=...).
    #[arg(long, value_name = "N", global = true)]
    pub shards: Option<usize>,
}

impl ServeArgs {
    /// The config sources these arguments describe, with the process environment.
    pub fn sources(&self) -> anyhow::Result<Sources> {
        let mut overrides = self
            .set
            .iter()
            .map(|s| parse_override(s))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(v) = &self.log_level {
            overrides.push(("log.level".into(), v.clone()));
        }
        if let Some(v) = &self.log_format {
            overrides.push(("log.format".into(), v.clone()));
        }
        if let Some(v) = self.shards {
            overrides.push(("server.shards".into(), v.to_string()));
        }
        Ok(Sources::from_process_env(self.config.clone(), overrides))
    }
}

/// Entry point for `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(ServeArgs {
            config: Some(file),
            ..cli.serve
        }),
        Some(Command::Credentials(args)) => report(credentials(&args)),
        Some(Command::Probe(args)) => crate::probe::run(&args),
        Some(Command::Firewall(args)) => report(firewall(&args)),
        Some(Command::Completions { shell }) => {
            // Into a buffer first: generate() panics on a write error (a closed pipe).
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ternd", &mut buf);
            report(write_stdout(&buf).context("cannot write the completions"))
        }
        Some(Command::Man { dir: Some(dir) }) => report(
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write man pages to {}", dir.display())),
        ),
        Some(Command::Man { dir: None }) => {
            let mut buf = Vec::new();
            report(
                clap_mangen::Man::new(Cli::command())
                    .render(&mut buf)
                    .and_then(|()| write_stdout(&buf))
                    .context("cannot write the man page"),
            )
        }
        Some(Command::Serve(args)) => report(serve(&merge(cli.serve, args))),
        None => report(serve(&cli.serve)),
    }
}

/// Global options may come before or after `serve`; later ones win.
fn merge(mut global: ServeArgs, local: ServeArgs) -> ServeArgs {
    global.config = local.config.or(global.config);
    global.set.extend(local.set);
    global.log_level = local.log_level.or(global.log_level);
    global.log_format = local.log_format.or(global.log_format);
    global.shards = local.shards.or(global.shards);
    global
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ternd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads exactly what `serve` with `args` would load.
fn check_config(args: ServeArgs) -> ExitCode {
    let file = args.config.clone().unwrap_or_default();
    match args.sources().and_then(|s| Ok(Config::load(&s)?)) {
        Ok(c) => {
            println!(
                "{}: OK ({} UDP, {} TCP, {} TLS listener(s), {} shard(s))",
                file.display(),
                c.listen.udp.len(),
                c.listen.tcp.len(),
                c.listen.tls.len(),
                c.shard_count()
            );
            for w in c.warnings() {
                eprintln!("{}: warning: {w}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: invalid: {e:#}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

fn firewall(args: &FirewallArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config.sources()?)?;
    let source = match &args.config.config {
        Some(f) => f.display().to_string(),
        None => "the built-in defaults".to_string(),
    };
    print!("{}", crate::firewall::render(&config, args.format, &source));
    Ok(())
}

fn credentials(args: &CredentialArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config.sources()?)?;
    let secrets = crate::server::setup::configured_secrets(&config)?;
    let (username, password, expiry) = match secrets.first() {
        Some(secret) => {
            let expiry = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
                + args.ttl.as_secs();
            let (username, password) =
                proto::auth::rest_credentials(config.turn.rest_hmac.into(), secret, &args.user, expiry);
            (username, password, expiry)
        }
        None => mint_by_running_server(&config, args)?,
    };
    if args.json {
        println!(
            "{}",
            crate::ice_servers::ice_servers_json(
                crate::ice_servers::IcePorts::from_config(&config),
                &args.host,
                &username,
                &password,
                args.ttl.as_secs()
            )
        );
    } else {
        // The server caps the TTL at its http.max_ttl: say what was minted.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let ttl = match expiry.saturating_sub(now) {
            left if left.abs_diff(args.ttl.as_secs()) <= 5 => args.ttl,
            left => std::time::Duration::from_secs(left),
        };
        println!(
            "username: {username}\npassword: {password}\nexpires: {} (in {})",
            crate::utc_time::rfc3339(expiry),
            crate::config::format_duration(ttl)
        );
    }
    Ok(())
}

/// With no secret configured, a `ternd serve` on the same config runs on a
/// random secret made at start (the quick start): ask it, over its local
/// iceServers endpoint, to mint the credentials. Why this and not a file
/// holding the secret: the secret never leaves the server's memory, so
/// nothing is left on disk after a crash, nothing depends on a runtime
/// directory's owner and mode (DynamicUser, a shared /tmp), and there is
/// no stale secret of an earlier run to mint useless credentials from; and
/// the endpoint asked is one that, in this keyless setup, already answers
/// only requests from this host (loopback peer, loopback Host), so asking it
/// grants no one anything new. Returns (username, password, expiry).
fn mint_by_running_server(config: &Config, args: &CredentialArgs) -> anyhow::Result<(String, String, u64)> {
    let none = "turn.secrets and turn.secret_files are empty: configure a shared secret (or TERND__TURN__SECRETS) to mint credentials, or start `ternd serve` with this config first";
    if config.http.tls || config.http.listen.is_empty() {
        anyhow::bail!("{none}");
    }
    let mut errors = Vec::new();
    for a in &config.http.listen {
        let ip = match a.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        let base = format!("http://{}", std::net::SocketAddr::new(ip, a.port()));
        let user: String = args
            .user
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let url = format!("{base}/api/ice-servers?user={user}&ttl={}", args.ttl.as_secs());
        match crate::probe::fetch_credentials(&url, std::time::Duration::from_secs(5)) {
            Ok((username, password)) => {
                let expiry = proto::auth::rest_expiry(&username)
                    .with_context(|| format!("{base} minted a username without an expiry"))?;
                eprintln!("(minted by the running ternd at {base}: no turn.secrets configured)");
                return Ok((username, password, expiry));
            }
            Err(e) => errors.push(format!("{base}: {e}")),
        }
    }
    anyhow::bail!("{none} (no running ternd minted any: {})", errors.join("; "))
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.sources()?)?;
    let log = crate::logging::init(&config.log)?;
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    // Signal handlers first, so a signal that arrives while starting up is
    // already handled rather than the default "terminate now".
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    let mut signals = {
        let _guard = rt.enter();
        StopSignals::new()?
    };
    let running = crate::start(&config)?;
    print!(
        "{}",
        crate::banner::render(running.bound(), config.shard_count(), &running.shared())
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    tracing::info!("ternd started: {}", running.bound());

    let notifier = crate::systemd::Notifier::from_env();
    notifier.notify("READY=1\nSTATUS=serving");
    let handle = running.handle();
    handle.set_log_handle(log.clone());
    if let Some(every) = crate::systemd::Notifier::watchdog_interval() {
        // Pings only when every shard's event loop answers: a stuck shard
        // lets the watchdog fire.
        let (h, n) = (handle.clone(), crate::systemd::Notifier::from_env());
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every / 2);
            loop {
                tick.tick().await;
                if h.ping().await {
                    n.notify("WATCHDOG=1");
                } else {
                    tracing::error!("a shard does not answer: withholding the watchdog ping");
                }
            }
        });
    }
    rt.block_on(async {
        loop {
            match signals.wait().await {
                Signal::Hangup => {
                    notifier.reloading();
                    reload(args, &handle, &log).await;
                    notifier.notify("READY=1\nSTATUS=serving");
                }
                Signal::Terminate => {
                    notifier.notify("STOPPING=1\nSTATUS=draining");
                    // The current value: drain_timeout follows reloads.
                    let timeout = handle.config().server.drain_timeout.0;
                    drain(&handle, &mut signals, timeout).await;
                    return;
                }
                Signal::Interrupt => {
                    notifier.notify("STOPPING=1");
                    tracing::info!("SIGINT received, stopping");
                    return;
                }
            }
        }
    });
    let stats = running.shutdown()?;
    let drops: Vec<String> = stats
        .drops
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{}={n}", r.label()))
        .collect();
    tracing::info!(
        binding_success = stats.binding_success(),
        error_responses = stats.error_responses(),
        allocations = stats.allocations_created,
        drops = %drops.join(","),
        "ternd stopped"
    );
    Ok(())
}

/// SIGHUP: re-read the config; apply what can change live, report what
/// needs a restart, and keep the old config when the new one is invalid.
async fn reload(args: &ServeArgs, handle: &crate::server::ServerHandle, log: &crate::logging::LogHandle) {
    let new = match args.sources().and_then(|s| Ok(Config::load(&s)?)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config reload refused, the running config stays in force: {e:#}");
            return;
        }
    };
    match handle.reload(&new).await {
        Ok(report) => {
            if let Err(e) = log.set_level(&new.log.level) {
                tracing::error!("{e:#}");
            }
            if report.needs_restart.is_empty() {
                tracing::info!("config reloaded");
            } else {
                tracing::warn!(
                    needs_restart = %report.needs_restart.join(", "),
                    "config reloaded; these changes take effect only after a restart"
                );
            }
        }
        Err(e) => tracing::error!("config reload refused, the running config stays in force: {e:#}"),
    }
}

/// SIGTERM: refuse new allocations, wait for the existing ones to end (or
/// the deadline, or another SIGTERM/SIGINT).
async fn drain(handle: &crate::server::ServerHandle, signals: &mut StopSignals, timeout: std::time::Duration) {
    handle.drain().await;
    let deadline = tokio::time::Instant::now() + timeout;
    tracing::info!(timeout_s = timeout.as_secs(), "SIGTERM received, draining");
    loop {
        let live: usize = handle.snapshots().await.iter().map(|s| s.allocations).sum();
        if live == 0 {
            tracing::info!("drained: no allocations left");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(allocations = live, "drain deadline reached, stopping");
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
            s = signals.wait() => {
                if !matches!(s, Signal::Hangup) {
                    tracing::info!(allocations = live, "second stop signal, stopping now");
                    return;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Hangup,
    Terminate,
    Interrupt,
}

struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        })
    }

    async fn wait(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Terminate,
            _ = self.int.recv() => Signal::Interrupt,
            _ = self.hup.recv() => Signal::Hangup,
        }
    }
}
