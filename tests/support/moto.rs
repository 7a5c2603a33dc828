//! moto server as the STS and Organizations stand-in: one per test on a free 127.0.0.1 port,
//! started from `<repo>/.venv` (installed by `.ci/install-moto`) and killed when dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub struct Moto {
    pub url: String,
    _child: tokio::process::Child,
}

impl Moto {
    pub async fn start() -> Moto {
        let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
        assert!(
            exe.exists(),
            "{} is missing: run .ci/install-moto to install moto's server for the AWS tests",
            exe.display()
        );
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            listener.local_addr().expect("addr").port()
        };
        let child = tokio::process::Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.post(format!("{url}/moto-api/reset")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on {url}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Moto { url, _child: child }
    }

    /// Wipes every account, organization and key.
    pub async fn reset(&self) {
        reqwest::Client::new()
            .post(format!("{}/moto-api/reset", self.url))
            .send()
            .await
            .expect("reset moto");
    }
}
