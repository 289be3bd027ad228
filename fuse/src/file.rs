//! Open files: handles, reads (through the overlay when this mount writes the file, else with a
//! per-handle sequential readahead), writes into the per-inode overlay, background uploads of
//! full blocks, and commits on flush/fsync/release.
//!
//! Read path: a handle fetches the file's block locations once (a `FileReader`, again after this
//! mount changed the file, and when a read passes the end of file it knows while the file may have
//! grown on another mount: see `Inner::reader_for`), so a read costs one datanode stream and no
//! namenode call; sequential readers get aligned 4 MiB chunks fetched ahead (the mount also raises
//! the kernel's readahead, see `MountOptions::readahead`, so the kernel asks in 1 MiB requests,
//! several in flight).
//! Write path: a write that needs nothing from the network is copied into the overlay on the FUSE
//! thread straight from the request buffer (`write_now`); block buffers are reused (`overlay`).
//!
//! Write protocol: the first handle opened for writing on this mount takes the file's lease
//! (`OpenWrite`/`Create` with the mount's client id) and creates the overlay; every write lands
//! in it; full blocks of a sequential writer are uploaded in the background and committed alone;
//! `flush` (each close), `fsync` and memory pressure write the remaining dirty blocks and commit
//! the whole block list + size; the last writer's `release` commits with `close` (lease given back).

use crate::attr::{is_file, pb_time};
use crate::creds::Caller;
use crate::error::{errno_of, Fail, Res};
use crate::ops::{child, locked, node, Inner, Seen};
use crate::overlay::{Overlay, Piece, Planned};
use bytes::Bytes;
use fuser::{Errno, FopenFlags};
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, TryStreamExt};
use ringfs_client::{inode_ref, ClientError, FileReader};
use ringfs_proto::{pb, ErrorKind};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;

/// A sequential reader reads the file in aligned chunks of this size, fetched ahead (one datanode
/// stream each: larger chunks cost less CPU per byte than 1-2 MiB ones).
const RA_CHUNK: u64 = 4 << 20;
/// Chunks fetched ahead of a sequential reader.
const RA_AHEAD: u64 = 3;
/// Blocks written or copied at once by a full commit.
const COMMIT_PARALLELISM: usize = 4;
const NO_SIZE: u64 = u64::MAX;

/// A file with open handles on this mount.
pub(crate) struct OpenFile {
    pub(crate) ino: u64,
    /// Attributes, overlay and uploads; held across the RPCs of a write or commit, so operations
    /// on one file are serialized while different files proceed in parallel.
    pub(crate) state: tokio::sync::Mutex<FileState>,
    /// The overlay's size while there is one (NO_SIZE otherwise): read by lookup/getattr
    /// without waiting for the state lock.
    local_size: AtomicU64,
    /// Bumped on every local data change: readahead buffers of an older version are dropped.
    version: AtomicU64,
    /// Bytes of the overlay's dirty blocks while there is one (NO_SIZE otherwise): with the
    /// committed blocks, what the file stores as this mount sees it (`st_blocks`).
    local_bytes: AtomicU64,
    /// The size the namenode gave last in attributes this mount passed to the kernel (lookup,
    /// getattr: `adjust`); NO_SIZE before any. Larger than a handle's reader knows = the file
    /// grew elsewhere and the kernel knows it: reads past the reader's end fetch it again.
    remote_size: AtomicU64,
    /// Handles open on this inode (changed under `Inner::files`).
    refs: AtomicUsize,
    /// When this mount last changed the data without committing it yet: `stat` shows it as
    /// mtime/ctime until a commit brings the namenode's times.
    touched: Mutex<Option<pb::Time>>,
    /// An mtime set here (utimens) since this mount last changed the data: every commit until
    /// the next change sends it, so no commit of this mount undoes it with its own time.
    kept_mtime: Mutex<Option<pb::Time>>,
    /// Hidden names (parent, name) that keep the inode alive while it is open here after an
    /// unlink or a rename over it on this mount (NFS "silly rename"); removed at the last close.
    pub(crate) hidden: Mutex<Vec<(u64, String)>>,
}

impl OpenFile {
    fn new(ino: u64) -> OpenFile {
        OpenFile {
            ino,
            state: tokio::sync::Mutex::new(FileState::default()),
            local_size: AtomicU64::new(NO_SIZE),
            local_bytes: AtomicU64::new(NO_SIZE),
            version: AtomicU64::new(0),
            remote_size: AtomicU64::new(NO_SIZE),
            refs: AtomicUsize::new(0),
            touched: Mutex::new(None),
            kept_mtime: Mutex::new(None),
            hidden: Mutex::new(Vec::new()),
        }
    }

    /// `a` as this mount sees it: the overlay's size, uncommitted change times, and the link
    /// count without the hidden names.
    pub(crate) fn adjust(&self, a: &mut pb::Attr) {
        self.remote_size.store(a.size, Ordering::Release);
        if let Some(size) = self.local_size() {
            a.size = size;
            // Written here and not committed: what it stores is known here, not "its size" (a
            // new `truncate -s 1G` file showed 1 GiB of blocks to `du`).
            let dirty = self.local_bytes.load(Ordering::Acquire);
            if dirty != NO_SIZE {
                a.allocated = a.allocated.saturating_add(dirty).min(size);
                a.under_construction = false;
            }
        }
        if let Some(t) = *locked(&self.touched) {
            let newer = |cur: &Option<pb::Time>| {
                cur.map(|c| (c.secs, c.nanos) < (t.secs, t.nanos))
                    .unwrap_or(true)
            };
            if newer(&a.mtime) {
                a.mtime = Some(t);
            }
            if newer(&a.ctime) {
                a.ctime = Some(t);
            }
        }
        let hidden = locked(&self.hidden).len() as u32;
        a.nlink = a.nlink.saturating_sub(hidden);
    }

    fn touch(&self) {
        *locked(&self.touched) = Some(pb_time(SystemTime::now()));
        *locked(&self.kept_mtime) = None;
    }

    /// The mtime the next commit sends: one set by utimens since the last change, else the time
    /// of this mount's last change (as on a local file system, a file written at 10:00 and
    /// closed at 10:05 was modified at 10:00), else None (the namenode's now).
    fn commit_mtime(&self) -> Option<pb::Time> {
        let kept = *locked(&self.kept_mtime);
        kept.or(*locked(&self.touched))
    }

    /// After a utimens of this file while this mount writes it: `a` holds the time set.
    fn keep_mtime(&self, a: &pb::Attr) {
        *locked(&self.kept_mtime) = a.mtime;
    }

    fn untouch(&self) {
        *locked(&self.touched) = None;
    }

    pub(crate) fn local_size(&self) -> Option<u64> {
        match self.local_size.load(Ordering::Acquire) {
            NO_SIZE => None,
            s => Some(s),
        }
    }

    fn changed(&self, st: &FileState) {
        self.local_size.store(
            st.overlay.as_ref().map(|o| o.size()).unwrap_or(NO_SIZE),
            Ordering::Release,
        );
        self.local_bytes.store(
            st.overlay.as_ref().map(|o| o.bytes()).unwrap_or(NO_SIZE),
            Ordering::Release,
        );
        self.version.fetch_add(1, Ordering::AcqRel);
    }
}

