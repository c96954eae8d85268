//! The operations kit in deploy/: the Grafana dashboard against a real
//! scrape of /metrics, the firewall rules (`ternd firewall`) against the
//! config they come from (and `nft -c`), the nginx example against `nginx -t`,
//! the Caddy example and the Compose file against the default deploy config.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::http::http;
use common::turn::{Io, TurnClient};
use common::*;
use ternd::config::Config;
use ternd::firewall::{openings, Proto};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn ternd(args: &[&str]) -> Output {
    process::output(
        Command::new(env!("CARGO_BIN_EXE_ternd")).args(args).current_dir(repo()),
        Duration::from_secs(30),
    )
}

fn stdout_ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{:?}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// PromQL words that are not metric names: keywords, and aggregations
/// (which may come before their parenthesis: `sum by (x) (...)`).
const KEYWORDS: [&str; 23] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
];

/// The metric names a PromQL expression reads: identifiers outside label
/// matchers `{...}`, ranges `[...]`, strings and `by (...)`-style label
/// lists, that are not followed by `(` (functions, aggregations).
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut skip_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' | '[' | '"' => {
                let close = match c {
                    '{' => '}',
                    '[' => ']',
                    _ => '"',
                };
                i += 1;
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' && close != '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_list => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                skip_list = false;
                i += 1;
            }
            // Numbers and durations (`8`, `5m`, `1.5`).
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if matches!(
                    word.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    skip_list = true;
                } else if next != Some(&'(') && !KEYWORDS.contains(&word.as_str()) {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn promql_metric_names_are_found() {
    assert_eq!(
        metric_names(
            r#"sum by (method, code) (rate(ternd_responses_total{instance=~"$instance", code!="200"}[$__rate_interval]))"#
        ),
        ["ternd_responses_total"]
    );
    assert_eq!(
        metric_names("sum(a_total{x=\"}\"}) / sum(b) * 8 and on (i) c offset 5m"),
        ["a_total", "b", "c"]
    );
}

/// Every series name and metric family in a /metrics scrape.
fn scraped_names(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            names.insert(rest.split(' ').next().unwrap_or("").to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

#[test]
fn every_grafana_query_names_a_metric_ternd_exports() {
    let server = start(&turn_config(None, &[("http.listen", "127.0.0.1:0")]));
    // Traffic first, so every counter has moved: allocations relaying both
    // ways over UDP and TCP, a refused password, a garbage datagram.
    let peer = EchoPeer::start(false);
    let b = server.bound().clone();
    for io in [Io::udp(b.udp[0]), Io::tcp(b.tcp[0])] {
        let (u, p) = rest_credentials("grafana");
        let mut c = TurnClient::new(io, &u, &p);
        c.allocate().unwrap();
        c.channel_bind(0x4000, peer.addr).unwrap();
        c.send_channel(0x4000, &[7; 100]);
        assert!(c.recv_relayed().is_some());
    }
    let mut wrong = TurnClient::new(Io::udp(b.udp[0]), "alice", "nope");
    assert_eq!(wrong.allocate(), Err(401));
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    junk.send_to(&[0u8; 40], b.udp[0]).unwrap();

    let scrape = http(b.http[0], "GET", "/metrics", &[]);
    assert_eq!(scrape.status, 200);
    let exported = scraped_names(&scrape.body);
    assert!(exported.contains("ternd_allocations"), "{exported:?}");

    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana/ternd.json")).unwrap();
    let mut queries: Vec<String> = Vec::new();
    let mut stack = vec![&dashboard];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(e) = m.get("expr").and_then(|e| e.as_str()) {
                    queries.push(e.to_string());
                }
                stack.extend(m.values());
            }
            serde_json::Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    assert!(queries.len() >= 20, "the dashboard has {} queries", queries.len());
    let mut used: BTreeSet<String> = BTreeSet::new();
    for q in &queries {
        let names = metric_names(q);
        assert!(!names.is_empty(), "no metric in `{q}`");
        used.extend(names);
    }
    // Template variables: label_values(METRIC, LABEL).
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["definition"].as_str() {
            if let Some(rest) = q.strip_prefix("label_values(") {
                used.insert(rest.split(',').next().unwrap().trim().to_string());
            }
        }
    }
    let histogram_base = |n: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| n.strip_suffix(s))
            .is_some_and(|base| exported.contains(base))
    };
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| !exported.contains(*n) && !histogram_base(n))
        .collect();
    assert!(
        unknown.is_empty(),
        "dashboard queries name metrics ternd does not export: {unknown:?}"
    );
    server.shutdown().unwrap();
}

