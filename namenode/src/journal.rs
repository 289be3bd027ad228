//! Durability of the namespace, in two steps. A batch of row changes is first appended to the
//! *log* (`wal-<first seq>.log` files next to the store) with one `write(2)` and acknowledged: from
//! then on it survives a `kill -9` of the namenode (it is in the kernel's page cache). A writer thread
//! then applies the batches to redb in group commits, each one durable (fsync); [`Journal::sync`]
//! waits for that, which is what makes earlier acknowledgements survive a power loss too (the CLI
//! syncs after every change, the mount on fsync, as a local file system does).
//!
//! On open, log records past the store's `applied_seq` are replayed into the store; a torn last
//! record (a crash inside `write`) ends the replay. Log files whose records are all in the store
//! are deleted by the writer.
//!
//! Layout of `namespace.redb`: `inodes` (id -> format byte + postcard [`InodeRecord`]), `entries`
//! ((parent, name) -> child; a directory's entries are separate rows so a big directory is not
//! rewritten per operation), `calls` ((client id, call id) -> postcard (inode, time): the retry
//! cache, see [`crate::retry_cache`]; a store without the table has no remembered calls), `locks`
//! (inode -> postcard list of the cluster locks held on it; a store without it has none), `xattrs`
//! (inode -> postcard list of its extended attributes, [`XattrRow`]; a store without it has none)
//! and `meta` (format version, the id counters, `applied_seq`). There is no
//! checkpoint that could stall the namenode: the store is always current up to the last group.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use crate::error::{NamenodeError, Result};
use crate::locks::Lock;
use crate::namespace::{Counters, InodeRecord, Mutation, Namespace, Timestamp, XattrRow};
use crate::retry_cache::{CallId, CallRecord};

/// The store's file name inside the namenode data directory.
pub const FILE_NAME: &str = "namespace.redb";
/// Version of the row encoding (stored in `meta` and as the first byte of every inode row). Version 2
/// added inline file content; rows written as version 1 are still read (see [`v1`]), and opening a
/// version-1 store marks it version 2 (a namenode that only reads version 1 then refuses it clearly
/// instead of misreading new rows).
const FORMAT: u64 = 2;
/// Oldest row encoding this namenode reads.
const FORMAT_V1: u64 = 1;
/// Most mutations put in one transaction; the rest of a backlog goes into the next one.
const MAX_GROUP_ROWS: usize = 200_000;
/// How long the writer gathers logged batches before a store commit when nobody syncs.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);
/// A log file is closed and a new one started once it is this long (the writer deletes closed
/// files the store has caught up with).
const LOG_FILE_BYTES: u64 = if cfg!(test) { 4096 } else { 64 << 20 };
/// Bytes before a log record's payload: payload length (u32 LE), sequence number (u64 LE) and the
/// first 8 bytes of the blake3 hash of sequence number and payload.
const RECORD_HEADER: usize = 4 + 8 + 8;

const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
const ENTRIES: TableDefinition<(u64, &str), u64> = TableDefinition::new("entries");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CALLS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("calls");
const LOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("locks");
const XATTRS: TableDefinition<u64, &[u8]> = TableDefinition::new("xattrs");

/// The metadata store of a namenode (`<dir>/namespace.redb`) and its group-commit writer thread.
/// Dropping it lets the writer finish what was submitted, then closes the store.
pub struct Journal {
    /// Batches to the writer thread, in submit order (an unbounded queue, so `submit` never blocks).
    tx: Option<mpsc::Sender<Pending>>,
    /// The first storage error since the journal last worked; while set, every submit fails with
    /// it (the in-memory namespace may be ahead of the store, so nothing more may be acknowledged)
    /// until [`Journal::recover`] succeeds.
    failed: Arc<Mutex<Option<String>>>,
    writer: Option<JoinHandle<()>>,
    /// The store, shared with the writer thread (read by [`Journal::reload`], reopened by
    /// [`Journal::recover`]).
    store: Arc<Mutex<Store>>,
    path: PathBuf,
    /// Counters shared with the writer thread (for metrics).
    stats: Arc<Counts>,
    /// The append side of the log; also taken (briefly) by the writer to delete old log files.
    log: Arc<Mutex<Log>>,
    /// This namespace's identity (see [`Journal::cluster_id`]).
    cluster_id: u64,
}

/// The redb store and the last log record applied to it.
struct Store {
    /// `None` only after [`Journal::recover`] could not reopen it.
    db: Option<Database>,
    /// The last log record in the store: the writer skips batches up to it, which
    /// [`Journal::recover`] may have replayed before the writer got to them.
    applied: u64,
}

impl Store {
    fn db(&self, path: &Path) -> Result<&Database> {
        self.db
            .as_ref()
            .ok_or_else(|| storage(path, "the store is not open (it could not be reopened)"))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps `msg` as the journal's failure unless one is kept already; true if it was kept.
fn set_failed(failed: &Mutex<Option<String>>, msg: &str) -> bool {
    let mut f = lock(failed);
    if f.is_some() {
        return false;
    }
    *f = Some(msg.to_string());
    true
}

/// The log files: the one appended to and the closed ones the store may not have caught up with.
struct Log {
    dir: PathBuf,
    file: File,
    /// Bytes in `file`.
    len: u64,
    /// Sequence number of the next batch.
    next_seq: u64,
    /// First sequence number of every log file, oldest first; the last is `file`.
    files: VecDeque<u64>,
}

impl Log {
    fn path(dir: &Path, first_seq: u64) -> PathBuf {
        dir.join(format!("wal-{first_seq:020}.log"))
    }

    /// Cuts what a failed append may have left after the last whole record (a full disk can take
    /// part of a record), so that appends can go on after it.
    fn cut_torn_tail(&mut self) -> Result<()> {
        let path = Log::path(
            &self.dir,
            self.files.back().copied().unwrap_or(self.next_seq),
        );
        let len = self.len;
        self.file
            .set_len(len)
            .and_then(|()| self.file.seek(SeekFrom::Start(len)))
            .map_err(|e| storage(&path, e))?;
        Ok(())
    }

    /// Starts a new log file whose first record will be `next_seq`.
    fn start(dir: &Path, next_seq: u64, files: VecDeque<u64>) -> Result<Log> {
        let path = Log::path(dir, next_seq);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| storage(&path, e))?;
        let mut files = files;
        files.push_back(next_seq);
        Ok(Log {
            dir: dir.to_path_buf(),
            file,
            len: 0,
            next_seq,
            files,
        })
    }

    /// Appends one batch as one record (one `write`) and returns its sequence number.
    fn append(&mut self, payload: &[u8]) -> std::io::Result<u64> {
        if self.len >= LOG_FILE_BYTES {
            let next = Log::start(&self.dir, self.next_seq, std::mem::take(&mut self.files))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            *self = next;
        }
        let seq = self.next_seq;
        let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&record_check(seq, payload));
        record.extend_from_slice(payload);
        self.file.write_all(&record)?;
        self.len += record.len() as u64;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Deletes the log files whose every record is in the store (`applied` and before).
    fn forget_through(&mut self, applied: u64) {
        while self.files.len() >= 2 && self.files[1] <= applied + 1 {
            let path = Log::path(&self.dir, self.files[0]);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete an applied log file");
            }
            self.files.pop_front();
        }
    }
}

fn record_check(seq: u64, payload: &[u8]) -> [u8; 8] {
    let mut h = blake3::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    out
}

/// What [`read_log`] found.
struct LogRead {
    /// The batches after `applied`, in order, up to the first torn, damaged or missing record.
    batches: Vec<Vec<Mutation>>,
    /// The log files, in order.
    files: Vec<PathBuf>,
    /// Index in `files` of the file where replay stopped at a damaged record or a gap with more
    /// of the log after it (not a torn last write): that file and the later ones hold records
    /// that were not replayed.
    damaged_from: Option<usize>,
}

