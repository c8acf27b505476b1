//! Log lines that repeat are written once per window with a count.
//!
//! A service whose disk fills or whose log is poisoned meets the same
//! error on every request and every retry; written out each time, that is
//! hundreds of thousands of identical lines that bury the one that
//! matters and fill the disk further. Below the formatter, where a whole
//! line is at hand, a warning or error identical to one written in the
//! last window (all but its timestamp) is held back and counted; when the
//! window ends, one line says how many were held back.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::time::FormatTime;

/// How long a written line holds back its repeats.
pub const FOLD_WINDOW: Duration = Duration::from_secs(10);

/// Most distinct lines remembered at once; past it, new lines are written
/// as they come rather than remembered (memory stays bounded when every
/// line differs).
const REMEMBERED_MAX: usize = 1024;

/// A [`MakeWriter`] that folds repeated warnings and errors written to
/// `W`; other levels pass straight through.
///
/// ```
/// use kappa_service::FoldRepeats;
/// let stderr = FoldRepeats::new(std::io::stderr());
/// tracing_subscriber::fmt().with_writer(stderr).finish();
/// ```
pub struct FoldRepeats<W: Write> {
    state: Arc<Mutex<Folder<W>>>,
}

impl<W: Write> Clone for FoldRepeats<W> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<W: Write + Send + 'static> FoldRepeats<W> {
    /// Folds the lines written to `sink`, and closes windows (writing their
    /// counts) from a thread of its own while no new line comes.
    pub fn new(sink: W) -> Self {
        let folder = Self {
            state: Arc::new(Mutex::new(Folder::new(sink, FOLD_WINDOW))),
        };
        let state = Arc::downgrade(&folder.state);
        // Without it, the count of the last burst before a quiet spell would
        // wait for the next line, which may never come.
        let _ = std::thread::Builder::new()
            .name("kappa-log-repeats".into())
            .spawn(move || {
                while let Some(state) = state.upgrade() {
                    lock(&state).close_windows(Instant::now());
                    drop(state);
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        folder
    }
}

fn lock<W>(m: &Mutex<Folder<W>>) -> MutexGuard<'_, Folder<W>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<'a, W: Write + 'a> MakeWriter<'a> for FoldRepeats<W> {
    type Writer = FoldedLine<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        FoldedLine {
            state: &self.state,
            fold: false,
            text: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        FoldedLine {
            state: &self.state,
            fold: *meta.level() <= Level::WARN,
            text: Vec::new(),
        }
    }
}

/// One line being formatted; handed to the folder whole when dropped.
pub struct FoldedLine<'a, W: Write> {
    state: &'a Mutex<Folder<W>>,
    fold: bool,
    text: Vec<u8>,
}

impl<W: Write> Write for FoldedLine<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for FoldedLine<'_, W> {
    fn drop(&mut self) {
        let text = std::mem::take(&mut self.text);
        let mut folder = lock(self.state);
        if self.fold {
            folder.line(text, Instant::now());
        } else {
            folder.pass(&text);
        }
    }
}

/// What is remembered of a line written in full.
struct Written {
    at: Instant,
    held: u64,
}

/// The folding itself, given the time, so it can be checked without a clock.
struct Folder<W> {
    sink: W,
    window: Duration,
    /// By the line's text without its timestamp.
    recent: HashMap<Vec<u8>, Written>,
    /// The same lines, oldest first (windows are equally long, so this is
    /// also the order they close in).
    order: VecDeque<Vec<u8>>,
}

