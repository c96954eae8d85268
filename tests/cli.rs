//! The real binary: the startup banner, clean shutdown on SIGTERM/SIGINT,
//! and `ternd credentials` output that actually authenticates.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::turn::{Io, TurnClient};
use common::*;

fn ternd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ternd"))
}

/// `ternd serve` on loopback port-0 listeners with one shard.
fn serve_on_port_0() -> Command {
    let mut cmd = ternd();
    cmd.args([
        "--set",
        "listen.udp=127.0.0.1:0",
        "--set",
        "listen.tcp=127.0.0.1:0",
        "--set",
        "relay.ipv4=127.0.0.1",
        "--set",
        "http.listen=127.0.0.1:0",
        "--shards",
        "1",
    ]);
    cmd
}

#[test]
fn serve_prints_a_banner_and_stops_cleanly_on_signals() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut child = serve_on_port_0()
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        for line in lines.by_ref() {
            let line = line.unwrap();
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("Ctrl-C") || Instant::now() > deadline {
                break;
            }
        }
        assert!(banner.contains("stun:127.0.0.1:"), "{banner}");
        assert!(
            banner.contains("turn:127.0.0.1:") && banner.contains("?transport=tcp"),
            "{banner}"
        );
        assert!(
            banner.contains("username: ") && banner.contains("password: "),
            "{banner}"
        );
        // SAFETY: sending a signal to the child we spawned, by its PID.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "exits within 10 s of the signal");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "exit status {status:?} after signal {signal}");
    }
}

/// Serves on port 0 with stderr piped, stops after the banner and returns
/// what it logged.
fn serve_stderr() -> String {
    let mut child = serve_on_port_0()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if line.map_or(true, |l| l.contains("Ctrl-C")) {
            break;
        }
    }
    // SAFETY: sending a signal to the child we spawned, by its PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let stderr = serve_stderr();
    assert!(stderr.contains("ternd started"), "{stderr}");
    assert!(!stderr.contains("\x1b["), "{stderr:?}");
}

#[test]
fn start_line_lists_the_bound_addresses_readably() {
    let stderr = serve_stderr();
    let start = stderr
        .lines()
        .find(|l| l.contains("ternd started"))
        .unwrap_or_else(|| panic!("a start line in {stderr}"));
    assert!(!start.contains("BoundAddrs {"), "{start}");
    assert!(
        start.contains(" udp=127.0.0.1:") && start.contains(" http=127.0.0.1:"),
        "{start}"
    );
    assert!(start.contains(" tcp=127.0.0.1:") && !start.contains("tls="), "{start}");
}

