//! Invocation records are written in batches by one task, off the invocation's path: the
//! dispatcher hands a record to a bounded channel and moves on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wisp_core::InvocationRecord;
use wisp_store::Store;

const CHANNEL_CAPACITY: usize = 4096;
const BATCH_MAX: usize = 512;
const BATCH_WINDOW: Duration = Duration::from_millis(50);

enum Msg {
    Record(Box<InvocationRecord>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct RecordSink {
    tx: mpsc::Sender<Msg>,
}

impl RecordSink {
    pub fn start(store: Arc<dyn Store>, retain: u64) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(writer(store, retain, rx));
        RecordSink { tx }
    }

    /// Queues a record. When the writer falls behind, this waits for room rather than
    /// dropping the record or growing without bound.
    pub async fn submit(&self, record: InvocationRecord) {
        let msg = Msg::Record(Box::new(record));
        if let Err(mpsc::error::TrySendError::Full(msg)) = self.tx.try_send(msg) {
            let _ = self.tx.send(msg).await;
        }
    }

    /// Waits until every record submitted so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn writer(store: Arc<dyn Store>, retain: u64, mut rx: mpsc::Receiver<Msg>) {
    let mut batch: Vec<InvocationRecord> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let take = |msg: Msg, batch: &mut Vec<InvocationRecord>, waiters: &mut Vec<_>| match msg {
            Msg::Record(r) => batch.push(*r),
            Msg::Flush(w) => waiters.push(w),
        };
        take(first, &mut batch, &mut waiters);
        let window = tokio::time::sleep(BATCH_WINDOW);
        tokio::pin!(window);
        while batch.len() < BATCH_MAX && waiters.is_empty() {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => take(m, &mut batch, &mut waiters),
                    None => break,
                },
                _ = &mut window => break,
            }
        }
        if !batch.is_empty() {
            let records = std::mem::take(&mut batch);
            let store = store.clone();
            let result =
                tokio::task::spawn_blocking(move || store.append_records(&records, retain)).await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "could not write invocation records"),
                Err(e) => tracing::error!(error = %e, "the record writer panicked"),
            }
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}
