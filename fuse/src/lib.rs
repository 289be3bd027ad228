//! ringfs-fuse: the cluster as a local directory, through FUSE (fuser 0.18).
//!
//! The adapter is thin: every callback converts its arguments, moves the reply into a tokio task
//! and answers from there, so a slow namenode or datanode call never blocks other operations.
//! FUSE inode numbers are ringfs inode ids (root = 1), stable across remounts.
//!
//! - [`mount`], [`unmount`], [`clean_stale_mount`], [`MountOptions`]: the public API
//! - `fs`: the `fuser::Filesystem` impl (convert, spawn, reply)
//! - `ops`: the mount state and namespace operations (lookup, mkdir, rename, setattr, ...)
//! - `file`: open files: handles, reads with readahead, writes into the dirty overlay, commits
//! - `overlay`: the per-inode copy-on-write overlay of written-but-uncommitted blocks (pure)
//! - `dir`: directory handles paging through `ReadDir`
//! - `lock`: cluster-wide `flock`/`fcntl` locks through the namenode's lock table
//! - `xattr`: extended attributes (kept by the namenode with the inode)
//! - `attr`, `creds`, `error`, `mountpoint`: conversions, callers, errno mapping, stale mounts
//!
//! Consistency is close-to-open (design §4): data written on this mount is visible to this mount
//! at once and to other mounts after `close`/`fsync` returns; `open` revalidates attributes and
//! drops the kernel's cached pages when the file changed elsewhere.
//!
//! # Semantics worth knowing
//! - **Writes** go into a per-inode overlay of whole blocks (copy-on-write): the first write takes
//!   the file's lease (`OpenWrite`, one writer per file in the cluster), full blocks of a
//!   sequential writer are uploaded in the background, and `flush` (every `close`), `fsync` or
//!   memory pressure write the rest and commit the new block list atomically. The last `close`
//!   on this mount gives the lease back in the same commit. A second mount writing the same file
//!   at the same time waits up to 3 s for the lease, then gets EBUSY.
//! - **Unlink of an open file**: on the mount that has it open, the file stays readable and
//!   writable (`nlink` 0): its last name becomes a hidden link `.ringfs-open-<inode>-<mount>`,
//!   not listed by readdir and removed at the last close (as NFS does); a killed mount leaves
//!   the name behind. An `rmdir` of a directory whose only entries are such names succeeds: the
//!   names of files open on this mount move to the root directory (their descriptors keep
//!   working), the others are removed. Handles on *other* mounts of an unlinked file (or of one
//!   whose hidden name an rmdir removed) get ESTALE: the namenode frees the inode.
//!   A file replaced by a rename on this mount that the kernel looked up or created in the
//!   last `entry_ttl` + 1 s keeps a hidden name for 1 s more, so an `open` that resolved the old
//!   name just before the rename still gets the old file (as on a local file system) instead of
//!   ESTALE; an `rmdir` that finds only such names removes them first. Another mount opening such
//!   a file through its cached entry of the old name gets ESTALE (`Attr::hidden_elsewhere`), and
//!   its kernel looks the name up again: close-to-open holds for files replaced by rename too.
//! - **Locks**: `fcntl` and `flock` are cluster-wide through the namenode; see `lock` for why a
//!   `flock` and an `fcntl` lock on the same file conflict (as on NFS). A lock of a mount that
//!   dies goes when its lease expires (namenode `--lease-soft-limit`). As on NFS, locks also
//!   order data: a granted lock drops cached pages of a file changed on another mount, and an
//!   unlock commits what this mount wrote and gives the file's lease back, so programs that
//!   share a file under locks across mounts (sqlite with a rollback journal) see each other's
//!   writes and can take turns writing.
//! - **Permissions** are checked by the namenode with each request's uid, gid and supplementary
//!   groups (`/proc/<pid>/status`). A mount others may use (`allow_other`) also has the kernel
//!   check (`default_permissions`, from attributes at most `attr_ttl` old): a name the kernel has
//!   cached is not looked up again, so without it the namenode never saw another user's search
//!   of a directory on the way. A mount for its owner alone leaves the checks to the namenode,
//!   which sees changes made on other mounts at once.
//! - Directories report their number of entries as `st_size`; `statfs` reports the raw capacity
//!   of all datanodes; extended attributes are kept by the namenode with the inode (`user.`,
//!   `trusted.`, `security.`; `system.` ACLs are EOPNOTSUPP, so tools fall back to the mode
//!   bits); `posix_fallocate`
//!   works through glibc's emulation; shared writable `mmap` works (pages come back as writes).

mod attr;
mod creds;
mod dir;
mod error;
mod file;
mod fs;
mod lock;
mod mountpoint;
mod ops;
mod overlay;
mod small;
mod xattr;