/// `ternd firewall --format F ARGS`.
fn firewall(format: &str, args: &[&str]) -> String {
    stdout_ok(&ternd(&[&["firewall", "--format", format], args].concat()))
}

/// How `format` writes one opening.
fn rule(format: &str, proto: Proto, first: u16, last: u16) -> String {
    let p = match proto {
        Proto::Udp => "udp",
        Proto::Tcp => "tcp",
    };
    let range = |sep: &str| match first == last {
        true => first.to_string(),
        false => format!("{first}{sep}{last}"),
    };
    match format {
        "nftables" => format!("{p} dport {} accept", range("-")),
        "ufw" => format!("ufw allow {}/{p}", range(":")),
        _ => format!("<port protocol=\"{p}\" port=\"{}\"/>", range("-")),
    }
}

#[test]
fn firewall_rules_open_every_configured_port_and_nft_accepts_them() {
    // The examples in deploy/firewall/ are the generated rules of deploy/ternd.toml.
    for (format, file) in [
        ("nftables", "deploy/firewall/ternd.nft"),
        ("ufw", "deploy/firewall/ternd.ufw.sh"),
        ("firewalld", "deploy/firewall/ternd.firewalld.xml"),
    ] {
        assert_eq!(
            firewall(format, &["--config", "deploy/ternd.toml"]),
            read(file),
            "{file} is stale: regenerate it with `ternd firewall --format {format} --config deploy/ternd.toml`"
        );
    }

    // A config with every kind of listener, two UDP ports, and an HTTP
    // listener on loopback (closed) and on all addresses (opened).
    let cert = TestCert::new();
    let (cert_file, key_file) = (
        cert.cert_file.display().to_string(),
        cert.key_file.display().to_string(),
    );
    let sets = [
        "listen.udp=0.0.0.0:3478,[::]:3479".to_string(),
        "listen.tcp=0.0.0.0:3478".to_string(),
        "listen.tls=0.0.0.0:5349,[::]:443".to_string(),
        format!("tls.cert_file={cert_file}"),
        format!("tls.key_file={key_file}"),
        "http.listen=0.0.0.0:8443,127.0.0.1:8080".to_string(),
        "http.api_keys=k-0123456789abcdef0123".to_string(),
        "relay.port_min=40000".to_string(),
        "relay.port_max=40999".to_string(),
    ];
    let mut args: Vec<&str> = Vec::new();
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let mut sources = ternd::config::Sources::default();
    for s in &sets {
        let (k, v) = s.split_once('=').unwrap();
        sources.overrides.push((k.to_string(), v.to_string()));
    }
    let config = Config::load(&sources).unwrap();
    let every_port: BTreeSet<(u16, bool)> = config
        .listen
        .udp
        .iter()
        .map(|a| (a.port(), true))
        .chain(
            [&config.listen.tcp, &config.listen.tls, &config.http.listen]
                .into_iter()
                .flatten()
                .filter(|a| !a.ip().is_loopback())
                .map(|a| (a.port(), false)),
        )
        .collect();
    assert_eq!(every_port.len(), 6, "{every_port:?}");
    for format in ["nftables", "ufw", "firewalld"] {
        let out = firewall(format, &args);
        for (port, udp) in &every_port {
            let proto = if *udp { Proto::Udp } else { Proto::Tcp };
            let want = rule(format, proto, *port, *port);
            assert!(out.contains(&want), "{format}: no `{want}`\n{out}");
        }
        let relay = rule(format, Proto::Udp, 40000, 40999);
        assert!(out.contains(&relay), "{format}: no `{relay}`\n{out}");
        assert!(
            out.contains("Not opened: http.listen 127.0.0.1:8080"),
            "{format}\n{out}"
        );
        assert!(!out.contains("8080/") && !out.contains("dport 8080"), "{format}\n{out}");
        // One rule per opening, nothing else opened.
        let (open, _) = openings(&config);
        let rules = out
            .lines()
            .filter(|l| {
                l.contains(" accept comment ") || l.starts_with("ufw allow") || l.trim_start().starts_with("<port ")
            })
            .count();
        assert_eq!(rules, open.len(), "{format}\n{out}");
        if format == "firewalld" {
            // An XML comment cannot hold a double hyphen.
            let comment = &out[out.find("<!--").unwrap() + 4..out.find("-->").unwrap()];
            assert!(!comment.contains("--"), "{out}");
        }
        if format == "nftables" {
            nft_check(&out);
        }
    }
}

