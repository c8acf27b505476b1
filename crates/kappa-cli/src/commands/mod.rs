//! One module per subcommand.

pub mod app;
pub mod bench;
pub mod bench_broker;
pub mod bench_gateway;
pub mod bench_kafka;
pub mod bench_postgres;
pub mod bench_streams;
pub mod broker;
pub mod consume;
pub mod demo;
pub mod load;
pub mod produce;
pub mod topics;

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// A spinner counting records on stderr, shown only when stderr is a terminal.
pub fn progress(message: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg} {human_pos} records ({per_sec})")
    {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar
}

/// A fresh scratch directory for a benchmark inside `dir`, removed when
/// dropped; `dir` is made first if missing, as a user naming a new place
/// expects.
pub fn bench_scratch(dir: &std::path::Path) -> anyhow::Result<tempfile::TempDir> {
    use anyhow::Context;
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            tempfile::Builder::new()
                .prefix("kappa-bench-")
                .tempdir_in(dir)
        })
        .with_context(|| format!("making a scratch directory in {}", dir.display()))
}

/// Prints a benchmark's `report` as one JSON line, after the human-readable
/// `table` unless `json_only`: scripts read the JSON from the last line
/// either way.
pub fn print_bench_report(
    report: &impl Serialize,
    json_only: bool,
    table: impl FnOnce(),
) -> anyhow::Result<()> {
    if !json_only {
        table();
    }
    println!("{}", serde_json::to_string(report)?);
    Ok(())
}