/// Reads the log files in `dir` (`wal-<first seq>.log`, in the order of that number). A file is
/// read under the name it has: `wal-5.log` is not `wal-000…005.log`.
fn read_log(dir: &Path, applied: u64) -> Result<LogRead> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| storage(dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let first = name
                .strip_prefix("wal-")?
                .strip_suffix(".log")?
                .parse::<u64>()
                .ok()?;
            Some((first, e.path()))
        })
        .collect();
    files.sort_unstable();
    let mut batches = Vec::new();
    let mut expected = applied + 1;
    let mut damaged_from = None;
    'files: for (i, (_, path)) in files.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| storage(path, e))?;
        let mut rest = &bytes[..];
        let last_file = i + 1 == files.len();
        while !rest.is_empty() {
            // A write cut short by a crash leaves a prefix of its record at the end of the last
            // file (or zeros, after a power loss); anything else is damage with log after it.
            let end = |why: &str, rest: &[u8]| {
                let torn_tail = last_file
                    && (rest.len() < RECORD_HEADER
                        || RECORD_HEADER
                            + (u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"))
                                as usize)
                            > rest.len()
                        || rest.iter().all(|&b| b == 0));
                if torn_tail {
                    tracing::warn!(path = %path.display(), seq = expected, why, "log ends in a torn record; replay stops there");
                    None
                } else {
                    tracing::error!(path = %path.display(), seq = expected, why, bytes_after = rest.len(),
                        later_files = files.len() - i - 1,
                        "damaged log record with more log after it: replay stops there; the rest is kept as *.log.dropped");
                    Some(i)
                }
            };
            if rest.len() < RECORD_HEADER {
                damaged_from = end("short header", rest);
                break 'files;
            }
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            let seq = u64::from_le_bytes(rest[4..12].try_into().expect("8 bytes"));
            let check = &rest[12..20];
            let Some(payload) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
                damaged_from = end("short payload", rest);
                break 'files;
            };
            if check != record_check(seq, payload) {
                damaged_from = end("checksum mismatch", rest);
                break 'files;
            }
            if seq > expected {
                // Records acknowledged earlier are in neither the store nor the log: the store
                // was replaced (an empty or older namespace.redb) or log files were removed.
                // Starting would serve a namespace without them, and the datanodes' replicas
                // of their files would be deleted as unclaimed.
                return Err(storage(
                    path,
                    format!(
                        "the metadata store holds changes up to {}, but the log goes on from                          {seq}: {FILE_NAME} was replaced or damaged, or log files are missing.                          Refusing to start on it (start on the right --data-dir, or restore                          {FILE_NAME})",
                        expected - 1
                    ),
                ));
            }
            rest = &rest[RECORD_HEADER + len..];
            if seq < expected {
                continue;
            }
            let batch: Vec<Mutation> = postcard::from_bytes(payload)
                .map_err(|e| storage(path, format!("log record {seq}: {e}")))?;
            batches.push(batch);
            expected += 1;
        }
    }
    Ok(LogRead {
        batches,
        files: files.into_iter().map(|(_, path)| path).collect(),
        damaged_from,
    })
}

/// Running totals of the writer thread.
#[derive(Default)]
struct Counts {
    batches: AtomicU64,
    rows: AtomicU64,
    commits: AtomicU64,
}

/// What the journal has done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Batches acknowledged as durable.
    pub batches: u64,
    /// Row changes written.
    pub rows: u64,
    /// Durable transactions, each holding a group of batches.
    pub commits: u64,
}

/// A batch waiting for the writer, with whom to tell. An empty batch is a [`Journal::sync`] marker.
struct Pending {
    seq: u64,
    batch: Vec<Mutation>,
    done: tokio::sync::oneshot::Sender<Result<()>>,
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

    /// Wait for the batch outside an async context (tests, shutdown). Panics inside a tokio runtime.
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

fn storage(path: &Path, e: impl std::fmt::Display) -> NamenodeError {
    NamenodeError::Storage(format!("{}: {e}", path.display()))
}

/// What a change refused after a storage failure is told.
pub const REFUSED_UNTIL: &str =
    "no change is accepted until the namenode can write its metadata again, which it retries every 2 s";

/// The error of a change refused after the journal failed with `e`.
fn refused(e: &str) -> NamenodeError {
    NamenodeError::Storage(format!("{e} ({REFUSED_UNTIL})"))
}

impl Journal {
    /// Open (or create) `dir/namespace.redb`, replay the log into it and load the namespace. A new
    /// store starts with an empty namespace (root only), persisted before this returns.
    pub fn open(dir: &Path) -> Result<(Journal, Namespace)> {
        Journal::open_with(dir, true)
    }

    /// `open`; without `store`, batches are only logged, never applied to the store (tests: a
    /// namenode killed before its store caught up with the log).
    fn open_with(dir: &Path, store: bool) -> Result<(Journal, Namespace)> {
        std::fs::create_dir_all(dir).map_err(|e| storage(dir, e))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| storage(&path, e))?;
        let applied = applied_seq(&db, &path)?;
        let LogRead {
            batches: replay,
            files: log_files,
            damaged_from,
        } = read_log(dir, applied)?;
        let applied = store_replay(&db, &path, &replay, applied)?;
        let ns = match read_store(&db, &path)? {
            Some(stored) => {
                let (ns, format) = (stored.rows.into_namespace()?, stored.format);
                if format != FORMAT {
                    write_group(&db, &[], true, None).map_err(|e| storage(&path, e))?;
                    tracing::info!(path = %path.display(), from = format, to = FORMAT, "metadata store format upgraded");
                }
                ns
            }
            None => {
                let mut ns = Namespace::new();
                write_group(&db, &[&ns.drain_changes()], true, None)
                    .map_err(|e| storage(&path, e))?;
                ns
            }
        };
        // Every record replayed is in the store now (durably): the old log files go, except
        // those past a damaged record, which are kept aside (renamed, no longer read as log).
        for (i, file) in log_files.iter().enumerate() {
            if damaged_from.is_some_and(|d| i >= d) {
                let kept = PathBuf::from(format!("{}.dropped", file.display()));
                std::fs::rename(file, &kept).map_err(|e| storage(file, e))?;
            } else {
                std::fs::remove_file(file).map_err(|e| storage(file, e))?;
            }
        }
        let cluster_id = cluster_id(&db, &path)?;
        let log = Arc::new(Mutex::new(Log::start(dir, applied + 1, VecDeque::new())?));
        let (tx, rx) = mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let stats = Arc::new(Counts::default());
        let shared_store = Arc::new(Mutex::new(Store {
            db: Some(db),
            applied,
        }));
        if !store {
            std::mem::forget(rx);
            return Ok((
                Journal {
                    tx: Some(tx),
                    failed,
                    writer: None,
                    store: shared_store,
                    path,
                    stats,
                    log,
                    cluster_id,
                },
                ns,
            ));
        }
        let writer = {
            let (store, failed, path, stats, log) = (
                shared_store.clone(),
                failed.clone(),
                path.clone(),
                stats.clone(),
                log.clone(),
            );
            std::thread::Builder::new()
                .name("ringfs-journal".into())
                .spawn(move || writer_loop(store, rx, failed, path, stats, log))
                .map_err(|e| {
                    NamenodeError::Storage(format!("cannot start the journal writer: {e}"))
                })?
        };
        tracing::info!(path = %path.display(), inodes = ns.inode_count(), "namespace loaded");
        Ok((
            Journal {
                tx: Some(tx),
                failed,
                writer: Some(writer),
                store: shared_store,
                path,
                stats,
                log,
                cluster_id,
            },
            ns,
        ))
    }