pub use error::{errno_of, FuseError};
pub use mountpoint::{clean_stale_mount, unmount};

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How a mount behaves. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Let users other than the mounting one (root) use the mount (FUSE `allow_other`).
    pub allow_other: bool,
    /// Mount read-only (writes fail with EROFS in the kernel).
    pub read_only: bool,
    /// How long the kernel may cache attributes (default 1 s). Changes made through this mount
    /// are seen at once; changes made elsewhere after at most this long (and always at `open`).
    pub attr_ttl: Duration,
    /// How long the kernel may cache names → inodes (default 1 s).
    pub entry_ttl: Duration,
    /// Let the kernel check permissions from the cached mode/uid/gid (`default_permissions`)
    /// in addition to the namenode. Always on with `allow_other`; otherwise default off: the
    /// namenode checks with the request's credentials, which sees changes made on other mounts.
    pub default_permissions: bool,
    /// FUSE worker threads reading requests from the kernel (default 4).
    pub threads: usize,
    /// Dirty (written, not yet committed) bytes the mount keeps in memory before it commits the
    /// file being written (default 256 MiB).
    pub dirty_limit: u64,
    /// Full blocks of one file uploaded in the background while its writer continues
    /// (0 = automatic: 64 MiB worth of blocks, at least 2 and at most 16).
    pub upload_ahead: usize,
    /// Longest pause between two attempts of a blocking lock request (default 500 ms).
    pub lock_poll_max: Duration,
    /// Kernel readahead for files of the mount (default 4 MiB; 0 keeps the kernel's value). The
    /// kernel gives FUSE mounts 128 KiB, which cuts a sequential read into 128 KiB requests; the
    /// mount raises its `read_ahead_kb` in sysfs (as root) after the FUSE handshake.
    pub readahead: u64,
    /// Name shown as the mount's source in /proc/mounts (default "ringfs").
    pub fsname: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            allow_other: false,
            read_only: false,
            attr_ttl: Duration::from_secs(1),
            entry_ttl: Duration::from_secs(1),
            default_permissions: false,
            threads: 4,
            dirty_limit: 256 << 20,
            upload_ahead: 0,
            lock_poll_max: Duration::from_millis(500),
            readahead: 4 << 20,
            fsname: "ringfs".to_string(),
        }
    }
}

/// Mounts the cluster `client` talks to at `mountpoint` and serves it until the mount is
/// unmounted (e.g. `ringfs umount`) or `shutdown` completes; then commits what is still dirty,
/// gives back leases and unmounts. A stale mount left at `mountpoint` by a killed process is
/// cleaned first.
pub async fn mount(
    client: ringfs_client::Client,
    mountpoint: &Path,
    opts: MountOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FuseError> {
    clean_stale_mount(mountpoint)?;
    mountpoint::check_mountpoint(mountpoint)?;
    let path = mountpoint.to_path_buf();
    let inner = Arc::new(ops::Inner::new(
        client,
        opts.clone(),
        tokio::runtime::Handle::current(),
    ));
    inner.set_self(Arc::downgrade(&inner));
    let config = fs::session_config(&opts);
    let fs = fs::RingFs::new(inner.clone());
    let p = path.clone();
    let session = tokio::task::spawn_blocking(move || fuser::Session::new(fs, &p, &config))
        .await
        .map_err(|e| FuseError::Mount {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|source| FuseError::Mount {
            path: path.clone(),
            source,
        })?;
    inner.set_notifier(session.notifier());
    let mut session = session;
    let mut unmounter = session.unmount_callable();
    let device = mountpoint::mounted_device(&path);
    if let Some(d) = device {
        inner.set_device(d, &path);
    }
    tracing::info!(mountpoint = %path.display(), client_id = inner.client.client_id(), "mounted");
    // A plain thread, not spawn_blocking: a session that never ends must not keep the runtime
    // (and the process) from shutting down.
    let (done_tx, mut done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("ringfs-fuse".into())
        .spawn(move || {
            let _ = done_tx.send(session.run());
        })
        .map_err(|source| FuseError::Mount {
            path: path.clone(),
            source,
        })?;
    let ended = tokio::select! {
        r = &mut done => Some(r),
        _ = inner.session_over.notified() => Some(Ok(Ok(()))),
        _ = shutdown => None,
    };
    let commit_err = |(files, first)| FuseError::Commit {
        path: path.clone(),
        files,
        first,
    };
    match ended {
        Some(r) => {
            tracing::info!(mountpoint = %path.display(), "unmounted");
            let committed = inner.finish().await;
            match r {
                Ok(Err(source)) => {
                    return Err(FuseError::Session {
                        path: path.clone(),
                        source,
                    })
                }
                Err(_) => tracing::warn!("FUSE session thread ended without a result"),
                Ok(Ok(())) => {}
            }
            committed.map_err(commit_err)
        }
        None => {
            tracing::info!(mountpoint = %path.display(), "shutting down: committing and unmounting");
            let committed = inner.finish().await;
            // Only this mount: one mounted over the path since (after `ringfs umount` detached
            // this one) is not this process's to unmount.
            if !inner.gone_from_mountpoint() {
                if let Err(e) = unmounter.unmount() {
                    tracing::info!(error = %e, "mount busy: detaching it lazily");
                    let _ = unmount(&path);
                }
            }
            // A lazily detached mount lives until its last user goes: end the connection then.
            if tokio::time::timeout(Duration::from_secs(2), session_end(&mut done, &inner))
                .await
                .is_err()
            {
                if let Some((_, minor)) = device {
                    mountpoint::abort_connection(minor);
                }
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), session_end(&mut done, &inner))
                        .await;
            }
            committed.map_err(commit_err)
        }
    }
}

/// The FUSE session's end: its thread finished, or `RingFs::destroy` signalled it.
async fn session_end<T>(done: &mut tokio::sync::oneshot::Receiver<T>, inner: &ops::Inner) {
    tokio::select! {
        _ = done => {}
        _ = inner.session_over.notified() => {}
    }
}