impl FileState {
    /// Whether this mount holds the file's lease (some handle writes it).
    pub(crate) fn writing(&self) -> bool {
        self.overlay.is_some()
    }
}

#[derive(Default)]
pub(crate) struct FileState {
    /// Last attributes the namenode gave for this file (mtime kept by a clean closing commit).
    pub(crate) attr: pb::Attr,
    /// Present while this mount holds the file's lease (some handle writes it).
    overlay: Option<Overlay>,
    writers: u32,
    uploads: VecDeque<Upload>,
}

/// A full block being written in the background.
struct Upload {
    index: u64,
    version: u64,
    task: JoinHandle<Result<pb::CommittedBlock, ClientError>>,
}

/// One open file handle (`fh`).
pub(crate) struct Handle {
    pub(crate) file: Arc<OpenFile>,
    pub(crate) write: bool,
    append: bool,
    ra: Mutex<ReadAhead>,
    /// Lock owners that took a lock through this handle: their locks go at its release. The
    /// kernel sends no unlock for an open file description's locks (`F_OFD_SETLK`) at its last
    /// close, so they stayed until the mount ended; a POSIX owner's are gone by then (flush).
    pub(crate) lock_owners: Mutex<Vec<u64>>,
}

/// How long a read waits for the namenode to revalidate its handle's view of the file.
const REVALIDATE_WAIT: Duration = Duration::from_millis(500);

/// `__FMODE_EXEC`, which the kernel leaves in the flags of the open that `execve` makes.
const FMODE_EXEC: i32 = 0x20;

/// Whether a file of the overlay's block size may not reach `end` bytes (EFBIG, as a local file
/// system past its largest file; the block list of a far offset would not fit in memory).
fn past_max_size(ov: &Overlay, end: u64) -> bool {
    end > ringfs_proto::max_file_size(ov.block_size())
}

/// What [`Inner::write_now`] did.
pub(crate) enum Written {
    /// Written, and nothing left to do: answer.
    Done,
    /// Written; answer after [`Inner::after_write`].
    Settle(Arc<Handle>),
}

/// A chunk being read or read: shared by every request that needs it (the kernel sends
/// readahead requests concurrently and out of order).
type Chunk = Shared<BoxFuture<'static, Result<Bytes, (Errno, String)>>>;

/// Per-handle readahead state.
#[derive(Default)]
struct ReadAhead {
    /// `OpenFile::version` the chunks belong to.
    version: u64,
    chunks: BTreeMap<u64, Chunk>,
    /// Chunk index the previous read ended in.
    last: Option<u64>,
    /// Consecutive sequential reads.
    streak: u32,
    /// First chunk known to end at end of file (nothing to fetch after it).
    eof: Option<u64>,
    /// The committed file's block locations, fetched at the first read of this version (and
    /// again when the file may have grown): reads within its size then cost a datanode stream
    /// and no namenode call.
    reader: Option<Arc<FileReader>>,
    /// When `reader` was fetched.
    fetched: Option<Instant>,
}

impl ReadAhead {
    fn reset(&mut self, version: u64) {
        *self = ReadAhead {
            version,
            ..Default::default()
        };
    }

    /// Takes `reader`, fetched again because the file may have grown. A different size drops
    /// the chunks read and the end of file found (a chunk that ended at the old end of file
    /// would cut reads short there); the sequential streak stays.
    fn refetched(&mut self, reader: Arc<FileReader>) {
        let size = |r: &Option<Arc<FileReader>>| r.as_ref().map(|r| r.attr().size);
        if size(&self.reader) != Some(reader.attr().size) {
            self.chunks.clear();
            self.eof = None;
        }
        self.reader = Some(reader);
        self.fetched = Some(Instant::now());
    }

    /// Whether a read starting in chunk `k0` at `off` continues the previous reads.
    fn sequential(&self, k0: u64, off: u64) -> bool {
        off == 0
            || self.chunks.contains_key(&k0)
            || self.last.is_some_and(|l| k0 == l || k0 == l + 1)
    }
}

/// A file's block list as `CommittedBlock`s, gaps filled with holes.
fn committed_list(blocks: &[pb::LocatedBlock]) -> Vec<pb::CommittedBlock> {
    let mut sorted: Vec<&pb::LocatedBlock> = blocks.iter().collect();
    sorted.sort_by_key(|b| b.offset);
    let mut out = Vec::with_capacity(sorted.len());
    let mut pos = 0;
    for b in sorted {
        if b.offset > pos {
            out.push(pb::CommittedBlock {
                id: 0,
                generation: 0,
                len: b.offset - pos,
            });
        }
        out.push(pb::CommittedBlock {
            id: b.id,
            generation: b.generation,
            len: b.len,
        });
        pos = b.offset + b.len;
    }
    out
}

/// `data` padded with zeros to `len`.
fn padded(data: Bytes, len: u64) -> Bytes {
    if data.len() as u64 >= len {
        return data;
    }
    let mut v = Vec::with_capacity(len as usize);
    v.extend_from_slice(&data);
    v.resize(len as usize, 0);
    v.into()
}

impl Inner {
    /// The OpenFile of `ino`, counted as used by one more handle.
    fn file_ref(&self, ino: u64) -> Arc<OpenFile> {
        let mut files = locked(&self.files);
        let f = files
            .entry(ino)
            .or_insert_with(|| Arc::new(OpenFile::new(ino)))
            .clone();
        f.refs.fetch_add(1, Ordering::AcqRel);
        f
    }

    /// Like `file_ref`, but only for a file open on this mount.
    pub(crate) fn file_ref_existing(&self, ino: u64) -> Option<Arc<OpenFile>> {
        let files = locked(&self.files);
        let f = files.get(&ino)?.clone();
        f.refs.fetch_add(1, Ordering::AcqRel);
        Some(f)
    }

    /// The file open on this mount that hidden name `dir/name` keeps alive, with a reference.
    pub(crate) fn hidden_owner(&self, dir: u64, name: &str) -> Option<Arc<OpenFile>> {
        let files = locked(&self.files);
        let f = files.values().find(|f| {
            locked(&f.hidden)
                .iter()
                .any(|(p, n)| *p == dir && n == name)
        })?;
        f.refs.fetch_add(1, Ordering::AcqRel);
        Some(f.clone())
    }

    /// Gives back a `file_ref`; the last one forgets the file and removes its hidden names.
    pub(crate) async fn file_unref(&self, f: &Arc<OpenFile>) {
        let hidden = {
            let mut files = locked(&self.files);
            if f.refs.fetch_sub(1, Ordering::AcqRel) != 1 {
                return;
            }
            if let Some(cur) = files.get(&f.ino) {
                if Arc::ptr_eq(cur, f) {
                    files.remove(&f.ino);
                }
            }
            std::mem::take(&mut *locked(&f.hidden))
        };
        for (parent, name) in hidden {
            self.release_hidden(parent, name, f.ino).await;
        }
    }

    /// Refuses to take a file's lease once the mount is shutting down: `finish` has committed
    /// (or is committing) every file and given its lease back, and a write that came in
    /// meanwhile took the lease again and kept the file under construction for good.
    fn not_finishing(&self) -> Res<()> {
        match self.finished.load(Ordering::Acquire) {
            true => Err(Fail::new(Errno::EIO, "the mount is shutting down")),
            false => Ok(()),
        }
    }

