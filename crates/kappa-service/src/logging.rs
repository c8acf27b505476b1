//! Where a Kappa binary's log lines go.

/// Sends the process's log lines to standard error, at the levels
/// `KAPPA_LOG_LEVEL` names (a `tracing` filter such as `info` or
/// `warn,kappa_log=debug`); `warn` when it is unset or does not parse.
/// Standard output stays for what a command prints. A warning or error
/// repeated within [`FOLD_WINDOW`](crate::FOLD_WINDOW) is written once,
/// then counted ([`FoldRepeats`](crate::FoldRepeats)); colours only on a
/// terminal.
pub fn log_to_stderr() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAPPA_LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(crate::FoldRepeats::new(std::io::stderr()))
        .init();
}
