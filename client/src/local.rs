//! Processes of a deployment on this machine: `oriel demo`, the benchmarks and the
//! tests start brokers and display servers as an operator would, and read the start-up
//! lines they print.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use oriel_transport::Fingerprint;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// How long a starting process has to print a start-up line.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The output lines of a child, read as it prints them.
pub type OutputLines = Lines<BufReader<ChildStdout>>;

/// Starts `cmd` with its output captured (read it with [`banner`]) and killed when
/// dropped; `RUST_LOG` is the command's, else this process's, else `warn`.
pub fn spawn(cmd: &mut Command) -> anyhow::Result<(Child, OutputLines)> {
    set_default_log(cmd, "warn");
    let mut child = cmd
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.as_std().get_program()))?;
    let stdout = child.stdout.take().context("stdout not captured")?;
    Ok((child, BufReader::new(stdout).lines()))
}

/// Sets `RUST_LOG` for `cmd` to `filter` unless the command or this process has one.
fn set_default_log(cmd: &mut Command, filter: &str) {
    let given = cmd.as_std().get_envs().any(|(k, _)| k == "RUST_LOG");
    if !given && std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", filter);
    }
}

/// The value of the first output line that starts with `prefix`.
pub async fn banner(lines: &mut OutputLines, prefix: &str) -> anyhow::Result<String> {
    let read = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(v) = line.strip_prefix(prefix) {
                return Ok(v.trim().to_string());
            }
        }
        bail!("the process exited before printing '{prefix}' (see its log)")
    };
    tokio::time::timeout(START_LIMIT, read)
        .await
        .with_context(|| format!("no '{prefix}' within {START_LIMIT:?}"))?
}

/// Keeps reading `lines` so that the child never blocks on a full pipe.
pub fn drain(mut lines: OutputLines) {
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
}

/// A binary built into the same directory as the running one (`cargo build --workspace`
/// puts them all there).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot locate the running executable")?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!(
            "{name} not found next to {}; build the whole workspace first: cargo build --release --workspace",
            me.display()
        );
    }
    Ok(path)
}

/// Asks a child to stop (SIGTERM), then kills it if it lingers.
pub async fn stop(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: plain kill(2) on the PID of a child we spawned and still own.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// One `oriel-broker serve` process.
pub struct BrokerProcess {
    /// `None` once killed.
    pub child: Option<Child>,
    pub url: String,
    pub host_addr: SocketAddr,
    pub fingerprint: Fingerprint,
    /// Its name in the store (`hosts.linked_by`, the reconcile lease's holder).
    pub id: String,
    pub dir: PathBuf,
}

impl BrokerProcess {
    /// Starts `binary serve` on data directory `dir` (made if missing), with the API and
    /// the host link on free loopback ports and `args` after; its log goes to
    /// `dir/broker.log`.
    pub async fn start<I, S>(binary: &Path, dir: &Path, args: I) -> anyhow::Result<BrokerProcess>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
        let log = std::fs::File::create(dir.join("broker.log"))?;
        let mut cmd = Command::new(binary);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--host-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .stderr(log);
        // The log is a file: it can say what the broker did, not only what went wrong.
        set_default_log(&mut cmd, "info,quinn=warn,sqlx=warn");
        let (child, mut lines) = spawn(&mut cmd)?;
        let url = banner(&mut lines, "oriel-broker: API on ").await?;
        let host_addr = banner(&mut lines, "oriel-broker: host link on ")
            .await?
            .parse()?;
        let fingerprint = banner(
            &mut lines,
            "oriel-broker: certificate SHA-256 fingerprint: ",
        )
        .await?
        .parse()
        .map_err(anyhow::Error::msg)?;
        drain(lines);
        let id = std::fs::read_to_string(dir.join("broker-id"))
            .context("the broker wrote no broker-id")?
            .trim()
            .to_string();
        Ok(BrokerProcess {
            child: Some(child),
            url,
            host_addr,
            fingerprint,
            id,
            dir: dir.to_path_buf(),
        })
    }

    /// `n` brokers on data directories `dir/broker0`, `dir/broker1` …, each started with
    /// `args`, one after another: with a cluster key the first one's keys become the
    /// cluster's.
    pub async fn start_all<S: AsRef<OsStr>>(
        binary: &Path,
        dir: &Path,
        n: u32,
        args: &[S],
    ) -> anyhow::Result<Vec<BrokerProcess>> {
        let mut brokers = Vec::new();
        for i in 0..n {
            let data = dir.join(format!("broker{i}"));
            let broker = Self::start(binary, &data, args)
                .await
                .with_context(|| format!("broker{i} (its log: {}/broker.log)", data.display()))?;
            brokers.push(broker);
        }
        Ok(brokers)
    }

    /// The join token display servers register with (the first broker's, shared by a
    /// cluster).
    pub fn join_token(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.dir.join("join-token"))
            .context("the broker wrote no join token")?
            .trim()
            .to_string())
    }

    /// Kills it with SIGKILL: no goodbye to its hosts, its lease or its store.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Stops it as an operator would (SIGTERM).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child).await;
        }
    }
}
