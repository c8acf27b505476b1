//! The disk fills under load, on a small file system the test mounts (a
//! tmpfs): past the free-space floor commands are refused with 507 and a
//! Retry-After, and nothing acknowledged is lost; reads go on and the
//! service stays healthy; once space is freed, commands are taken and
//! decided again without a restart; and the whole episode logs a handful
//! of lines, not one per refused command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::{Duration, Instant};

use common::service::{Server, interrupt, remove_limit, serve_logged};
use kappa_gateway::load::{HttpClient, Reply};
use kappa_log::{EmbeddedLog, Log};
use serde_json::Value;

/// The file system: large enough that the storage engine's flushes fit
/// in what the floor keeps back.
const TMPFS_MIB: u64 = 512;
/// The service's floor (its own commits go on down to half of it).
const FLOOR_MIB: u64 = 192;
/// Room left above the floor when the load starts.
const HEADROOM_MIB: u64 = 12;
const CONNECTIONS: u64 = 8;
const CARDS: u64 = 200;
/// Refusals each connection sees before it stops.
const REFUSALS: usize = 20;
/// Commands a connection sends at most: far more than the headroom holds,
/// so reaching it means the floor never refused anything.
const SENT_MAX: u64 = 400_000;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Self {
        let out = Process::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("running mount(8): {e}; install it with `apt-get install mount`")
            });
        assert!(
            out.status.success(),
            "mounting a {mib} MiB tmpfs at {} failed: {}; this test makes a small file \
             system of its own and needs root (CAP_SYS_ADMIN), as scripts/test.sh runs",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Process::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `bytes` the file system must hold into a new file at `path`.
fn fill(path: &Path, bytes: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap();
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
}

/// Sends traffic command `n` (not waiting for its outcome).
async fn send_traffic(c: &mut HttpClient, n: u64) -> Reply {
    let (action, data) = card_limits::traffic::command(n, CARDS);
    let body = serde_json::json!({"action": action, "key": data["card"], "data": data});
    c.post("/commands", &body).await.unwrap()
}

/// A `card-limits serve` whose log is on a tmpfs of its own.
struct OnTmpfs {
    // Fields drop in this order: the file system is unmounted before its
    // mount point goes.
    _tmpfs: Tmpfs,
    mount: tempfile::TempDir,
    _state: tempfile::TempDir,
    log_dir: PathBuf,
    /// The service's log lines.
    lines: PathBuf,
}

impl OnTmpfs {
    fn serve(min_free_mib: u64) -> (Self, Server, SocketAddr) {
        let mount = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let tmpfs = Tmpfs::mount(mount.path(), TMPFS_MIB);
        let log_dir = mount.path().join("log");
        let floor = min_free_mib.to_string();
        let (server, addr, lines) =
            serve_logged(&log_dir, state.path(), &["--min-free-mib", &floor]);
        let scene = Self {
            _tmpfs: tmpfs,
            mount,
            _state: state,
            log_dir,
            lines,
        };
        (scene, server, addr)
    }

    /// Fills the file system up to `room` bytes free; returns the filler.
    fn leave(&self, room: u64) -> PathBuf {
        let filler = self.mount.path().join("filler");
        let free = kappa_log::free_bytes(self.mount.path()).unwrap();
        assert!(free > room, "{free} bytes free of {TMPFS_MIB} MiB");
        fill(&filler, free - room);
        filler
    }
}

/// What one connection saw: the ids of its acknowledged commands, and how
/// many it had refused.
struct Sent {
    acked: Vec<String>,
    refused: usize,
}

/// Sends traffic commands `conn`, `conn + CONNECTIONS`, … until
/// [`REFUSALS`] of them were refused for want of disk.
async fn send_until_refused(addr: SocketAddr, conn: u64) -> Sent {
    let mut c = HttpClient::connect(addr).await.unwrap();
    let mut sent = Sent {
        acked: Vec::new(),
        refused: 0,
    };
    let mut n = conn;
    while sent.refused < REFUSALS {
        assert!(
            n < SENT_MAX * CONNECTIONS,
            "{} commands acknowledged on connection {conn} and none refused: the floor never held",
            sent.acked.len()
        );
        let r = send_traffic(&mut c, n).await;
        match r.status.as_u16() {
            202 => sent.acked.push(r.json()["id"].as_str().unwrap().to_owned()),
            507 => {
                let retry: u64 = r
                    .header("retry-after")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("a 507 without Retry-After: {:?}", r.headers));
                assert!(retry >= 1);
                let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
                assert!(detail.contains("floor"), "{detail}");
                sent.refused += 1;
            }
            other => panic!("command {n}: {other} {}", String::from_utf8_lossy(&r.body)),
        }
        n += CONNECTIONS;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_commands_keeps_what_it_acknowledged_and_recovers_by_itself() {
    let (scene, server, addr) = OnTmpfs::serve(FLOOR_MIB);
    // Leave the service a little room above its floor.
    let filler = scene.leave((FLOOR_MIB + HEADROOM_MIB) << 20);

    let load: Vec<_> = (0..CONNECTIONS)
        .map(|conn| tokio::spawn(send_until_refused(addr, conn)))
        .collect();
    let mut acked = Vec::new();
    let mut refused = 0;
    for connection in load {
        let sent = connection.await.unwrap();
        acked.extend(sent.acked);
        refused += sent.refused;
    }
    assert!(
        !acked.is_empty(),
        "nothing was acknowledged before the floor"
    );

    // Reads go on, and the service is alive: nothing needs a restart.
    let mut c = HttpClient::connect(addr).await.unwrap();
    assert_eq!(c.get("/health").await.unwrap().status, 200);
    for read in ["/cards/card-1", "/views", "/commands?limit=5"] {
        let r = c.get(read).await.unwrap();
        assert_eq!(
            r.status,
            200,
            "{read}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    // Space comes back: commands are taken again, and decided.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = remove_limit(&mut c, "card-1", 10_000).await;
        match r.status.as_u16() {
            201 => break,
            507 if Instant::now() < deadline => {
                // The service reads the free space at most every 100 ms.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!(
                "after freeing space: {other} {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
    }
    drop(c);
    interrupt(server);

    // Nothing acknowledged was lost.
    let log = EmbeddedLog::open(&scene.log_dir).unwrap();
    let written: HashSet<String> = log
        .read_topic("commands")
        .unwrap()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(r.value.as_deref()?).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !written.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged commands are not in the log",
        lost.len(),
        acked.len()
    );

    // A few lines for the whole episode, not one per refused command.
    let said = std::fs::read_to_string(&scene.lines).unwrap();
    let count = said.lines().count();
    assert!(
        count < 100,
        "{count} log lines for {} acknowledged and {refused} refused commands:\n{said}",
        acked.len()
    );
    assert!(
        said.contains("below the floor") && said.contains("back above the floor"),
        "the crossing of the floor is logged each way:\n{said}"
    );
    println!(
        "{} acknowledged, {refused} refused with 507, {count} log lines:\n{said}",
        acked.len()
    );
}

/// With the floor off, the disk really fills: the failed write poisons the
/// log (what reached the disk is unknown), commands are refused with 503,
/// and `/health` says so, for a supervisor to restart the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_for_want_of_disk_poisons_the_log_and_health_says_so() {
    let (scene, server, addr) = OnTmpfs::serve(0);
    let mut c = HttpClient::connect(addr).await.unwrap();
    assert_eq!(c.get("/health").await.unwrap().status, 200);
    scene.leave(HEADROOM_MIB << 20);

    let mut n = 0;
    let failed = loop {
        assert!(n < SENT_MAX, "{n} commands written to a full disk");
        let r = send_traffic(&mut c, n).await;
        if r.status != 202 {
            break r;
        }
        n += 1;
    };
    assert_eq!(
        failed.status,
        503,
        "{}",
        String::from_utf8_lossy(&failed.body)
    );
    let health = c.get("/health").await.unwrap();
    assert_eq!(health.status, 503);
    let detail = health.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(detail.contains("poisoned"), "{detail}");
    drop(server);
}
