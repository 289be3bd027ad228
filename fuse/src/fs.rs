//! The `fuser::Filesystem` impl: each callback converts its arguments, moves the reply into a
//! task on the mount's tokio runtime, runs the operation there and answers. No callback blocks
//! on the network and none can panic the session (errors become errno through `errno_of`).

use crate::attr::file_attr;
use crate::creds::Caller;
use crate::dir::Entry;
use crate::error::{Fail, Res};
use crate::file::Written;
use crate::ops::Inner;
use crate::MountOptions;
use bytes::Bytes;
use fuser::{
    AccessFlags, Config, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLock, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};
use ringfs_proto::pb;
use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Largest read/write request the kernel sends (FUSE caps it at 256 pages anyway).
const MAX_IO: u32 = 1 << 20;
/// `statfs` block unit.
const STATFS_BSIZE: u64 = 4096;

/// The session configuration for `opts`.
pub(crate) fn session_config(opts: &MountOptions) -> Config {
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("ringfs".to_string()),
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if opts.read_only {
        cfg.mount_options.push(MountOption::RO);
    }
    // With other users on the mount the kernel must check too: a name it has cached is not
    // looked up again, so the namenode would not see a search of a directory the caller may not
    // search (another user reading a file in a 0700 home it had looked up lately).
    if opts.default_permissions || opts.allow_other {
        cfg.mount_options.push(MountOption::DefaultPermissions);
    }
    if opts.allow_other {
        cfg.acl = SessionACL::All;
    }
    cfg.n_threads = Some(opts.threads.max(1));
    cfg.clone_fd = opts.threads > 1;
    cfg
}

/// An answer that can carry an errno (every fuser reply type).
trait Fails: Send + 'static {
    fn fail(self, e: Errno);
}

macro_rules! fails {
    ($($t:ty),*) => { $(impl Fails for $t { fn fail(self, e: Errno) { self.error(e) } })* };
}
fails!(
    ReplyEntry,
    ReplyAttr,
    ReplyData,
    ReplyEmpty,
    ReplyOpen,
    ReplyWrite,
    ReplyCreate,
    ReplyStatfs,
    ReplyLock,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyXattr,
    ReplyLseek
);

pub(crate) struct RingFs {
    inner: Arc<Inner>,
}

fn name_of(n: &OsStr) -> Result<String, Errno> {
    n.to_str().map(str::to_string).ok_or(Errno::EINVAL)
}

/// The name of a new entry: not one of the hidden names the mounts keep open files under
/// (`.ringfs-open-*`), which no listing shows and which a mount removes as its own leftovers.
fn new_name_of(n: &OsStr) -> Result<String, Errno> {
    let name = name_of(n)?;
    if name.starts_with(ringfs_proto::OPEN_FILE_HIDDEN_PREFIX) {
        return Err(Errno::EPERM);
    }
    Ok(name)
}

fn caller(req: &Request) -> impl FnOnce() -> Caller {
    let (uid, gid, pid) = (req.uid(), req.gid(), req.pid());
    move || Caller::of(uid, gid, pid)
}

impl RingFs {
    pub(crate) fn new(inner: Arc<Inner>) -> RingFs {
        RingFs { inner }
    }

    /// Runs `fut` on the runtime and answers with `ok` or the errno of its failure.
    fn run<R, T, Fut, Ok>(&self, what: &'static str, reply: R, fut: Fut, ok: Ok)
    where
        R: Fails,
        T: Send + 'static,
        Fut: Future<Output = Res<T>> + Send + 'static,
        Ok: FnOnce(R, T) + Send + 'static,
    {
        self.inner.rt.spawn(async move {
            let start = std::time::Instant::now();
            let r = fut.await;
            tracing::trace!(
                op = what,
                us = start.elapsed().as_micros() as u64,
                ok = r.is_ok(),
                "done"
            );
            match r {
                Ok(v) => ok(reply, v),
                Err(Fail { errno, why }) => {
                    if errno == Errno::EIO || errno == Errno::ENOSPC {
                        tracing::warn!(op = what, errno = errno.code(), "{why}");
                    } else {
                        tracing::debug!(op = what, errno = errno.code(), "{why}");
                    }
                    reply.fail(errno)
                }
            }
        });
    }

    fn entry_reply(&self) -> impl FnOnce(ReplyEntry, pb::Attr) + Send + 'static {
        let (attr_ttl, entry_ttl) = (self.inner.opts.attr_ttl, self.inner.opts.entry_ttl);
        let inner = self.inner.clone();
        move |r: ReplyEntry, a: pb::Attr| {
            inner.note_xattrs(&a);
            r.entry_with_ttls(&attr_ttl, &entry_ttl, &file_attr(&a), Generation(0))
        }
    }

