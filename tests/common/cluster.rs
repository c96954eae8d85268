//! Real `ternd` processes joined in a cluster through a test's Redis, each
//! on its own loopback address (127.0.0.N) so their URLs tell them apart.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::binary::{spawn, Ternd};
use super::http::{http, Reply};

/// The REST secret every node of a test cluster shares.
pub const CLUSTER_SECRET: &str = "cluster-test-secret-0123456789";
/// Heartbeat of test nodes: a dead node is gone after 3 of these.
pub const HEARTBEAT: Duration = Duration::from_millis(200);

pub struct Node {
    pub id: String,
    pub ip: IpAddr,
    pub ternd: Ternd,
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts node `id` on 127.0.0.`n` joined to `redis_url` (empty: alone),
/// with `sets` as `--set KEY=VALUE` overrides.
pub fn node(id: &str, n: u8, redis_url: &str, sets: &[(&str, &str)]) -> Node {
    let ip: IpAddr = format!("127.0.0.{n}").parse().unwrap();
    let dir = super::fresh_dir(&format!("ternd-cluster-{id}"));
    let config = format!(
        r#"
[server]
shards = 1
drain_timeout = "30s"
[listen]
udp = ["{ip}:0"]
tcp = ["{ip}:0"]
[turn]
secrets = ["{CLUSTER_SECRET}"]
[relay]
ipv4 = "{ip}"
ipv6 = ""
port_min = 61000
[peers]
allow = ["127.0.0.0/8"]
[http]
listen = ["{ip}:0"]
[stream]
# Fits the test machine's fd limit beside the relay range (src/fd_limit.rs).
max_connections = 2000
[cluster]
redis_url = "{redis_url}"
node_id = "{id}"
heartbeat = "{}ms"
"#,
        HEARTBEAT.as_millis()
    );
    let file = dir.join("ternd.toml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ternd"));
    cmd.args(["--config", file.to_str().unwrap()]);
    for (k, v) in sets {
        cmd.args(["--set", &format!("{k}={v}")]);
    }
    Node {
        id: id.into(),
        ip,
        ternd: spawn(&mut cmd),
        dir,
    }
}

impl Node {
    pub fn udp(&self) -> SocketAddr {
        self.ternd.udp
    }

    pub fn http(&self) -> SocketAddr {
        self.ternd.http
    }

    pub fn get(&self, path: &str) -> Reply {
        http(self.http(), "GET", path, &[])
    }

    /// `POST /admin/revoke?username=…` on this node.
    pub fn revoke(&self, username: &str) -> Reply {
        http(
            self.http(),
            "POST",
            &format!("/admin/revoke?username={username}"),
            &[("X-Ternd-Admin", "1")],
        )
    }

    /// The node the iceServers API sends a caller to: the host of its first URL.
    pub fn chosen(&self, query: &str) -> Result<String, u16> {
        let r = self.get(&format!("/api/ice-servers{query}"));
        if r.status != 200 {
            return Err(r.status);
        }
        let url = r.json()["iceServers"][0]["urls"][0].as_str().unwrap().to_string();
        let host = url.split(':').nth(1).unwrap();
        Ok(host.to_string())
    }

    /// Users of this node's live allocations (admin view).
    pub fn allocation_users(&self) -> Vec<String> {
        self.get("/admin/allocations").json()["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["user"].as_str().unwrap().to_string())
            .collect()
    }

    /// The second line of /readyz (`cluster=ok` or `cluster=degraded`).
    pub fn cluster_health(&self) -> String {
        self.get("/readyz").body.lines().nth(1).unwrap_or("").to_string()
    }

    /// Kill -9 by PID: no goodbye to Redis.
    pub fn kill9(&mut self) {
        self.ternd.signal(libc::SIGKILL);
        self.ternd.wait_exit(Duration::from_secs(5));
    }
}