    /// This namespace's identity, made at random when its store was created and kept in it.
    /// Datanodes keep the id of the namespace they first joined and are refused by any other: a
    /// namenode started on a wrong or empty data dir must not take another namespace's replicas
    /// (it would delete them as unclaimed), nor a datanode dir from another cluster serve its
    /// blocks (block ids repeat across clusters).
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// Totals since open (for metrics and tests).
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            batches: self.stats.batches.load(Ordering::Relaxed),
            rows: self.stats.rows.load(Ordering::Relaxed),
            commits: self.stats.commits.load(Ordering::Relaxed),
        }
    }

    /// The store's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Log a batch (from [`Namespace::drain_changes`]) and queue it for the next group commit. Once
    /// this returns `Ok` the batch survives a crash of the namenode process and may be acknowledged;
    /// the returned future resolves when it is durable in the store (survives a power loss too).
    /// Does not wait for the disk, so it can be called while holding the namespace lock: batches are
    /// logged and committed in call order. An empty batch is durable at once. After a storage error
    /// every later call fails.
    pub fn log(&self, batch: Vec<Mutation>) -> Result<Commit> {
        self.check()?;
        if batch.is_empty() {
            return Ok(Commit::ready(Ok(())));
        }
        let payload = postcard::to_allocvec(&batch)
            .map_err(|e| NamenodeError::Storage(format!("encoding a log record: {e}")))?;
        let mut log = lock(&self.log);
        let seq = log.append(&payload).map_err(|e| {
            // A partial record may be on disk: nothing after it can be logged consistently.
            let msg = format!("{}: appending to the log: {e}", log.dir.display());
            tracing::error!(error = %msg, "refusing further mutations");
            set_failed(&self.failed, &msg);
            refused(&msg)
        })?;
        // Sent under the log lock: the writer sees batches in log order.
        Ok(self.queue(seq, batch))
    }

    /// [`Journal::log`], then wait for the store: resolves when the batch is durable.
    pub fn submit(&self, batch: Vec<Mutation>) -> Commit {
        self.log(batch).unwrap_or_else(|e| Commit::ready(Err(e)))
    }

    /// Resolves when every batch logged before this call is durable in the store.
    pub fn sync(&self) -> Commit {
        if let Err(e) = self.check() {
            return Commit::ready(Err(e));
        }
        let _order = lock(&self.log);
        self.queue(0, Vec::new())
    }

    /// The storage failure that made the namenode refuse changes, if any (for `report`).
    pub fn failure(&self) -> Option<String> {
        lock(&self.failed).clone()
    }

    /// Fails once a log write or a store commit failed: from then on nothing may change (the log
    /// may end in a torn record, or the store may be behind the log), so a caller checks this
    /// before it changes the namespace in memory.
    pub fn check(&self) -> Result<()> {
        match lock(&self.failed).as_deref() {
            Some(e) => Err(refused(e)),
            None => Ok(()),
        }
    }

    /// Rebuilds the namespace from what is on disk: the store plus the log records after it (up to
    /// a torn one). The namenode calls this when a batch it already applied in memory could not
    /// be logged, so that it shows nothing the log does not hold (a restart would lose it).
    pub fn reload(&self) -> Result<Namespace> {
        // No log file is appended to or deleted while the store and the log are read.
        let log = lock(&self.log);
        let store = lock(&self.store);
        let mut stored = read_store(store.db(&self.path)?, &self.path)?
            .ok_or_else(|| storage(&self.path, "the store holds no namespace"))?;
        for batch in read_log(&log.dir, stored.applied)?.batches {
            stored.rows.apply(batch);
        }
        stored.rows.into_namespace()
    }

    /// After a storage failure (a full disk, an I/O error): cuts a torn record off the log,
    /// reopens the store, replays into it the log records it lacks and returns the namespace the
    /// disk now holds, which is everything ever acknowledged. `Ok(None)` if nothing failed. Fails,
    /// and changes stay refused, while the disk still refuses. On success changes stay refused
    /// until [`Journal::resume`]: the caller swaps the namespace in first, under its lock.
    pub fn recover(&self) -> Result<Option<Namespace>> {
        if lock(&self.failed).is_none() {
            return Ok(None);
        }
        if self.writer.as_ref().is_some_and(|w| w.is_finished()) {
            return Err(writer_gone());
        }
        let mut log = lock(&self.log);
        log.cut_torn_tail()?;
        let mut store = lock(&self.store);
        // redb refuses every call after a failed write until it is reopened.
        drop(store.db.take());
        let db = Database::create(&self.path).map_err(|e| storage(&self.path, e))?;
        let db = &*store.db.insert(db);
        let applied = applied_seq(db, &self.path)?;
        let LogRead {
            batches,
            damaged_from,
            ..
        } = read_log(&log.dir, applied)?;
        let last = applied + batches.len() as u64;
        if damaged_from.is_some() || last + 1 != log.next_seq {
            return Err(storage(
                &log.dir,
                format!(
                    "the log holds records up to {last}, but {} were logged: not recovering",
                    log.next_seq - 1
                ),
            ));
        }
        store_replay(db, &self.path, &batches, applied)?;
        let ns = read_store(db, &self.path)?
            .ok_or_else(|| storage(&self.path, "the store holds no namespace"))?
            .rows
            .into_namespace()?;
        store.applied = last;
        log.forget_through(last);
        Ok(Some(ns))
    }

    /// Accepts changes again after a successful [`Journal::recover`].
    pub fn resume(&self) {
        if let Some(was) = lock(&self.failed).take() {
            tracing::info!(failure = %was, "metadata storage works again: changes are accepted");
        }
    }

    /// Test hook: appends go to `file` from now on (`/dev/full`: every write fails with ENOSPC).
    #[cfg(test)]
    pub(crate) fn redirect_log(&self, file: File) {
        lock(&self.log).file = file;
    }

    fn queue(&self, seq: u64, batch: Vec<Mutation>) -> Commit {
        let (done, rx) = tokio::sync::oneshot::channel();
        match self
            .tx
            .as_ref()
            .map(|tx| tx.send(Pending { seq, batch, done }))
        {
            Some(Ok(())) => Commit {
                inner: CommitInner::Waiting(rx),
            },
            Some(Err(_)) => {
                // The writer thread died (a panic): nothing reaches the store any more and the
                // logs are never trimmed. What is logged survives (replay at the next start), but
                // later changes are refused, as after a storage error, instead of piling up.
                let msg = format!("{}: the journal writer stopped", self.path.display());
                if set_failed(&self.failed, &msg) {
                    tracing::error!(error = %msg, "refusing further mutations");
                }
                Commit::ready(Err(writer_gone()))
            }
            None => Commit::ready(Err(writer_gone())),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            if w.join().is_err() {
                tracing::error!(path = %self.path.display(), "journal writer panicked");
            }
        }
    }
}

/// The writer thread: take everything queued, commit it as one transaction, acknowledge every batch.
fn writer_loop(
    store: Arc<Mutex<Store>>,
    rx: mpsc::Receiver<Pending>,
    failed: Arc<Mutex<Option<String>>>,
    path: PathBuf,
    stats: Arc<Counts>,
    log: Arc<Mutex<Log>>,
) {
    while let Ok(first) = rx.recv() {
        let mut rows = first.batch.len();
        // Nobody waits for a logged batch but a sync (or a replica deletion): gather batches for
        // up to GATHER unless one is a sync marker, so a stream of small mutations costs a few
        // hundred store commits a second instead of one each (each is an fsync and a wake-up).
        let mut synced = first.batch.is_empty();
        let deadline = std::time::Instant::now() + GATHER;
        let mut group = vec![first];
        while rows < MAX_GROUP_ROWS {
            let next = if synced {
                rx.try_recv().ok()
            } else {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                rx.recv_timeout(left).ok()
            };
            let Some(p) = next else { break };
            rows += p.batch.len();
            synced |= p.batch.is_empty();
            group.push(p);
        }
        // Not in the match: its guard would live through the arms, which set the failure.
        let failure = lock(&failed).clone();
        let result = match failure {
            Some(e) => Err(NamenodeError::Storage(e)),
            None => commit_group(&store, &group, &path).map_err(|msg| {
                tracing::error!(error = %msg, "journal commit failed; refusing further mutations");
                set_failed(&failed, &msg);
                // These batches are in the log: the namespace shows them and a restart (or the
                // recovery once the disk works again) stores them. Saying only "failed" made a
                // mkdir that then existed look like a failed command that changed something.
                NamenodeError::Storage(format!(
                    "{msg}: the change is made and in the namenode's log, but could not be \
                     stored durably (a power loss before the namenode stores it would lose it); \
                     {REFUSED_UNTIL}"
                ))
            }),
        };
        if let Ok(Some(applied)) = result {
            lock(&log).forget_through(applied);
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats
                .batches
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
        }
        let result = result.map(|_| ());
        for p in group {
            let _ = p.done.send(result.clone());
        }
    }
}

/// Stores the batches of `group` the store lacks, in one durable transaction. Returns the last
/// log record stored, if it stored any.
fn commit_group(
    store: &Mutex<Store>,
    group: &[Pending],
    path: &Path,
) -> std::result::Result<Option<u64>, String> {
    let mut store = lock(store);
    // Sync markers carry no rows, and batches up to `applied` were stored by a recovery: a group
    // of only those has nothing to write.
    let batches: Vec<&Pending> = group
        .iter()
        .filter(|p| !p.batch.is_empty() && p.seq > store.applied)
        .collect();
    let Some(applied) = batches.iter().map(|p| p.seq).max() else {
        return Ok(None);
    };
    let db = store.db(path).map_err(|e| e.to_string())?;
    let rows: Vec<&Vec<Mutation>> = batches.iter().map(|p| &p.batch).collect();
    write_group(db, &rows, false, Some(applied)).map_err(|e| format!("{}: {e}", path.display()))?;
    store.applied = applied;
    Ok(Some(applied))
}

/// Stores `replay`, the log records after `applied` (from [`read_log`]), in one durable
/// transaction; returns the last log record the store then holds.
fn store_replay(db: &Database, path: &Path, replay: &[Vec<Mutation>], applied: u64) -> Result<u64> {
    let last = applied + replay.len() as u64;
    if !replay.is_empty() {
        let batches: Vec<&Vec<Mutation>> = replay.iter().collect();
        write_group(db, &batches, false, Some(last)).map_err(|e| storage(path, e))?;
        tracing::info!(path = %path.display(), batches = replay.len(), "log replayed into the store");
    }
    Ok(last)
}

