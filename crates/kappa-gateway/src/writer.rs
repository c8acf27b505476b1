//! Group commit for the command topic: requests that arrive together are
//! appended in one log commit (one fsync under `always` durability), so the
//! write path's cost per command falls as the load rises.

use std::sync::Arc;

use kappa_log::{Commit, Log, LogError, Position, ProducerRecord};
use tokio::sync::{mpsc, oneshot};

/// Largest number of commands in one commit.
const BATCH_MAX: usize = 4096;

/// Why a command was not written: the log's own error, shared by every
/// command of the commit that failed, so the answer can tell a disk short
/// of space (it passes) from a failed log.
pub(crate) type WriteError = Arc<LogError>;

struct Job {
    record: ProducerRecord,
    reply: oneshot::Sender<Result<Position, WriteError>>,
}

/// Appends records to one topic from a dedicated thread, batching requests.
pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread for `topic`; it stops when the writer is dropped.
    pub(crate) fn start(log: Arc<dyn Log>, topic: String) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(BATCH_MAX * 4);
        let thread = std::thread::Builder::new()
            .name(format!("kappa-gateway-writer-{topic}"))
            .spawn(move || run(&*log, &topic, rx))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Appends one record and returns its position once it is committed.
    pub(crate) async fn write(&self, record: ProducerRecord) -> Result<Position, WriteError> {
        let (reply, rx) = oneshot::channel();
        let stopped = || Arc::new(LogError::Closed);
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(Job { record, reply })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    /// Lets the thread finish what it was given, then waits for it, so the
    /// log is released when the gateway is dropped.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(log: &dyn Log, topic: &str, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(BATCH_MAX);
    while let Some(first) = rx.blocking_recv() {
        jobs.push(first);
        while jobs.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut commit = Commit::new();
        commit.append_all(topic, None, jobs.iter().map(|j| j.record.clone()));
        match log.commit(commit) {
            Ok(receipt) => {
                for (job, position) in jobs.drain(..).zip(receipt.positions) {
                    let _ = job.reply.send(Ok(position));
                }
            }
            Err(e)
                if jobs.len() > 1
                    && matches!(e, LogError::RecordTooLarge { .. } | LogError::MissingKey(_)) =>
            {
                // One bad record must not fail its neighbours: retry alone.
                for job in jobs.drain(..) {
                    let result = log
                        .append(topic, vec![job.record])
                        .and_then(|p| {
                            p.into_iter().next().ok_or_else(|| {
                                LogError::Storage("an append returned no position".into())
                            })
                        })
                        .map_err(Arc::new);
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, topic, "command write failed");
                let e = Arc::new(e);
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