/// `nft -c -f`: nftables parses and would load the rules (changing nothing).
fn nft_check(rules: &str) {
    if !Path::new("/usr/sbin/nft").exists() {
        missing("nft (the Debian package `nftables`)");
        return;
    }
    // A fresh directory removed afterwards (the certificate is unused).
    let scratch = TestCert::new();
    let file = scratch.dir.join("ternd.nft");
    std::fs::write(&file, rules).unwrap();
    let o = process::output(
        Command::new("/usr/sbin/nft").arg("-c").arg("-f").arg(&file),
        Duration::from_secs(20),
    );
    assert!(
        o.status.success(),
        "nft -c rejects the rules: {}\n{rules}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn nginx_example_passes_nginx_t_and_keeps_admin_and_metrics_private() {
    let conf = read("deploy/nginx/ternd.conf");
    for want in [
        "location = /api/ice-servers",
        "location = /ws",
        "proxy_set_header Upgrade $http_upgrade",
        "proxy_set_header Connection $ternd_connection",
        "X-Forwarded-For $proxy_add_x_forwarded_for",
        "location = /metrics { return 404; }",
        "location /admin/ { return 404; }",
        "location / { return 404; }",
    ] {
        assert!(conf.contains(want), "deploy/nginx/ternd.conf lacks `{want}`");
    }
    // Origin is passed through, never set or cleared.
    assert!(!conf.contains("proxy_set_header Origin"));
    let Some(nginx) = ["/usr/sbin/nginx"].into_iter().find(|p| Path::new(p).exists()) else {
        missing("nginx (the Debian package `nginx`)");
        return;
    };
    // nginx -t loads the certificates: the test's stand in for Let's Encrypt's.
    let cert = TestCert::new();
    let conf = conf
        .replace(
            "/etc/letsencrypt/live/turn.example.org/fullchain.pem",
            &cert.cert_file.display().to_string(),
        )
        .replace(
            "/etc/letsencrypt/live/turn.example.org/privkey.pem",
            &cert.key_file.display().to_string(),
        );
    std::fs::write(cert.dir.join("ternd.conf"), conf).unwrap();
    let main = format!(
        "pid {dir}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n    access_log off;\n    include {dir}/ternd.conf;\n}}\n",
        dir = cert.dir.display()
    );
    std::fs::write(cert.dir.join("nginx.conf"), main).unwrap();
    let o = process::output(
        Command::new(nginx)
            .args(["-t", "-q", "-e", "stderr", "-p"])
            .arg(&cert.dir)
            .arg("-c")
            .arg(cert.dir.join("nginx.conf")),
        Duration::from_secs(20),
    );
    assert!(o.status.success(), "nginx -t: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn caddy_example_routes_only_the_api_and_the_socket() {
    let caddy = read("deploy/caddy/Caddyfile");
    let code: Vec<&str> = caddy
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(code.contains(&"@ternd path /api/ice-servers /ws"), "{code:?}");
    assert!(code.contains(&"reverse_proxy 127.0.0.1:8080 {"), "{code:?}");
    assert!(code.contains(&"respond 404"), "{code:?}");
    // Nothing else reaches ternd: one reverse_proxy, behind the path matcher.
    assert_eq!(code.iter().filter(|l| l.starts_with("reverse_proxy")).count(), 1);
    assert!(!code.iter().any(|l| l.contains("/metrics") || l.contains("/admin")));
    // Balanced braces.
    let depth = code.iter().try_fold(0i32, |d, l| {
        let d = d + l.matches('{').count() as i32 - l.matches('}').count() as i32;
        (d >= 0).then_some(d)
    });
    assert_eq!(depth, Some(0));
}

#[test]
fn compose_publishes_exactly_the_ports_of_the_image_config() {
    let compose = read("deploy/docker/compose.yaml");
    let published: BTreeSet<String> = compose
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("- \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|l| l.ends_with("/udp") || l.ends_with("/tcp"))
        .map(str::to_string)
        .collect();
    let config = Config::load_file(&repo().join("deploy/docker/ternd.toml")).unwrap();
    let (open, _) = openings(&config);
    let expected: BTreeSet<String> = open
        .iter()
        .map(|o| {
            let ports = match o.first == o.last {
                true => o.first.to_string(),
                false => format!("{}-{}", o.first, o.last),
            };
            let proto = match o.proto {
                Proto::Udp => "udp",
                Proto::Tcp => "tcp",
            };
            format!("{ports}:{ports}/{proto}")
        })
        .collect();
    assert_eq!(published, expected, "deploy/docker/compose.yaml ports");
    // The Dockerfile builds what compose runs, and the config is the one checked.
    for want in [
        "dockerfile: deploy/Dockerfile",
        "./ternd.toml:/etc/ternd/ternd.toml:ro",
        "stop_grace_period",
    ] {
        assert!(compose.contains(want), "compose.yaml lacks `{want}`");
    }
    // Plain YAML: spaces only, no tabs.
    assert!(!compose.contains('\t'));
}