/// Apply batches, in order, in one durable transaction (with `set_format`, also record [`FORMAT`]:
/// on creation and upgrade only, so a commit does not rewrite the meta table for nothing), and
/// record `applied` as the last log record in the store.
fn write_group(
    db: &Database,
    batches: &[&Vec<Mutation>],
    set_format: bool,
    applied: Option<u64>,
) -> std::result::Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut inodes = txn.open_table(INODES)?;
        let mut entries = txn.open_table(ENTRIES)?;
        let mut meta = txn.open_table(META)?;
        let mut calls = txn.open_table(CALLS)?;
        let mut locks_table = txn.open_table(LOCKS)?;
        let mut xattrs_table = txn.open_table(XATTRS)?;
        if set_format {
            meta.insert("format", FORMAT)?;
        }
        if let Some(seq) = applied {
            meta.insert("applied_seq", seq)?;
        }
        let mut buf = Vec::new();
        for m in batches.iter().flat_map(|b| b.iter()) {
            match m {
                Mutation::PutInode(r) => {
                    buf.clear();
                    buf.push(FORMAT as u8);
                    buf = postcard::to_extend(r, buf)
                        .map_err(|e| redb::Error::Corrupted(format!("encode: {e}")))?;
                    inodes.insert(r.id, buf.as_slice())?;
                }
                Mutation::DeleteInode(id) => {
                    inodes.remove(id)?;
                }
                Mutation::PutEntry {
                    parent,
                    name,
                    child,
                } => {
                    entries.insert((*parent, name.as_str()), child)?;
                }
                Mutation::DeleteEntry { parent, name } => {
                    entries.remove((*parent, name.as_str()))?;
                }
                Mutation::SetCounters(c) => {
                    meta.insert("next_inode", c.next_inode)?;
                    meta.insert("next_block", c.next_block)?;
                    meta.insert("next_generation", c.next_generation)?;
                }
                Mutation::PutCall(r) => {
                    buf.clear();
                    buf = postcard::to_extend(&(r.inode, r.at), buf)
                        .map_err(|e| redb::Error::Corrupted(format!("encode: {e}")))?;
                    calls.insert((r.id.client.as_str(), r.id.call), buf.as_slice())?;
                }
                Mutation::DeleteCall(id) => {
                    calls.remove((id.client.as_str(), id.call))?;
                }
                Mutation::PutLocks { inode, locks } => {
                    buf.clear();
                    buf = postcard::to_extend(&locks, buf)
                        .map_err(|e| redb::Error::Corrupted(format!("encode: {e}")))?;
                    locks_table.insert(inode, buf.as_slice())?;
                }
                Mutation::DeleteLocks(inode) => {
                    locks_table.remove(inode)?;
                }
                Mutation::PutXattrs { inode, xattrs } => {
                    buf.clear();
                    buf = postcard::to_extend(&xattrs, buf)
                        .map_err(|e| redb::Error::Corrupted(format!("encode: {e}")))?;
                    xattrs_table.insert(inode, buf.as_slice())?;
                }
                Mutation::DeleteXattrs(inode) => {
                    xattrs_table.remove(inode)?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// The last log record in the store (0: none, or a new store).
/// The store's cluster id, made (random, non-zero) and stored the first time.
fn cluster_id(db: &Database, path: &Path) -> Result<u64> {
    let err = |e: &dyn std::fmt::Display| storage(path, e);
    {
        let txn = db.begin_read().map_err(|e| err(&e))?;
        if let Ok(meta) = txn.open_table(META) {
            if let Some(v) = meta.get("cluster_id").map_err(|e| err(&e))? {
                return Ok(v.value());
            }
        }
    }
    let id = rand::random::<u64>().max(1);
    let txn = db.begin_write().map_err(|e| err(&e))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
        meta.insert("cluster_id", id).map_err(|e| err(&e))?;
    }
    txn.commit().map_err(|e| err(&e))?;
    Ok(id)
}

fn applied_seq(db: &Database, path: &Path) -> Result<u64> {
    let err = |e: &dyn std::fmt::Display| storage(path, e);
    let txn = db.begin_read().map_err(|e| err(&e))?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(err(&e)),
    };
    let seq = meta.get("applied_seq").map_err(|e| err(&e))?;
    Ok(seq.map(|v| v.value()).unwrap_or(0))
}

/// The rows of a namespace: read from the store, then possibly advanced by log records. (The
/// namespace's tests also use it as the plain-map mirror of drained mutations.)
#[derive(Clone, Default)]
pub(crate) struct Rows {
    inodes: BTreeMap<u64, InodeRecord>,
    entries: BTreeMap<(u64, String), u64>,
    counters: Counters,
    calls: BTreeMap<CallId, CallRecord>,
    locks: BTreeMap<u64, Vec<Lock>>,
    xattrs: BTreeMap<u64, Vec<XattrRow>>,
}

impl Rows {
    /// Applies one logged batch, as [`write_group`] does to the store.
    pub(crate) fn apply(&mut self, batch: Vec<Mutation>) {
        for m in batch {
            match m {
                Mutation::PutInode(r) => {
                    self.inodes.insert(r.id, r);
                }
                Mutation::DeleteInode(id) => {
                    self.inodes.remove(&id);
                }
                Mutation::PutEntry {
                    parent,
                    name,
                    child,
                } => {
                    self.entries.insert((parent, name), child);
                }
                Mutation::DeleteEntry { parent, name } => {
                    self.entries.remove(&(parent, name));
                }
                Mutation::SetCounters(c) => self.counters = c,
                Mutation::PutCall(r) => {
                    self.calls.insert(r.id.clone(), r);
                }
                Mutation::DeleteCall(id) => {
                    self.calls.remove(&id);
                }
                Mutation::PutLocks { inode, locks } => {
                    self.locks.insert(inode, locks);
                }
                Mutation::DeleteLocks(inode) => {
                    self.locks.remove(&inode);
                }
                Mutation::PutXattrs { inode, xattrs } => {
                    self.xattrs.insert(inode, xattrs);
                }
                Mutation::DeleteXattrs(inode) => {
                    self.xattrs.remove(&inode);
                }
            }
        }
    }

    /// The namespace these rows describe (with its locks and extended attributes); calls of the retry cache expired by now
    /// are dropped.
    pub(crate) fn into_namespace(self) -> Result<Namespace> {
        let mut ns = Namespace::from_records(
            self.inodes.into_values(),
            self.entries
                .into_iter()
                .map(|((parent, name), child)| (parent, name, child)),
            self.counters,
        )?;
        ns.load_xattrs(self.xattrs)?;
        ns.load_calls(self.calls.into_values(), Timestamp::now());
        ns.load_locks(self.locks, Timestamp::now());
        Ok(ns)
    }
}

/// What the store holds, read in one transaction.
struct Stored {
    rows: Rows,
    /// Row format version of the store.
    format: u64,
    /// The last log record in the store.
    applied: u64,
}

/// Read the whole store; `None` if it is new (no format row yet).
fn read_store(db: &Database, path: &Path) -> Result<Option<Stored>> {
    let err = |e: &dyn std::fmt::Display| storage(path, e);
    let txn = db.begin_read().map_err(|e| err(&e))?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(err(&e)),
    };
    let get = |k: &str| {
        meta.get(k)
            .map(|v| v.map(|v| v.value()))
            .map_err(|e| err(&e))
    };
    let format = match get("format")? {
        None => return Ok(None),
        Some(v @ (FORMAT_V1 | FORMAT)) => v,
        Some(v) => {
            return Err(err(&format!(
                "unknown store format {v} (this namenode reads {FORMAT_V1} to {FORMAT}); \
                 it was written by a newer ringfs"
            )))
        }
    };
    let applied = get("applied_seq")?.unwrap_or(0);
    let defaults = Counters::default();
    let counters = Counters {
        next_inode: get("next_inode")?.unwrap_or(defaults.next_inode),
        next_block: get("next_block")?.unwrap_or(defaults.next_block),
        next_generation: get("next_generation")?.unwrap_or(defaults.next_generation),
    };
    let mut inodes = BTreeMap::new();
    for row in txn
        .open_table(INODES)
        .map_err(|e| err(&e))?
        .iter()
        .map_err(|e| err(&e))?
    {
        let (k, v) = row.map_err(|e| err(&e))?;
        let bytes = v.value();
        let bad_row = |e: postcard::Error| err(&format!("inode {}: {e}", k.value()));
        let record: InodeRecord = match bytes.split_first() {
            Some((&v, rest)) if u64::from(v) == FORMAT => {
                postcard::from_bytes(rest).map_err(bad_row)?
            }
            Some((&v, rest)) if u64::from(v) == FORMAT_V1 => {
                postcard::from_bytes::<v1::InodeRecord>(rest)
                    .map_err(bad_row)?
                    .into()
            }
            _ => return Err(err(&format!("inode {}: unknown row format", k.value()))),
        };
        if record.id != k.value() {
            return Err(err(&format!(
                "inode row {} holds inode {}",
                k.value(),
                record.id
            )));
        }
        inodes.insert(record.id, record);
    }
    let mut entries = BTreeMap::new();
    for row in txn
        .open_table(ENTRIES)
        .map_err(|e| err(&e))?
        .iter()
        .map_err(|e| err(&e))?
    {
        let (k, v) = row.map_err(|e| err(&e))?;
        let (parent, name) = k.value();
        entries.insert((parent, name.to_string()), v.value());
    }
    let mut calls = BTreeMap::new();
    match txn.open_table(CALLS) {
        Ok(table) => {
            for row in table.iter().map_err(|e| err(&e))? {
                let (k, v) = row.map_err(|e| err(&e))?;
                let (client, call) = k.value();
                let (inode, at): (u64, Timestamp) = postcard::from_bytes(v.value())
                    .map_err(|e| err(&format!("call {client}/{call}: {e}")))?;
                let id = CallId {
                    client: client.to_string(),
                    call,
                };
                calls.insert(id.clone(), CallRecord { id, inode, at });
            }
        }
        // A store written before the retry cache.
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(err(&e)),
    }
    let mut locks = BTreeMap::new();
    match txn.open_table(LOCKS) {
        Ok(table) => {
            for row in table.iter().map_err(|e| err(&e))? {
                let (k, v) = row.map_err(|e| err(&e))?;
                let inode = k.value();
                let held: Vec<Lock> = postcard::from_bytes(v.value())
                    .map_err(|e| err(&format!("locks of inode {inode}: {e}")))?;
                locks.insert(inode, held);
            }
        }
        // A store written before locks were kept.
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(err(&e)),
    }
    let mut xattrs = BTreeMap::new();
    match txn.open_table(XATTRS) {
        Ok(table) => {
            for row in table.iter().map_err(|e| err(&e))? {
                let (k, v) = row.map_err(|e| err(&e))?;
                let inode = k.value();
                let attrs: Vec<XattrRow> = postcard::from_bytes(v.value())
                    .map_err(|e| err(&format!("extended attributes of inode {inode}: {e}")))?;
                xattrs.insert(inode, attrs);
            }
        }
        // A store written before extended attributes were kept.
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(err(&e)),
    }
    Ok(Some(Stored {
        rows: Rows {
            inodes,
            entries,
            counters,
            calls,
            locks,
            xattrs,
        },
        format,
        applied,
    }))
}

