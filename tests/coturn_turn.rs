//! coturn's `turnutils_uclient` (an independent TURN client) runs its echo
//! test through ternd to `turnutils_peer`, over UDP and TCP, with static
//! users and REST credentials: every message must come back.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// A child process killed (by PID) and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one uclient run reported.
struct Summary {
    sent: u64,
    recv: u64,
    lost: u64,
    exited_ok: bool,
    text: String,
}

/// Runs uclient with `args` and returns (sent, received, lost) from its summary.
fn uclient(args: &[String]) -> (u64, u64, u64, String) {
    let s = uclient_run(args);
    (s.sent, s.recv, s.lost, s.text)
}

/// Runs uclient with `args`, bounded in time, and reads its summary.
fn uclient_run(args: &[String]) -> Summary {
    let bin = tool("turnutils_uclient").expect("checked by the caller");
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run turnutils_uclient");
    // Bounded: uclient ends by itself after its messages; kill it if not.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let num_after = |key: &str| common::number_after(&text, key);
    Summary {
        sent: num_after("tot_send_msgs=").unwrap_or(0),
        recv: num_after("tot_recv_msgs=").unwrap_or(0),
        lost: num_after("Total lost packets").unwrap_or(u64::MAX),
        exited_ok: out.status.success(),
        text,
    }
}

/// Splits a banner command line into words: blanks separate, single quotes
/// group (what a shell does with the line as printed).
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => (quoted, any) = (!quoted, true),
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quote in {line}");
    if any {
        words.push(word);
    }
    words
}

/// The banner's "Try it:" line runs as printed against `ternd serve` with
/// the embedded default config (only its listeners moved to free loopback
/// ports): two uclients relay to each other through ternd, nothing lost.
#[test]
fn the_banner_uclient_line_works_as_printed() {
    if tool("turnutils_uclient").is_none() {
        return;
    }
    let ternd = common::binary::spawn(Command::new(env!("CARGO_BIN_EXE_ternd")).args([
        "serve",
        "--set",
        "listen.udp=127.0.0.1:0",
        "--set",
        "listen.tcp=127.0.0.1:0",
        "--set",
        "http.listen=127.0.0.1:0",
    ]));
    let line = ternd
        .banner
        .lines()
        .find_map(|l| l.strip_prefix("Try it: "))
        .unwrap_or_else(|| panic!("a \"Try it:\" line in\n{}", ternd.banner));
    let words = shell_words(line);
    assert_eq!(words[0], "turnutils_uclient", "{line}");
    let run = uclient_run(&words[1..]);
    assert!(run.exited_ok, "{line}\n{}", run.text);
    assert!(run.sent > 0, "{line}\n{}", run.text);
    assert_eq!(run.recv, run.sent, "every message relayed\n{}", run.text);
    assert_eq!(run.lost, 0, "{}", run.text);
}

#[test]
fn shell_words_follow_single_quotes() {
    assert_eq!(shell_words("a -u '1:x y' -w ''"), ["a", "-u", "1:x y", "-w", ""]);
}

#[test]
fn uclient_echo_through_ternd_over_udp_and_tcp() {
    let Some(peer_bin) = tool("turnutils_peer") else { return };
    if tool("turnutils_uclient").is_none() {
        return;
    }
    // coturn's tools pick channel numbers from RFC 5766's range (0x5B80...).
    let server = start(&turn_config(
        None,
        &[
            ("turn.legacy_channel_numbers", "true"),
            ("listen.udp", "127.0.0.1:0"),
            ("listen.tcp", "127.0.0.1:0"),
        ],
    ));
    let peer_port = std::net::UdpSocket::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _peer = Proc(
        Command::new(peer_bin)
            .args(["-L", "127.0.0.2", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let udp = server.bound().udp[0].port().to_string();
    let tcp = server.bound().tcp[0].port().to_string();
    let common = |port: &str| -> Vec<String> {
        [
            "-e",
            "127.0.0.2",
            "-r",
            &peer_port.to_string(),
            "-n",
            "40",
            "-m",
            "3",
            "-l",
            "300",
            "-p",
            port,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "udp, static user, channels",
            [
                vec!["-u".into(), "alice".into(), "-w".into(), "alice-password".into()],
                common(&udp),
            ]
            .concat(),
        ),
        (
            "udp, REST secret, Send/Data indications",
            [
                vec!["-s".into(), "-W".into(), TEST_SECRET.into(), "-u".into(), "bob".into()],
                common(&udp),
            ]
            .concat(),
        ),
        (
            "tcp, REST secret, channels",
            [
                vec![
                    "-t".into(),
                    "-W".into(),
                    TEST_SECRET.into(),
                    "-u".into(),
                    "carol".into(),
                ],
                common(&tcp),
            ]
            .concat(),
        ),
        (
            "tcp, static user, Send/Data indications",
            [
                vec![
                    "-t".into(),
                    "-s".into(),
                    "-u".into(),
                    "alice".into(),
                    "-w".into(),
                    "alice-password".into(),
                ],
                common(&tcp),
            ]
            .concat(),
        ),
    ];
    for (label, mut args) in cases {
        args.push("127.0.0.1".into());
        let (sent, recv, lost, text) = uclient(&args);
        // 3 clients x 40 messages, on both their RTP and RTCP allocations.
        assert!(sent >= 120, "{label}: sent {sent}\n{text}");
        assert_eq!(recv, sent, "{label}: every message echoed\n{text}");
        assert_eq!(lost, 0, "{label}: no loss\n{text}");
    }
    let stats = server.shutdown().unwrap();
    assert!(stats.allocations_created >= 4 * 6, "{}", stats.allocations_created);
    assert!(stats.traffic.to_peer_packets >= 4 * 120);
}
