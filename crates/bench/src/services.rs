//! Starting the release binaries as child processes, and their peak memory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct Service {
    pub name: String,
    child: Child,
}

/// `target/release/<binary>` of this workspace.
pub fn release_binary(root: &Path, binary: &str) -> PathBuf {
    root.join("target").join("release").join(binary)
}

impl Service {
    pub fn spawn(
        name: &str,
        binary: &Path,
        env: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<Service> {
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().cloned())
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()?;
        Ok(Service {
            name: name.to_string(),
            child,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Peak resident memory so far (VmHWM), in MiB.
    pub fn peak_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// SIGTERM, then up to 30 s for a graceful exit; returns the peak memory.
    pub async fn stop(mut self) -> Option<f64> {
        let peak = self.peak_mib();
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
        peak
    }
}
