//! The namespace: the inode tree with POSIX permissions, file block lists and write leases, in memory,
//! with no I/O. Every mutation records what it touched so [`Namespace::drain_changes`] can hand the
//! journal the rows to persist.

use std::collections::BTreeMap;

use ringfs_proto::pb;
pub use ringfs_proto::InodeId;
use serde::{Deserialize, Serialize};

use crate::error::{NamenodeError, Result};

/// The root directory's inode id.
pub const ROOT: InodeId = InodeId(ringfs_proto::ROOT_INODE);
/// Most symbolic links followed while resolving one path (ELOOP beyond).
pub const MAX_SYMLINKS: usize = 40;
/// Most hard links of one file (EMLINK beyond).
pub const MAX_LINKS: u32 = 65_000;
/// The lease holder a file gets while the namenode recovers its lease: no client id can equal it, so the
/// old writer is fenced off.
pub const RECOVERY_HOLDER: &str = "<lease-recovery>";

/// Mode bits.
pub const S_ISUID: u32 = 0o4000;
/// Set-group-id bit (on a directory: new entries inherit its group).
pub const S_ISGID: u32 = 0o2000;
/// Sticky bit (on a directory: only owners may remove/rename entries).
pub const S_ISVTX: u32 = 0o1000;
/// `access` mask bits.
pub const R_OK: u32 = 4;
/// Write permission bit for `access`.
pub const W_OK: u32 = 2;
/// Search/execute permission bit for `access`.
pub const X_OK: u32 = 1;

/// A point in time: seconds since the epoch and nanoseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp {
    /// Seconds since 1970-01-01 UTC (may be negative).
    pub secs: i64,
    /// Nanoseconds, < 1e9.
    pub nanos: u32,
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let (mut secs, mut nanos) = (-(d.as_secs() as i64), d.subsec_nanos());
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Timestamp { secs, nanos }
            }
        }
    }
}

impl From<Timestamp> for pb::Time {
    fn from(t: Timestamp) -> pb::Time {
        pb::Time {
            secs: t.secs,
            nanos: t.nanos,
        }
    }
}

impl From<pb::Time> for Timestamp {
    /// Nanoseconds over 999 999 999 are clamped.
    fn from(t: pb::Time) -> Timestamp {
        Timestamp {
            secs: t.secs,
            nanos: t.nanos.min(999_999_999),
        }
    }
}

/// Who is asking (from the request's credentials). uid 0 is the superuser.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Caller {
    /// The superuser.
    pub fn root() -> Caller {
        Caller::default()
    }

    /// A user with a primary group and no supplementary groups.
    pub fn user(uid: u32, gid: u32) -> Caller {
        Caller {
            uid,
            gid,
            groups: Vec::new(),
        }
    }

    /// uid 0.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether `gid` is the primary or a supplementary group.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

impl From<&pb::Credentials> for Caller {
    fn from(c: &pb::Credentials) -> Caller {
        Caller {
            uid: c.uid,
            gid: c.gid,
            groups: c.groups.clone(),
        }
    }
}

/// An existing node: by absolute path (CLI) or by inode id (FUSE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeSel<'a> {
    /// Absolute path, validated per design §9.
    Path(&'a str),
    /// Inode id; an unknown id is [`NamenodeError::Stale`].
    Inode(InodeId),
}

/// A directory entry: by absolute path, or by (parent directory inode, name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntrySel<'a> {
    /// Absolute path; its last component is the name.
    Path(&'a str),
    /// Parent directory and a single component name.
    Child(InodeId, &'a str),
}

/// One block of a file's block list. `id == 0` is a hole: `len` bytes of zeros with no replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockRef {
    /// Block id (0 = hole).
    pub id: u64,
    /// Generation stamp of the current replica content.
    pub generation: u64,
    /// Bytes in the block.
    pub len: u64,
}

impl BlockRef {
    /// Whether this is a hole (no replicas).
    pub fn is_hole(&self) -> bool {
        self.id == 0
    }
}

/// The type of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InodeKind {
    /// Regular file with blocks.
    File,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
}

impl InodeKind {
    /// From the wire; `None` for `FILE_KIND_UNSPECIFIED`.
    pub fn from_pb(k: pb::FileKind) -> Option<InodeKind> {
        Some(match k {
            pb::FileKind::Unspecified => return None,
            pb::FileKind::File => InodeKind::File,
            pb::FileKind::Directory => InodeKind::Directory,
            pb::FileKind::Symlink => InodeKind::Symlink,
            pb::FileKind::Fifo => InodeKind::Fifo,
            pb::FileKind::Socket => InodeKind::Socket,
            pb::FileKind::CharDevice => InodeKind::CharDevice,
            pb::FileKind::BlockDevice => InodeKind::BlockDevice,
        })
    }

