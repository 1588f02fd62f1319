//! Apache Kafka for the tests: real brokers (KRaft, broker and controller in one process) on
//! 127.0.0.1, each with its data in a temporary folder, started by `deploy/kafka/kafka.sh` from
//! the Maven Central jars that `make tools` fetched.
//!
//! [`Broker`] is one node, the default for every test; [`KafkaCluster`] is several nodes in one
//! controller quorum, for tests that kill a broker or need replication.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::free_port;
use crate::process::ChildProcess;

/// How long a node may take to start: a JVM on a busy 2-core machine, storage formatted first.
const START_PATIENCE: Duration = Duration::from_secs(120);

/// What the broker logs when it serves clients.
const READY_LINE: &str = "Kafka Server started";

/// `deploy/kafka/kafka.sh` in this checkout.
fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kafka/kafka.sh")
}

/// One node's ports and place in its cluster.
struct NodeSpec {
    node_id: u32,
    port: u16,
    controller_port: u16,
}

/// A Kafka node process, its folder and how to start it again.
struct Node {
    spec: NodeSpec,
    dir: PathBuf,
    args: Vec<String>,
    process: Option<ChildProcess>,
    starts: u32,
}

impl Node {
    fn spawn(&mut self) {
        self.starts += 1;
        let mut command = Command::new("bash");
        command.arg(launcher()).arg("node").args(&self.args);
        let log = self
            .dir
            .join(format!("broker-{}.{}.log", self.spec.node_id, self.starts));
        self.process = Some(ChildProcess::spawn(
            &format!("kafka node {}", self.spec.node_id),
            command,
            log,
        ));
    }

    /// Waits for the ready line in this start's log.
    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + START_PATIENCE;
        loop {
            let process = self.process.as_mut().expect("the node was started");
            process.assert_running();
            if process.log().contains(READY_LINE) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not start within {START_PATIENCE:?}; log:\n{}",
                process.name,
                process.tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Several Kafka nodes in one KRaft quorum on 127.0.0.1, stopped when dropped.
pub struct KafkaCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl KafkaCluster {
    /// Starts `size` nodes, each a broker and a controller, with Kafka's internal topics
    /// replicated `replication` times, and waits until every node serves clients.
    /// `min_insync` is the brokers' default `min.insync.replicas`.
    pub async fn start(size: u32, replication: u32, min_insync: u32) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder for the brokers");
        let specs: Vec<NodeSpec> = (1..=size)
            .map(|node_id| NodeSpec {
                node_id,
                port: free_port(),
                controller_port: free_port(),
            })
            .collect();
        let voters = specs
            .iter()
            .map(|s| format!("{}@127.0.0.1:{}", s.node_id, s.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        // Every node of a cluster is formatted with the same id (16 bytes, URL-safe base64).
        let cluster_id = "aG9va3N0cmVhbS10ZXN0cw";
        // Several JVMs share two cores in a test: a smaller heap each than `make run`'s.
        let heap = if size > 1 { "384m" } else { "512m" };
        let mut nodes: Vec<Node> = specs
            .into_iter()
            .map(|spec| {
                let node_dir = dir.path().join(format!("node-{}", spec.node_id));
                let args = [
                    ("--dir", node_dir.display().to_string()),
                    ("--node-id", spec.node_id.to_string()),
                    ("--port", spec.port.to_string()),
                    ("--controller-port", spec.controller_port.to_string()),
                    ("--voters", voters.clone()),
                    ("--cluster-id", cluster_id.to_owned()),
                    ("--replication", replication.to_string()),
                    ("--min-insync", min_insync.to_string()),
                    ("--heap", heap.to_owned()),
                ]
                .into_iter()
                .flat_map(|(k, v)| [k.to_owned(), v])
                .collect();
                std::fs::create_dir_all(&node_dir).expect("a folder for a broker");
                Node {
                    spec,
                    dir: node_dir,
                    args,
                    process: None,
                    starts: 0,
                }
            })
            .collect();
        // The nodes start together: a controller quorum needs a majority of its voters.
        for node in &mut nodes {
            node.spawn();
        }
        for node in &mut nodes {
            node.wait_ready().await;
        }
        Self { nodes, _dir: dir }
    }

    /// The bootstrap servers of every node, comma-separated.
    pub fn bootstrap_servers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.spec.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The process ids of the running nodes (the JVMs: the launcher execs java).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.process.as_ref().and_then(ChildProcess::pid))
            .collect()
    }

    fn node(&mut self, index: usize) -> &mut Node {
        &mut self.nodes[index]
    }

    /// Kills node `index` (0-based) at once, as a crash would (SIGKILL to the JVM).
    pub async fn kill(&mut self, index: usize) {
        let process = self
            .node(index)
            .process
            .take()
            .unwrap_or_else(|| panic!("kafka node {index} is not running"));
        process.kill().await;
    }

    /// Starts node `index` again on its ports and data, and waits until it serves clients.
    pub async fn restart(&mut self, index: usize) {
        let node = self.node(index);
        assert!(node.process.is_none(), "kafka node {index} is running");
        node.spawn();
        node.wait_ready().await;
    }
}

/// One Kafka node on 127.0.0.1 with its data in a temporary folder, stopped when dropped.
pub struct Broker {
    pub address: String,
    cluster: KafkaCluster,
}

impl Broker {
    /// Starts a single-node Kafka (replication 1) and waits until it serves clients.
    pub async fn start() -> Self {
        let cluster = KafkaCluster::start(1, 1, 1).await;
        Self {
            address: cluster.bootstrap_servers(),
            cluster,
        }
    }

    /// The node's process id (the JVM), for benchmarks that read its CPU time and memory.
    pub fn pid(&self) -> Option<u32> {
        self.cluster.pids().first().copied()
    }
}
