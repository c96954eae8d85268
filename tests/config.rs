//! Config: every shipped file parses, unknown keys are rejected by name,
//! environment and command-line overrides apply in the documented order, and
//! `ternd check-config` exits 0/1.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ternd::config::{ByteSize, Config, ExternalIp, LogFormat, RelayIp, Sources};

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ternd-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

fn load_err(sources: Sources) -> String {
    Config::load(&sources).expect_err("must be rejected").to_string()
}

/// The error for `--set key=value` overrides on top of the defaults.
fn set_err(sets: &[(&str, &str)]) -> String {
    load_err(Sources {
        overrides: sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    })
}

/// The error for a file holding `contents`.
fn file_err(name: &str, contents: &str) -> String {
    load_err(Sources {
        file: Some(temp_file(name, contents)),
        ..Default::default()
    })
}

/// The `.toml` files under `dir` (relative to the repository), recursively.
fn toml_files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir)];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn every_file_under_config_parses() {
    let files = toml_files("config");
    for path in &files {
        Config::load_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    assert!(!files.is_empty(), "config/ holds at least the reference file");
}

#[test]
fn every_config_under_deploy_parses() {
    let files = toml_files("deploy");
    for path in &files {
        Config::load_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    assert!(
        files.len() >= 2,
        "deploy/ ships the package and image configs: {files:?}"
    );
}

#[test]
fn the_reference_file_states_the_defaults() {
    let reference = Config::load_file(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/ternd.toml"
    )))
    .unwrap();
    assert_eq!(reference, Config::default());
    let d = Config::default();
    assert_eq!(
        d.listen.udp,
        vec!["0.0.0.0:3478".parse().unwrap(), "[::]:3478".parse().unwrap()]
    );
    assert_eq!(d.listen.tcp, d.listen.udp);
    assert!(d.listen.tls.is_empty());
    assert_eq!(d.stream.idle_timeout.0, Duration::from_secs(300));
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let e = file_err("unknown-key.toml", "[listen]\nudpp = [\"127.0.0.1:3478\"]\n");
    assert!(e.contains("`listen.udpp`"), "{e}");
    assert!(e.contains("did you mean `listen.udp`?"), "a near miss: {e}");

    let e = file_err("unknown-section.toml", "[relays]\nports = 1\n");
    assert!(e.contains("`relays`") && e.contains("did you mean `relay`?"), "{e}");

    let env = HashMap::from([("TERND__STREAM__IDLE".to_string(), "5s".to_string())]);
    let e = load_err(Sources {
        env,
        ..Default::default()
    });
    assert!(e.contains("`stream.idle`"), "{e}");

    let e = set_err(&[("log.colour", "red")]);
    assert!(
        e.contains("`log.colour`") && !e.contains("did you mean"),
        "no near miss: {e}"
    );
    let e = set_err(&[("log.levle", "debug")]);
    assert!(e.contains("did you mean `log.level`?"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    for (key, value) in [
        ("stream.max_connections", "lots"),
        ("stream.idle_timeout", "5 fortnights"),
        ("log.format", "xml"),
        ("log.level", "loud"),
        ("listen.udp", "not-an-address"),
        ("stream.max_message_bytes", "100"),
        ("stream.max_message_bytes", "64 parsecs"),
        ("udp.recv_buffer_bytes", "-1"),
        ("turn.bandwidth_limit", "fast"),
        ("relay.ipv4", "::1"),
        ("relay.ipv4", "0.0.0.0"),
        ("relay.ipv6", "127.0.0.1"),
        ("relay.external_ip", "203.0.113.1/not-an-address"),
        ("peers.allow", "10.0.0.0/33"),
        ("peers.deny", "everything"),
        ("turn.secrets", "too-short"),
        ("http.api_keys", "too-short"),
        ("signaling.max_queued_bytes_per_peer", "65536"),
        ("signaling.max_queued_bytes", "1000"),
        ("tls.alpn", "h2"),
        ("listen.proxy_protocol", "tcp:192.0.2.1:3478"),
        ("listen.proxy_protocol", "udp:0.0.0.0:3478"),
        ("listen.proxy_trusted", "not-a-net"),
        ("turn.password_algorithms", "sha256"),
        ("turn.password_algorithms", "sha512,md5"),
        ("turn.rest_hmac", "md5"),
    ] {
        let e = load_err(Sources {
            overrides: vec![(key.into(), value.into())],
            ..Default::default()
        });
        assert!(e.contains(&format!("`{key}")), "{key}={value}: {e}");
    }
    let e = load_err(Sources {
        overrides: vec![("listen.tls".into(), "127.0.0.1:5349".into())],
        ..Default::default()
    });
    assert!(e.contains("tls.cert_file"), "{e}");
}

#[test]
fn sizes_and_addresses_are_read_once_into_types() {
    let f = temp_file(
        "typed.toml",
        "[udp]\nrecv_buffer_bytes = \"4MiB\"\nsend_buffer_bytes = 65536\n\
         [relay]\nipv4 = \"192.0.2.10\"\nexternal_ip = [\"203.0.113.1/192.0.2.10\"]\n\
         [peers]\ndeny = [\"198.51.100.0/24\"]\n",
    );
    let c = Config::load(&Sources {
        file: Some(f),
        env: HashMap::from([("TERND__TURN__BANDWIDTH_LIMIT".to_string(), "1MB".to_string())]),
        overrides: vec![("relay.send_buffer_bytes".into(), "2048".into())],
    })
    .unwrap();
    assert_eq!(c.udp.recv_buffer_bytes, ByteSize(4 << 20));
    assert_eq!(c.udp.send_buffer_bytes, ByteSize(65536));
    assert_eq!(c.turn.bandwidth_limit, ByteSize(1_000_000));
    assert_eq!(c.relay.send_buffer_bytes, ByteSize(2048));
    assert_eq!(c.relay.ipv4, RelayIp::Addr("192.0.2.10".parse().unwrap()));
    assert_eq!(
        c.relay.external_ip,
        [ExternalIp {
            public: "203.0.113.1".parse().unwrap(),
            private: Some("192.0.2.10".parse().unwrap()),
        }]
    );
    assert_eq!(c.peers.deny, ["198.51.100.0/24".parse().unwrap()]);
}

#[test]
fn layers_apply_in_order_defaults_file_env_cli() {
    let f = temp_file(
        "layers.toml",
        "[log]\nlevel = \"debug\"\nformat = \"json\"\n[stream]\nmax_connections = 10\nidle_timeout = \"30s\"\n",
    );
    // File over defaults.
    let c = Config::load(&Sources {
        file: Some(f.clone()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        (c.log.level.as_str(), c.log.format, c.stream.max_connections),
        ("debug", LogFormat::Json, 10)
    );
    // Environment over file, lists comma-separated.
    let env = HashMap::from([
        ("TERND__STREAM__MAX_CONNECTIONS".to_string(), "20".to_string()),
        (
            "TERND__LISTEN__UDP".to_string(),
            "127.0.0.1:4000,[::1]:4001".to_string(),
        ),
        ("UNRELATED".to_string(), "ignored".to_string()),
    ]);
    let c = Config::load(&Sources {
        file: Some(f.clone()),
        env: env.clone(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.stream.max_connections, 20);
    assert_eq!(
        c.listen.udp,
        vec!["127.0.0.1:4000".parse().unwrap(), "[::1]:4001".parse().unwrap()]
    );
    assert_eq!(
        c.stream.idle_timeout.0,
        Duration::from_secs(30),
        "file value kept where env is silent"
    );
    // Command line over environment.
    let c = Config::load(&Sources {
        file: Some(f),
        env,
        overrides: vec![
            ("stream.max_connections".into(), "30".into()),
            ("listen.udp".into(), "127.0.0.1:5000".into()),
        ],
    })
    .unwrap();
    assert_eq!(c.stream.max_connections, 30);
    assert_eq!(c.listen.udp, vec!["127.0.0.1:5000".parse().unwrap()]);
}

fn ternd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ternd"))
}

#[test]
fn check_config_exits_zero_or_one() {
    let ok = ternd()
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/ternd.toml"),
        ])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let bad = temp_file("bad-for-cli.toml", "[server]\nshardz = 2\n");
    let out = ternd().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`server.shardz`"));
}

#[test]
fn serve_refuses_bad_cli_overrides_with_the_key_named() {
    let out = ternd().args(["--set", "server.shards=many"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.shards"));
    let out = ternd().args(["--set", "nonsense"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEY=VALUE"));
}

#[test]
fn help_and_version_work() {
    let out = ternd().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ternd "));
    let out = ternd().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("check-config") && help.contains("--config"), "{help}");
}

#[test]
fn a_single_string_is_a_one_element_list() {
    let f = temp_file(
        "one-or-many.toml",
        "[listen]\nudp = \"127.0.0.1:3478\"\ntcp = [\"127.0.0.1:3478\", \"[::1]:3478\"]\n\
         [peers]\ndeny = \"198.51.100.0/24\"\n[http]\nallowed_origins = \"https://app.example.org\"\n",
    );
    let c = Config::load_file(&f).unwrap();
    assert_eq!(c.listen.udp, vec!["127.0.0.1:3478".parse().unwrap()]);
    assert_eq!(c.listen.tcp.len(), 2);
    assert_eq!(c.peers.deny.len(), 1);
    assert_eq!(c.http.allowed_origins, ["https://app.example.org"]);

    let e = file_err("one-bad.toml", "[listen]\nudp = \"not-an-address\"\n");
    assert!(e.starts_with("config key `listen.udp`"), "{e}");
    let e = file_err("one-number.toml", "[listen]\nudp = 3478\n");
    assert!(e.starts_with("config key `listen.udp`"), "{e}");
}

#[test]
fn every_validation_failure_is_reported_at_once() {
    let e = set_err(&[
        ("server.shards", "5000"),
        ("turn.max_allocations", "0"),
        ("signaling.max_room_size", "1"),
    ]);
    assert!(e.starts_with("3 config errors:\n"), "{e}");
    for key in ["server.shards", "turn.max_allocations", "signaling.max_room_size"] {
        assert!(e.contains(&format!("\n  config key `{key}`: ")), "{key}: {e}");
    }
}