    /// To the wire.
    pub fn to_pb(self) -> pb::FileKind {
        match self {
            InodeKind::File => pb::FileKind::File,
            InodeKind::Directory => pb::FileKind::Directory,
            InodeKind::Symlink => pb::FileKind::Symlink,
            InodeKind::Fifo => pb::FileKind::Fifo,
            InodeKind::Socket => pb::FileKind::Socket,
            InodeKind::CharDevice => pb::FileKind::CharDevice,
            InodeKind::BlockDevice => pb::FileKind::BlockDevice,
        }
    }
}

/// What a regular file has beyond the common attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Length in bytes (>= the sum of block lengths; the rest reads as zeros).
    pub size: u64,
    /// Replication factor.
    pub replication: u32,
    /// Block size: every block except the last is exactly this long.
    pub block_size: u64,
    /// The block list in file order.
    pub blocks: Vec<BlockRef>,
    /// Client id holding the write lease (the file is under construction), if any.
    pub lease: Option<String>,
    /// Content version, bumped on every content change (client cache validation).
    pub generation: u64,
}

/// A namespace node. Read it through [`Namespace::get`]; change it only through `Namespace` methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    /// Never reused.
    pub id: InodeId,
    /// Type.
    pub kind: InodeKind,
    /// Permission bits incl. setuid/setgid/sticky (07777).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Directories: 2 + subdirectories; others: number of directory entries naming it.
    pub nlink: u32,
    /// Last access.
    pub atime: Timestamp,
    /// Last content change (directories: entries).
    pub mtime: Timestamp,
    /// Last attribute or content change.
    pub ctime: Timestamp,
    /// Creation.
    pub crtime: Timestamp,
    /// Device number (char/block devices).
    pub rdev: u32,
    /// Directories: the parent ("..", root's is itself). Other kinds: the directory of one of its links.
    pub parent: InodeId,
    /// Symlinks: the target.
    pub symlink_target: Option<String>,
    /// Regular files: size, blocks, lease.
    pub file: Option<FileMeta>,
    /// Directories: entries by name (sorted; no "." or "..").
    pub children: Option<BTreeMap<String, InodeId>>,
}

impl Inode {
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == InodeKind::Directory
    }

    /// `Attr.size`: files their length, symlinks the target length, directories their entry count.
    pub fn size(&self) -> u64 {
        match self.kind {
            InodeKind::File => self.file.as_ref().map_or(0, |f| f.size),
            InodeKind::Symlink => self.symlink_target.as_ref().map_or(0, |t| t.len() as u64),
            InodeKind::Directory => self.children.as_ref().map_or(0, |c| c.len() as u64),
            _ => 0,
        }
    }

    /// The wire attributes.
    pub fn to_attr(&self) -> pb::Attr {
        let file = self.file.as_ref();
        pb::Attr {
            inode: self.id.0,
            kind: self.kind.to_pb() as i32,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            size: self.size(),
            nlink: self.nlink,
            atime: Some(self.atime.into()),
            mtime: Some(self.mtime.into()),
            ctime: Some(self.ctime.into()),
            rdev: self.rdev,
            replication: file.map_or(0, |f| f.replication),
            block_size: file.map_or(0, |f| f.block_size),
            under_construction: file.is_some_and(|f| f.lease.is_some()),
            generation: file.map_or(0, |f| f.generation),
            crtime: Some(self.crtime.into()),
        }
    }
}

/// The persisted form of an inode: everything except what is rebuilt from the entries (nlink, parent,
/// children).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeRecord {
    /// Inode id.
    pub id: u64,
    /// Type.
    pub kind: InodeKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Access time.
    pub atime: Timestamp,
    /// Modification time.
    pub mtime: Timestamp,
    /// Change time.
    pub ctime: Timestamp,
    /// Creation time.
    pub crtime: Timestamp,
    /// Device number.
    pub rdev: u32,
    /// Symlink target.
    pub symlink_target: Option<String>,
    /// File data.
    pub file: Option<FileMeta>,
}

