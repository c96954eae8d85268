//! deploy/: the systemd unit passes `systemd-analyze verify` and keeps its
//! hardening, every shipped config passes `ternd check-config`, the sysctl
//! file keeps the kernel's ephemeral ports out of each relay range, and the
//! Debian package builds, installs, checks its own config, starts with the
//! secret it generated and purges without leftovers.
//!
//! The package test installs into this machine (it needs root, dpkg and
//! cargo-deb; tests/run.sh installs what is missing). It packages the debug
//! binary this test run already built (`cargo deb --no-build` from a staging
//! target dir), so it takes seconds rather than a release build. Without
//! those tools a test says why and passes, except under CI=true, where it
//! fails (`common::missing`).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ternd::config::Config;

const TERND: &str = env!("CARGO_BIN_EXE_ternd");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Whether a test may go on: a missing prerequisite skips it, but fails it
/// under CI (`common::missing`).
fn available(ok: bool, what: &str) -> bool {
    if !ok {
        common::missing(what);
    }
    ok
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A directory removed when the test ends, however it ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("ternd-deploy-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `systemd-analyze verify UNIT`: exit 0 and no warning about the unit
/// itself (unknown keys and bad values are only warnings, with exit 0).
fn verify_unit(unit: &Path) {
    let out = run(Command::new("systemd-analyze").arg("verify").arg(unit));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let complaints: Vec<&str> = text.lines().filter(|l| l.contains("ternd.service")).collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify {}:\n{text}",
        unit.display()
    );
}

/// The value of the first `Key=` line of a unit file.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("ternd.service has no {key}="))
}

/// "45s", "2min", "90" (seconds) as systemd writes time spans in this unit.
fn unit_seconds(v: &str) -> u64 {
    let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("time span `{v}`"));
    match unit {
        "" | "s" => n,
        "min" => n * 60,
        _ => panic!("time span `{v}`: use s or min"),
    }
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    if !available(
        runs("systemd-analyze", &["--version"]),
        "systemd-analyze is missing (package systemd)",
    ) {
        return;
    }
    // verify checks that ExecStart= binaries exist: point them at the one
    // this test run built.
    let unit = read("deploy/ternd.service").replace("/usr/bin/ternd", TERND);
    let dir = TempDir::new("unit");
    let path = dir.0.join("ternd.service");
    std::fs::write(&path, unit).unwrap();
    verify_unit(&path);
}

#[test]
fn systemd_unit_keeps_its_hardening_and_limits() {
    let unit = read("deploy/ternd.service");
    for line in [
        "Type=notify",
        "ExecStartPre=/usr/bin/ternd check-config /etc/ternd/ternd.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "LoadCredential=turn-secret:/etc/ternd/turn-secret",
        "Environment=TERND__TURN__SECRET_FILES=%d/turn-secret",
        "Environment=TERND__TLS__KEY_FILE=%d/tls-key",
    ] {
        assert!(unit.lines().any(|l| l == line), "ternd.service lacks `{line}`");
    }
    assert!(unit_seconds(unit_value(&unit, "WatchdogSec")) > 0);

    let config = Config::load_file(&repo().join("deploy/ternd.toml")).unwrap();
    let stop = unit_seconds(unit_value(&unit, "TimeoutStopSec"));
    assert!(
        Duration::from_secs(stop) > config.server.drain_timeout.0 + Duration::from_secs(5),
        "TimeoutStopSec={stop}s must leave room for server.drain_timeout {:?}",
        config.server.drain_timeout.0
    );
    // One descriptor per relay port, per TCP/TLS client, and some to spare.
    let relay_ports = usize::from(config.relay.port_max - config.relay.port_min) + 1;
    let needed = relay_ports + config.stream.max_connections + 1024;
    let nofile: usize = unit_value(&unit, "LimitNOFILE").parse().unwrap();
    assert!(
        nofile >= needed,
        "LimitNOFILE={nofile}, the packaged config needs {needed}"
    );
}

/// The `ternd.toml: |` block of the Kubernetes ConfigMap.
fn configmap_toml() -> String {
    let yaml = read("deploy/k8s/configmap.yaml");
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "ternd.toml: |").skip(1);
    let mut toml = String::new();
    for line in lines.by_ref() {
        if !line.is_empty() && !line.starts_with("    ") {
            break;
        }
        toml.push_str(line.strip_prefix("    ").unwrap_or(line));
        toml.push('\n');
    }
    assert!(toml.contains("[relay]"), "configmap.yaml holds a ternd.toml block");
    toml
}

