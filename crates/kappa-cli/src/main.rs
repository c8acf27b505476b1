//! `kappa`: manage topics, produce and consume records, and benchmark the log.
//!
//! ```text
//! kappa topics create orders --partitions 3
//! printf 'a\nb\n' | kappa produce orders
//! kappa consume orders --from-beginning --format json
//! ```

mod commands;
mod location;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::location::LogLocation;

/// The record path allocates many small, short-lived buffers (batches,
/// keys, headers); mimalloc handles that pattern better than glibc's
/// allocator (measured with `kappa bench streams`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kappa's command-line tool.
#[derive(Debug, Parser)]
#[command(
    name = "kappa",
    version,
    about = "Topics, records and benchmarks on a Kappa log"
)]
struct Cli {
    /// Where the log is: a directory (embedded log) or kafka://host:port,...
    #[arg(
        long = "log",
        global = true,
        env = "KAPPA_LOG",
        default_value = "./kappa-data"
    )]
    log: String,

    /// Embedded log durability: always (fsync each commit), interval:<ms>, never.
    #[arg(
        long,
        global = true,
        env = "KAPPA_DURABILITY",
        default_value = "always"
    )]
    durability: kappa_log::Durability,

    /// Embedded log free-space floor in MiB: with less free on its disk,
    /// writes from outside are refused (HTTP 507, Kafka KAFKA_STORAGE_ERROR)
    /// until space is freed; 0 turns it off.
    #[arg(
        long,
        global = true,
        env = "KAPPA_MIN_FREE_MIB",
        default_value_t = kappa_log::MIN_FREE_BYTES_DEFAULT >> 20
    )]
    min_free_mib: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topics(commands::topics::TopicsCommand),
    /// Append one record per line of standard input.
    Produce(commands::produce::ProduceArgs),
    /// Print records of a topic.
    Consume(commands::consume::ConsumeArgs),
    /// Measure the log and topologies.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Operate stream-processing applications.
    #[command(subcommand)]
    App(commands::app::AppCommand),
    /// Serve the gateway's demo service over HTTP.
    Demo(commands::demo::DemoArgs),
    /// Send commands to a running gateway and measure the answers.
    Load(commands::load::LoadArgs),
    /// Serve the log over the Kafka protocol to other processes and Kafka clients.
    Broker(commands::broker::BrokerArgs),
}

fn main() -> ExitCode {
    kappa_service::log_to_stderr();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let location: LogLocation = cli.log.parse()?;
    let options = kappa_log::EmbeddedOptions::default()
        .durability(cli.durability)
        .min_free_bytes(cli.min_free_mib.saturating_mul(1 << 20));
    let open = || location.open(options.clone());
    match cli.command {
        // The benchmark makes its own logs in scratch directories.
        Command::Bench(cmd) => commands::bench::run(cmd),
        Command::Topics(cmd) => commands::topics::run(&*open()?, cmd),
        Command::Produce(args) => commands::produce::run(&*open()?, args),
        Command::Consume(args) => commands::consume::run(&*open()?, args),
        Command::App(cmd) => commands::app::run(&*open()?, cmd),
        Command::Demo(args) => commands::demo::run(&location, options.clone(), &args),
        Command::Load(args) => commands::load::run(&args),
        Command::Broker(args) => commands::broker::run(&location, options.clone(), &args),
    }
}
