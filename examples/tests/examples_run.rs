//! Runs each example program and checks what it prints against figures
//! worked out by hand from the program's fixed input (the reasoning is in
//! each test), so a program that runs but computes something else fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::process::Command;

/// Runs `program` to its end; its standard output, after checking it exited
/// 0. Each program bounds its own waits (30 s a step) and fails with a
/// message rather than hang.
fn run(program: &str) -> String {
    let output = Command::new(program)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} exited with {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Asserts `stdout` has each of `lines` (leading and trailing spaces aside).
fn assert_lines(stdout: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            stdout.lines().any(|l| l.trim() == *line),
            "no line {line:?} in:\n{stdout}"
        );
    }
}

/// Asserts `stdout` has a line starting with each of `prefixes`.
fn assert_prefixes(stdout: &str, prefixes: &[&str]) {
    for prefix in prefixes {
        assert!(
            stdout.lines().any(|l| l.trim().starts_with(prefix)),
            "no line starting {prefix:?} in:\n{stdout}"
        );
    }
}

#[test]
fn windowed_count_counts_each_minute_and_keeps_the_late_view_aside() {
    let out = run(env!("CARGO_BIN_EXE_windowed-count"));
    // Views at 10:00:05 alice, :20 bob, :40 alice, 10:01:10 alice, :15 bob,
    // then 10:00:50 alice (stream time 10:01:15 < 10:01:00 + 30 s grace: the
    // window is open), 10:01:45 carol (stream time passes 10:01:30: the
    // first minute closes), 10:00:55 bob (late), 10:02:05 alice.
    // Eight views are counted, one update each.
    assert_lines(
        &out,
        &[
            "8 updates on views-per-minute; the last per window and user is its count:",
            "[10:00:00, 10:01:00) alice: 3",
            "[10:00:00, 10:01:00) bob: 1",
            "[10:01:00, 10:02:00) alice: 1",
            "[10:01:00, 10:02:00) bob: 1",
            "[10:01:00, 10:02:00) carol: 1",
            "[10:02:00, 10:03:00) alice: 1",
            "late, not counted: bob viewed /docs at 10:00:55",
            "late records: 1",
        ],
    );
    assert_prefixes(&out, &["reason: late record"]);
    let windows = out.lines().filter(|l| l.starts_with('[')).count();
    assert_eq!(windows, 6, "one line per window and user:\n{out}");
}

#[test]
fn enrich_join_meets_each_order_with_the_customer_row_of_its_time() {
    let out = run(env!("CARGO_BIN_EXE_enrich-join"));
    // o-1 and o-2 meet the first rows; c-3 never has a row (left join: kept,
    // without a customer); Ada moves to FR before o-4, after o-1.
    assert_lines(
        &out,
        &[
            "o-1 keyboard 49.00 for c-1: Ada (UK)",
            "o-2 monitor 189.00 for c-2: Grace (US)",
            "o-3 cable 9.00 for c-3: no such customer",
            "o-4 mouse 25.00 for c-1: Ada (FR)",
        ],
    );
    let orders = out.lines().filter(|l| l.starts_with("o-")).count();
    assert_eq!(
        orders, 4,
        "one enriched order per order, the row update adds none:\n{out}"
    );
}

#[test]
fn commander_answers_commands_and_serves_the_balance() {
    let out = run(env!("CARGO_BIN_EXE_commander"));
    // 25 then 17 are accepted (25, 42); -5 breaks the schema's minimum of 1
    // and is not written; the keyless deposit is written (offset 2 of the
    // one commands partition) and rejected by the processor. The view has
    // processed offsets 0 to 2 and holds 25 + 17.
    assert_lines(
        &out,
        &[
            "deposit 25 to acct-1: 201 deposited, balance 25, parent = command: true",
            "deposit 17 to acct-1: 201 deposited, balance 42, parent = command: true",
            "deposit 10 to no account: 409 deposit-refused: no account: send it as the key",
            "view balances/acct-1: 42 (as of commands/0/2)",
        ],
    );
    assert_prefixes(
        &out,
        &["serving at http://127.0.0.1:", "deposit -5 to acct-1: 422 "],
    );
}

#[test]
fn webhook_effect_delivers_each_subscribed_event_once_and_records_it() {
    let out = run(env!("CARGO_BIN_EXE_webhook-effect"));
    // Three of the four events are order-shipped: three calls, each with the
    // key <runner>:<event id>; the receiver answers 200 at once, so each has
    // one attempt. order-placed is passed over: no call, no outcome.
    assert_lines(
        &out,
        &[
            "webhook received 3 calls:",
            "order-1 order-shipped: order-webhook-delivered after 1 attempt(s), status 200",
            "order-2 order-placed: no outcome, not subscribed",
            "order-3 order-shipped: order-webhook-delivered after 1 attempt(s), status 200",
            "order-4 order-shipped: order-webhook-delivered after 1 attempt(s), status 200",
        ],
    );
    assert_prefixes(
        &out,
        &[
            "order-1: order-shipped via DHL (Idempotency-Key order-webhook:",
            "order-3: order-shipped via UPS (Idempotency-Key order-webhook:",
            "order-4: order-shipped via DHL (Idempotency-Key order-webhook:",
        ],
    );
    let calls = out
        .lines()
        .filter(|l| l.contains("(Idempotency-Key "))
        .count();
    assert_eq!(calls, 3, "{out}");
}