#[test]
fn shipped_configs_pass_check_config_and_keep_relays_clear_of_ephemeral_ports() {
    let dir = TempDir::new("configs");
    let k8s = dir.0.join("configmap-ternd.toml");
    std::fs::write(&k8s, configmap_toml()).unwrap();
    let files = [
        repo().join("deploy/ternd.toml"),
        repo().join("deploy/docker/ternd.toml"),
        k8s,
    ];

    let sysctl = read("deploy/99-ternd.conf");
    let range = sysctl
        .lines()
        .find_map(|l| l.strip_prefix("net.ipv4.ip_local_port_range = "))
        .expect("99-ternd.conf sets net.ipv4.ip_local_port_range");
    let (low, high) = range.split_once(' ').unwrap();
    let ephemeral = low.trim().parse::<u16>().unwrap()..=high.trim().parse::<u16>().unwrap();

    for file in &files {
        // The real binary, as ExecStartPre= and the README run it.
        let out = run(Command::new(TERND).arg("check-config").arg(file));
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
        let config = Config::load_file(file).unwrap();
        let relay = config.relay.port_min..=config.relay.port_max;
        assert!(
            relay.end() < ephemeral.start() || relay.start() > ephemeral.end(),
            "{}: relay ports {relay:?} overlap the ephemeral range {ephemeral:?} of 99-ternd.conf",
            file.display()
        );
    }
}

/// Each ternd service of the compose file with its `TERND__*` settings
/// (the shared `x-env` block, then its own), `${HOST_IP}` filled in.
fn compose_nodes(yaml: &str, host_ip: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut shared = Vec::new();
    let mut nodes: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut section = String::new();
    for line in yaml.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 || (indent == 2 && trimmed.ends_with(':')) {
            section = trimmed.split(':').next().unwrap_or("").to_string();
            if section.starts_with("ternd-") {
                nodes.push((section.clone(), Vec::new()));
            }
            continue;
        }
        let Some((key, value)) = trimmed.split_once(": ") else {
            continue;
        };
        if !key.starts_with("TERND__") {
            continue;
        }
        let value = value
            .trim_matches('"')
            .replace("${HOST_IP:?set HOST_IP to the host's public address}", host_ip)
            .replace("${HOST_IP}", host_ip);
        let pair = (key.to_string(), value);
        if section == "x-env" {
            shared.push(pair);
        } else if let Some((_, env)) = nodes.last_mut().filter(|(name, _)| *name == section) {
            env.push(pair);
        }
    }
    for (_, env) in &mut nodes {
        env.splice(0..0, shared.clone());
    }
    nodes
}

#[test]
fn the_compose_cluster_nodes_pass_check_config_with_distinct_ports() {
    let yaml = read("deploy/docker-compose.cluster.yml");
    let nodes = compose_nodes(&yaml, "203.0.113.7");
    assert_eq!(nodes.len(), 3, "three ternd nodes");
    let dir = TempDir::new("compose");
    let secret = dir.0.join("turn-secret");
    std::fs::write(&secret, "compose-test-secret-0123456789").unwrap();
    let mut ports = Vec::new();
    for (name, env) in &nodes {
        let mut cmd = Command::new(TERND);
        cmd.arg("check-config").arg(repo().join("deploy/docker/ternd.toml"));
        cmd.env_clear().env("PATH", "/usr/bin:/bin");
        for (k, v) in env {
            cmd.env(k, v);
        }
        // The entrypoint reads these from the compose secrets.
        cmd.env("TERND__TURN__SECRET_FILES", &secret);
        cmd.env("TERND__CLUSTER__REDIS_URL", "redis://redis:6379/0");
        let out = run(&mut cmd);
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"), "{name}");
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("TERND__CLUSTER__NODE_ID"), *name);
        assert_eq!(get("TERND__CLUSTER__ADVERTISE"), "203.0.113.7");
        ports.push((get("TERND__LISTEN__UDP"), get("TERND__RELAY__PORT_MIN")));
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "each node its own port and relay range: {ports:?}");
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"))
}

fn user_exists(name: &str) -> bool {
    runs("getent", &["passwd", name])
}

/// Purges the package (and the `ternd` user, when this test made it) on
/// every exit path, so a failed assertion leaves the machine as it was.
struct Installed {
    remove_user: bool,
    purged: bool,
}

