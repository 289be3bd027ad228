//! Durability of the namespace: row changes go to redb through one writer thread that commits every
//! pending batch in one durable transaction (group commit) and then acknowledges them all.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{NamenodeError, Result};
use crate::namespace::{Mutation, Namespace};

/// The metadata store of a namenode (`<dir>/namespace.redb`) and its group-commit writer thread.
pub struct Journal {
    _private: (),
}

/// Resolves when a submitted batch is durable (or failed to be).
pub struct Commit {
    inner: CommitInner,
}

enum CommitInner {
    Ready(Option<Result<()>>),
    Waiting(tokio::sync::oneshot::Receiver<Result<()>>),
}

impl Commit {
    fn ready(r: Result<()>) -> Commit {
        Commit {
            inner: CommitInner::Ready(Some(r)),
        }
    }

    /// Wait for the batch outside an async context (tests, shutdown).
    pub fn wait(self) -> Result<()> {
        match self.inner {
            CommitInner::Ready(r) => r.unwrap_or(Ok(())),
            CommitInner::Waiting(rx) => rx.blocking_recv().unwrap_or_else(|_| Err(writer_gone())),
        }
    }
}

fn writer_gone() -> NamenodeError {
    NamenodeError::Storage("journal writer stopped".into())
}

impl Future for Commit {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match &mut self.inner {
            CommitInner::Ready(r) => Poll::Ready(r.take().unwrap_or(Ok(()))),
            CommitInner::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or_else(|_| Err(writer_gone()))),
        }
    }
}

impl Journal {
    /// Open (or create) `dir/namespace.redb` and load the namespace from it. A new store starts with an
    /// empty namespace (root only), persisted before this returns.
    pub fn open(dir: &Path) -> Result<(Journal, Namespace)> {
        let _ = dir;
        Err(NamenodeError::NotSupported(
            "journal (not implemented yet)".into(),
        ))
    }

    /// Queue a batch (from [`Namespace::drain_changes`]) for the next group commit. Does not block, so it
    /// can be called while holding the namespace lock: batches are committed in submit order. The
    /// returned future resolves when the batch is durable; an empty batch resolves at once. After a
    /// storage error every later submit fails.
    pub fn submit(&self, batch: Vec<Mutation>) -> Commit {
        if batch.is_empty() {
            return Commit::ready(Ok(()));
        }
        Commit::ready(Err(NamenodeError::NotSupported(
            "journal (not implemented yet)".into(),
        )))
    }
}