#[test]
fn credentials_command_mints_working_rest_credentials() {
    let out = ternd()
        .args([
            "credentials",
            "--user",
            "cli-user",
            "--ttl",
            "10m",
            "--set",
            &format!("turn.secrets={TEST_SECRET}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim().to_string();
    let (user, pass) = (field("username:"), field("password:"));
    assert!(user.ends_with(":cli-user"), "{user}");
    let expiry: u64 = user.split_once(':').unwrap().0.parse().unwrap();
    assert_eq!(
        field("expires:"),
        format!("{} (in 10m)", ternd::utc_time::rfc3339(expiry)),
        "the expiry, as a time and from now"
    );
    let server = start(&turn_config(None, &[]));
    let mut c = TurnClient::new(Io::udp(server.bound().udp[0]), &user, &pass);
    assert!(c.allocate().is_ok(), "minted credentials authenticate");
    server.shutdown().unwrap();

    // --json is an RTCConfiguration-shaped object.
    let out = ternd()
        .args([
            "credentials",
            "--json",
            "--host",
            "turn.example.org",
            "--set",
            &format!("turn.secrets={TEST_SECRET}"),
        ])
        .output()
        .unwrap();
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(
        json.starts_with("{\"iceServers\":[{\"urls\":[\"stun:turn.example.org:3478\"]}"),
        "{json}"
    );
    assert!(
        json.contains("\"credential\":") && json.contains("turn:turn.example.org:3478?transport=tcp"),
        "{json}"
    );

    // A TTL under a second mints nothing: it would be expired already.
    for ttl in ["0s", "0", "500ms"] {
        let out = ternd()
            .args([
                "credentials",
                "--ttl",
                ttl,
                "--set",
                &format!("turn.secrets={TEST_SECRET}"),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success() && out.stdout.is_empty(), "--ttl {ttl}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--ttl") && err.contains("at least 1s"), "{err}");
    }

    // Without a configured secret, and no server to ask, there is nothing
    // to mint from.
    let out = ternd().args(["credentials", "--set", "http.listen="]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("turn.secrets"));
}

/// `check-config` checks what `serve` would load: the file, `TERND__*`
/// variables and `--set` overrides, and names the bad key.
#[test]
fn check_config_validates_the_environment_and_overrides_too() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/ternd.toml");
    let check = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = check(ternd().args(["check-config", file]).env("TERND__SERVER__SHARDZ", "2"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("`server.shardz`"), "{err}");
    let (code, err) = check(ternd().args(["check-config", file]).env("TERND__SERVER__SHARDS", "abc"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("server.shards"), "{err}");
    let (code, err) = check(ternd().args(["check-config", file, "--set", "server.shards=abc"]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("server.shards"), "{err}");
    let (code, err) = check(ternd().args(["check-config", file, "--set", "log.levle=debug"]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("`log.levle`"), "{err}");
    let (code, err) = check(
        ternd()
            .args(["check-config", file, "--set", "server.shards=2"])
            .env("TERND__LOG__LEVEL", "debug"),
    );
    assert_eq!(code, Some(0), "{err}");
}

/// A fresh, empty directory for one test's files.
fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ternd-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Failed authentication is counted by reason in /metrics and logged
/// naming the reason; the 401 challenge every client gets first is neither.
#[test]
fn auth_failures_are_counted_and_logged_by_reason() {
    let served = Logged::serve(
        "auth-log",
        &[
            &format!("turn.secrets={TEST_SECRET}"),
            "turn.users.alice=alice-password",
        ],
    );
    let (ternd, log) = (&served.ternd, || served.log());
    let count =
        |reason: &str| common::http::metric(ternd.http, &format!("ternd_auth_failures_total{{reason=\"{reason}\"}}"));
    let reasons = ["unknown_user", "bad_integrity", "expired_rest_username"];
    let counts = || reasons.map(count);

    // A good client: challenged with 401 first, then allocates.
    let (user, pass) = rest_credentials("good");
    let mut good = TurnClient::new(Io::udp(ternd.udp), &user, &pass);
    assert!(good.allocate().is_ok());
    assert_eq!(counts(), [0, 0, 0], "the challenge is no failure");
    assert!(!log().contains("authentication refused"), "{}", log());

    let expired_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let (expired_user, expired_pass) =
        proto::auth::rest_credentials(proto::auth::RestHmac::Sha1, TEST_SECRET.as_bytes(), "late", expired_at);
    let (wrong_user, wrong_pass) = rest_credentials_from("not-the-secret", "mallory");
    let cases = [
        ("nobody".to_string(), "pw".to_string(), "unknown_user", [1, 0, 0]),
        (wrong_user, wrong_pass, "bad_integrity", [1, 1, 0]),
        (expired_user.clone(), expired_pass, "expired_rest_username", [1, 1, 1]),
    ];
    for (user, pass, reason, expected) in cases {
        let mut c = TurnClient::new(Io::udp(ternd.udp), &user, &pass);
        assert_eq!(c.allocate(), Err(401), "{reason}");
        assert_eq!(counts(), expected, "{reason}");
        let line = format!("reason=\"{reason}\"");
        assert!(
            wait_for(Duration::from_secs(5), || log()
                .lines()
                .any(|l| l.contains("authentication refused") && l.contains(&line))),
            "a log line naming {reason}:\n{}",
            log()
        );
    }
    let text = log();
    assert!(text.contains(&format!("user=\"{expired_user}\"")), "{text}");
    for secret in [TEST_SECRET, "alice-password", "not-the-secret"] {
        assert!(!text.contains(secret), "the log holds no secret: {text}");
    }
}

/// The quick start: `ternd serve` with no config runs on a random secret;
/// `ternd credentials` right after (same config, so it finds the server's
/// HTTP listener) gets credentials that allocate on that server.
#[test]
fn credentials_after_the_quick_start_come_from_the_running_server() {
    let ternd_serve = common::binary::spawn(&mut serve_on_port_0());
    let out = ternd()
        .args([
            "credentials",
            "--user",
            "x",
            "--set",
            &format!("http.listen={}", ternd_serve.http),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("minted by the running ternd"), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim().to_string();
    let (user, pass) = (field("username:"), field("password:"));
    assert!(user.ends_with(":x"), "{user}");
    assert!(field("expires:").ends_with("(in 1h)"), "{text}");
    let mut c = TurnClient::new(Io::udp(ternd_serve.udp), &user, &pass);
    assert!(c.allocate().is_ok(), "the minted credentials allocate");
    let mut wrong = TurnClient::new(Io::udp(ternd_serve.udp), &user, "not-the-password");
    assert_eq!(wrong.allocate(), Err(401));
}

/// `ternd serve` with its log (stderr) in a file of a scratch directory,
/// removed when dropped.
struct Logged {
    ternd: common::binary::Ternd,
    dir: std::path::PathBuf,
}

impl Logged {
    /// On port-0 loopback listeners plus `extra` overrides.
    fn serve(tag: &str, extra: &[&str]) -> Logged {
        let dir = scratch_dir(tag);
        let mut cmd = serve_on_port_0();
        for e in extra {
            cmd.args(["--set", e]);
        }
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let ternd = common::binary::spawn_logging(&mut cmd, log);
        Logged { ternd, dir }
    }

    /// The log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// HTTP on 127.0.0.1 with STUN/TURN on 127.0.0.2 only: ternd says at start
/// that the iceServers URLs name the TURN address, and how to change it.
#[test]
fn a_host_mismatch_between_http_and_turn_is_warned_at_start() {
    let served = Logged::serve("host-mismatch", &["listen.udp=127.0.0.2:0", "listen.tcp=127.0.0.2:0"]);
    let log = || served.log();
    let found = wait_for(Duration::from_secs(5), || {
        log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("127.0.0.2") && l.contains("http.public_host"))
    });
    assert!(found, "{}", log());
}

/// The certificate watcher logs what it does: a refused pair (the old
/// certificate stays) and a reload.
#[test]
fn certificate_file_changes_are_logged() {
    let cert = TestCert::new();
    let (cert_file, key_file) = (cert.cert_file.to_str().unwrap(), cert.key_file.to_str().unwrap());
    let served = Logged::serve(
        "cert-watch",
        &[
            "listen.tls=127.0.0.1:0",
            &format!("tls.cert_file={cert_file}"),
            &format!("tls.key_file={key_file}"),
            "tls.watch_interval=100ms",
        ],
    );
    let log = || served.log();
    std::fs::write(&cert.cert_file, "not a certificate\n").unwrap();
    let logged = |what: &str| wait_for(Duration::from_secs(5), || log().contains(what));
    assert!(logged("the running certificate stays"), "{}", log());
    let next = TestCert::new();
    std::fs::copy(&next.key_file, &cert.key_file).unwrap();
    std::fs::copy(&next.cert_file, &cert.cert_file).unwrap();
    assert!(logged("TLS certificate reloaded"), "{}", log());
}

#[test]
fn completions_and_man_pages_come_from_the_command_definition() {
    for (shell, marker) in [
        ("bash", "complete -F _ternd"),
        ("zsh", "#compdef ternd"),
        ("fish", "complete -c ternd"),
        ("elvish", "ternd"),
        ("powershell", "ternd"),
    ] {
        let o = process::output(ternd().args(["completions", shell]), Duration::from_secs(10));
        assert!(o.status.success(), "{shell}: {o:?}");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains(marker) && text.contains("firewall"), "{shell}:\n{text}");
    }
    let o = process::output(ternd().arg("man"), Duration::from_secs(10));
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(".ie"), "{o:?}");
    // A reader that goes away early gets no panic, just an error exit.
    let mut child = ternd()
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(status.success() || status.code() == Some(1), "{status:?} {err}");

    let dir = TestCert::new();
    let o = process::output(ternd().args(["man", "--dir"]).arg(&dir.dir), Duration::from_secs(10));
    assert!(o.status.success(), "{o:?}");
    for page in ["ternd.1", "ternd-serve.1", "ternd-probe.1", "ternd-firewall.1"] {
        let text = std::fs::read_to_string(dir.dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH ternd"), "{page}");
    }
}