    fn attr_reply(&self) -> impl FnOnce(ReplyAttr, pb::Attr) + Send + 'static {
        let ttl = self.inner.opts.attr_ttl;
        let inner = self.inner.clone();
        move |r: ReplyAttr, a: pb::Attr| {
            inner.note_xattrs(&a);
            r.attr(&ttl, &file_attr(&a))
        }
    }
}

fn empty(r: ReplyEmpty, _: ()) {
    r.ok()
}

fn xattr_reply(r: ReplyXattr, s: crate::xattr::Sized) {
    match s {
        crate::xattr::Sized::Size(n) => r.size(n),
        crate::xattr::Sized::Data(d) => r.data(&d),
    }
}

impl Filesystem for RingFs {
    /// The session's end, on the thread that ran it, just before fuser unmounts by path. fuser
    /// 0.18 does that even when its mount is gone from there (it takes a dead connection for a
    /// live one), so a mount detached lazily while busy unmounted whatever was mounted at the
    /// path by then: the next `ringfs mount` of it. When this mount is no longer the one there,
    /// the end is signalled from here and this thread stays, so that unmount never runs; the
    /// process ends without it.
    fn destroy(&mut self) {
        if self.inner.gone_from_mountpoint() {
            self.inner.session_over.notify_one();
            loop {
                std::thread::park();
            }
        }
    }

    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for flag in [
            InitFlags::FUSE_POSIX_LOCKS,
            InitFlags::FUSE_FLOCK_LOCKS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
        ] {
            if config.add_capabilities(flag).is_err() {
                tracing::debug!(?flag, "kernel does not support FUSE capability");
            }
        }
        let _ = config.set_max_write(MAX_IO);
        if let Err(max) = config.set_max_readahead(MAX_IO) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = match name_of(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "lookup",
            reply,
            async move { inner.lookup(&c(), parent.0, &name).await },
            self.entry_reply(),
        );
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "getattr",
            reply,
            async move { inner.getattr(&c(), ino.0).await },
            self.attr_reply(),
        );
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "setattr",
            reply,
            async move {
                inner
                    .setattr(
                        &c(),
                        ino.0,
                        mode,
                        uid,
                        gid,
                        size,
                        atime,
                        mtime,
                        fh.is_some(),
                    )
                    .await
            },
            self.attr_reply(),
        );
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "readlink",
            reply,
            async move { inner.readlink(&c(), ino.0).await },
            |r, t| r.data(t.as_bytes()),
        );
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = match new_name_of(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (inner, c) = (self.inner.clone(), caller(req));
        let mode = (mode & libc::S_IFMT) | (mode & 0o7777 & !umask);
        self.run(
            "mknod",
            reply,
            async move { inner.mknod(&c(), parent.0, &name, mode, rdev).await },
            self.entry_reply(),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let name = match new_name_of(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "mkdir",
            reply,
            async move { inner.mkdir(&c(), parent.0, &name, mode & !umask).await },
            self.entry_reply(),
        );
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_of(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "unlink",
            reply,
            async move { inner.remove(&c(), parent.0, &name, false).await },
            empty,
        );
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_of(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "rmdir",
            reply,
            async move { inner.remove(&c(), parent.0, &name, true).await },
            empty,
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (name, target) = match (new_name_of(link_name), name_of(target.as_os_str())) {
            (Ok(n), Ok(t)) => (n, t),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "symlink",
            reply,
            async move { inner.symlink(&c(), parent.0, &name, &target).await },
            self.entry_reply(),
        );
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = match (name_of(name), new_name_of(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "rename",
            reply,
            async move {
                inner
                    .rename(
                        &c(),
                        parent.0,
                        &name,
                        newparent.0,
                        &newname,
                        no_replace,
                        exchange,
                    )
                    .await
            },
            empty,
        );
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let name = match new_name_of(newname) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "link",
            reply,
            async move { inner.link(&c(), ino.0, newparent.0, &name).await },
            self.entry_reply(),
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.inner.tune_readahead();
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "open",
            reply,
            async move { inner.open(&c(), ino.0, flags.0).await },
            |r, (fh, fl)| r.opened(FileHandle(fh), fl),
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let inner = self.inner.clone();
        self.run(
            "read",
            reply,
            async move { inner.read(fh.0, offset, size).await },
            |r, b: Bytes| r.data(&b),
        );
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let inner = self.inner.clone();
        match inner.write_now(fh.0, offset, data) {
            Some(Written::Done) => return reply.written(data.len() as u32),
            Some(Written::Settle(h)) => {
                let n = data.len() as u32;
                self.run(
                    "write",
                    reply,
                    async move { inner.after_write(&h).await.map(|()| n) },
                    |r, n| r.written(n),
                );
                return;
            }
            None => {}
        }
        let data = Bytes::copy_from_slice(data);
        self.run(
            "write",
            reply,
            async move { inner.write(fh.0, offset, data).await },
            |r, n| r.written(n),
        );
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let inner = self.inner.clone();
        self.run(
            "flush",
            reply,
            async move { inner.flush(fh.0, lock_owner.0).await },
            empty,
        );
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let inner = self.inner.clone();
        self.run(
            "release",
            reply,
            async move { inner.release(fh.0, lock_owner.map(|o| o.0)).await },
            empty,
        );
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let inner = self.inner.clone();
        self.run(
            "fsync",
            reply,
            async move { inner.fsync(fh.0).await },
            empty,
        );
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "opendir",
            reply,
            async move { inner.opendir(&c(), ino.0).await },
            |r, fh| r.opened(FileHandle(fh), FopenFlags::empty()),
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let inner = self.inner.clone();
        self.inner.rt.spawn(async move {
            let mut reply = reply;
            let r = inner
                .fill_dir(fh.0, offset, |next, e| match e {
                    Entry::Dot(_) => reply.add(ino, next, fuser::FileType::Directory, "."),
                    Entry::DotDot(_) => reply.add(ino, next, fuser::FileType::Directory, ".."),
                    Entry::Child(e) => {
                        let kind = e
                            .attr
                            .as_ref()
                            .map(|a| crate::attr::file_type(a.kind))
                            .unwrap_or(fuser::FileType::RegularFile);
                        let child = e.attr.as_ref().map(|a| a.inode).unwrap_or(0);
                        reply.add(INodeNo(child), next, kind, &e.name)
                    }
                })
                .await;
            match r {
                Ok(()) => reply.ok(),
                Err(f) => reply.error(f.errno),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let inner = self.inner.clone();
        let (attr_ttl, entry_ttl) = (
            self.inner.opts.attr_ttl,
            self.inner.opts.entry_ttl.min(self.inner.opts.attr_ttl),
        );
        self.inner.rt.spawn(async move {
            let mut reply = reply;
            let r = inner
                .fill_dir(fh.0, offset, |next, e| match e {
                    Entry::Dot(d) | Entry::DotDot(d) => {
                        let name = if matches!(e, Entry::Dot(_)) {
                            "."
                        } else {
                            ".."
                        };
                        let mut a = file_attr(d);
                        a.ino = ino;
                        reply.add(ino, next, name, &Duration::ZERO, &a, Generation(0))
                    }
                    Entry::Child(e) => match &e.attr {
                        Some(a) => {
                            let a = inner.local_view(*a);
                            inner.note_xattrs(&a);
                            reply.add(
                                INodeNo(a.inode),
                                next,
                                &e.name,
                                &entry_ttl.min(attr_ttl),
                                &file_attr(&a),
                                Generation(0),
                            )
                        }
                        None => false,
                    },
                })
                .await;
            match r {
                Ok(()) => reply.ok(),
                Err(f) => reply.error(f.errno),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.inner.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Namespace changes are acknowledged once in the namenode's log; fsync of a directory
        // waits until they are durable on its disk.
        let inner = self.inner.clone();
        self.run(
            "fsyncdir",
            reply,
            async move { Ok(inner.client.sync().await?) },
            empty,
        );
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let name = match name_of(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (inner, c, value) = (self.inner.clone(), caller(req), value.to_vec());
        self.run(
            "setxattr",
            reply,
            async move { inner.setxattr(&c(), ino.0, &name, &value, flags).await },
            empty,
        );
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = match name_of(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        // The kernel asks for security.capability before every write: answer a recent one here.
        match self.inner.getxattr_at_hand(ino.0, &name, size) {
            Some(Ok(s)) => return xattr_reply(reply, s),
            Some(Err(f)) => return reply.error(f.errno),
            None => {}
        }
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "getxattr",
            reply,
            async move { inner.getxattr(&c(), ino.0, &name, size).await },
            xattr_reply,
        );
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "listxattr",
            reply,
            async move { inner.listxattr(&c(), ino.0, size).await },
            xattr_reply,
        );
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_of(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "removexattr",
            reply,
            async move { inner.removexattr(&c(), ino.0, &name).await },
            empty,
        );
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let inner = self.inner.clone();
        self.run(
            "statfs",
            reply,
            async move { inner.statfs().await },
            |r, s| {
                let files_free = 1u64 << 32;
                // df shows Used = size - free: free is what ringfs does not store (as `ringfs
                // df`), not the datanodes' free space, which leaves out whatever else is on their
                // disks (89 % "used" on an empty `up` cluster); available is that free space.
                let free = s.capacity.saturating_sub(s.used).max(s.remaining);
                r.statfs(
                    s.capacity / STATFS_BSIZE,
                    free / STATFS_BSIZE,
                    s.remaining / STATFS_BSIZE,
                    s.inodes + files_free,
                    files_free,
                    STATFS_BSIZE as u32,
                    255,
                    STATFS_BSIZE as u32,
                )
            },
        );
    }

    /// No ioctls: ENOTTY is what a local file system answers for a terminal ioctl on a file
    /// (Python's `open` asks TCGETS on every file), and fuser's default would log a warning each time.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// SEEK_DATA and SEEK_HOLE (the kernel answers the other whences itself): `cp` and `tar`
    /// skip holes instead of reading zeros over the network.
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let inner = self.inner.clone();
        self.run(
            "lseek",
            reply,
            async move { inner.seek(fh.0, offset, whence).await },
            |r, o| r.offset(o),
        );
    }

    // Not supported, answered without fuser's "[Not Implemented]" warning in the mount's log
    // (coreutils' cp tries both on every copy). ENOSYS tells the kernel not to ask again: apps
    // get EOPNOTSUPP from fallocate (glibc's posix_fallocate then writes zeros) and
    // copy_file_range falls back to a plain copy. fallocate would promise space the datanodes
    // cannot reserve.
    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: fuser::PollNotifier,
        _events: fuser::PollEvents,
        _flags: fuser::PollFlags,
        reply: fuser::ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let (inner, c) = (self.inner.clone(), caller(req));
        let mask = mask.bits() as u32;
        self.run(
            "access",
            reply,
            async move { inner.access(&c(), ino.0, mask).await },
            empty,
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = match new_name_of(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        self.inner.tune_readahead();
        let (inner, inner2, c) = (self.inner.clone(), self.inner.clone(), caller(req));
        let ttl = self.inner.opts.attr_ttl.min(self.inner.opts.entry_ttl);
        self.run(
            "create",
            reply,
            async move {
                inner
                    .create(&c(), parent.0, &name, mode & !umask, flags)
                    .await
            },
            move |r, (a, fh, fl)| {
                inner2.note_xattrs(&a);
                r.created(&ttl, &file_attr(&a), Generation(0), FileHandle(fh), fl)
            },
        );
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let inner = self.inner.clone();
        self.run(
            "getlk",
            reply,
            async move { inner.getlk(ino.0, lock_owner.0, start, end, typ, pid).await },
            |r, (s, e, t, p)| r.locked(s, e, t, p),
        );
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let (inner, c) = (self.inner.clone(), caller(req));
        self.run(
            "setlk",
            reply,
            async move {
                inner
                    .setlk(&c(), ino.0, fh.0, lock_owner.0, start, end, typ, pid, sleep)
                    .await
            },
            empty,
        );
    }
}
