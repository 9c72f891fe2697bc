//! A private PostgreSQL server in a temporary directory: Debian's `postgresql` binaries,
//! `initdb` into the directory, `pg_ctl` on a free loopback port, one password-protected
//! superuser. For tests and for running several brokers on one machine. PostgreSQL
//! refuses to run as root, so as root the server runs as the `postgres` user (which the
//! Debian package creates). The server stops and its directory goes when this is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a private PostgreSQL server could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TempPostgresError(String);

fn fail(what: impl Into<String>) -> TempPostgresError {
    TempPostgresError(what.into())
}

/// The superuser of the private server.
const USER: &str = "oriel";

pub struct TempPostgres {
    dir: PathBuf,
    bin: PathBuf,
    /// The user the server runs as, when this process is root.
    run_as: Option<&'static str>,
    port: u16,
    password: String,
}

impl TempPostgres {
    /// Starts a server; its binaries come from `ORIEL_PG_BINDIR`, else the newest
    /// `/usr/lib/postgresql/*/bin`.
    pub fn start() -> Result<Self, TempPostgresError> {
        let bin = bindir()?;
        let run_as = is_root().then_some("postgres");
        let dir =
            std::env::temp_dir().join(format!("oriel-pg-{}", &crate::password::new_token()[..12]));
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("cannot make {}: {e}", dir.display())))?;
        let password = crate::password::new_token();
        std::fs::write(dir.join("password"), &password)
            .map_err(|e| fail(format!("cannot write the password file: {e}")))?;
        let mut server = TempPostgres {
            dir,
            bin,
            run_as,
            port: 0,
            password,
        };
        if let Some(user) = run_as {
            run(Command::new("chown").arg("-R").arg(user).arg(&server.dir))?;
        }
        run(server
            .command("initdb")
            .arg("-D")
            .arg(server.dir.join("data"))
            .args(["-U", USER, "-A", "scram-sha-256", "-E", "UTF8"])
            .args(["--no-sync", "--no-instructions"])
            .arg(format!(
                "--pwfile={}",
                server.dir.join("password").display()
            )))?;
        server.port = free_port()?;
        server.resume()?;
        Ok(server)
    }

    /// Stops the server at once, as a crash or a restart would (clients lose their
    /// connections); [`TempPostgres::resume`] starts it again on the same port and data.
    pub fn stop(&self) -> Result<(), TempPostgresError> {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]))
    }

    /// Starts the (stopped) server on its port.
    pub fn resume(&self) -> Result<(), TempPostgresError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-o", &options, "-w", "start"]))
    }

    /// Freezes the server: SIGSTOP to the postmaster and every backend. Connections stay
    /// open and every query waits, as on a database host that stalls (swapping, a
    /// storage hiccup, a paused VM); [`TempPostgres::thaw`] lets it go on.
    pub fn freeze(&self) -> Result<(), TempPostgresError> {
        self.signal_all("-STOP")
    }

    /// Lets a frozen server go on.
    pub fn thaw(&self) -> Result<(), TempPostgresError> {
        self.signal_all("-CONT")
    }

    fn signal_all(&self, signal: &str) -> Result<(), TempPostgresError> {
        let pidfile = self.dir.join("data/postmaster.pid");
        let postmaster = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|text| text.lines().next().map(|l| l.trim().to_string()))
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| fail(format!("no server pid in {}", pidfile.display())))?;
        let mut pids = vec![postmaster.clone()];
        let entries = std::fs::read_dir("/proc").map_err(|e| fail(format!("/proc: {e}")))?;
        for entry in entries.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid …: the command may hold spaces and parentheses.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if parent == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        run(Command::new("kill").arg(signal).args(&pids))
    }

    /// The URL of database `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// Creates database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String, TempPostgresError> {
        use sqlx::Connection;
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(fail(format!("{name:?} is not a plain database name")));
        }
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .map_err(|e| fail(format!("cannot reach the private PostgreSQL: {e}")))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .map_err(|e| fail(format!("cannot create database {name}: {e}")))?;
        let _ = conn.close().await;
        Ok(self.url(name))
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a set-up command; its output is the error when it fails.
fn run(command: &mut Command) -> Result<(), TempPostgresError> {
    let out = command
        .output()
        .map_err(|e| fail(format!("cannot run {:?}: {e}", command.get_program())))?;
    if out.status.success() {
        return Ok(());
    }
    Err(fail(format!(
        "{:?} failed: {}{}",
        command.get_program(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

fn bindir() -> Result<PathBuf, TempPostgresError> {
    if let Some(dir) = std::env::var_os("ORIEL_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .filter(|(_, p)| p.join("bin/initdb").exists())
        .max_by_key(|(version, _)| *version);
    newest.map(|(_, p)| p.join("bin")).ok_or_else(|| {
        fail(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin \
             (./scripts/install-deps installs Debian's postgresql; or set ORIEL_PG_BINDIR)",
        )
    })
}

/// Whether this process runs as root (`/proc/self` belongs to its effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A loopback TCP port free now (the server takes it a moment later).
fn free_port() -> Result<u16, TempPostgresError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| fail(format!("no free loopback port: {e}")))
}
