//! A progress line for long operations, on a terminal.
//!
//! Catching up with a long log at start can take minutes; a terminal shows
//! how far it is, how fast it goes and how long is left, redrawn in place.
//! Where standard error is not a terminal (a log file, a supervisor) nothing
//! is drawn: carriage returns would only clutter the file.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often a followed operation's line is redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(250);

/// The line for `done` of `total` records of `label`, `elapsed` after it
/// started at `first` done: count, rate and time left (when it can tell).
///
/// ```
/// use std::time::Duration;
/// let line = kappa_service::progress_line("catching up", 0, 250_000, 1_000_000, Duration::from_secs(5));
/// assert_eq!(line, "catching up: 250,000 of 1,000,000 records (25%), 50,000/s, 15 s left");
/// ```
pub fn progress_line(label: &str, first: u64, done: u64, total: u64, elapsed: Duration) -> String {
    let mut line = format!("{label}: {} of {} records", grouped(done), grouped(total));
    if let Some(share) = (done.min(total) * 100).checked_div(total) {
        line += &format!(" ({share}%)");
    }
    let secs = elapsed.as_secs_f64();
    let moved = done.saturating_sub(first);
    if secs >= 0.5 && moved > 0 {
        let rate = moved as f64 / secs;
        line += &format!(", {}/s", grouped(rate as u64));
        let left = total.saturating_sub(done) as f64 / rate;
        line += &format!(", {} left", duration(left));
    }
    line
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn duration(secs: f64) -> String {
    let s = secs.ceil() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Redraws a progress line on standard error while it lives, when that is
/// a terminal; dropping it draws the last figures and ends the line.
///
/// ```no_run
/// let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
/// let seen = done.clone();
/// let shown = kappa_service::Progress::follow("restoring", move || {
///     (seen.load(std::sync::atomic::Ordering::Relaxed), 1_000_000)
/// });
/// // ... the long operation advances `done` ...
/// drop(shown);
/// ```
pub struct Progress {
    stop: Arc<AtomicBool>,
    drawer: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Follows `probe` (records done, records in all) under `label`.
    pub fn follow(
        label: impl Into<String>,
        probe: impl Fn() -> (u64, u64) + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let drawer = std::io::stderr().is_terminal().then(|| {
            let (label, stop) = (label.into(), stop.clone());
            std::thread::Builder::new()
                .name("kappa-progress".into())
                .spawn(move || draw(&label, &probe, &stop))
                .ok()
        });
        Self {
            stop,
            drawer: drawer.flatten(),
        }
    }
}

fn draw(label: &str, probe: &dyn Fn() -> (u64, u64), stop: &AtomicBool) {
    let started = Instant::now();
    let (first, _) = probe();
    let mut widest = 0;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let (done, total) = probe();
        let line = progress_line(label, first, done, total, started.elapsed());
        widest = widest.max(line.len());
        let mut err = std::io::stderr().lock();
        // Padded, so a shorter line wipes the end of a longer one.
        let _ = write!(err, "\r{line:<widest$}");
        if stopping {
            let _ = writeln!(err);
            return;
        }
        let _ = err.flush();
        drop(err);
        std::thread::park_timeout(REDRAW_EVERY);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(drawer) = self.drawer.take() {
            drawer.thread().unpark();
            let _ = drawer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_count_share_rate_and_time_left() {
        let line = progress_line(
            "restoring",
            1_000,
            41_000,
            1_001_000,
            Duration::from_secs(4),
        );
        assert_eq!(
            line,
            "restoring: 41,000 of 1,001,000 records (4%), 10,000/s, 1 min 36 s left"
        );
    }

    #[test]
    fn without_movement_there_is_no_rate_to_tell() {
        assert_eq!(
            progress_line("catching up", 5, 5, 0, Duration::from_secs(3)),
            "catching up: 5 of 0 records"
        );
        assert_eq!(
            progress_line("catching up", 0, 9, 10, Duration::from_millis(100)),
            "catching up: 9 of 10 records (90%)"
        );
    }

    #[test]
    fn long_waits_read_in_hours() {
        assert_eq!(
            progress_line("r", 0, 1, 7_201, Duration::from_secs(1)),
            "r: 1 of 7,201 records (0%), 1/s, 2 h 0 min left"
        );
    }
}