/// The persisted id counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Next inode id to hand out.
    pub next_inode: u64,
    /// Next block id.
    pub next_block: u64,
    /// Next generation stamp.
    pub next_generation: u64,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            next_inode: ROOT.0 + 1,
            next_block: 1,
            next_generation: 1,
        }
    }
}

/// One row change for the journal, describing the state after the drained operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Write (insert or replace) an inode.
    PutInode(InodeRecord),
    /// Delete an inode.
    DeleteInode(u64),
    /// Write the directory entry `parent/name -> child`.
    PutEntry {
        /// Directory inode.
        parent: u64,
        /// Entry name.
        name: String,
        /// Inode it names.
        child: u64,
    },
    /// Delete the directory entry `parent/name`.
    DeleteEntry {
        /// Directory inode.
        parent: u64,
        /// Entry name.
        name: String,
    },
    /// Write the counters.
    SetCounters(Counters),
}

/// Options of [`Namespace::create_file`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateFile {
    /// Permission bits (the client applied its umask).
    pub mode: u32,
    /// Replication factor (>= 1; the service resolves "cluster default").
    pub replication: u32,
    /// Block size (>= 1; the service resolves "cluster default").
    pub block_size: u64,
    /// O_EXCL: fail if the entry exists.
    pub exclusive: bool,
    /// Truncate an existing file to 0 (its blocks are freed). Without it an existing entry is AlreadyExists.
    pub overwrite: bool,
    /// Take the write lease for this client id (open for write); `None` creates a closed empty file.
    pub lease: Option<String>,
}

/// How [`Namespace::remove`] treats the entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoveMode {
    /// Remove a directory with everything below it (alone it also allows any kind, like `rm -r`).
    pub recursive: bool,
    /// rmdir: the entry must be a directory.
    pub directory: bool,
    /// CLI rm: any kind; a non-empty directory needs `recursive`.
    pub any_kind: bool,
}

/// rename(2) flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenameFlags {
    /// RENAME_NOREPLACE: fail with AlreadyExists if the target exists.
    pub no_replace: bool,
    /// RENAME_EXCHANGE: swap the two (both must exist).
    pub exchange: bool,
}

/// A time to set: the namenode's "now" or a given value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    /// The operation's `now` (allowed to the owner and to writers).
    Now,
    /// A given time (owner or root only).
    At(Timestamp),
}

/// Attributes to change in [`Namespace::set_attr`]; `None` leaves one alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// chmod.
    pub mode: Option<u32>,
    /// chown.
    pub uid: Option<u32>,
    /// chgrp.
    pub gid: Option<u32>,
    /// Access time.
    pub atime: Option<TimeSet>,
    /// Modification time.
    pub mtime: Option<TimeSet>,
    /// truncate: grow, or cut at a block boundary.
    pub size: Option<u64>,
    /// The client making the request: if it holds the file's write lease, a size change needs no mode
    /// permission (ftruncate on a file opened for writing).
    pub client: Option<String>,
}

/// The inode tree and id counters, plus the record of what changed since the last drain.
#[derive(Debug)]
pub struct Namespace {
    _private: (),
}

fn unimplemented<T>(what: &str) -> Result<T> {
    Err(NamenodeError::NotSupported(format!(
        "namespace::{what} (not implemented yet)"
    )))
}

impl Namespace {
    /// An empty namespace: the root directory (inode 1, mode 0755, uid 0, gid 0). Its root inode and
    /// counters are pending in the changes, so the first drain persists them.
    pub fn new() -> Namespace {
        Namespace { _private: () }
    }

    /// Rebuild from persisted rows (nlink, parents and children are derived from the entries). Fails
    /// with `Storage` on an inconsistent set (dangling entry, directory with two parents, unreachable
    /// inode, missing root).
    pub fn from_records(
        inodes: impl IntoIterator<Item = InodeRecord>,
        entries: impl IntoIterator<Item = (u64, String, u64)>,
        counters: Counters,
    ) -> Result<Namespace> {
        let _ = (inodes.into_iter(), entries.into_iter(), counters);
        unimplemented("from_records")
    }

    // ------------------------------------------------------------ queries

    /// The inode with this id.
    pub fn get(&self, id: InodeId) -> Option<&Inode> {
        let _ = id;
        None
    }

    /// Number of inodes (including the root).
    pub fn inode_count(&self) -> u64 {
        0
    }

    /// Resolve a node. A path walk checks search permission on every directory; symlinks in the middle
    /// are followed (at most 40), the final one only if `follow_final_symlink`.
    pub fn resolve(
        &self,
        caller: &Caller,
        node: NodeSel<'_>,
        follow_final_symlink: bool,
    ) -> Result<InodeId> {
        let _ = (caller, node, follow_final_symlink);
        unimplemented("resolve")
    }