    pub(crate) fn handle(&self, fh: u64) -> Res<Arc<Handle>> {
        locked(&self.handles).get(&fh).cloned().ok_or_else(|| {
            self.not_finishing()
                .err()
                .unwrap_or_else(|| Fail::new(Errno::EBADF, format!("no open file handle {fh}")))
        })
    }

    fn account(&self, before: u64, after: u64) {
        if after >= before {
            self.dirty_bytes.fetch_add(after - before, Ordering::AcqRel);
        } else {
            self.dirty_bytes.fetch_sub(before - after, Ordering::AcqRel);
        }
    }

    /// `OpenWrite` (takes the lease), retrying for a moment while another mount gives it back.
    async fn open_write(&self, c: &Caller, ino: u64) -> Res<pb::OpenResponse> {
        self.not_finishing()?;
        let req = pb::OpenWriteRequest {
            creds: Some(c.creds.clone()),
            node: Some(node(ino)),
            client_id: self.client.client_id().to_string(),
            truncate: false,
        };
        // Without truncation, taking the lease again is harmless: sent again on a transport error.
        Ok(self
            .query_while_busy(&req, |mut nn, req| async move { nn.open_write(req).await })
            .await?)
    }

    /// Takes the file's lease for this mount and builds the overlay, unless it is held already.
    /// Permission was checked when the handle was opened (a later chmod does not take an open
    /// descriptor's write access away), so the mount asks as itself.
    async fn ensure_lease(&self, f: &OpenFile, st: &mut FileState) -> Res<()> {
        if st.overlay.is_some() {
            return Ok(());
        }
        let me = Caller {
            creds: self.client.creds().clone(),
            pid: 0,
        };
        let resp = self.open_write(&me, f.ino).await?;
        self.adopt_lease(f, st, resp)
    }

    /// Builds the overlay of a file whose lease this mount just took (OpenWrite or Create).
    fn adopt_lease(&self, f: &OpenFile, st: &mut FileState, resp: pb::OpenResponse) -> Res<()> {
        let attr = resp
            .attr
            .ok_or_else(|| Fail::new(Errno::EIO, "namenode answered without attributes"))?;
        st.overlay = Some(Overlay::new(
            attr.block_size,
            committed_list(&resp.blocks),
            attr.size,
        ));
        let inline = crate::small::adopt(
            &self.client,
            st.overlay.as_mut(),
            resp.inline_data,
            resp.inline_limit,
        );
        self.account(0, inline);
        st.attr = attr;
        f.changed(st);
        Ok(())
    }

    /// Registers a handle on `f` and returns its number.
    fn add_handle(&self, f: Arc<OpenFile>, write: bool, append: bool) -> u64 {
        let fh = self.next_fh();
        let h = Handle {
            file: f,
            write,
            append,
            ra: Mutex::new(ReadAhead::default()),
            lock_owners: Mutex::new(Vec::new()),
        };
        locked(&self.handles).insert(fh, Arc::new(h));
        fh
    }

    /// Open flags for the kernel: keep its cached pages only when the file is the version this
    /// mount saw last; otherwise also drop its cached attributes (the size may have changed).
    async fn cache_flags(&self, attr: &pb::Attr) -> FopenFlags {
        if self.note_seen(attr) {
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            self.invalidate_inode(attr.inode, false).await;
            FopenFlags::empty()
        }
    }

    /// open(2) of an existing inode. Close-to-open: attributes come fresh from the namenode.
    pub(crate) async fn open(&self, c: &Caller, ino: u64, flags: i32) -> Res<(u64, FopenFlags)> {
        let acc = flags & libc::O_ACCMODE;
        let (read, write) = (acc != libc::O_WRONLY, acc != libc::O_RDONLY);
        // Registered before the checks (see `Inner::replacing`): an unlink or rename over the
        // file on this mount from now on keeps it alive for this handle.
        let f = {
            let _replacing = self.replacing.read().await;
            self.file_ref(ino)
        };
        let checked = async {
            // execve opens read-only with __FMODE_EXEC (0x20 in the FUSE open flags): it needs
            // execute permission, not read (a 0711 binary runs; local file systems agree).
            let exec = flags & FMODE_EXEC != 0;
            let mask = if exec {
                libc::X_OK
            } else {
                (if read { libc::R_OK } else { 0 }) | (if write { libc::W_OK } else { 0 })
            };
            let attr = self.getattr_checked(c, ino, mask as u32).await?;
            if attr.kind == pb::FileKind::Directory as i32 && write {
                return Err(Errno::EISDIR.into());
            }
            // Replaced or unlinked on another mount, which keeps it under a hidden name while it
            // is open there: this open came through the kernel's cached entry of the old name.
            // ESTALE makes the kernel look the path up again and open what has the name now
            // (close-to-open, as NFS revalidates a name at open).
            if attr.hidden_elsewhere {
                return Err(Errno::ESTALE.into());
            }
            Ok(attr)
        }
        .await;
        let attr = match checked {
            Ok(a) => a,
            Err(e) => {
                self.file_unref(&f).await;
                return Err(e);
            }
        };
        if write {
            f.state.lock().await.writers += 1;
        }
        let fl = self.cache_flags(&attr).await;
        Ok((self.add_handle(f, write, flags & libc::O_APPEND != 0), fl))
    }

    /// create(2): a new file, opened. An existing file (no O_EXCL) is opened instead.
    pub(crate) async fn create(
        &self,
        c: &Caller,
        parent: u64,
        name: &str,
        mode: u32,
        flags: i32,
    ) -> Res<(pb::Attr, u64, FopenFlags)> {
        self.not_finishing()?;
        let acc = flags & libc::O_ACCMODE;
        let write = acc != libc::O_RDONLY;
        let exclusive = flags & libc::O_EXCL != 0;
        let cfg = self.client.config();
        let req = pb::CreateRequest {
            creds: Some(c.creds.clone()),
            entry: Some(child(parent, name)),
            mode: mode & 0o7777,
            replication: cfg.replication,
            block_size: cfg.block_size,
            exclusive,
            overwrite: false,
            client_id: self.client.client_id().to_string(),
            open_for_write: write,
            retry: Some(self.client.retry_id()),
            min_replicas: cfg.min_replicas,
        };
        let resp = match self
            .query(&req, |mut nn, req| async move { nn.create(req).await })
            .await
        {
            Ok(r) => r,
            Err(s) if ErrorKind::of(&s) == ErrorKind::AlreadyExists && !exclusive => {
                let attr = self.lookup(c, parent, name).await?;
                if flags & libc::O_TRUNC != 0 && write {
                    self.truncate(c, attr.inode, 0, false).await?;
                }
                let (fh, fl) = self.open(c, attr.inode, flags).await?;
                let attr = self.getattr(c, attr.inode).await?;
                return Ok((attr, fh, fl));
            }
            Err(s) => return Err(s.into()),
        };
        let attr = resp
            .attr
            .ok_or_else(|| Fail::new(Errno::EIO, "Create answered without attributes"))?;
        let f = self.file_ref(attr.inode);
        if write {
            let mut st = f.state.lock().await;
            st.writers += 1;
            if let Err(e) = self.adopt_lease(&f, &mut st, resp) {
                st.writers -= 1;
                drop(st);
                self.file_unref(&f).await;
                return Err(e);
            }
        }
        self.note_seen(&attr);
        self.note_entry(&attr).await;
        let fh = self.add_handle(f, write, flags & libc::O_APPEND != 0);
        Ok((attr, fh, FopenFlags::FOPEN_KEEP_CACHE))
    }

