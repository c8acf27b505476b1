//! `kappa topics ...`

use anyhow::Context;
use clap::Subcommand;
use kappa_log::{CleanupPolicy, Log, TopicSpec};

/// Topic administration.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create {
        /// Topic name: letters, digits, '.', '_' and '-'.
        name: String,
        /// Number of partitions.
        #[arg(long)]
        partitions: u32,
        /// Delete batches older than this many milliseconds.
        #[arg(long)]
        retention_ms: Option<i64>,
        /// Delete the oldest batches of a partition past this many bytes.
        #[arg(long)]
        retention_bytes: Option<u64>,
        /// delete or compact.
        #[arg(long, default_value = "delete", value_parser = parse_policy)]
        cleanup_policy: CleanupPolicy,
        /// Largest record accepted, in bytes.
        #[arg(long)]
        max_record_bytes: Option<u32>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions, offsets and configuration.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and its records.
    Delete {
        /// Topic name.
        name: String,
    },
}

fn parse_policy(s: &str) -> Result<CleanupPolicy, String> {
    s.parse().map_err(|e: kappa_log::LogError| e.to_string())
}

/// Runs a topics subcommand.
pub fn run(log: &dyn Log, cmd: TopicsCommand) -> anyhow::Result<()> {
    match cmd {
        TopicsCommand::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
            cleanup_policy,
            max_record_bytes,
        } => {
            let mut spec = TopicSpec::new(&name, partitions);
            spec.config.retention_ms = retention_ms;
            spec.config.retention_bytes = retention_bytes;
            spec.config.cleanup_policy = cleanup_policy;
            if let Some(max) = max_record_bytes {
                spec.config.max_record_bytes = max;
            }
            log.create_topic(&spec)
                .with_context(|| format!("creating topic {name:?}"))?;
            println!("created topic {name} with {partitions} partition(s)");
        }
        TopicsCommand::List => {
            for spec in log.list_topics()? {
                println!(
                    "{}\tpartitions={}\tcleanup.policy={}",
                    spec.name, spec.partitions, spec.config.cleanup_policy
                );
            }
        }
        TopicsCommand::Describe { name } => {
            let d = log.describe_topic(&name)?;
            let c = &d.spec.config;
            let opt = |v: Option<String>| v.unwrap_or_else(|| "unlimited".to_owned());
            println!("topic: {}", d.spec.name);
            println!("partitions: {}", d.spec.partitions);
            println!("cleanup.policy: {}", c.cleanup_policy);
            println!(
                "retention.ms: {}",
                opt(c.retention_ms.map(|v| v.to_string()))
            );
            println!(
                "retention.bytes: {}",
                opt(c.retention_bytes.map(|v| v.to_string()))
            );
            println!("max.record.bytes: {}", c.max_record_bytes);
            if c.cleanup_policy == CleanupPolicy::Compact {
                println!("delete.retention.ms: {}", c.delete_retention_ms);
            }
            println!("partition\tstart\tend\toffsets\tbytes");
            for p in &d.partitions {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    p.partition,
                    p.start_offset,
                    p.end_offset,
                    p.end_offset - p.start_offset,
                    p.size_bytes
                );
            }
        }
        TopicsCommand::Delete { name } => {
            log.delete_topic(&name)
                .with_context(|| format!("deleting topic {name:?}"))?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}
