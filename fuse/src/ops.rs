//! The mount's shared state ([`Inner`]) and the namespace operations: each is one namenode RPC
//! with the caller's credentials, plus the local views (dirty sizes) and cache invalidation.

use crate::attr::{self, is_file};
use crate::creds::Caller;
use crate::dir::DirHandle;
use crate::error::{Fail, Res};
use crate::file::{Handle, OpenFile};
use crate::MountOptions;
use fuser::{Errno, INodeNo, Notifier, TimeOrNow};
use ringfs_client::Client;
use ringfs_proto::pb::namenode_client::NamenodeClient;
use ringfs_proto::{pb, ErrorKind};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Prefix of the hidden names that keep unlinked-but-open files alive (not listed by readdir).
pub(crate) const HIDDEN_PREFIX: &str = ringfs_client::OPEN_FILE_HIDDEN_PREFIX;

/// How long a call refused for a busy lease is retried (see [`Inner::query_while_busy`]).
const LEASE_WAIT: Duration = Duration::from_secs(3);

/// How long after the kernel looked a file up a rename over it keeps the replaced inode alive
/// (under a hidden name), for an `open` of the name that raced with the rename.
const LOOKUP_GRACE: Duration = Duration::from_secs(1);

/// Largest number of inodes whose last-seen version `open` remembers (then the memory is reset:
/// the only cost is one dropped page cache per file).
const SEEN_LIMIT: usize = 100_000;

/// What `open` saw of a file last time: when it differs, the file changed elsewhere and the
/// kernel's cached pages and attributes of it are dropped (close-to-open).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Seen {
    generation: u64,
    size: u64,
    mtime: (i64, u32),
}

impl Seen {
    pub(crate) fn of(a: &pb::Attr) -> Seen {
        let mtime = a
            .mtime
            .as_ref()
            .map(|t| (t.secs, t.nanos))
            .unwrap_or_default();
        Seen {
            generation: a.generation,
            size: a.size,
            mtime,
        }
    }
}

/// State shared by all callbacks of one mount.
pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) opts: MountOptions,
    /// The runtime callbacks spawn their work on (fuser threads are not tokio threads).
    pub(crate) rt: tokio::runtime::Handle,
    /// Set once the session exists; used to drop kernel caches of entries and inodes.
    notifier: OnceLock<Notifier>,
    /// Files with open handles on this mount, by inode: the per-inode dirty overlay lives here so
    /// every handle of a file sees the same bytes. Short critical sections only.
    pub(crate) files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    /// Open file handles by `fh`.
    pub(crate) handles: Mutex<HashMap<u64, Arc<Handle>>>,
    /// Set when `finish` starts (unmount on Ctrl-C/SIGTERM): no file's lease is taken any more,
    /// then the handles are committed and gone, and a process still using one gets EIO, not
    /// EBADF, which reads as a bug in the program.
    pub(crate) finished: std::sync::atomic::AtomicBool,
    /// Open directory handles by `fh`.
    pub(crate) dirs: Mutex<HashMap<u64, Arc<DirHandle>>>,
    /// Held for writing by an unlink or a rename over a file while it checks whether its victim
    /// is open here and removes it; `open` registers its file under it (reading). So a file this
    /// mount is opening is never freed by a concurrent replace here: it gets a hidden name like
    /// an open one, and `open` either fails before (ESTALE: the kernel looks the name up again)
    /// or keeps a usable file (writers renaming new versions over a file readers open).
    pub(crate) replacing: tokio::sync::RwLock<()>,
    /// Files (last link) the kernel looked up lately, by inode: an `open` may follow. A rename
    /// over one keeps the replaced inode for `LOOKUP_GRACE` (see `rename`).
    looked_up: Mutex<HashMap<u64, Instant>>,
    /// Hidden names (parent, name, inode) kept by a rename for `LOOKUP_GRACE`, not open here.
    pending_hidden: Mutex<Vec<(u64, String, u64)>>,
    /// This state itself, for tasks that outlive a callback (set once by `mount`).
    pub(crate) me: OnceLock<std::sync::Weak<Inner>>,
    next_fh: AtomicU64,
    /// Last version of each file `open` saw (see [`Seen`]).
    seen: Mutex<HashMap<u64, Seen>>,
    /// Dirty bytes of all overlays (compared with `opts.dirty_limit`).
    pub(crate) dirty_bytes: AtomicU64,
    /// (inode, lock owner) pairs that hold or held a lock through this mount: `flush`/`release`
    /// unlock only these, so closing a file never costs an RPC when no lock was taken.
    pub(crate) lock_owners: Mutex<HashSet<(u64, u64)>>,
    /// The mount's device numbers (its bdi in sysfs is named after them) and its mountpoint.
    device: OnceLock<((u32, u32), std::path::PathBuf)>,
    /// Signalled when the FUSE session ends with this mount gone from its mountpoint (see
    /// `RingFs::destroy`).
    pub(crate) session_over: tokio::sync::Notify,
    /// Whether `tune_readahead` ran.
    readahead_tuned: AtomicBool,
    /// Recent `security.capability` answers (the kernel asks before every write; see `xattr`).
    pub(crate) capability: crate::xattr::CapabilityCache,
    /// Inodes the kernel was told lately have no extended attribute (see `xattr`).
    pub(crate) bare: crate::xattr::Bare,
}

