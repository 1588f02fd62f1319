//! A real Kafka-protocol broker for the tests: Tansu, with SQLite storage in a temporary folder.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::process::ChildProcess;
use crate::{eventually, free_port};

/// A running broker on 127.0.0.1, stopped when dropped.
pub struct Broker {
    pub address: String,
    _process: ChildProcess,
    _dir: tempfile::TempDir,
}

fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("HOOKSTREAM_TANSU") {
        return PathBuf::from(path);
    }
    let in_cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin/tansu"));
    match in_cargo_home {
        Ok(path) if path.exists() => path,
        _ => PathBuf::from("tansu"),
    }
}

impl Broker {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder for the broker");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let mut command = Command::new(tansu_binary());
        command
            .current_dir(dir.path())
            // Tansu reads settings from its environment and a `.env` in its folder; give it
            // neither, so nothing from the test's environment leaks in.
            .env_clear()
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            // Tansu resolves the SQLite path against its working folder, even with `///`.
            .args(["--storage-engine", "sqlite://broker.db"]);
        let process = ChildProcess::spawn(
            "tansu (installed by `make tools`)",
            command,
            dir.path().join("broker.log"),
        );
        eventually("the broker to listen", Duration::from_secs(20), || {
            let address = address.clone();
            async move {
                tokio::net::TcpStream::connect(&address)
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await;
        Self {
            address,
            _process: process,
            _dir: dir,
        }
    }
}