    /// Look up a directory entry (a final symlink is not followed). Needs search permission on the parent.
    pub fn lookup(&self, caller: &Caller, entry: EntrySel<'_>) -> Result<InodeId> {
        let _ = (caller, entry);
        unimplemented("lookup")
    }

    /// Up to `limit` entries of a directory whose names sort after `after` ("" = from the start), and
    /// whether more follow. Needs read permission. A path follows a final symlink. No "." / "..".
    pub fn read_dir(
        &self,
        caller: &Caller,
        dir: NodeSel<'_>,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<(String, InodeId)>, bool)> {
        let _ = (caller, dir, after, limit);
        unimplemented("read_dir")
    }

    /// A path of the inode (for files with several links, one of them), `None` if it does not exist.
    pub fn path_of(&self, id: InodeId) -> Option<String> {
        let _ = id;
        None
    }

    /// access(2): `mask` is a combination of R_OK, W_OK, X_OK (0 = existence). A path follows a final
    /// symlink.
    pub fn access(&self, caller: &Caller, node: NodeSel<'_>, mask: u32) -> Result<()> {
        let _ = (caller, node, mask);
        unimplemented("access")
    }

    /// The target of a symlink (InvalidArgument if it is not one). A path does not follow a final symlink.
    pub fn readlink(&self, caller: &Caller, node: NodeSel<'_>) -> Result<String> {
        let _ = (caller, node);
        unimplemented("readlink")
    }

    /// Every regular file at or below `root`, once each (a hard-linked file under one of its paths),
    /// sorted by path. For fsck.
    pub fn walk_files(&self, root: InodeId) -> Vec<(String, InodeId)> {
        let _ = root;
        Vec::new()
    }

    /// Files whose write lease `client` holds.
    pub fn files_with_lease(&self, client: &str) -> Vec<InodeId> {
        let _ = client;
        Vec::new()
    }

    /// Every file under construction with its lease holder (e.g. to restart lease timers after a restart).
    pub fn leases(&self) -> Vec<(InodeId, String)> {
        Vec::new()
    }

    /// The id counters.
    pub fn counters(&self) -> Counters {
        Counters::default()
    }

    // ------------------------------------------------------------ mutations

    /// mkdir. `parents`: like `mkdir -p` (create missing parents, which get `mode | 0o300`; an existing
    /// directory is fine and its id returned).
    pub fn mkdir(
        &mut self,
        caller: &Caller,
        entry: EntrySel<'_>,
        mode: u32,
        parents: bool,
        now: Timestamp,
    ) -> Result<InodeId> {
        let _ = (caller, entry, mode, parents, now);
        unimplemented("mkdir")
    }

    /// Create a regular file, or with `overwrite` truncate an existing one to 0 (same inode, replication
    /// and block size set from `opts`). Returns the inode and the blocks freed by the truncation.
    pub fn create_file(
        &mut self,
        caller: &Caller,
        entry: EntrySel<'_>,
        opts: CreateFile,
        now: Timestamp,
    ) -> Result<(InodeId, Vec<BlockRef>)> {
        let _ = (caller, entry, opts, now);
        unimplemented("create_file")
    }

    /// mknod of a FIFO, socket or device (devices need root). Regular files go through `create_file`.
    pub fn mknod(
        &mut self,
        caller: &Caller,
        entry: EntrySel<'_>,
        kind: InodeKind,
        mode: u32,
        rdev: u32,
        now: Timestamp,
    ) -> Result<InodeId> {
        let _ = (caller, entry, kind, mode, rdev, now);
        unimplemented("mknod")
    }

    /// symlink: a new link at `entry` pointing to `target` (not resolved; may dangle).
    pub fn symlink(
        &mut self,
        caller: &Caller,
        entry: EntrySel<'_>,
        target: &str,
        now: Timestamp,
    ) -> Result<InodeId> {
        let _ = (caller, entry, target, now);
        unimplemented("symlink")
    }

    /// link: a new entry for an existing non-directory (a path is not followed if it is a symlink).
    pub fn link(
        &mut self,
        caller: &Caller,
        existing: NodeSel<'_>,
        new_entry: EntrySel<'_>,
        now: Timestamp,
    ) -> Result<InodeId> {
        let _ = (caller, existing, new_entry, now);
        unimplemented("link")
    }