/// Locks a std mutex, ignoring poisoning (a panicked task must not take the mount down).
pub(crate) fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn node(ino: u64) -> pb::NodeRef {
    pb::NodeRef {
        target: Some(pb::node_ref::Target::Inode(ino)),
    }
}

pub(crate) fn child(parent: u64, name: &str) -> pb::EntryRef {
    pb::EntryRef {
        target: Some(pb::entry_ref::Target::Child(pb::ChildRef {
            parent,
            name: name.to_string(),
        })),
    }
}

fn attr_of(a: Option<pb::Attr>) -> Res<pb::Attr> {
    a.ok_or_else(|| Fail::new(Errno::EIO, "namenode answered without attributes"))
}

impl Inner {
    pub(crate) fn new(client: Client, opts: MountOptions, rt: tokio::runtime::Handle) -> Inner {
        Inner {
            client,
            opts,
            rt,
            notifier: OnceLock::new(),
            files: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            finished: std::sync::atomic::AtomicBool::new(false),
            dirs: Mutex::new(HashMap::new()),
            replacing: tokio::sync::RwLock::new(()),
            looked_up: Mutex::new(HashMap::new()),
            pending_hidden: Mutex::new(Vec::new()),
            me: OnceLock::new(),
            next_fh: AtomicU64::new(1),
            seen: Mutex::new(HashMap::new()),
            dirty_bytes: AtomicU64::new(0),
            lock_owners: Mutex::new(HashSet::new()),
            device: OnceLock::new(),
            session_over: tokio::sync::Notify::new(),
            readahead_tuned: AtomicBool::new(false),
            capability: Default::default(),
            bare: Default::default(),
        }
    }

    pub(crate) fn set_self(&self, me: std::sync::Weak<Inner>) {
        let _ = self.me.set(me);
    }