    pub(crate) async fn read(&self, fh: u64, offset: u64, size: u32) -> Res<Bytes> {
        let h = self.handle(fh)?;
        let f = &h.file;
        if f.local_size().is_some() {
            let st = f.state.lock().await;
            if let Some(ov) = &st.overlay {
                return self.read_overlay(f.ino, ov, offset, u64::from(size)).await;
            }
        }
        self.read_ahead(&h, offset, u64::from(size)).await
    }

    /// lseek(SEEK_DATA / SEEK_HOLE) on `fh`. While this mount writes the file all of it counts
    /// as data (POSIX allows reporting a hole as data); otherwise the holes are the committed
    /// file's (see `FileReader::seek_data`).
    pub(crate) async fn seek(&self, fh: u64, offset: i64, whence: i32) -> Res<i64> {
        let h = self.handle(fh)?;
        let off = u64::try_from(offset).map_err(|_| Errno::EINVAL)?;
        let found = if let Some(size) = h.file.local_size() {
            match whence {
                libc::SEEK_DATA => (off < size).then_some(off),
                libc::SEEK_HOLE => (off < size).then_some(size),
                _ => return Err(Errno::EINVAL.into()),
            }
        } else {
            let r = self.reader_for(&h, off, 1).await?;
            match whence {
                libc::SEEK_DATA => r.seek_data(off),
                libc::SEEK_HOLE => r.seek_hole(off),
                _ => return Err(Errno::EINVAL.into()),
            }
        };
        let found = found.ok_or(Errno::ENXIO)?;
        i64::try_from(found).map_err(|_| Errno::EOVERFLOW.into())
    }

    async fn read_overlay(&self, ino: u64, ov: &Overlay, offset: u64, size: u64) -> Res<Bytes> {
        let mut plan = ov.read_plan(offset, size);
        if plan.len() == 1 {
            match plan.pop() {
                Some(Piece::Mem(b)) => return Ok(b),
                Some(Piece::Base { offset, len }) => {
                    return Ok(padded(self.client.read_range(ino, offset, len).await?, len))
                }
                Some(p) => plan.push(p),
                None => {}
            }
        }
        let mut out = Vec::with_capacity(size as usize);
        for p in plan {
            match p {
                Piece::Mem(b) => out.extend_from_slice(&b),
                Piece::Zeros(n) => out.resize(out.len() + n as usize, 0),
                Piece::Base { offset, len } => out.extend_from_slice(&padded(
                    self.client.read_range(ino, offset, len).await?,
                    len,
                )),
            }
        }
        Ok(out.into())
    }

    /// The handle's reader of the committed file (opened at the first read, and again after this
    /// mount changed the file).
    async fn reader(&self, h: &Handle) -> Res<Arc<FileReader>> {
        let version = h.file.version.load(Ordering::Acquire);
        {
            let ra = locked(&h.ra);
            if let (true, Some(r)) = (ra.version == version, &ra.reader) {
                return Ok(r.clone());
            }
        }
        let r = Arc::new(self.client.open(inode_ref(h.file.ino)).await?);
        let mut ra = locked(&h.ra);
        if ra.version != version && h.file.version.load(Ordering::Acquire) == version {
            ra.reset(version);
        }
        if ra.version == version && ra.reader.is_none() {
            ra.reader = Some(r.clone());
            ra.fetched = Some(Instant::now());
        }
        Ok(r)
    }

    /// The handle's reader for a read of `[off, off+len)`. A read that passes the end of file
    /// the reader knows fetches the file's layout again (one namenode call) when the file may
    /// have grown on another mount since: the kernel was given a larger size, or the reader is
    /// older than the attribute TTL (after which the kernel asks for the size again). So a
    /// descriptor kept open (`tail -f`) reads what another mount appended once its new size is
    /// visible, while reads within the known size, and the first read of a file's last page
    /// just after the layout came, cost no namenode call.
    async fn reader_for(&self, h: &Handle, off: u64, len: u64) -> Res<Arc<FileReader>> {
        let r = self.reader(h).await?;
        // The handle's current reader (a concurrent read may have fetched a newer one).
        let (r, fetched) = {
            let ra = locked(&h.ra);
            match (&ra.reader, ra.fetched) {
                (Some(cur), Some(t)) if ra.version == h.file.version.load(Ordering::Acquire) => {
                    (cur.clone(), t)
                }
                _ => (r, Instant::now()),
            }
        };
        let known = r.attr().size;
        if off.saturating_add(len) <= known {
            if fetched.elapsed() < self.opts.attr_ttl {
                return Ok(r);
            }
            return self.revalidated(h, r).await;
        }
        let told = h.file.remote_size.load(Ordering::Acquire);
        let grown = told != NO_SIZE && told > known;
        if !grown && fetched.elapsed() < self.opts.attr_ttl {
            return Ok(r);
        }
        let version = h.file.version.load(Ordering::Acquire);
        let fresh = Arc::new(self.client.open(inode_ref(h.file.ino)).await?);
        tracing::debug!(
            ino = h.file.ino,
            known,
            now = fresh.attr().size,
            "read past the known end of file: layout fetched again"
        );
        let mut ra = locked(&h.ra);
        if ra.version == version && h.file.version.load(Ordering::Acquire) == version {
            ra.refetched(fresh.clone());
        }
        Ok(fresh)
    }