/// Row encoding version 1 (before inline file content), read from stores written by older
/// namenodes and converted on load.
mod v1 {
    use crate::namespace::{self, BlockRef, InodeKind, Timestamp};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub(super) struct FileMeta {
        pub(super) size: u64,
        pub(super) replication: u32,
        pub(super) block_size: u64,
        pub(super) blocks: Vec<BlockRef>,
        pub(super) lease: Option<String>,
        pub(super) generation: u64,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct InodeRecord {
        pub(super) id: u64,
        pub(super) kind: InodeKind,
        pub(super) mode: u32,
        pub(super) uid: u32,
        pub(super) gid: u32,
        pub(super) atime: Timestamp,
        pub(super) mtime: Timestamp,
        pub(super) ctime: Timestamp,
        pub(super) crtime: Timestamp,
        pub(super) rdev: u32,
        pub(super) symlink_target: Option<String>,
        pub(super) file: Option<FileMeta>,
    }

    impl From<InodeRecord> for namespace::InodeRecord {
        fn from(r: InodeRecord) -> namespace::InodeRecord {
            namespace::InodeRecord {
                id: r.id,
                kind: r.kind,
                mode: r.mode,
                uid: r.uid,
                gid: r.gid,
                atime: r.atime,
                mtime: r.mtime,
                ctime: r.ctime,
                crtime: r.crtime,
                rdev: r.rdev,
                symlink_target: r.symlink_target,
                file: r.file.map(|f| namespace::FileMeta {
                    size: f.size,
                    replication: f.replication,
                    block_size: f.block_size,
                    blocks: f.blocks,
                    lease: f.lease,
                    generation: f.generation,
                    inline: None,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locks::{LockKind, LockOutcome, LockOwner, LockRequest, LockType};
    use crate::namespace::{
        BlockRef, Caller, CreateFile, EntrySel, InodeId, NodeSel, Once, RemoveMode, RenameFlags,
        Timestamp,
    };
    use std::sync::Mutex;

    fn now() -> Timestamp {
        Timestamp::now()
    }

    #[test]
    fn inline_content_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let root = Caller::root();
        let expected = {
            let (journal, mut ns) = Journal::open(dir.path()).unwrap();
            let o = CreateFile {
                mode: 0o644,
                replication: 3,
                block_size: 1 << 16,
                lease: Some("c".into()),
                ..Default::default()
            };
            let (f, _) = ns
                .create_file(&root, EntrySel::Path("/small"), o, now())
                .unwrap();
            let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
            ns.commit_inline(f, "c", data, 5000, true, None, now())
                .unwrap();
            journal.submit(ns.drain_changes()).wait().unwrap();
            dump(&ns)
        };
        let (_journal, ns) = Journal::open(dir.path()).unwrap();
        assert_eq!(dump(&ns), expected);
        assert_eq!(ns.inline_bytes(), 4096);
    }

    #[test]
    fn replication_change_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let root = Caller::root();
        {
            let (journal, mut ns) = Journal::open(dir.path()).unwrap();
            let o = CreateFile {
                mode: 0o644,
                replication: 3,
                block_size: 4,
                lease: Some("c".into()),
                ..Default::default()
            };
            let (f, _) = ns
                .create_file(&root, EntrySel::Path("/f"), o, now())
                .unwrap();
            let b = BlockRef {
                id: ns.next_block_id(),
                generation: ns.next_generation(),
                len: 4,
            };
            ns.commit_blocks(f, "c", vec![b], 4, true, None, now())
                .unwrap();
            journal.submit(ns.drain_changes()).wait().unwrap();
            ns.set_replication(&root, NodeSel::Path("/f"), 2, 32, now())
                .unwrap();
            journal.submit(ns.drain_changes()).wait().unwrap();
        }
        let (_journal, ns) = Journal::open(dir.path()).unwrap();
        let id = ns.resolve(&root, NodeSel::Path("/f"), false).unwrap();
        let f = ns.get(id).and_then(|i| i.file.as_ref()).unwrap();
        assert_eq!((f.replication, f.blocks.len()), (2, 1));
    }

    /// A store written by a namenode of row format 1 (before inline data).
    fn write_v1_store(path: &Path, format: u64) {
        let db = Database::create(path).unwrap();
        let t = Timestamp { secs: 5, nanos: 0 };
        let rec = |id, kind, file| v1::InodeRecord {
            id,
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            rdev: 0,
            symlink_target: None,
            file,
        };
        let file = v1::FileMeta {
            size: 10,
            replication: 3,
            block_size: 1 << 20,
            blocks: vec![BlockRef {
                id: 4,
                generation: 9,
                len: 10,
            }],
            lease: None,
            generation: 2,
        };
        let txn = db.begin_write().unwrap();
        {
            let mut inodes = txn.open_table(INODES).unwrap();
            for r in [
                rec(1, crate::namespace::InodeKind::Directory, None),
                rec(2, crate::namespace::InodeKind::File, Some(file)),
            ] {
                let mut buf = vec![FORMAT_V1 as u8];
                buf = postcard::to_extend(&r, buf).unwrap();
                inodes.insert(r.id, buf.as_slice()).unwrap();
            }
            let mut entries = txn.open_table(ENTRIES).unwrap();
            entries.insert((1, "old"), 2).unwrap();
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("format", format).unwrap();
            meta.insert("next_inode", 3).unwrap();
            meta.insert("next_block", 5).unwrap();
            meta.insert("next_generation", 10).unwrap();
        }
        txn.commit().unwrap();
    }

    #[test]
    fn a_format_1_store_is_read_and_upgraded_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_v1_store(&dir.path().join(FILE_NAME), FORMAT_V1);
        {
            let (journal, mut ns) = Journal::open(dir.path()).unwrap();
            let id = ns.lookup(&Caller::root(), EntrySel::Path("/old")).unwrap();
            let f = ns.get(id).unwrap().file.clone().unwrap();
            assert_eq!((f.size, f.blocks.len(), f.inline), (10, 1, None));
            // old rows and new rows live side by side
            ns.mkdir(&Caller::root(), EntrySel::Path("/new"), 0o755, false, now())
                .unwrap();
            journal.submit(ns.drain_changes()).wait().unwrap();
        }
        let db = Database::open(dir.path().join(FILE_NAME)).unwrap();
        let format = db
            .begin_read()
            .unwrap()
            .open_table(META)
            .unwrap()
            .get("format")
            .unwrap()
            .map(|v| v.value());
        assert_eq!(format, Some(FORMAT));
        drop(db);
        let (_journal, ns) = Journal::open(dir.path()).unwrap();
        assert_eq!(ns.inode_count(), 3);

        let newer = tempfile::tempdir().unwrap();
        write_v1_store(&newer.path().join(FILE_NAME), FORMAT + 1);
        let e = Journal::open(newer.path())
            .err()
            .expect("a newer format is refused");
        assert!(e.to_string().contains("unknown store format 3"), "{e}");
    }

    /// Everything observable about a namespace, for comparing before/after a reopen.
    fn dump(ns: &Namespace) -> Vec<(String, crate::namespace::Inode)> {
        let mut out = Vec::new();
        let mut stack = vec![("/".to_string(), crate::namespace::ROOT)];
        while let Some((path, id)) = stack.pop() {
            let mut inode = ns.get(id).cloned().expect("listed inode exists");
            inode.parent = crate::namespace::InodeId(0);
            for (name, &c) in inode.children.iter().flatten() {
                stack.push((crate::path::child_path(&path, name), c));
            }
            out.push((path, inode));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn operations_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let root = Caller::root();
        let expected = {
            let (journal, mut ns) = Journal::open(dir.path()).unwrap();
            ns.mkdir(&root, EntrySel::Path("/a/b"), 0o755, true, now())
                .unwrap();
            journal.submit(ns.drain_changes()).wait().unwrap();
            let o = CreateFile {
                mode: 0o640,
                replication: 2,
                block_size: 8,
                lease: Some("c".into()),
                ..Default::default()
            };
            let (f, _) = ns
                .create_file(&root, EntrySel::Path("/a/b/f"), o, now())
                .unwrap();
            let blocks: Vec<BlockRef> = (0..3)
                .map(|i| BlockRef {
                    id: ns.next_block_id(),
                    generation: ns.next_generation(),
                    len: if i < 2 { 8 } else { 5 },
                })
                .collect();
            ns.commit_blocks(f, "c", blocks, 21, false, None, now())
                .unwrap();
            journal.submit(ns.drain_changes()).wait().unwrap();
            ns.link(
                &root,
                NodeSel::Path("/a/b/f"),
                EntrySel::Path("/a/hard"),
                now(),
            )
            .unwrap();
            ns.symlink(&root, EntrySel::Path("/s"), "a/b", now())
                .unwrap();
            ns.mkdir(&root, EntrySel::Path("/gone/x"), 0o755, true, now())
                .unwrap();
            journal.submit(ns.drain_changes()).wait().unwrap();
            ns.remove(
                &root,
                EntrySel::Path("/gone"),
                RemoveMode {
                    recursive: true,
                    any_kind: true,
                    directory: false,
                    keep_parent_times: false,
                },
                now(),
            )
            .unwrap();
            ns.rename(
                &root,
                EntrySel::Path("/a/b"),
                EntrySel::Path("/b2"),
                RenameFlags::default(),
                now(),
            )
            .unwrap();
            // an empty batch is acknowledged at once
            journal.submit(Vec::new()).wait().unwrap();
            journal.submit(ns.drain_changes()).wait().unwrap();
            (dump(&ns), ns.counters(), ns.leases())
        };
        let (_journal, ns) = Journal::open(dir.path()).unwrap();
        assert_eq!((dump(&ns), ns.counters(), ns.leases()), expected);
        // /s pointed at a/b, which moved away
        assert!(matches!(
            ns.resolve(&root, NodeSel::Path("/s/f"), true),
            Err(NamenodeError::NotFound(_))
        ));
        let f = ns.resolve(&root, NodeSel::Path("/b2/f"), false).unwrap();
        assert_eq!(
            ns.resolve(&root, NodeSel::Path("/a/hard"), false).unwrap(),
            f
        );
        let file = ns.get(f).unwrap();
        assert_eq!(file.nlink, 2);
        assert_eq!(
            file.file.as_ref().map(|m| (m.size, m.blocks.len())),
            Some((21, 3))
        );
        assert_eq!(
            ns.block_owner(file.file.as_ref().unwrap().blocks[0].id),
            Some(f)
        );
    }

    fn create(ns: &mut Namespace, path: &str) {
        let o = CreateFile {
            mode: 0o644,
            replication: 3,
            block_size: 1 << 20,
            ..Default::default()
        };
        ns.create_file(&Caller::root(), EntrySel::Path(path), o, now())
            .unwrap();
    }

    fn call(n: u64) -> CallId {
        CallId {
            client: "client-1".into(),
            call: n,
        }
    }

    /// mkdir `path` as call `n` of client-1 (at `at`), through the retry cache.
    fn mkdir_once(ns: &mut Namespace, n: u64, path: &str, at: Timestamp) -> Once<InodeId> {
        let root = Caller::root();
        ns.once(
            Some(&call(n)),
            at,
            |ns| ns.mkdir(&root, EntrySel::Path(path), 0o755, false, at),
            |id| Some(*id),
        )
        .unwrap()
    }

    /// The retry cache rows in the store.
    fn stored_calls(journal: &Journal) -> Vec<CallId> {
        let stored = read_store(
            lock(&journal.store).db(&journal.path).unwrap(),
            &journal.path,
        )
        .unwrap()
        .unwrap();
        stored.rows.calls.into_keys().collect()
    }

    #[test]
    fn a_dead_writer_thread_refuses_later_changes_and_keeps_what_was_logged() {
        let dir = tempfile::tempdir().unwrap();
        let root = Caller::root();
        {
            let (mut journal, mut ns) = Journal::open(dir.path()).unwrap();
            // As if the writer thread had panicked: its end of the queue is gone.
            let (tx, rx) = mpsc::channel();
            drop(rx);
            journal.tx = Some(tx);
            ns.mkdir(&root, EntrySel::Path("/logged"), 0o755, false, now())
                .unwrap();
            let commit = journal
                .log(ns.drain_changes())
                .expect("logged before the queue");
            assert!(commit.wait().is_err(), "never reaches the store");
            assert!(journal.check().is_err(), "later changes are refused");
            ns.mkdir(&root, EntrySel::Path("/refused"), 0o755, false, now())
                .unwrap();
            assert!(journal.log(ns.drain_changes()).is_err());
        }
        let (_journal, ns) = Journal::open(dir.path()).unwrap();
        assert!(
            ns.lookup(&root, EntrySel::Path("/logged")).is_ok(),
            "replayed"
        );
        assert!(ns.lookup(&root, EntrySel::Path("/refused")).is_err());
    }

    #[test]
    fn a_failed_log_append_is_recovered_once_the_disk_takes_writes_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = Caller::root();
        let exists = |ns: &Namespace, p: &str| ns.lookup(&root, EntrySel::Path(p)).is_ok();
        {
            let (journal, mut ns) = Journal::open(dir.path()).unwrap();
            assert!(journal.recover().unwrap().is_none(), "nothing to recover");
            ns.mkdir(&root, EntrySel::Path("/before"), 0o755, false, now())
                .unwrap();
            journal.log(ns.drain_changes()).unwrap().wait().unwrap();
            let real = lock(&journal.log).file.try_clone().unwrap();
            journal.redirect_log(File::create("/dev/full").unwrap());
            ns.mkdir(&root, EntrySel::Path("/lost"), 0o755, false, now())
                .unwrap();
            assert!(journal.log(ns.drain_changes()).is_err());
            assert!(journal.check().is_err(), "refused after the failure");
            assert!(journal.recover().is_err(), "the disk still refuses");
            assert!(journal.check().is_err());
            journal.redirect_log(real);
            let recovered = journal.recover().unwrap().expect("recovered");
            assert!(journal.check().is_err(), "refused until resumed");
            journal.resume();
            journal.check().unwrap();
            assert!(exists(&recovered, "/before"));
            assert!(!exists(&recovered, "/lost"), "never logged");
            let mut ns = recovered;
            ns.mkdir(&root, EntrySel::Path("/after"), 0o755, false, now())
                .unwrap();
            journal.log(ns.drain_changes()).unwrap().wait().unwrap();
            journal.sync().wait().unwrap();
        }
        let (_journal, ns) = Journal::open(dir.path()).unwrap();
        assert!(exists(&ns, "/before"));
        assert!(exists(&ns, "/after"));
        assert!(!exists(&ns, "/lost"));
    }

    fn xattrs_of(ns: &Namespace, path: &str) -> Vec<(String, Vec<u8>)> {
        let id = ns
            .resolve(&Caller::root(), NodeSel::Path(path), false)
            .unwrap();
        let x = &ns.get(id).unwrap().xattrs;
        x.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn set_xattr(ns: &mut Namespace, path: &str, name: &str, value: &[u8]) {
        ns.set_xattr(
            &Caller::root(),
            NodeSel::Path(path),
            false,
            name,
            value,
            crate::namespace::XattrMode::Any,
            now(),
        )
        .unwrap();
    }

    #[test]
    fn extended_attributes_survive_a_reopen_from_the_store_and_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; 60_000];
        {
            let (journal, mut ns) = Journal::open(dir.path()).unwrap();
            create(&mut ns, "/f");
            create(&mut ns, "/gone");
            set_xattr(&mut ns, "/f", "user.a", b"1");
            set_xattr(&mut ns, "/f", "trusted.big", &big);
            set_xattr(&mut ns, "/gone", "user.x", b"x");
            journal.submit(ns.drain_changes()).wait().unwrap();
        }
        {
            // From the store; then changes logged only (a crash before the store has them): one
            // attribute removed, one replaced, and a file with attributes unlinked.
            let (journal, mut ns) = Journal::open_with(dir.path(), false).unwrap();
            assert_eq!(
                xattrs_of(&ns, "/f"),
                vec![
                    ("trusted.big".to_string(), big.clone()),
                    ("user.a".to_string(), b"1".to_vec())
                ]
            );
            assert_eq!(
                xattrs_of(&ns, "/gone"),
                vec![("user.x".into(), b"x".to_vec())]
            );
            ns.remove_xattr(
                &Caller::root(),
                NodeSel::Path("/f"),
                false,
                "trusted.big",
                now(),
            )
            .unwrap();
            set_xattr(&mut ns, "/f", "user.a", b"2");
            ns.remove(
                &Caller::root(),
                EntrySel::Path("/gone"),
                RemoveMode::default(),
                now(),
            )
            .unwrap();
            drop(journal.log(ns.drain_changes()).unwrap());
        }
        let (journal, ns) = Journal::open(dir.path()).unwrap();
        assert_eq!(xattrs_of(&ns, "/f"), vec![("user.a".into(), b"2".to_vec())]);
        // The unlinked file's row went with it: the store holds the attributes of /f only.
        let stored = read_store(
            lock(&journal.store).db(&journal.path).unwrap(),
            &journal.path,
        )
        .unwrap()
        .unwrap();
        let inodes: Vec<u64> = stored.rows.xattrs.into_keys().collect();
        let f = ns
            .resolve(&Caller::root(), NodeSel::Path("/f"), false)
            .unwrap();
        assert_eq!(inodes, vec![f.0]);
    }

    fn write_flock(ns: &mut Namespace, inode: u64, client: &str) -> LockOutcome {
        let req = LockRequest {
            owner: LockOwner {
                client: client.into(),
                owner: 1,
            },
            kind: LockKind::Flock,
            typ: Some(LockType::Write),
            start: 0,
            end: 0,
            pid: 1,
        };
        ns.locks_mut().lock(inode, &req)
    }

    #[test]
    fn granted_locks_survive_a_reopen_from_the_store_and_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (journal, mut ns) = Journal::open(dir.path()).unwrap();
            assert!(matches!(
                write_flock(&mut ns, 5, "m1"),
                LockOutcome::Granted(_)
            ));
            journal.submit(ns.drain_changes()).wait().unwrap();
        }
        {
            // From the store; then one more lock logged only (a crash before the store has it).
            let (journal, mut ns) = Journal::open_with(dir.path(), false).unwrap();
            assert_eq!(ns.locks().locks_on(5).len(), 1);
            assert!(matches!(
                write_flock(&mut ns, 5, "m2"),
                LockOutcome::Conflict(_)
            ));
            assert!(matches!(
                write_flock(&mut ns, 6, "m2"),
                LockOutcome::Granted(_)
            ));
            drop(journal.log(ns.drain_changes()).unwrap());
        }
        let (journal, mut ns) = Journal::open(dir.path()).unwrap();
        assert!(matches!(
            write_flock(&mut ns, 5, "m2"),
            LockOutcome::Conflict(_)
        ));
        assert!(matches!(
            write_flock(&mut ns, 6, "m1"),
            LockOutcome::Conflict(_)
        ));
        // Released locks are gone after a reopen too.
        assert_eq!(ns.locks_mut().release_client("m1"), 1);
        journal.submit(ns.drain_changes()).wait().unwrap();
        drop((journal, ns));
        let (_journal, mut ns) = Journal::open(dir.path()).unwrap();
        assert!(matches!(
            write_flock(&mut ns, 5, "m2"),
            LockOutcome::Granted(_)
        ));
    }