    /// Runs `attempt` on the runtime after 1, 2, 4, then every 5 s (one cheap failed call per
    /// 5 s while the namenode is away) until it returns true or the mount ends.
    pub(crate) fn retry_in_background<F, Fut>(&self, mut attempt: F)
    where
        F: FnMut(Arc<Inner>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let Some(me) = self.me.get().cloned() else {
            return;
        };
        self.rt.spawn(async move {
            let mut pause = Duration::from_secs(1);
            loop {
                tokio::time::sleep(pause).await;
                let Some(inner) = me.upgrade() else { return };
                if attempt(inner).await {
                    return;
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        });
    }

    pub(crate) fn set_notifier(&self, n: Notifier) {
        let _ = self.notifier.set(n);
    }

    pub(crate) fn set_device(&self, major_minor: (u32, u32), mountpoint: &std::path::Path) {
        let _ = self.device.set((major_minor, mountpoint.to_path_buf()));
    }

    /// Whether another mount (or none) is at this mount's mountpoint now: it was detached
    /// lazily, or unmounted. False when unknown.
    pub(crate) fn gone_from_mountpoint(&self) -> bool {
        self.device
            .get()
            .is_some_and(|(dev, path)| crate::mountpoint::mounted_device(path) != Some(*dev))
    }

    /// Sets the kernel's readahead for this mount (`MountOptions::readahead`), once. Called from
    /// `open`/`create`: a request after INIT means the kernel applied the INIT answer, which caps
    /// the readahead at the value it offered (128 KiB) and would undo an earlier setting.
    pub(crate) fn tune_readahead(&self) {
        if self.opts.readahead == 0 || self.readahead_tuned.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(((major, minor), _)) = self.device.get() else {
            return;
        };
        let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
        let kb = (self.opts.readahead / 1024).max(4);
        match std::fs::write(&path, kb.to_string()) {
            Ok(()) => tracing::debug!(path, kb, "readahead set"),
            Err(e) => tracing::debug!(path, error = %e, "cannot set the mount's readahead"),
        }
    }

    pub(crate) fn nn(&self) -> NamenodeClient<Channel> {
        self.client.namenode()
    }

    /// A namenode call whose repetition is harmless (lookup, getattr, readdir, statfs, setattr,
    /// commits of a whole block list; creates, links, renames and removes that carry a
    /// [`Client::retry_id`]), sent again when it failed in transport: see
    /// [`Client::again_in_transport`].
    pub(crate) async fn query<R, T, F, Fut>(&self, req: &R, call: F) -> Result<T, tonic::Status>
    where
        R: Clone,
        F: Fn(NamenodeClient<Channel>, R) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.client
            .again_in_transport(req, call)
            .await
            .map(tonic::Response::into_inner)
    }

    /// [`query`](Self::query), sent again while the file's lease is busy, for up to
    /// `LEASE_WAIT`: another mount gives it back just after its `close` returns, and a holder
    /// silent past the soft limit has it taken back by the namenode's recovery (which the
    /// refusal starts).
    pub(crate) async fn query_while_busy<R, T, F, Fut>(
        &self,
        req: &R,
        call: F,
    ) -> Result<T, tonic::Status>
    where
        R: Clone,
        F: Fn(NamenodeClient<Channel>, R) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + LEASE_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.query(req, &call).await {
                Err(s) if ErrorKind::of(&s) == ErrorKind::Busy && Instant::now() < deadline => {
                    tracing::debug!(error = %s.message(), "lease busy, retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                r => return r,
            }
        }
    }

    pub(crate) fn next_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    /// `a` as this mount sees it: a file with a dirty overlay here has the overlay's size.
    pub(crate) fn local_view(&self, mut a: pb::Attr) -> pb::Attr {
        if is_file(&a) {
            if let Some(f) = locked(&self.files).get(&a.inode) {
                f.adjust(&mut a);
            }
        }
        a
    }

    /// Drops the kernel's cached attributes of `ino` (and its cached pages with `pages`).
    /// Runs on a blocking thread: the kernel may wait on page locks while it invalidates.
    pub(crate) async fn invalidate_inode(&self, ino: u64, pages: bool) {
        if let Some(n) = self.notifier.get().cloned() {
            let offset = if pages { 0 } else { -1 };
            let r =
                tokio::task::spawn_blocking(move || n.inval_inode(INodeNo(ino), offset, 0)).await;
            if let Ok(Err(e)) = r {
                tracing::debug!(ino, error = %e, "inval_inode failed");
            }
        }
    }

    /// [`Inner::invalidate_inode`] (pages too) in the background: for callers that hold the
    /// file's state, which a READ waiting on the pages the invalidation needs may wait for.
    pub(crate) fn invalidate_inode_later(&self, ino: u64) {
        if let Some(me) = self.me.get().and_then(|w| w.upgrade()) {
            self.rt
                .spawn(async move { me.invalidate_inode(ino, true).await });
        }
    }

    /// Forgets the version of `ino` seen last: the next `open` drops the kernel's cached pages.
    pub(crate) fn forget_seen(&self, ino: u64) {
        locked(&self.seen).remove(&ino);
    }

    /// Records the version of a file `open` (or this mount's own commit) saw; true when it is
    /// the version seen last time (the kernel's cached pages are still good).
    pub(crate) fn note_seen(&self, a: &pb::Attr) -> bool {
        let mut seen = locked(&self.seen);
        if seen.len() >= SEEN_LIMIT {
            seen.clear();
        }
        seen.insert(a.inode, Seen::of(a)) == Some(Seen::of(a))
    }

    // ------------------------------------------------------------------ namespace

    pub(crate) async fn lookup(&self, c: &Caller, parent: u64, name: &str) -> Res<pb::Attr> {
        let req = pb::LookupRequest {
            creds: Some(c.creds.clone()),
            entry: Some(child(parent, name)),
        };
        let r = self
            .query(&req, |mut nn, req| async move { nn.lookup(req).await })
            .await?;
        let a = attr_of(r.attr)?;
        self.note_entry(&a).await;
        if self.notice_change(&a) {
            self.invalidate_inode(a.inode, true).await;
        }
        Ok(self.local_view(a))
    }

    /// Records that the kernel learns the inode of a file name now (lookup, create): it may
    /// open it from its cached entry until the entry TTL runs out.
    pub(crate) async fn note_entry(&self, a: &pb::Attr) {
        if is_file(a) && a.nlink == 1 {
            // Under `replacing`: a rename that frees this inode either ran before (the kernel's
            // open gets ESTALE and looks the name up again) or sees this entry.
            let _replacing = self.replacing.read().await;
            let grace = self.entry_grace();
            let mut seen = locked(&self.looked_up);
            if seen.len() >= 4096 {
                seen.retain(|_, t| t.elapsed() < grace);
            }
            seen.insert(a.inode, Instant::now());
        }
    }

    /// How long after the kernel learned an inode an open of it may still come: its cached
    /// entry lives `entry_ttl`, and the opener may have validated it just before expiry.
    fn entry_grace(&self) -> Duration {
        self.opts.entry_ttl + LOOKUP_GRACE
    }

    fn looked_up_lately(&self, ino: u64) -> bool {
        let grace = self.entry_grace();
        locked(&self.looked_up)
            .get(&ino)
            .is_some_and(|t| t.elapsed() < grace)
    }

    /// Removes the hidden name of a file nothing here has open any more, `LOOKUP_GRACE` from now
    /// when the kernel looked the file up lately (an open of it may be on its way), else now.
    pub(crate) async fn release_hidden(&self, parent: u64, name: String, ino: u64) {
        if self.looked_up_lately(ino) {
            self.defer_hidden_removal(parent, name, ino);
            return;
        }
        let me = Caller {
            creds: self.client.creds().clone(),
            pid: 0,
        };
        if let Err(e) = self.remove_entry(&me, parent, &name, false).await {
            tracing::warn!(ino, name, error = %e.why, "cannot remove the hidden name of an unlinked file");
        }
    }

    /// Keeps hidden name `parent/name` of `ino` for `LOOKUP_GRACE`, then ends it.
    fn defer_hidden_removal(&self, parent: u64, name: String, ino: u64) {
        locked(&self.pending_hidden).push((parent, name.clone(), ino));
        if let Some(me) = self.me.get().and_then(|w| w.upgrade()) {
            self.rt.spawn(async move {
                tokio::time::sleep(LOOKUP_GRACE).await;
                me.end_pending_hidden(parent, &name, ino).await;
            });
        }
    }

    /// Ends the grace of a hidden name kept by `rename`: removed now unless the file is open
    /// here (then its last close removes it).
    async fn end_pending_hidden(&self, parent: u64, name: &str, ino: u64) {
        let _replacing = self.replacing.write().await;
        locked(&self.pending_hidden).retain(|(p, n, _)| !(*p == parent && n == name));
        if let Some(f) = self.file_ref_existing(ino) {
            locked(&f.hidden).push((parent, name.to_string()));
            self.file_unref(&f).await;
            return;
        }
        let me = Caller {
            creds: self.client.creds().clone(),
            pid: 0,
        };
        let _ = self.remove_entry(&me, parent, name, false).await;
    }

    /// rmdir found the directory not empty: ends the grace of the hidden names `rename` keeps
    /// in it now (true if there were any, so the rmdir is worth trying again).
    async fn end_pending_hidden_in(&self, dir: u64) -> bool {
        let names: Vec<(u64, String, u64)> = locked(&self.pending_hidden)
            .iter()
            .filter(|(p, _, _)| *p == dir)
            .cloned()
            .collect();
        for (p, n, ino) in &names {
            self.end_pending_hidden(*p, n, *ino).await;
        }
        !names.is_empty()
    }

    /// A directory whose only entries are hidden names (of files kept open by other mounts, or
    /// left by a mount that was killed): they are not listed, so for `rmdir` the directory is
    /// empty, and removing it must not fail with ENOTEMPTY. Removes them; true if it did. A mount
    /// still reading such a file then gets ESTALE, as on NFS when another client removes it.
    async fn remove_leftover_hidden_in(&self, c: &Caller, dir: u64) -> bool {
        let Ok(page) = self.read_dir_page(&c.creds, dir, "").await else {
            return false;
        };
        if page.more
            || page.entries.is_empty()
            || !page.entries.iter().all(ringfs_proto::is_hidden_dir_entry)
        {
            return false;
        }
        for e in &page.entries {
            let r = match self.hidden_owner(dir, &e.name) {
                // A file open on this mount: as on a local file system its descriptors keep
                // working after the rmdir; its name moves to the root (ended at its last close).
                Some(f) => {
                    let moved = self.move_hidden_to_root(&f, dir, &e.name).await;
                    self.file_unref(&f).await;
                    moved
                }
                None => self.remove_entry(c, dir, &e.name, false).await,
            };
            if let Err(err) = r {
                tracing::debug!(dir = dir, name = %e.name, error = %err.why, "leftover hidden name not removed");
                return false;
            }
        }
        true
    }

    /// Moves hidden name `dir/name` of `f` (open here, referenced by the caller) to the root.
    async fn move_hidden_to_root(&self, f: &OpenFile, dir: u64, name: &str) -> Res<()> {
        let me = Caller {
            creds: self.client.creds().clone(),
            pid: 0,
        };
        let to = format!("{name}-{dir}");
        self.rename(&me, dir, name, ringfs_proto::ROOT_INODE, &to, true, false)
            .await?;
        let mut hidden = locked(&f.hidden);
        if let Some(h) = hidden.iter_mut().find(|(p, n)| *p == dir && n == name) {
            *h = (ringfs_proto::ROOT_INODE, to);
        }
        Ok(())
    }

    /// Fresh attributes from the namenode (no local view).
    pub(crate) async fn getattr_remote(&self, c: &Caller, ino: u64) -> Res<pb::Attr> {
        self.getattr_checked(c, ino, 0).await
    }

    /// Attributes from the namenode, failing with EACCES unless the caller has `mask` access
    /// (access(2) bits; W_OK is not checked on a directory).
    pub(crate) async fn getattr_checked(&self, c: &Caller, ino: u64, mask: u32) -> Res<pb::Attr> {
        let req = pb::GetAttrRequest {
            creds: Some(c.creds.clone()),
            node: Some(node(ino)),
            access_mask: mask,
            client_id: self.client.client_id().to_string(),
        };
        let r = self
            .query(&req, |mut nn, req| async move { nn.get_attr(req).await })
            .await?;
        attr_of(r.attr)
    }

    pub(crate) async fn getattr(&self, c: &Caller, ino: u64) -> Res<pb::Attr> {
        let a = self.getattr_remote(c, ino).await?;
        if self.notice_change(&a) {
            self.invalidate_inode(a.inode, true).await;
        }
        Ok(self.local_view(a))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn setattr(
        &self,
        c: &Caller,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        by_handle: bool,
    ) -> Res<pb::Attr> {
        if let Some(size) = size {
            self.truncate(c, ino, size, by_handle).await?;
        }
        let times = atime.is_some() || mtime.is_some();
        if mode.is_none() && uid.is_none() && gid.is_none() && !times {
            return self.getattr(c, ino).await;
        }
        let req = pb::SetAttrRequest {
            creds: Some(c.creds.clone()),
            node: Some(node(ino)),
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            atime: attr::time_set(atime),
            mtime: attr::time_set(mtime),
            size: None,
            client_id: self.client.client_id().to_string(),
        };
        let send = || async {
            let r = self
                .query(&req, |mut nn, req| async move { nn.set_attr(req).await })
                .await?;
            attr_of(r.attr)
        };
        let a = if times {
            self.set_times(ino, mtime.is_some(), send).await?
        } else {
            let a = send().await?;
            self.remember_attr(&a).await;
            a
        };
        tracing::debug!(ino, mtime = ?a.mtime, "attributes set");
        Ok(self.local_view(a))
    }

    pub(crate) async fn readlink(&self, c: &Caller, ino: u64) -> Res<String> {
        let req = pb::ReadlinkRequest {
            creds: Some(c.creds.clone()),
            node: Some(node(ino)),
        };
        let r = self
            .query(&req, |mut nn, req| async move { nn.readlink(req).await })
            .await?;
        Ok(r.target)
    }

    pub(crate) async fn mkdir(
        &self,
        c: &Caller,
        parent: u64,
        name: &str,
        mode: u32,
    ) -> Res<pb::Attr> {
        let req = pb::MkdirRequest {
            creds: Some(c.creds.clone()),
            entry: Some(child(parent, name)),
            mode: mode & 0o7777,
            parents: false,
            retry: Some(self.client.retry_id()),
        };
        let r = self
            .query(&req, |mut nn, req| async move { nn.mkdir(req).await })
            .await?;
        attr_of(r.attr)
    }

    pub(crate) async fn mknod(
        &self,
        c: &Caller,
        parent: u64,
        name: &str,
        mode: u32,
        rdev: u32,
    ) -> Res<pb::Attr> {
        let kind = attr::kind_of_mode(mode)
            .ok_or_else(|| Fail::new(Errno::EINVAL, "mknod of this kind"))?;
        let req = pb::MknodRequest {
            creds: Some(c.creds.clone()),
            entry: Some(child(parent, name)),
            kind: kind as i32,
            mode: mode & 0o7777,
            rdev,
            retry: Some(self.client.retry_id()),
        };
        let r = self
            .query(&req, |mut nn, req| async move { nn.mknod(req).await })
            .await?;
        attr_of(r.attr)
    }

    pub(crate) async fn symlink(
        &self,
        c: &Caller,
        parent: u64,
        name: &str,
        target: &str,
    ) -> Res<pb::Attr> {
        let req = pb::SymlinkRequest {
            creds: Some(c.creds.clone()),
            entry: Some(child(parent, name)),
            target: target.to_string(),
            retry: Some(self.client.retry_id()),
        };
        let r = self
            .query(&req, |mut nn, req| async move { nn.symlink(req).await })
            .await?;
        attr_of(r.attr)
    }

    pub(crate) async fn link(
        &self,
        c: &Caller,
        ino: u64,
        parent: u64,
        name: &str,
    ) -> Res<pb::Attr> {
        let req = pb::LinkRequest {
            creds: Some(c.creds.clone()),
            existing: Some(node(ino)),
            new_entry: Some(child(parent, name)),
            retry: Some(self.client.retry_id()),
        };
        let r = self
            .query(&req, |mut nn, req| async move { nn.link(req).await })
            .await?;
        let a = attr_of(r.attr)?;
        Ok(self.local_view(a))
    }

    /// The file `parent/name` if it is open on this mount and this is its last link (unlinking
    /// or replacing it would free the inode under its open handles). Holds a file reference.
    async fn open_last_link(&self, c: &Caller, parent: u64, name: &str) -> Option<Arc<OpenFile>> {
        if locked(&self.files).is_empty() {
            return None;
        }
        let req = pb::LookupRequest {
            creds: Some(c.creds.clone()),
            entry: Some(child(parent, name)),
        };
        let a = self.nn().lookup(req).await.ok()?.into_inner().attr?;
        if !is_file(&a) || a.nlink != 1 {
            return None;
        }
        self.file_ref_existing(a.inode)
    }

    fn hidden_name(&self, ino: u64) -> String {
        ringfs_proto::open_file_hidden_name(ino, self.client.client_id())
    }

    /// unlink (`directory` false) or rmdir (true). A file open on this mount keeps working after
    /// its last name goes: the name is renamed to a hidden one, removed at the last close (like
    /// NFS). Handles on other mounts of an unlinked file get ESTALE.
    pub(crate) async fn remove(
        &self,
        c: &Caller,
        parent: u64,
        name: &str,
        directory: bool,
    ) -> Res<()> {
        if !directory {
            let _replacing = self.replacing.write().await;
            if let Some(f) = self.open_last_link(c, parent, name).await {
                let hidden = self.hidden_name(f.ino);
                // A hidden target: `rename` does not take `replacing` again.
                let r = self
                    .rename(c, parent, name, parent, &hidden, false, false)
                    .await;
                if r.is_ok() {
                    locked(&f.hidden).push((parent, hidden));
                }
                self.file_unref(&f).await;
                return r;
            }
        }
        let r = self.remove_entry(c, parent, name, directory).await;
        match r {
            Err(e) if directory && e.errno == Errno::ENOTEMPTY => {
                match self.clear_hidden_names_in(c, parent, name).await {
                    true => self.remove_entry(c, parent, name, directory).await,
                    false => Err(e),
                }
            }
            r => r,
        }
    }

    /// The directory `parent/name` holds nothing but hidden names (not listed, so it is empty
    /// to its users): ends or moves them away (see [`Inner::remove_leftover_hidden_in`]), so
    /// that an rmdir of it, or a rename over it, does not fail with ENOTEMPTY. True if it did.
    async fn clear_hidden_names_in(&self, c: &Caller, parent: u64, name: &str) -> bool {
        let Ok(dir) = self.lookup(c, parent, name).await else {
            return false;
        };
        if pb::FileKind::try_from(dir.kind) != Ok(pb::FileKind::Directory) {
            return false;
        }
        // Names of files opened in their grace first; then what is left, if only hidden names.
        let ended = self.end_pending_hidden_in(dir.inode).await;
        let removed = self.remove_leftover_hidden_in(c, dir.inode).await;
        ended || removed
    }

    /// The Remove RPC alone.
    pub(crate) async fn remove_entry(
        &self,
        c: &Caller,
        parent: u64,
        name: &str,
        directory: bool,
    ) -> Res<()> {
        let req = pb::RemoveRequest {
            creds: Some(c.creds.clone()),
            entry: Some(child(parent, name)),
            recursive: false,
            directory,
            any_kind: false,
            retry: Some(self.client.retry_id()),
            // A hidden name's removal is this mount's bookkeeping: the unlink or rename that
            // made it set the directory's times already.
            keep_parent_times: name.starts_with(ringfs_proto::OPEN_FILE_HIDDEN_PREFIX),
        };
        self.query(&req, |mut nn, req| async move { nn.remove(req).await })
            .await?;
        Ok(())
    }

    /// rename(2) with RENAME_NOREPLACE / RENAME_EXCHANGE. Replacing a file open on this mount
    /// first gives it a hidden link (see `remove`), so the rename itself stays one atomic step.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn rename(
        &self,
        c: &Caller,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
        exchange: bool,
    ) -> Res<()> {
        let mut kept = None;
        let may_free = !no_replace && !exchange && !new_name.starts_with(HIDDEN_PREFIX);
        let _replacing = match may_free {
            true => Some(self.replacing.write().await),
            false => None,
        };
        let mut pending = None;
        if may_free {
            if let Some(f) = self.open_last_link(c, new_parent, new_name).await {
                let hidden = self.hidden_name(f.ino);
                match self.link(c, f.ino, new_parent, &hidden).await {
                    Ok(_) => kept = Some((f, hidden)),
                    Err(_) => self.file_unref(&f).await,
                }
            } else if !locked(&self.looked_up).is_empty() {
                // Not open, but the kernel looked it up a moment ago: an open of the name may
                // be on its way with this inode (writers renaming new versions over a file that
                // readers open). Keep it alive for that open a little while.
                let req = pb::LookupRequest {
                    creds: Some(c.creds.clone()),
                    entry: Some(child(new_parent, new_name)),
                };
                let victim = self
                    .nn()
                    .lookup(req)
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().attr);
                if let Some(a) =
                    victim.filter(|a| is_file(a) && a.nlink == 1 && self.looked_up_lately(a.inode))
                {
                    let hidden = self.hidden_name(a.inode);
                    match self.link(c, a.inode, new_parent, &hidden).await {
                        Ok(_) => pending = Some((a.inode, hidden)),
                        Err(e) => {
                            tracing::debug!(ino = a.inode, error = %e.why, "cannot keep the replaced file")
                        }
                    }
                }
            }
        }
        let req = pb::RenameRequest {
            creds: Some(c.creds.clone()),
            from: Some(child(parent, name)),
            to: Some(child(new_parent, new_name)),
            no_replace,
            exchange,
            retry: Some(self.client.retry_id()),
        };
        let mut r = self
            .query(&req, |mut nn, req| async move { nn.rename(req).await })
            .await;
        let not_empty = |s: &tonic::Status| {
            ringfs_proto::ErrorKind::of(s) == ringfs_proto::ErrorKind::DirectoryNotEmpty
        };
        // Boxed: clearing may move a hidden name of this mount's with a rename.
        if matches!(&r, Err(s) if not_empty(s))
            && Box::pin(self.clear_hidden_names_in(c, new_parent, new_name)).await
        {
            // A new call (a new id: the namenode remembers the refusal of the first).
            let again = pb::RenameRequest {
                retry: Some(self.client.retry_id()),
                ..req
            };
            r = self
                .query(&again, |mut nn, req| async move { nn.rename(req).await })
                .await;
        }
        if let Some((ino, hidden)) = pending {
            if r.is_ok() {
                self.defer_hidden_removal(new_parent, hidden, ino);
            } else {
                let _ = self.remove_entry(c, new_parent, &hidden, false).await;
            }
        }
        if let Some((f, hidden)) = kept {
            if r.is_ok() {
                locked(&f.hidden).push((new_parent, hidden));
            } else {
                let _ = self.remove_entry(c, new_parent, &hidden, false).await;
            }
            self.file_unref(&f).await;
        }
        r?;
        Ok(())
    }

