//! `kappa app ...`: operations on stream-processing applications.

use anyhow::Context;
use clap::Subcommand;
use kappa_log::Log;

/// Application administration.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Drop an application's stores and internal topics and move its input
    /// positions back to the start; its next start reprocesses everything.
    /// Stop the application first.
    Reset {
        /// The application id (its consumer group and store prefix).
        #[arg(long)]
        application_id: String,
    },
    /// Like reset, but the next start only rebuilds the stores up to where
    /// the application had got, without writing its outputs again; then it
    /// carries on. Stop the application first.
    Rebuild {
        /// The application id (its consumer group and store prefix).
        #[arg(long)]
        application_id: String,
    },
}

/// Runs an app subcommand.
pub fn run(log: &dyn Log, cmd: AppCommand) -> anyhow::Result<()> {
    match cmd {
        AppCommand::Reset { application_id } => {
            let report = kappa_streams::reset_application(log, &application_id)
                .with_context(|| format!("resetting application {application_id:?}"))?;
            print_report("reset", &application_id, &report);
        }
        AppCommand::Rebuild { application_id } => {
            let report = kappa_streams::rebuild_application(log, &application_id)
                .with_context(|| format!("rebuilding application {application_id:?}"))?;
            print_report("rebuild", &application_id, &report);
        }
    }
    Ok(())
}

fn print_report(what: &str, application_id: &str, report: &kappa_streams::ResetReport) {
    println!(
        "{what} {application_id}: {} input position(s) back to the start, {} store entries dropped, internal topics deleted: [{}]",
        report.positions_reset,
        report.store_entries_dropped,
        report.internal_topics_deleted.join(", ")
    );
}