    /// unlink / rmdir / rm -r. Returns the blocks of files whose last link went away.
    pub fn remove(
        &mut self,
        caller: &Caller,
        entry: EntrySel<'_>,
        mode: RemoveMode,
        now: Timestamp,
    ) -> Result<Vec<BlockRef>> {
        let _ = (caller, entry, mode, now);
        unimplemented("remove")
    }

    /// rename(2), atomic, including over an existing target. Returns the blocks of a replaced file whose
    /// last link went away.
    pub fn rename(
        &mut self,
        caller: &Caller,
        from: EntrySel<'_>,
        to: EntrySel<'_>,
        flags: RenameFlags,
        now: Timestamp,
    ) -> Result<Vec<BlockRef>> {
        let _ = (caller, from, to, flags, now);
        unimplemented("rename")
    }

    /// chmod / chown / utimens / truncate. A path follows a final symlink. Returns the inode and the
    /// blocks a shrinking truncate dropped.
    pub fn set_attr(
        &mut self,
        caller: &Caller,
        node: NodeSel<'_>,
        attr: SetAttr,
        now: Timestamp,
    ) -> Result<(InodeId, Vec<BlockRef>)> {
        let _ = (caller, node, attr, now);
        unimplemented("set_attr")
    }

    /// Open an existing regular file for writing (a path follows symlinks): needs write permission and
    /// takes the lease for `client` (the same client re-opening is fine). `truncate` drops every block.
    /// Returns the inode and the freed blocks.
    pub fn open_write(
        &mut self,
        caller: &Caller,
        node: NodeSel<'_>,
        client: &str,
        truncate: bool,
        now: Timestamp,
    ) -> Result<(InodeId, Vec<BlockRef>)> {
        let _ = (caller, node, client, truncate, now);
        unimplemented("open_write")
    }

    /// Append block `new` to a file whose lease `client` holds. `previous` (must be the current last
    /// block, same id) records the length and generation the pipeline finished it with.
    pub fn add_block(
        &mut self,
        inode: InodeId,
        client: &str,
        previous: Option<BlockRef>,
        new: BlockRef,
    ) -> Result<()> {
        let _ = (inode, client, previous, new);
        unimplemented("add_block")
    }

    /// Replace the whole block list of a file whose lease `client` holds, set its size (>= the sum of
    /// block lengths) and mtime (default `now`), bump its generation; `close` releases the lease.
    /// Every block except the last must be exactly the block size (holes included). Returns the old
    /// blocks whose id is no longer in the list.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_blocks(
        &mut self,
        inode: InodeId,
        client: &str,
        blocks: Vec<BlockRef>,
        size: u64,
        close: bool,
        mtime: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Vec<BlockRef>> {
        let _ = (inode, client, blocks, size, close, mtime, now);
        unimplemented("commit_blocks")
    }

    /// Give up `client`'s lease on the file (NoLease if it does not hold it).
    pub fn release_lease(&mut self, inode: InodeId, client: &str) -> Result<()> {
        let _ = (inode, client);
        unimplemented("release_lease")
    }

    /// Start lease recovery of a file under construction: its lease moves to [`RECOVERY_HOLDER`] (the
    /// old writer is fenced off) and the last block (None if there is none or it is a hole) is returned
    /// for the caller to finalize on the datanodes. FailedPrecondition if the file has no lease.
    pub fn recover_lease(&mut self, inode: InodeId) -> Result<Option<BlockRef>> {
        let _ = inode;
        unimplemented("recover_lease")
    }

    /// Finish lease recovery: `last` (same id as the last block) replaces the last block's generation
    /// and length, size becomes at least the sum of block lengths, and the file is closed.
    pub fn finish_recovery(
        &mut self,
        inode: InodeId,
        last: Option<BlockRef>,
        now: Timestamp,
    ) -> Result<()> {
        let _ = (inode, last, now);
        unimplemented("finish_recovery")
    }

    /// A fresh block id (persisted counter, never reused).
    pub fn next_block_id(&mut self) -> u64 {
        0
    }

    /// A fresh generation stamp (persisted counter, never reused).
    pub fn next_generation(&mut self) -> u64 {
        0
    }

    /// The row changes since the last drain, describing the current state of everything touched.
    pub fn drain_changes(&mut self) -> Vec<Mutation> {
        Vec::new()
    }
}

impl Default for Namespace {
    fn default() -> Namespace {
        Namespace::new()
    }
}