    /// A handle's reader older than the attribute TTL, for a read within the size it knows: the
    /// file's attributes are fetched again (one namenode call per TTL while the handle reads
    /// what the kernel has not cached); if another mount changed the file since, the handle
    /// reads it anew (see [`Inner::notice_change`]), as NFS revalidates a file on read.
    async fn revalidated(&self, h: &Handle, r: Arc<FileReader>) -> Res<Arc<FileReader>> {
        let me = Caller {
            creds: self.client.creds().clone(),
            pid: 0,
        };
        // A namenode that does not answer at once (away, restarting) must not hold up a read
        // the datanodes can serve: the handle reads what it knows, and checks again a TTL later
        // (waiting for the namenode, each read past the TTL blocked 60 s and failed; QA).
        let fresh =
            tokio::time::timeout(REVALIDATE_WAIT, self.getattr_remote(&me, h.file.ino)).await;
        let unchanged = |a: &pb::Attr| Seen::of(a) == Seen::of(r.attr());
        let a = match fresh {
            Ok(Ok(a)) if !unchanged(&a) => a,
            other => {
                match other {
                    Ok(Err(e)) => {
                        tracing::debug!(ino = h.file.ino, error = %e.why, "revalidation failed")
                    }
                    Err(_) => tracing::debug!(ino = h.file.ino, "revalidation: namenode slow"),
                    Ok(Ok(_)) => {}
                }
                let mut ra = locked(&h.ra);
                if ra.reader.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, &r)) {
                    ra.fetched = Some(Instant::now());
                }
                return Ok(r);
            }
        };
        // Changed since this handle's reader was fetched: every handle reads anew (unless this
        // mount noticed already, its seen version being the new one) and the kernel's pages go.
        if !self.notice_change(&a) {
            h.file.version.fetch_add(1, Ordering::AcqRel);
        }
        self.invalidate_inode_later(h.file.ino);
        self.reader(h).await
    }

    /// `[off, off+len)` of the committed file: through `reader` when it starts within the size
    /// the reader knows (short at that end of file), else with fresh locations (the file may have
    /// grown since the reader was opened).
    async fn read_committed(
        client: &ringfs_client::Client,
        reader: &FileReader,
        ino: u64,
        off: u64,
        len: u64,
    ) -> Result<Bytes, ClientError> {
        if off < reader.attr().size {
            reader.read_at(off, len).await
        } else {
            client.read_range(ino, off, len).await
        }
    }

    /// A chunk fetch running on the runtime (it goes on when the reader stops waiting).
    fn fetch_chunk(&self, reader: &Arc<FileReader>, ino: u64, k: u64) -> Chunk {
        let client = self.client.clone();
        let reader = reader.clone();
        let task = self.rt.spawn(async move {
            Inner::read_committed(&client, &reader, ino, k * RA_CHUNK, RA_CHUNK).await
        });
        async move {
            match task.await {
                Ok(Ok(b)) => Ok(b),
                Ok(Err(e)) => Err((errno_of(e.kind()), e.to_string())),
                Err(e) => Err((Errno::EIO, e.to_string())),
            }
        }
        .boxed()
        .shared()
    }

    /// Reads of a file nobody writes through this mount: sequential readers get aligned chunks
    /// fetched ahead; other reads go straight to the datanodes.
    async fn read_ahead(&self, h: &Handle, off: u64, size: u64) -> Res<Bytes> {
        let ino = h.file.ino;
        if size == 0 {
            return Ok(Bytes::new());
        }
        let (k0, k1) = (off / RA_CHUNK, (off + size - 1) / RA_CHUNK);
        let mut reader = self.reader_for(h, off, size).await?;
        let chunks: Option<Vec<(u64, Chunk)>> = {
            let mut ra = locked(&h.ra);
            let version = h.file.version.load(Ordering::Acquire);
            if ra.version != version {
                ra.reset(version);
            }
            // Chunks come from the handle's newest reader (another read may have fetched one
            // since): a chunk of an older one could end at the old end of file.
            if let Some(cur) = &ra.reader {
                reader = cur.clone();
            }
            if !ra.sequential(k0, off) {
                ra.streak = 0;
                ra.last = Some(k1);
                None
            } else {
                ra.streak += 1;
                ra.last = Some(k1);
                let ahead = if ra.streak >= 2 { RA_AHEAD } else { 0 };
                let last = ra.eof.map_or(k1 + ahead, |e| e.min(k1 + ahead)).max(k1);
                for k in k0..=last {
                    ra.chunks
                        .entry(k)
                        .or_insert_with(|| self.fetch_chunk(&reader, ino, k));
                }
                // Chunks behind the reader are done with.
                ra.chunks = ra.chunks.split_off(&k0.saturating_sub(1));
                Some(
                    (k0..=k1)
                        .filter_map(|k| ra.chunks.get(&k).map(|c| (k, c.clone())))
                        .collect(),
                )
            }
        };
        let Some(chunks) = chunks else {
            return Ok(Inner::read_committed(&self.client, &reader, ino, off, size).await?);
        };
        let mut out: Vec<Bytes> = Vec::with_capacity(chunks.len());
        for (k, c) in chunks {
            let data = match c.await {
                Ok(d) => d,
                Err((errno, why)) => {
                    locked(&h.ra).chunks.remove(&k);
                    return Err(Fail::new(errno, why));
                }
            };
            let start = k * RA_CHUNK;
            let from = off.max(start) - start;
            let to = (off + size)
                .min(start + data.len() as u64)
                .saturating_sub(start);
            if from < to {
                out.push(data.slice(from as usize..to as usize));
            }
            if (data.len() as u64) < RA_CHUNK {
                let mut ra = locked(&h.ra);
                if ra.reader.as_ref().is_some_and(|r| Arc::ptr_eq(r, &reader)) {
                    ra.eof = Some(ra.eof.map_or(k, |e| e.min(k)));
                }
                break;
            }
        }
        Ok(match out.len() {
            0 => Bytes::new(),
            1 => out.pop().unwrap_or_default(),
            _ => out.concat().into(),
        })
    }

    pub(crate) async fn write(&self, fh: u64, offset: u64, data: Bytes) -> Res<u32> {
        let h = self.handle(fh)?;
        if !h.write {
            return Err(Errno::EBADF.into());
        }
        let f = &h.file;
        let mut guard = f.state.lock().await;
        let st = &mut *guard;
        self.ensure_lease(f, st).await?;
        let Some(ov) = st.overlay.as_mut() else {
            return Err(Errno::EBADF.into());
        };
        let before = ov.bytes();
        let offset = if h.append { ov.size() } else { offset };
        if past_max_size(ov, offset.saturating_add(data.len() as u64)) {
            return Err(Errno::EFBIG.into());
        }
        for (o, l) in ov.loads_for_write(offset, data.len() as u64) {
            let base = self.client.read_range(f.ino, o, l).await?;
            let mut v = Vec::with_capacity(l as usize);
            v.extend_from_slice(&base);
            v.resize(l as usize, 0);
            ov.insert_loaded(o, v);
        }
        self.account(before, ov.bytes());
        self.write_overlay(f, st, offset, &data);
        self.settle_write(f, st).await?;
        Ok(data.len() as u32)
    }

    /// A write done at once on the FUSE thread, without copying the request's bytes first:
    /// possible when this mount holds the lease, no other operation holds the file's state and
    /// no base bytes need loading. Some(Done) = written and nothing left to do: answer at once
    /// (a small write then costs no hop to the runtime). Some(Settle(handle)) = written; the
    /// caller answers after [`Inner::after_write`]. None = nothing done, take the general path
    /// ([`Inner::write`]).
    pub(crate) fn write_now(&self, fh: u64, offset: u64, data: &[u8]) -> Option<Written> {
        let h = self.handle(fh).ok()?;
        if !h.write {
            return None;
        }
        let f = h.file.clone();
        let mut guard = f.state.try_lock().ok()?;
        let st = &mut *guard;
        let ov = st.overlay.as_mut()?;
        let offset = if h.append { ov.size() } else { offset };
        if past_max_size(ov, offset.saturating_add(data.len() as u64))
            || !ov.loads_for_write(offset, data.len() as u64).is_empty()
        {
            return None;
        }
        self.write_overlay(&f, st, offset, data);
        if self.must_settle(st) {
            drop(guard);
            return Some(Written::Settle(h));
        }
        Some(Written::Done)
    }

    /// Whether [`Inner::settle_write`] has anything to do: too many uploads in flight, a finished
    /// one to commit, or too many dirty bytes.
    fn must_settle(&self, st: &FileState) -> bool {
        let Some(ov) = st.overlay.as_ref() else {
            return false;
        };
        st.uploads.len() > self.upload_ahead(ov)
            || st.uploads.front().is_some_and(|u| u.task.is_finished())
            || self.over_dirty_limit(ov)
    }

    /// Whether the mount holds too much uncommitted data for this file to go on without a
    /// commit. A file whose only uncommitted data is its growing last block may go on up to 4
    /// times the limit: committing a partial block has the next append read it back and rewrite
    /// it, and several writers of large blocks each hold one (ten 64 MiB-block writers stalled
    /// rewriting their tails on every write).
    fn over_dirty_limit(&self, ov: &Overlay) -> bool {
        // The tail test walks the dirty blocks: only past the limit (this runs at every write).
        let dirty = self.dirty_bytes.load(Ordering::Acquire);
        dirty > self.opts.dirty_limit
            && (dirty > self.opts.dirty_limit.saturating_mul(4) || !ov.only_a_growing_tail())
    }

    /// How many block uploads of one file may be in flight before a write waits for the oldest.
    fn upload_ahead(&self, ov: &Overlay) -> usize {
        match self.opts.upload_ahead {
            0 => ((64 << 20) / ov.block_size().max(1)).clamp(2, 16) as usize,
            n => n,
        }
    }

    /// The rest of a [`Inner::write_now`]: see [`Inner::settle_write`].
    pub(crate) async fn after_write(&self, h: &Handle) -> Res<()> {
        let mut st = h.file.state.lock().await;
        self.settle_write(&h.file, &mut st).await
    }

    /// Writes `data` at `offset` into the overlay (whose base bytes there are loaded) and starts
    /// the background upload of each block it filled.
    fn write_overlay(&self, f: &OpenFile, st: &mut FileState, offset: u64, data: &[u8]) {
        let Some(ov) = st.overlay.as_mut() else {
            return;
        };
        let before = ov.bytes();
        let full = ov.write(offset, data);
        for i in full {
            if !ov.can_commit_alone(i) {
                continue;
            }
            if let Some((bytes, version)) = ov.seal(i) {
                let client = self.client.clone();
                let ino = f.ino;
                let task = self
                    .rt
                    .spawn(async move { client.write_new_block(ino, bytes).await });
                st.uploads.push_back(Upload {
                    index: i,
                    version,
                    task,
                });
            }
        }
        self.account(before, ov.bytes());
        f.changed(st);
        f.touch();
    }

    /// After a write: waits until no more than the allowed uploads run ahead of the writer, and
    /// commits when the mount holds too much dirty data.
    async fn settle_write(&self, f: &OpenFile, st: &mut FileState) -> Res<()> {
        let Some(ov) = st.overlay.as_ref() else {
            return Ok(());
        };
        let excess = st.uploads.len().saturating_sub(self.upload_ahead(ov));
        self.reap_uploads(f, st, excess).await;
        if st
            .overlay
            .as_ref()
            .is_some_and(|ov| self.over_dirty_limit(ov))
        {
            self.sync_locked(f, st, false).await?;
        }
        Ok(())
    }

    /// Commits finished background uploads (and waits for at least `wait` of them). A failed
    /// upload leaves its block dirty for the next full commit, which reports the error.
    async fn reap_uploads(&self, f: &OpenFile, st: &mut FileState, wait: usize) {
        let mut waited = 0;
        loop {
            match st.uploads.front() {
                Some(u) if waited < wait || u.task.is_finished() => {}
                _ => return,
            }
            let Some(u) = st.uploads.pop_front() else {
                return;
            };
            waited += 1;
            let block = match u.task.await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::warn!(ino = f.ino, block = u.index, error = %e, "background block upload failed; retrying at commit");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(ino = f.ino, block = u.index, error = %e, "background block upload task failed");
                    continue;
                }
            };
            let Some(ov) = st.overlay.as_mut() else {
                continue;
            };
            let Some((list, size)) = ov.commit_alone_plan(u.index, u.version, &block) else {
                continue;
            };
            match self
                .commit(f.ino, list.clone(), size, false, f.commit_mtime())
                .await
            {
                Ok(attr) => {
                    let before = ov.bytes();
                    ov.committed_alone(u.index, list, size);
                    self.account(before, ov.bytes());
                    st.attr = attr;
                    // Everything written is committed: the namenode's times hold from now on (a
                    // utimens after a write of whole blocks showed the write's time instead).
                    if !ov.is_dirty() {
                        f.untouch();
                    }
                }
                Err(e) => {
                    tracing::warn!(ino = f.ino, block = u.index, error = %e.why, "early commit failed; retrying at flush")
                }
            }
        }
    }

    /// CommitBlocks with this mount's lease. `mtime` None = the namenode's now.
    async fn commit(
        &self,
        ino: u64,
        blocks: Vec<pb::CommittedBlock>,
        size: u64,
        close: bool,
        mtime: Option<pb::Time>,
    ) -> Res<pb::Attr> {
        tracing::debug!(ino, size, close, ?mtime, blocks = blocks.len(), "commit");
        let req = pb::CommitBlocksRequest {
            inode: ino,
            client_id: self.client.client_id().to_string(),
            blocks,
            size,
            close,
            mtime,
            inline_data: None,
        };
        let a = self
            .query(
                &req,
                |mut nn, req| async move { nn.commit_blocks(req).await },
            )
            .await?
            .attr;
        let a =
            a.ok_or_else(|| Fail::new(Errno::EIO, "CommitBlocks answered without attributes"))?;
        // This mount's kernel cache already holds what was written: keep it valid.
        self.note_seen(&a);
        Ok(a)
    }

    /// Writes every dirty block and commits the file (close = give the lease back). Afterwards
    /// the data is on all live replicas and visible to every mount that opens the file.
    async fn sync_locked(&self, f: &OpenFile, st: &mut FileState, close: bool) -> Res<()> {
        self.reap_uploads(f, st, usize::MAX).await;
        let ino = f.ino;
        let Some(ov) = st.overlay.as_mut() else {
            return Ok(());
        };
        if ov.is_dirty() {
            let before = ov.bytes();
            let mtime = f.commit_mtime();
            if let Some(attr) = crate::small::commit(&self.client, ino, ov, close, mtime).await? {
                self.note_seen(&attr);
                self.account(before, ov.bytes());
                st.attr = attr;
                if close {
                    self.drop_lease_state(f, st);
                } else {
                    f.untouch();
                }
                return Ok(());
            }
            let size = ov.size();
            let plan = ov.commit_plan();
            let client = self.client.clone();
            let list: Vec<pb::CommittedBlock> = futures::stream::iter(plan)
                .map(|p| {
                    let client = client.clone();
                    async move {
                        match p {
                            Planned::Keep(b) => Ok(b),
                            Planned::Write { data } => client.write_new_block(ino, data).await,
                            Planned::Copy {
                                offset,
                                base_len,
                                len,
                            } => {
                                let data = client.read_range(ino, offset, base_len).await?;
                                client.write_new_block(ino, padded(data, len)).await
                            }
                        }
                    }
                })
                .buffered(COMMIT_PARALLELISM)
                .try_collect()
                .await?;
            let attr = self.commit(ino, list.clone(), size, close, mtime).await?;
            ov.committed(list);
            self.account(before, ov.bytes());
            st.attr = attr;
            f.untouch();
        } else if close {
            let mtime = st.attr.mtime;
            st.attr = match crate::small::close_clean(&self.client, ino, ov, mtime).await? {
                Some(attr) => {
                    self.note_seen(&attr);
                    attr
                }
                None => {
                    let (list, size) = (ov.base().to_vec(), ov.size());
                    self.commit(ino, list, size, true, mtime).await?
                }
            };
        }
        if close {
            self.drop_lease_state(f, st);
        }
        Ok(())
    }

    /// Forgets the overlay (the lease was given back, or cannot be used any more).
    fn drop_lease_state(&self, f: &OpenFile, st: &mut FileState) {
        let before = st.overlay.as_ref().map(|o| o.bytes()).unwrap_or(0);
        self.account(before, 0);
        st.overlay = None;
        for u in st.uploads.drain(..) {
            u.task.abort();
        }
        f.untouch();
        *locked(&f.kept_mtime) = None;
        f.changed(st);
    }

    /// Runs `send` (the SetAttr of a utimens of `ino`) and returns its attributes. When this
    /// mount has the file open, the file's state is held throughout: dirty data is committed
    /// first (a later commit would stamp its own time over the one set: `cp -p`, rsync and tar
    /// set times before they close), and a flush meanwhile waits until the new times are
    /// remembered. Such a flush (another process's close of a shared descriptor, as every
    /// fork and exec makes) committed the old times over the ones just set.
    pub(crate) async fn set_times<F, Fut>(
        &self,
        ino: u64,
        mtime_set: bool,
        send: F,
    ) -> Res<pb::Attr>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Res<pb::Attr>>,
    {
        let Some(f) = locked(&self.files).get(&ino).cloned() else {
            return send().await;
        };
        let mut st = f.state.lock().await;
        self.sync_locked(&f, &mut st, false).await?;
        let a = send().await?;
        st.attr = a;
        if mtime_set && st.writing() {
            f.keep_mtime(&a);
        }
        Ok(a)
    }

    /// Drops the kernel's cached pages and the handles' block lists of `ino` when it changed on
    /// another mount since this mount last saw it. Called when a lock is granted: a program that
    /// reads under `fcntl`/`flock` locks (sqlite) must see what the previous holder wrote, not
    /// only what was there at its `open` (close-to-open alone would allow that).
    pub(crate) async fn revalidate(&self, c: &Caller, ino: u64) -> Res<()> {
        let f = locked(&self.files).get(&ino).cloned();
        if f.as_ref().is_some_and(|f| f.local_size().is_some()) {
            // This mount holds the file's lease: nobody else can have changed it.
            return Ok(());
        }
        let attr = self.getattr_remote(c, ino).await?;
        if !self.note_seen(&attr) {
            self.forget_cached(ino).await;
        }
        Ok(())
    }

    /// Fresh attributes of a file: if it is open here and they show it changed on another
    /// mount since this mount last saw it, its handles fetch the new layout, and true: the
    /// caller drops the kernel's pages of it (at once from getattr/lookup, so the read after a
    /// `stat` that shows the change gets the new bytes; in the background from a READ, which
    /// holds some of them). So a descriptor kept open sees another mount's rewrite once the
    /// attribute TTL has passed, as on NFS; it read the old bytes (and past the new end of file)
    /// until the next open. A file this mount writes (holds the lease of) cannot have changed
    /// elsewhere.
    pub(crate) fn notice_change(&self, a: &pb::Attr) -> bool {
        if !is_file(a) {
            return false;
        }
        let Some(f) = locked(&self.files).get(&a.inode).cloned() else {
            return false;
        };
        if f.local_size().is_some() || self.note_seen(a) {
            return false;
        }
        tracing::debug!(
            ino = a.inode,
            "changed on another mount: cached pages and layout dropped"
        );
        f.version.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Drops the kernel's cached pages and the handles' block lists of `ino`.
    pub(crate) async fn forget_cached(&self, ino: u64) {
        let f = locked(&self.files).get(&ino).cloned();
        if let Some(f) = f {
            f.version.fetch_add(1, Ordering::AcqRel);
        }
        self.invalidate_inode(ino, true).await;
    }

    /// Ends this mount's writing of `f`: commits with close (the lease goes back) and drops the
    /// overlay, even when the commit fails (the error is returned; `flush` reported it already).
    pub(crate) async fn close_writer(&self, f: &OpenFile) -> Res<()> {
        let mut st = f.state.lock().await;
        if st.overlay.is_none() {
            return Ok(());
        }
        let r = self.sync_locked(f, &mut st, true).await;
        if let Err(e) = &r {
            self.abandon_lease(f, &mut st, e).await;
        }
        r
    }

    /// After a failed final commit (the caller reports it): the written data is dropped and the
    /// file's lease given back, so the file is closed at its last committed content. Keeping the
    /// lease kept the file under construction for as long as this mount lived (its lease is
    /// renewed with the mount's), and no other client could write it.
    async fn abandon_lease(&self, f: &OpenFile, st: &mut FileState, why: &Fail) {
        self.drop_lease_state(f, st);
        // The kernel still caches the pages written, and a reopen finds the file at the version
        // this mount saw last (nothing was committed), so it would keep them: drop both. The
        // kernel's invalidation is not waited for: it waits for the pages a READ of this file
        // holds locked while that READ waits for the file's state, which the caller holds (a
        // close that failed while another process read the file hung both for good).
        self.forget_seen(f.ino);
        f.version.fetch_add(1, Ordering::AcqRel);
        self.invalidate_inode_later(f.ino);
        let req = pb::RenewLeaseRequest {
            client_id: self.client.client_id().to_string(),
            inode: f.ino,
        };
        match self.nn().release_lease(req).await {
            Ok(_) => tracing::warn!(inode = f.ino, errno = ?why.errno, error = %why.why,
                "commit at close failed: the file keeps its last committed content"),
            Err(e) => {
                tracing::warn!(inode = f.ino, errno = ?why.errno, error = %why.why, release = %e.message(),
                "commit at close failed, and giving the file's lease back too: trying again \
                 until the namenode answers");
                self.release_lease_later(f.ino);
            }
        }
    }

    /// Gives `ino`'s lease back once the namenode answers again (a close while it was away could
    /// not): meanwhile this mount's renewals kept the file open for writing, and every other
    /// mount's write of it failed with EBUSY for as long as this mount lived. Stops when this
    /// mount writes the file again (it holds the lease rightly then) or ends.
    fn release_lease_later(&self, ino: u64) {
        self.retry_in_background(move |inner| async move {
            if let Some(f) = inner.file_ref_existing(ino) {
                let writing = f.state.lock().await.writers > 0;
                inner.file_unref(&f).await;
                if writing {
                    return true;
                }
            }
            let req = pb::RenewLeaseRequest {
                client_id: inner.client.client_id().to_string(),
                inode: ino,
            };
            match inner.nn().release_lease(req).await {
                Ok(_) => {
                    tracing::info!(inode = ino, "lease of a file whose close failed given back");
                    true
                }
                Err(e) => {
                    tracing::debug!(inode = ino, error = %e.message(), "lease release failed again");
                    false
                }
            }
        });
    }

    /// The commit at an unlock: what was written goes to the namenode with close (the lease goes
    /// back; a later write here takes it again). Unlike [`Inner::close_writer`], a failed commit
    /// keeps the overlay: the descriptor is still open, and its fsync or close must report (and
    /// retry) the data, not find nothing to commit.
    pub(crate) async fn commit_at_unlock(&self, f: &OpenFile) -> Res<()> {
        let mut st = f.state.lock().await;
        self.sync_locked(f, &mut st, true).await
    }

    /// flush (each close of a descriptor): written data is committed; POSIX locks of `owner` go.
    /// When this is the only handle writing the file here, the commit also gives the lease back
    /// (a later write through a duplicate descriptor takes it again). When `owner` held locks,
    /// the close is an unlock and commits as one does (`setlk`): before the locks go, and giving
    /// the lease back even with other descriptors open for writing here. Unlocking first let the
    /// next holder on another mount lock the file before the data was committed, and the lease
    /// kept by an idle descriptor made its writes fail with EBUSY.
    pub(crate) async fn flush(&self, fh: u64, owner: u64) -> Res<()> {
        let h = self.handle(fh)?;
        // `owner`'s locks go now; one it takes again through another handle before this one's
        // release must not go with that release.
        locked(&h.lock_owners).retain(|&o| o != owner);
        let result = if locked(&self.lock_owners).contains(&(h.file.ino, owner)) {
            self.commit_at_unlock(&h.file).await
        } else if h.write {
            let mut st = h.file.state.lock().await;
            let close = st.writers <= 1;
            self.sync_locked(&h.file, &mut st, close).await
        } else {
            Ok(())
        };
        self.unlock_owner(h.file.ino, owner).await;
        result
    }

    pub(crate) async fn fsync(&self, fh: u64) -> Res<()> {
        let h = self.handle(fh)?;
        // Any descriptor of the file: fsync makes the file's data durable, whoever wrote it
        // (`sync FILE` opens it read-only; that fsync returned 0 and committed nothing, QA).
        {
            let mut st = h.file.state.lock().await;
            if st.writing() {
                self.sync_locked(&h.file, &mut st, false).await?;
            }
        }
        // The namenode acknowledged the commit (and the create, renames...) once logged; fsync
        // is where they must survive a power loss, as on a local file system.
        Ok(self.client.sync().await?)
    }

    /// release (last close of an open file description): flock locks of `flock_owner` go; the
    /// last writer on this mount commits what is left and gives the lease back.
    pub(crate) async fn release(&self, fh: u64, flock_owner: Option<u64>) -> Res<()> {
        let Some(h) = locked(&self.handles).remove(&fh) else {
            return Err(Errno::EBADF.into());
        };
        let f = h.file.clone();
        let mut result = Ok(());
        let mut owners = std::mem::take(&mut *locked(&h.lock_owners));
        owners.extend(flock_owner);
        for owner in owners {
            // An unlock: commit first, as `flush` does for POSIX locks.
            if locked(&self.lock_owners).contains(&(f.ino, owner)) {
                let r = self.commit_at_unlock(&f).await;
                if result.is_ok() {
                    result = r;
                }
            }
            self.unlock_owner(f.ino, owner).await;
        }
        if h.write {
            let mut st = f.state.lock().await;
            st.writers = st.writers.saturating_sub(1);
            if st.writers == 0 {
                drop(st);
                result = self.close_writer(&f).await;
            }
        }
        drop(h);
        self.file_unref(&f).await;
        result
    }

    /// truncate/ftruncate. While this mount holds the file's lease the overlay is cut (committed
    /// at the next flush). Otherwise the namenode grows the file or cuts it at a block boundary
    /// itself, and a cut inside a block is a copy-on-write of that block under the lease.
    pub(crate) async fn truncate(
        &self,
        c: &Caller,
        ino: u64,
        size: u64,
        by_handle: bool,
    ) -> Res<()> {
        // The namenode checks SetAttr itself; local cuts and copy-on-write need a check here
        // (ftruncate: the kernel checked that the descriptor is writable).
        let mut checked = by_handle;
        if !checked && locked(&self.files).contains_key(&ino) {
            self.access(c, ino, libc::W_OK as u32).await?;
            checked = true;
        }
        if let Some(f) = self.file_ref_existing(ino) {
            let r = self.truncate_local(&f, size).await;
            self.file_unref(&f).await;
            if r? {
                return Ok(());
            }
        }
        let attr = self.getattr_remote(c, ino).await?;
        if attr.kind == pb::FileKind::Directory as i32 {
            return Err(Errno::EISDIR.into());
        }
        if attr.kind != pb::FileKind::File as i32 {
            return Err(Errno::EINVAL.into());
        }
        if size >= attr.size || attr.block_size == 0 || size.is_multiple_of(attr.block_size) {
            let req = pb::SetAttrRequest {
                creds: Some(c.creds.clone()),
                node: Some(node(ino)),
                size: Some(size),
                client_id: self.client.client_id().to_string(),
                ..Default::default()
            };
            let a = self
                .query_while_busy(&req, |mut nn, req| async move { nn.set_attr(req).await })
                .await?
                .attr;
            if let Some(a) = a {
                self.note_seen(&a);
            }
            // Handles open here may hold the old block list and readahead chunks: a cut and
            // regrow must read zeros, not the freed blocks' bytes.
            if let Some(f) = locked(&self.files).get(&ino) {
                f.version.fetch_add(1, Ordering::AcqRel);
            }
            return Ok(());
        }
        // A cut inside a block: copy-on-write of that block.
        if !checked {
            self.access(c, ino, libc::W_OK as u32).await?;
        }
        let f = self.file_ref(ino);
        let r = async {
            let mut st = f.state.lock().await;
            self.ensure_lease(&f, &mut st).await?;
            if let Some(ov) = st.overlay.as_mut() {
                let before = ov.bytes();
                ov.truncate(size);
                self.account(before, ov.bytes());
            }
            f.changed(&st);
            f.touch();
            if st.writers == 0 {
                if let Err(e) = self.sync_locked(&f, &mut st, true).await {
                    self.abandon_lease(&f, &mut st, &e).await;
                    return Err(e);
                }
            }
            Ok(())
        }
        .await;
        self.file_unref(&f).await;
        r
    }

    /// Cuts the overlay if this mount holds the lease; false when it does not.
    async fn truncate_local(&self, f: &OpenFile, size: u64) -> Res<bool> {
        let mut guard = f.state.lock().await;
        let st = &mut *guard;
        let Some(ov) = st.overlay.as_mut() else {
            return Ok(false);
        };
        if past_max_size(ov, size) {
            return Err(Errno::EFBIG.into());
        }
        let before = ov.bytes();
        ov.truncate(size);
        self.account(before, ov.bytes());
        f.changed(st);
        f.touch();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn located_blocks_become_a_gapless_committed_list() {
        let lb = |id, offset, len| pb::LocatedBlock {
            id,
            generation: 1,
            offset,
            len,
            ..Default::default()
        };
        let list = committed_list(&[lb(2, 10, 5), lb(1, 0, 10), lb(3, 20, 4)]);
        let ids: Vec<(u64, u64)> = list.iter().map(|b| (b.id, b.len)).collect();
        assert_eq!(ids, vec![(1, 10), (2, 5), (0, 5), (3, 4)]);
    }

    #[test]
    fn readahead_treats_neighbouring_chunks_as_sequential() {
        let mut ra = ReadAhead::default();
        assert!(ra.sequential(0, 0), "a read from the start");
        assert!(
            !ra.sequential(5, 5 * RA_CHUNK + 7),
            "a first read in the middle"
        );
        ra.last = Some(5);
        assert!(ra.sequential(5, 5 * RA_CHUNK + 4096));
        assert!(ra.sequential(6, 6 * RA_CHUNK));
        assert!(!ra.sequential(9, 9 * RA_CHUNK));
        ra.reset(3);
        assert_eq!((ra.version, ra.last, ra.streak), (3, None, 0));
    }
}