impl Installed {
    fn purge(&mut self) {
        if std::mem::replace(&mut self.purged, true) {
            return;
        }
        match Command::new("dpkg").args(["--purge", "ternd"]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("dpkg --purge ternd: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("dpkg --purge ternd: {e}"),
        }
        if self.remove_user && user_exists("ternd") {
            // The package keeps its system user on purge, as Debian does.
            let _ = Command::new("deluser").args(["--system", "--quiet", "ternd"]).output();
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.purge();
    }
}

/// Starts the installed binary with the installed config, loopback ports and
/// the generated secret, waits for its banner and stops it with SIGTERM.
fn serves_with_generated_secret() {
    let mut child = Command::new("/usr/bin/ternd")
        .args(["serve", "--config", "/etc/ternd/ternd.toml", "--shards", "1"])
        .args(["--set", "listen.udp=127.0.0.1:0", "--set", "listen.tcp=127.0.0.1:0"])
        .args(["--set", "relay.ipv4=127.0.0.1", "--set", "http.listen=127.0.0.1:0"])
        .env("TERND__TURN__SECRET_FILES", "/etc/ternd/turn-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut started = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if line.unwrap().contains("stun:127.0.0.1:") {
            started = true;
            break;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    // SAFETY: a signal to the child we spawned, by its PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        started && out.status.success(),
        "installed ternd serves with /etc/ternd/turn-secret ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The package's shell completions name every subcommand, and its man page
/// is gzipped roff about ternd.
fn installed_completions_and_man_page() {
    for (file, marker) in [
        ("/usr/share/bash-completion/completions/ternd", "complete -F _ternd"),
        ("/usr/share/zsh/vendor-completions/_ternd", "#compdef ternd"),
        ("/usr/share/fish/vendor_completions.d/ternd.fish", "complete -c ternd"),
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains(marker), "{file} lacks `{marker}`");
        for sub in [
            "serve",
            "check-config",
            "credentials",
            "probe",
            "firewall",
            "completions",
            "man",
        ] {
            assert!(text.contains(sub), "{file} does not complete `{sub}`");
        }
    }
    let man = run(Command::new("sh").args(["-c", "gzip -dc /usr/share/man/man1/ternd.1.gz"]));
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(man.contains(".TH ternd 1"), "{man}");
    assert!(man.contains("STUN/TURN"), "{man}");
    // A page per subcommand, with its options.
    let probe = run(Command::new("sh").args(["-c", "gzip -dc /usr/share/man/man1/ternd-probe.1.gz"]));
    let probe = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.contains(".TH ternd-probe 1") && probe.contains("alt\\-server"),
        "{probe}"
    );
}

#[test]
fn debian_package_installs_checks_its_config_and_purges_cleanly() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !available(root, "installing a .deb needs root")
        || !available(runs("dpkg", &["--version"]), "dpkg is missing")
        || !available(
            runs("cargo", &["deb", "--version"]),
            "cargo-deb is missing (cargo install cargo-deb --locked)",
        )
        || !available(
            runs("systemd-analyze", &["--version"]),
            "systemd-analyze is missing (package systemd)",
        )
    {
        return;
    }
    assert!(
        !dpkg_installed("ternd"),
        "a ternd package is installed on this machine; this test would replace and purge it"
    );

    // Package the binary this test run built: cargo-deb maps the asset
    // target/release/ternd into CARGO_TARGET_DIR, here a staging directory.
    let stage = TempDir::new("deb");
    std::fs::create_dir_all(stage.0.join("target/release")).unwrap();
    std::fs::copy(TERND, stage.0.join("target/release/ternd")).unwrap();
    // Completions and the man page, generated from that binary.
    run(Command::new("sh")
        .arg(repo().join("deploy/package-assets.sh"))
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", stage.0.join("target")));
    let out_dir = stage.0.join("out");
    run(Command::new("cargo")
        .args(["deb", "--no-build", "--fast", "--output"])
        .arg(&out_dir)
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", stage.0.join("target")));
    let deb = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote a .deb");

    let mut installed = Installed {
        remove_user: !user_exists("ternd"),
        purged: false,
    };
    run(Command::new("dpkg").arg("--install").arg(&deb));

    // The installed binary accepts the installed config, as ExecStartPre= does.
    let out = run(Command::new("/usr/bin/ternd").args(["check-config", "/etc/ternd/ternd.toml"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "ternd"]));
    assert!(String::from_utf8_lossy(&conffiles.stdout).contains("/etc/ternd/ternd.toml"));

    assert!(user_exists("ternd"), "postinst creates the ternd system user");
    let secret = Path::new("/etc/ternd/turn-secret");
    let mode = std::fs::metadata(secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "turn-secret is for root (systemd) only");
    assert!(std::fs::read_to_string(secret).unwrap().trim().len() >= 32);
    serves_with_generated_secret();

    // The unit as installed, with the real /usr/bin/ternd, enabled the Debian way.
    let unit = [
        "/usr/lib/systemd/system/ternd.service",
        "/lib/systemd/system/ternd.service",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists())
    .expect("the package installs ternd.service");
    verify_unit(unit);
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants/ternd.service");
    assert!(wants.symlink_metadata().is_ok(), "postinst enables ternd.service");
    assert!(Path::new("/usr/lib/sysctl.d/60-ternd.conf").exists());
    installed_completions_and_man_page();

    installed.purge();
    assert!(!dpkg_installed("ternd"));
    for leftover in [
        "/usr/bin/ternd",
        "/etc/ternd",
        "/usr/lib/sysctl.d/60-ternd.conf",
        "/usr/share/man/man1/ternd.1.gz",
        "/usr/share/man/man1/ternd-probe.1.gz",
        "/usr/share/bash-completion/completions/ternd",
    ] {
        assert!(!Path::new(leftover).exists(), "{leftover} is left after purge");
    }
    assert!(
        wants.symlink_metadata().is_err(),
        "{} is left after purge",
        wants.display()
    );
}