    pub(crate) async fn access(&self, c: &Caller, ino: u64, mask: u32) -> Res<()> {
        let req = pb::AccessRequest {
            creds: Some(c.creds.clone()),
            node: Some(node(ino)),
            mask,
        };
        self.query(&req, |mut nn, req| async move { nn.access(req).await })
            .await?;
        Ok(())
    }

    pub(crate) async fn statfs(&self) -> Res<pb::StatfsResponse> {
        Ok(self
            .query(&pb::StatfsRequest {}, |mut nn, req| async move {
                nn.statfs(req).await
            })
            .await?)
    }

    /// Keeps the attributes an open file remembers in step with a change made by this mount.
    pub(crate) async fn remember_attr(&self, a: &pb::Attr) {
        let f = locked(&self.files).get(&a.inode).cloned();
        if let Some(f) = f {
            f.state.lock().await.attr = *a;
        }
    }

    /// Called when the session ends: commits every dirty file and gives back leases.
    /// Err((files that failed, first error)).
    pub(crate) async fn finish(&self) -> Result<(), (usize, String)> {
        self.finished
            .store(true, std::sync::atomic::Ordering::Release);
        let mut failed = 0;
        let mut first = String::new();
        let me = Caller {
            creds: self.client.creds().clone(),
            pid: 0,
        };
        // Again until no file is new: a create answered after the first look adds one. (A file
        // opened again under an inode done cannot take its lease any more: `finished` is set.)
        let mut done: HashSet<u64> = HashSet::new();
        loop {
            let files: Vec<Arc<OpenFile>> = locked(&self.files)
                .values()
                .filter(|f| !done.contains(&f.ino))
                .cloned()
                .collect();
            if files.is_empty() {
                break;
            }
            done.extend(files.iter().map(|f| f.ino));
            for f in files {
                if let Err(e) = self.close_writer(&f).await {
                    failed += 1;
                    if first.is_empty() {
                        first = format!("inode {}: {}", f.ino, e.why);
                    }
                }
                let hidden = std::mem::take(&mut *locked(&f.hidden));
                for (parent, name) in hidden {
                    let _ = self.remove_entry(&me, parent, &name, false).await;
                }
            }
        }
        let pending = std::mem::take(&mut *locked(&self.pending_hidden));
        for (parent, name, _) in pending {
            let _ = self.remove_entry(&me, parent, &name, false).await;
        }
        locked(&self.handles).clear();
        locked(&self.dirs).clear();
        locked(&self.files).clear();
        if failed == 0 {
            Ok(())
        } else {
            Err((failed, first))
        }
    }
}