impl<W: Write> Folder<W> {
    fn new(sink: W, window: Duration) -> Self {
        Self {
            sink,
            window,
            recent: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn pass(&mut self, text: &[u8]) {
        // A log line that cannot be written has nowhere to be reported.
        let _ = self.sink.write_all(text);
    }

    fn line(&mut self, text: Vec<u8>, now: Instant) {
        self.close_windows(now);
        let key = without_timestamp(&text);
        if let Some(written) = self.recent.get_mut(key) {
            written.held += 1;
            return;
        }
        self.pass(&text);
        if self.recent.len() < REMEMBERED_MAX {
            let key = key.to_vec();
            self.order.push_back(key.clone());
            self.recent.insert(key, Written { at: now, held: 0 });
        }
    }

    /// Forgets the lines whose window ended by `now`, writing how many
    /// repeats each held back.
    fn close_windows(&mut self, now: Instant) {
        while let Some(key) = self.order.front() {
            let Some(written) = self.recent.get(key) else {
                self.order.pop_front();
                continue;
            };
            if now.duration_since(written.at) < self.window {
                break;
            }
            let held = written.held;
            if let Some(key) = self.order.pop_front() {
                self.recent.remove(&key);
                if held > 0 {
                    self.summary(&key, held);
                }
            }
        }
    }

    fn summary(&mut self, line: &[u8], held: u64) {
        let mut stamp = String::new();
        let _ = tracing_subscriber::fmt::time::SystemTime.format_time(
            &mut tracing_subscriber::fmt::format::Writer::new(&mut stamp),
        );
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let _ = write!(self.sink, "{stamp} ");
        let _ = self.sink.write_all(body);
        let _ = writeln!(
            self.sink,
            " (repeated {held} more time{} in {} s)",
            if held == 1 { "" } else { "s" },
            self.window.as_secs()
        );
    }
}

/// A formatted line less its first word, the timestamp.
fn without_timestamp(line: &[u8]) -> &[u8] {
    match line.iter().position(|&b| b == b' ') {
        Some(space) => &line[space + 1..],
        None => line,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn folder() -> Folder<Vec<u8>> {
        Folder::new(Vec::new(), Duration::from_secs(10))
    }

    fn lines(f: &Folder<Vec<u8>>) -> Vec<String> {
        String::from_utf8(f.sink.clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn at(t0: Instant, ms: u64, text: &str) -> (Vec<u8>, Instant) {
        (
            format!("2026-12-07T07:{ms}Z {text}\n").into_bytes(),
            t0 + Duration::from_millis(ms),
        )
    }

    #[test]
    fn identical_lines_in_a_window_are_written_once_then_counted() {
        let mut f = folder();
        let t0 = Instant::now();
        for ms in 0..1000 {
            let (text, now) = at(t0, ms, "ERROR kappa: command write failed error=disk full");
            f.line(text, now);
        }
        assert_eq!(lines(&f).len(), 1, "{:?}", lines(&f));
        f.close_windows(t0 + Duration::from_secs(10));
        let written = lines(&f);
        assert_eq!(written.len(), 2, "{written:?}");
        assert!(
            written[1].ends_with(
                "command write failed error=disk full (repeated 999 more times in 10 s)"
            ),
            "{}",
            written[1]
        );
    }

    #[test]
    fn a_line_differing_in_more_than_its_timestamp_is_written() {
        let mut f = folder();
        let t0 = Instant::now();
        f.line(at(t0, 0, "WARN a: one").0, t0);
        f.line(at(t0, 1, "WARN a: two").0, t0);
        f.line(at(t0, 2, "WARN a: one").0, t0);
        assert_eq!(lines(&f).len(), 2);
    }

    #[test]
    fn a_window_without_repeats_closes_silently_and_the_next_line_is_written() {
        let mut f = folder();
        let t0 = Instant::now();
        f.line(at(t0, 0, "WARN a: once").0, t0);
        let later = t0 + Duration::from_secs(11);
        f.line(at(t0, 11_000, "WARN a: once").0, later);
        let written = lines(&f);
        assert_eq!(written.len(), 2, "{written:?}");
        assert!(written.iter().all(|l| !l.contains("repeated")));
    }

    #[test]
    fn memory_is_bounded_when_every_line_differs() {
        let mut f = folder();
        let t0 = Instant::now();
        for n in 0..(REMEMBERED_MAX + 100) {
            f.line(format!("t WARN a: record {n}\n").into_bytes(), t0);
        }
        assert_eq!(f.recent.len(), REMEMBERED_MAX);
        assert_eq!(lines(&f).len(), REMEMBERED_MAX + 100);
    }
}