    #[test]
    fn remembered_calls_survive_a_reopen_from_the_store_and_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = {
            let (journal, mut ns) = Journal::open(dir.path()).unwrap();
            let Once::Ran(a) = mkdir_once(&mut ns, 1, "/a", now()) else {
                panic!("call 1 ran before")
            };
            journal.submit(ns.drain_changes()).wait().unwrap();
            assert_eq!(stored_calls(&journal), vec![call(1)]);
            (a, ns.inode_count())
        };
        // From the store: the repeat is answered with the first call's inode and changes nothing.
        let b = {
            let (journal, mut ns) = Journal::open_with(dir.path(), false).unwrap();
            assert_eq!(mkdir_once(&mut ns, 1, "/a", now()).inode().unwrap(), first);
            assert_eq!(ns.inode_count(), second);
            assert_eq!(ns.drain_changes(), vec![], "a repeat changes nothing");
            // Logged only (a crash before the store has it): replay must rebuild it.
            let Once::Ran(b) = mkdir_once(&mut ns, 2, "/b", now()) else {
                panic!("call 2 ran before")
            };
            drop(journal.log(ns.drain_changes()).unwrap());
            b
        };
        let (journal, mut ns) = Journal::open(dir.path()).unwrap();
        assert_eq!(stored_calls(&journal), vec![call(1), call(2)]);
        assert_eq!(mkdir_once(&mut ns, 2, "/b", now()).inode().unwrap(), b);
        assert_eq!(mkdir_once(&mut ns, 1, "/a", now()).inode().unwrap(), first);
        // A new call with the same path is a new mkdir: EEXIST as ever.
        let root = Caller::root();
        let again = ns.once(
            Some(&call(3)),
            now(),
            |ns| ns.mkdir(&root, EntrySel::Path("/a"), 0o755, false, now()),
            |id| Some(*id),
        );
        assert!(
            matches!(again, Err(NamenodeError::AlreadyExists(_))),
            "{again:?}"
        );
        assert_eq!(
            ns.drain_changes(),
            vec![],
            "a failed call is not remembered"
        );
    }

    #[test]
    fn expired_calls_are_forgotten_and_their_rows_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let expiry = crate::retry_cache::EXPIRY.as_secs() as i64;
        let long_ago = Timestamp {
            secs: now().secs - expiry - 5,
            nanos: 0,
        };
        {
            let (journal, mut ns) = Journal::open(dir.path()).unwrap();
            mkdir_once(&mut ns, 1, "/old", long_ago);
            journal.submit(ns.drain_changes()).wait().unwrap();
            assert_eq!(stored_calls(&journal), vec![call(1)]);
        }
        let (journal, mut ns) = Journal::open(dir.path()).unwrap();
        assert_eq!(ns.remembered_calls(), 0, "expired on load");
        // Its row goes with the next batch, so the store does not keep expired calls.
        mkdir_once(&mut ns, 2, "/new", now());
        journal.submit(ns.drain_changes()).wait().unwrap();
        assert_eq!(stored_calls(&journal), vec![call(2)]);
        // Call 1 is a new call now: its mkdir runs again (and fails: /old exists).
        assert_eq!(ns.applied_call(Some(&call(1)), now()), None);
    }

    fn log_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn logged_batches_survive_a_crash_before_the_store_has_them() {
        let dir = tempfile::tempdir().unwrap();
        drop(Journal::open(dir.path()).unwrap());
        let expected = {
            let (journal, mut ns) = Journal::open_with(dir.path(), false).unwrap();
            for i in 0..300 {
                create(&mut ns, &format!("/f{i}"));
                // logged (acknowledgeable), never in the store
                drop(journal.log(ns.drain_changes()).unwrap());
            }
            assert!(log_files(dir.path()).len() > 1, "the log rotates");
            // the store and the log together are what memory holds
            assert_eq!(dump(&journal.reload().unwrap()), dump(&ns));
            dump(&ns)
        };
        let (journal, mut ns) = Journal::open(dir.path()).unwrap();
        assert_eq!(dump(&ns), expected);
        // the replayed records are in the store: their log files are gone
        assert_eq!(log_files(dir.path()).len(), 1);
        // and the store goes on from there, across another reopen
        create(&mut ns, "/after");
        journal.submit(ns.drain_changes()).wait().unwrap();
        let expected = dump(&ns);
        drop(journal);
        let (_journal, ns) = Journal::open(dir.path()).unwrap();
        assert_eq!(dump(&ns), expected);
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_the_rest_replayed() {
        let dir = tempfile::tempdir().unwrap();
        drop(Journal::open(dir.path()).unwrap());
        let root = Caller::root();
        {
            let (journal, mut ns) = Journal::open_with(dir.path(), false).unwrap();
            create(&mut ns, "/kept");
            drop(journal.log(ns.drain_changes()).unwrap());
            create(&mut ns, "/torn");
            drop(journal.log(ns.drain_changes()).unwrap());
        }
        let files = log_files(dir.path());
        let last = files.last().unwrap();
        let len = std::fs::metadata(last).unwrap().len();
        // a crash inside the second write(2)
        std::fs::OpenOptions::new()
            .write(true)
            .open(last)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (journal, mut ns) = Journal::open(dir.path()).unwrap();
        assert!(ns.resolve(&root, NodeSel::Path("/kept"), false).is_ok());
        assert!(ns.resolve(&root, NodeSel::Path("/torn"), false).is_err());
        // a torn last write is the normal end of a log: nothing is kept aside
        assert!(dropped_files(dir.path()).is_empty());
        create(&mut ns, "/torn");
        journal.submit(ns.drain_changes()).wait().unwrap();
        drop(journal);
        let (_journal, ns) = Journal::open(dir.path()).unwrap();
        assert!(ns.resolve(&root, NodeSel::Path("/torn"), false).is_ok());
    }

    #[test]
    fn log_files_the_store_caught_up_with_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, mut ns) = Journal::open(dir.path()).unwrap();
        for i in 0..300 {
            create(&mut ns, &format!("/f{i}"));
            journal.submit(ns.drain_changes()).wait().unwrap();
        }
        // 300 records of ~100 bytes rotate every 4 KiB: all but the newest two files are gone
        assert!(
            log_files(dir.path()).len() <= 2,
            "{:?}",
            log_files(dir.path())
        );
        journal.sync().wait().unwrap();
        let expected = dump(&ns);
        drop(journal);
        let (_journal, ns) = Journal::open(dir.path()).unwrap();
        assert_eq!(dump(&ns), expected);
    }

    #[test]
    fn a_store_behind_its_log_is_refused_and_the_cluster_id_is_kept() {
        // namespace.redb replaced by an empty one (truncated, deleted, another dir's) while the
        // log goes on from a later record: opening it served an empty namespace (the log was
        // put aside), and the datanodes' replicas were then deleted as unclaimed.
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let (journal, mut ns) = Journal::open(dir.path()).unwrap();
            for i in 0..300 {
                create(&mut ns, &format!("/f{i}"));
                journal.submit(ns.drain_changes()).wait().unwrap();
            }
            journal.cluster_id()
        };
        assert_ne!(id, 0);
        let (journal, _) = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.cluster_id(), id, "kept across a reopen");
        drop(journal);
        {
            // More records, so the log goes on past what the store will be replaced by.
            let (journal, mut ns) = Journal::open_with(dir.path(), false).unwrap();
            create(&mut ns, "/later");
            drop(journal.log(ns.drain_changes()).unwrap());
        }
        std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        let err = Journal::open(dir.path())
            .err()
            .expect("open of a store behind its log");
        assert!(err.to_string().contains("Refusing to start"), "{err}");
        assert!(!log_files(dir.path()).is_empty(), "the log is kept");
    }

    #[test]
    fn a_new_store_holds_the_root() {
        let dir = tempfile::tempdir().unwrap();
        drop(Journal::open(dir.path()).unwrap());
        let (journal, ns) = Journal::open(dir.path()).unwrap();
        assert_eq!(ns.inode_count(), 1);
        assert!(journal.path().ends_with(FILE_NAME));
    }

    #[test]
    fn the_store_is_locked_while_open() {
        let dir = tempfile::tempdir().unwrap();
        let _open = Journal::open(dir.path()).unwrap();
        assert!(matches!(
            Journal::open(dir.path()),
            Err(NamenodeError::Storage(_))
        ));
    }

    #[test]
    fn unacknowledged_changes_are_not_visible_but_acknowledged_ones_are() {
        let dir = tempfile::tempdir().unwrap();
        let root = Caller::root();
        {
            let (journal, mut ns) = Journal::open(dir.path()).unwrap();
            ns.mkdir(&root, EntrySel::Path("/kept"), 0o755, false, now())
                .unwrap();
            journal.submit(ns.drain_changes()).wait().unwrap();
            // mutated in memory, never submitted
            ns.mkdir(&root, EntrySel::Path("/lost"), 0o755, false, now())
                .unwrap();
        }
        let (_j, ns) = Journal::open(dir.path()).unwrap();
        assert!(ns.resolve(&root, NodeSel::Path("/kept"), false).is_ok());
        assert!(ns.resolve(&root, NodeSel::Path("/lost"), false).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn group_commit_makes_a_thousand_concurrent_submits_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, ns) = Journal::open(dir.path()).unwrap();
        let commits_before = journal.stats().commits;
        // the service's pattern: mutate and submit under the state lock, await outside it
        let state = Arc::new(Mutex::new((ns, journal)));
        let mut tasks = Vec::new();
        for i in 0..1000 {
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                let commit = {
                    let mut guard = state.lock().unwrap();
                    let (ns, journal) = &mut *guard;
                    let o = CreateFile {
                        mode: 0o644,
                        replication: 3,
                        block_size: 1 << 20,
                        ..Default::default()
                    };
                    ns.create_file(&Caller::root(), EntrySel::Path(&format!("/f{i}")), o, now())
                        .unwrap();
                    journal.submit(ns.drain_changes())
                };
                commit.await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let (ns, journal) = Arc::into_inner(state).unwrap().into_inner().unwrap();
        let stats = journal.stats();
        assert_eq!(stats.batches, 1000);
        let commits = stats.commits - commits_before;
        assert!(
            commits < 1000,
            "{commits} transactions for 1000 batches: nothing was grouped"
        );
        let expected = dump(&ns);
        drop(journal);
        let (_journal, reopened) = tokio::task::spawn_blocking({
            let path = dir.path().to_path_buf();
            move || Journal::open(&path).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(reopened.inode_count(), 1001);
        assert_eq!(dump(&reopened), expected);
    }

    #[tokio::test]
    async fn a_change_that_cannot_be_logged_is_not_shown_and_later_ones_change_nothing() {
        // The log's disk is full (appends go to /dev/full): the mkdir fails naming the cause, the
        // namespace does not show the directory, later changes are refused without changing
        // anything, and what was acknowledged before is kept, also across a reopen.
        use crate::service::{After, Shared, State};
        let dir = tempfile::tempdir().unwrap();
        let (journal, ns) = Journal::open(dir.path()).unwrap();
        let config = crate::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let shared = Arc::new(Shared::new(config, journal, ns));
        let mkdir = |p: &'static str| {
            move |st: &mut State, _: &mut After| {
                st.ns
                    .mkdir(&Caller::root(), EntrySel::Path(p), 0o755, false, now())
                    .map(|_| ())
            }
        };
        let shown = |p: &str| {
            shared
                .lock()
                .ns
                .resolve(&Caller::root(), NodeSel::Path(p), false)
                .is_ok()
        };
        shared.mutate(mkdir("/kept")).await.unwrap();
        let real = lock(&shared.journal.log).file.try_clone().unwrap();
        shared.journal.redirect_log(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        );
        let e = shared.mutate(mkdir("/refused")).await.unwrap_err();
        assert!(e.to_string().contains("appending to the log"), "{e}");
        assert!(!shown("/refused"), "a change that is not logged is shown");
        let e = shared
            .mutate(|st, _| {
                st.ns
                    .remove(
                        &Caller::root(),
                        EntrySel::Path("/kept"),
                        RemoveMode {
                            recursive: false,
                            any_kind: true,
                            directory: false,
                            keep_parent_times: false,
                        },
                        now(),
                    )
                    .map(|_| ())
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains(REFUSED_UNTIL), "{e}");
        assert!(shown("/kept"), "a refused remove took effect in memory");
        assert!(shared.mutate(mkdir("/later")).await.is_err());
        assert!(!shown("/later"));
        assert!(shared.sync().await.is_err());
        // The disk takes writes again: the storage monitor's retry gets changes accepted.
        shared.recover_storage();
        assert!(shared.mutate(mkdir("/later")).await.is_err(), "still full");
        shared.journal.redirect_log(real);
        shared.recover_storage();
        shared.mutate(mkdir("/after")).await.unwrap();
        assert!(shown("/after") && shown("/kept") && !shown("/refused"));
        shared.sync().await.unwrap();
        drop(shared);
        let (_journal, ns) = tokio::task::spawn_blocking({
            let path = dir.path().to_path_buf();
            move || Journal::open(&path).unwrap()
        })
        .await
        .unwrap();
        let on_disk = |p: &str| ns.resolve(&Caller::root(), NodeSel::Path(p), false).is_ok();
        assert!(on_disk("/kept") && on_disk("/after"));
        assert!(!on_disk("/refused") && !on_disk("/later"));
    }

    #[test]
    fn log_files_are_read_under_their_own_names_and_others_are_left_alone() {
        // `wal-<n>.log` written without the zero padding (or with a sign) is read and replayed
        // like any log file; it used to fail the open with "wal-000…<n>.log: No such file or
        // directory". Files that are not logs (`wal-x.log`, `wal-….log.bak`) are not touched.
        let dir = tempfile::tempdir().unwrap();
        drop(Journal::open(dir.path()).unwrap());
        {
            let (journal, mut ns) = Journal::open_with(dir.path(), false).unwrap();
            create(&mut ns, "/renamed");
            drop(journal.log(ns.drain_changes()).unwrap());
        }
        let files = log_files(dir.path());
        assert_eq!(files.len(), 1);
        let short = dir.path().join("wal-+2.log");
        std::fs::rename(&files[0], &short).unwrap();
        for other in ["wal-x.log", "wal-00000000000000000009.log.bak"] {
            std::fs::write(dir.path().join(other), b"not a log").unwrap();
        }
        let (_journal, ns) = Journal::open(dir.path()).unwrap();
        assert!(ns
            .resolve(&Caller::root(), NodeSel::Path("/renamed"), false)
            .is_ok());
        assert!(!short.exists(), "a replayed log file is deleted");
        assert!(dir.path().join("wal-x.log").exists());
        assert!(dir.path().join("wal-00000000000000000009.log.bak").exists());
    }

    fn dropped_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "dropped"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_damaged_record_with_log_after_it_keeps_that_log_aside() {
        // One flipped byte in the middle of the log (not a torn last write): replay stops there as
        // before, but the records after it (acknowledged) are no longer deleted with the log file:
        // the file is kept as wal-N.log.dropped and not read again.
        let dir = tempfile::tempdir().unwrap();
        drop(Journal::open(dir.path()).unwrap());
        let root = Caller::root();
        {
            let (journal, mut ns) = Journal::open_with(dir.path(), false).unwrap();
            for i in 0..10 {
                create(&mut ns, &format!("/f{i}"));
                drop(journal.log(ns.drain_changes()).unwrap());
            }
        }
        let files = log_files(dir.path());
        assert_eq!(files.len(), 1);
        let mut bytes = std::fs::read(&files[0]).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&files[0], &bytes).unwrap();
        let shown = |ns: &Namespace| {
            (0..10)
                .filter(|i| {
                    ns.resolve(&root, NodeSel::Path(&format!("/f{i}")), false)
                        .is_ok()
                })
                .count()
        };
        let replayed = {
            let (_journal, ns) = Journal::open(dir.path()).unwrap();
            shown(&ns)
        };
        assert!((1..10).contains(&replayed), "{replayed} of 10 replayed");
        let kept = dropped_files(dir.path());
        assert_eq!(
            kept.len(),
            1,
            "{:?}",
            std::fs::read_dir(dir.path()).unwrap().collect::<Vec<_>>()
        );
        assert_eq!(std::fs::read(&kept[0]).unwrap(), bytes);
        // the kept file is not log any more: a reopen changes nothing and keeps it
        let (_journal, ns) = Journal::open(dir.path()).unwrap();
        assert_eq!(shown(&ns), replayed);
        assert_eq!(dropped_files(dir.path()), kept);
    }
}
