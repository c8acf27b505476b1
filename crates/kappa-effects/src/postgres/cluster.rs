//! A throwaway PostgreSQL server for tests and benchmarks: its own data
//! directory and loopback port, removed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::EffectsError;

/// A private PostgreSQL server (`initdb` + `pg_ctl`), stopped and deleted
/// on drop. It finds the server binaries in `$KAPPA_PG_BIN` or the newest
/// `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package). As root it
/// runs the server as the `postgres` user, which PostgreSQL requires.
///
/// ```no_run
/// let pg = kappa_effects::postgres::TempCluster::start()?;
/// println!("connect with {}", pg.url());
/// # Ok::<_, kappa_effects::EffectsError>(())
/// ```
pub struct TempCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn server_binaries() -> Result<PathBuf, EffectsError> {
    if let Some(dir) = std::env::var_os("KAPPA_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        EffectsError::Config(
            "PostgreSQL's server programs were not found (no /usr/lib/postgresql/*/bin/initdb): \
             install them with `apt-get install -y postgresql` (scripts/test.sh does), or set KAPPA_PG_BIN"
                .to_owned(),
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

impl TempCluster {
    /// Initializes and starts a server on a free loopback port.
    ///
    /// # Errors
    ///
    /// Missing binaries, or `initdb`/`pg_ctl` failed (their output is in the message).
    pub fn start() -> Result<Self, EffectsError> {
        let bin = server_binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("kappa-pg-")
            .tempdir()
            .map_err(|e| EffectsError::io("making the server's directory", e))?;
        let as_postgres = is_root();
        if as_postgres {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir.path()),
                "giving the server's directory to the postgres user",
            )?;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| EffectsError::io("finding a free port", e))?
            .port();
        let cluster = Self {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = cluster.data();
        run(
            cluster
                .command("initdb")
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data),
            "initdb",
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    fn start_server(&self) -> Result<(), EffectsError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        run(
            self.command("pg_ctl")
                .args(["-w", "-t", "60", "-D"])
                .arg(self.data())
                .args(["-l"])
                .arg(self.log_file())
                .args(["-o", &options, "start"]),
            "pg_ctl start",
        )
    }

    /// Crashes the server (immediate stop: no checkpoint, connections cut)
    /// and starts it again on the same port; it recovers from its WAL.
    ///
    /// # Errors
    ///
    /// `pg_ctl` failed.
    pub fn crash_and_restart(&self) -> Result<(), EffectsError> {
        run(
            self.command("pg_ctl").args(["-D"]).arg(self.data()).args([
                "-m",
                "immediate",
                "-w",
                "stop",
            ]),
            "pg_ctl stop",
        )?;
        self.start_server()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// A connection string for the `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's own log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The directory holding data, socket and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), EffectsError> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| EffectsError::io(format!("running {what}"), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(EffectsError::Config(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D"])
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
