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

/// CPU used so far by one process: its command name (`postgres`,
/// `template-api`, `tansu`, ...), the seconds `/proc/<pid>/stat` counts (in
/// 10 ms clock ticks, including threads that exited) and the seconds its
/// live threads' `/proc/<pid>/task/*/schedstat` count (nanoseconds; `None`
/// where the kernel keeps no schedstat).
#[derive(Debug, Clone)]
pub struct ProcessCpu {
    pub comm: String,
    pub ticks_secs: f64,
    pub exact_secs: Option<f64>,
}

/// [`ProcessCpu`] of every process on the machine, by pid.
pub type CpuSnapshot = std::collections::BTreeMap<u32, ProcessCpu>;

pub fn cpu_by_command() -> CpuSnapshot {
    // USER_HZ is 100 on Linux for /proc accounting.
    const TICKS: f64 = 100.0;
    let mut out = CpuSnapshot::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after comm.
        let (Some(u), Some(s)) = (fields.get(11), fields.get(12)) else {
            continue;
        };
        let ticks_secs =
            (u.parse::<f64>().unwrap_or(0.0) + s.parse::<f64>().unwrap_or(0.0)) / TICKS;
        out.insert(
            pid,
            ProcessCpu {
                comm,
                ticks_secs,
                exact_secs: threads_on_cpu(&entry.path()),
            },
        );
    }
    out
}

/// Seconds on CPU of a process's live threads: the first field of each
/// `task/<tid>/schedstat`, in nanoseconds.
fn threads_on_cpu(proc_dir: &std::path::Path) -> Option<f64> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(proc_dir.join("task")).ok()?.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

/// CPU seconds one process used between two snapshots: the nanosecond
/// count of its threads, unless the tick count shows more than two ticks
/// beyond it -- then threads that exited in between took their time with
/// them, and the ticks (which keep it) are used.
fn used_between(before: Option<&ProcessCpu>, after: &ProcessCpu) -> f64 {
    let before = before.filter(|b| b.comm == after.comm);
    let ticks = after.ticks_secs - before.map_or(0.0, |b| b.ticks_secs);
    let exact = match (before.map(|b| b.exact_secs), after.exact_secs) {
        (Some(Some(b)), Some(a)) => Some(a - b),
        (None, Some(a)) => Some(a),
        _ => None,
    };
    match exact {
        Some(exact) if exact >= 0.0 && ticks <= exact + 0.02 => exact,
        _ => ticks.max(0.0),
    }
}

/// CPU milliseconds per request, by command, between two snapshots (only
/// commands that used at least 1% of the total). Counted per process: one
/// that started in between counts whole, one that exited in between is
/// missed (summing by name instead made a Postgres backend that exited
/// during a run subtract its whole life from the run's Postgres CPU).
pub fn cpu_per_request(
    before: &CpuSnapshot,
    after: &CpuSnapshot,
    requests: u64,
) -> Vec<(String, f64)> {
    let mut by_command = std::collections::BTreeMap::<String, f64>::new();
    for (pid, now) in after {
        *by_command.entry(now.comm.clone()).or_default() += used_between(before.get(pid), now);
    }
    let mut rows: Vec<(String, f64)> = by_command.into_iter().filter(|(_, d)| *d > 0.0).collect();
    // Kernel threads (virtio, memory management) are the VM's, not the system's.
    rows.retain(|(k, _)| {
        ![
            "kworker",
            "kdamond",
            "ksoftirqd",
            "rcu_",
            "migration/",
            "kswapd",
        ]
        .iter()
        .any(|p| k.starts_with(p))
    });
    let total: f64 = rows.iter().map(|(_, d)| d).sum();
    rows.retain(|(_, d)| *d >= total * 0.01);
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows.into_iter()
        .map(|(k, d)| (k, d * 1000.0 / requests.max(1) as f64))
        .collect()
}

/// How long [`idle_cpu`] measures.
pub const IDLE_SECS: f64 = 5.0;

/// The commands of the system under test and its stack, as the idle
/// figures list them (the machine runs other services of its own).
const STACK: [&str; 8] = [
    "template-api",
    "warmup-worker",
    "recommender",
    "postgres",
    "redis-server",
    "tansu",
    "s3s-fs",
    "prewarm-bench",
];

/// CPU milliseconds a second, by command, over [`IDLE_SECS`] with no
/// request in flight: what each process of the stack costs just for
/// running (timers, pollers). Every one of [`STACK`] that ran.
pub async fn idle_cpu() -> Vec<(String, f64)> {
    let before = cpu_by_command();
    tokio::time::sleep(Duration::from_secs_f64(IDLE_SECS)).await;
    let mut by_command = std::collections::BTreeMap::<String, f64>::new();
    for (pid, now) in &cpu_by_command() {
        if STACK.contains(&now.comm.as_str()) {
            *by_command.entry(now.comm.clone()).or_default() += used_between(before.get(pid), now);
        }
    }
    let mut rows: Vec<(String, f64)> = by_command
        .into_iter()
        .map(|(command, secs)| (command, secs * 1000.0 / IDLE_SECS))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows
}

/// A local service's `/metrics` text on `port`, if it answers.
async fn metrics_text(http: &reqwest::Client, port: u16) -> Option<String> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    async { http.get(&url).send().await?.text().await }
        .await
        .ok()
}

/// The API's designs served by copy, by cause, from its `/metrics`.
pub async fn miss_causes(http: &reqwest::Client, ops_port: u16) -> Vec<(String, f64)> {
    let Some(text) = metrics_text(http, ops_port).await else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| {
            l.starts_with("prewarm_designs_created_total{") && l.contains("served_from=\"copy\"")
        })
        .filter_map(|l| {
            let cause = l.split("cause=\"").nth(1)?.split('"').next()?.to_string();
            let value = l.rsplit(' ').next()?.parse().ok()?;
            Some((cause, value))
        })
        .collect()
}

/// The worker's refills asked for by designs (a pop or a miss) that copied
/// something, from its `/metrics`: how many, and their mean time from the
/// request's send to the refill's end (`prewarm_refill_lag_seconds`), in
/// milliseconds.
pub async fn refill_lag(http: &reqwest::Client, port: u16) -> Option<(f64, f64)> {
    let text = metrics_text(http, port).await?;
    let total = |series: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(series))
            .filter(|l| l.contains("reason=\"pool_pop\"") || l.contains("reason=\"pool_miss\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (count, sum) = (
        total("prewarm_refill_lag_seconds_count{"),
        total("prewarm_refill_lag_seconds_sum{"),
    );
    (count > 0.0).then(|| (count, sum * 1000.0 / count))
}

/// `cause n, ...` (the causes with a miss), or `none`.
pub fn misses_cell(misses: &[(String, f64)]) -> String {
    let cells: Vec<String> = misses
        .iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(cause, n)| format!("{cause} {n:.0}"))
        .collect();
    if cells.is_empty() {
        "none".into()
    } else {
        cells.join(", ")
    }
}
