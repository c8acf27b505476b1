//! Crash safety with the real binary: `kappa produce` appending numbered
//! records in batches is killed with SIGKILL at random moments, many times.
//! After each kill the log must reopen holding an exact prefix of what was
//! sent, made of whole batches, containing every acknowledged record, and
//! appends must continue at the next offset.
//!
//! The kill moments come from a seeded generator; the seed is printed and
//! `KAPPA_CRASH_SEED=<seed>` replays a run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{Rng, stdout_of_success};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use kappa_log::{EmbeddedLog, FetchLimits, Log, TopicPartition};

const ROUNDS: usize = 30;
/// Most lines one round may send, so a round ends even if the kill came late.
const LINES_PER_ROUND_MAX: u64 = 2_000_000;

fn kappa() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kappa"))
}

/// Every record's value must be its own offset; returns the end offset.
fn verify_prefix(dir: &Path) -> u64 {
    let log = EmbeddedLog::open(dir).expect("the log must reopen after a kill");
    let tp = TopicPartition::new("numbers", 0);
    let range = log.offsets(&tp).unwrap();
    assert_eq!(range.start, 0);
    let mut out = Vec::new();
    let mut at = 0;
    while at < range.end {
        out.clear();
        let o = log
            .fetch(&[(tp.clone(), at)], FetchLimits::default(), &mut out)
            .unwrap();
        for r in &out {
            let value = std::str::from_utf8(r.value.as_deref().unwrap()).unwrap();
            assert_eq!(
                value,
                r.offset.to_string(),
                "record at offset {} is not the number sent",
                r.offset
            );
        }
        at = o.next_offsets[0];
    }
    range.end
}

#[test]
fn sigkill_during_appends_loses_and_duplicates_nothing() {
    let mut rng = Rng::from_env("crash test");
    let dir = tempfile::tempdir().unwrap();
    let log_arg = dir.path().to_str().unwrap().to_owned();
    stdout_of_success(
        kappa()
            .args(["--log", &log_arg, "topics", "create", "numbers"])
            .args(["--partitions", "1"])
            .output()
            .unwrap(),
    );

    let mut end = 0u64;
    let mut mid_batch_kills = 0;
    for round in 0..ROUNDS {
        let batch = [1u64, 7, 100, 1000][rng.below(4) as usize];
        let mut child = kappa()
            .args(["--log", &log_arg, "produce", "numbers", "--print-positions"])
            .args(["--batch-size", &batch.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let start = end;
        let feeder = std::thread::spawn(move || {
            let mut buf = Vec::with_capacity(64 * 1024);
            let mut n = start;
            while n < start + LINES_PER_ROUND_MAX {
                buf.clear();
                for _ in 0..1000 {
                    writeln!(buf, "{n}").unwrap();
                    n += 1;
                }
                // The pipe breaks when the child is killed; that ends the round.
                if stdin.write_all(&buf).is_err() {
                    return;
                }
            }
        });

        // Kill after a random number of acknowledged records, so the kill
        // lands at a random point of some later commit.
        let kill_after = 1 + rng.below(batch * 20);
        let mut acked_end = start;
        let mut first_ack = None;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while acked_end - start < kill_after {
            let Some(Ok(line)) = lines.next() else { break };
            let offset: u64 = line.rsplit('/').next().unwrap().parse().unwrap();
            first_ack.get_or_insert(offset);
            assert_eq!(offset, acked_end, "acknowledgements must be consecutive");
            acked_end = offset + 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        drop(lines);
        feeder.join().unwrap();

        assert_eq!(
            first_ack,
            Some(start),
            "round {round}: appends must continue at the next offset"
        );
        let new_end = verify_prefix(dir.path());
        assert!(
            new_end >= acked_end,
            "round {round}: acknowledged up to {acked_end} but the log ends at {new_end}"
        );
        assert_eq!(
            (new_end - start) % batch,
            0,
            "round {round}: a batch of {batch} was cut (log went from {start} to {new_end})"
        );
        if new_end > acked_end {
            mid_batch_kills += 1;
        }
        end = new_end;
    }
    eprintln!(
        "{ROUNDS} kills; {mid_batch_kills} landed after a commit reached disk but before its acknowledgement was read; final end offset {end}"
    );
    assert!(end > 0);
}

/// A kill while the log directory is first created must not leave a
/// directory that can't be opened (fjall's own creation is not atomic).
#[test]
fn sigkill_while_creating_the_log_leaves_it_openable() {
    let seed = kappa_log::now_ms() as u64 | 1;
    eprintln!("creation crash seed: {seed}");
    let mut rng = Rng(seed);
    for round in 0..60 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = kappa()
            .arg("--log")
            .arg(dir.path())
            .args(["topics", "list"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Fault injection, not synchronization: kill somewhere in the first
        // few milliseconds, where creation happens.
        let until =
            std::time::Instant::now() + std::time::Duration::from_micros(500 + rng.below(8000));
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let log = EmbeddedLog::open(dir.path());
        assert!(log.is_ok(), "round {round}: {}", log.err().unwrap());
    }
}
