//! Replica files on disk: finalized replicas under `blocks/`, replicas being written under `tmp/`,
//! each a `.data` file plus a `.meta` file of blake3 chunk hashes.
//!
//! Layout of a data dir:
//! ```text
//! <data_dir>/lock                          flock'ed while a datanode uses the dir
//! <data_dir>/datanode_id                   stable id (uuid, simple hex), created on first start
//! <data_dir>/cluster_id                    the namenode's cluster id, kept at the first registration
//! <data_dir>/blocks/<xx>/<id>_<gen>.data   finalized replica; xx = id % 256 as two hex digits
//! <data_dir>/blocks/<xx>/<id>_<gen>.meta
//! <data_dir>/tmp/<id>_<gen>.data|.meta     replica being written (rbw) or left by a broken write
//! ```
//! Paths are built from the numbers only, never from a client string.
//!
//! `.meta` format (little-endian), a 64-byte header followed by one 32-byte blake3 hash per chunk:
//! ```text
//! 0   8  magic "RFSMETA\0"
//! 8   4  format version (1)
//! 12  4  chunk size (65536)
//! 16  4  flags: bit 0 = finalized (len and replica hash are valid)
//! 20  4  reserved (0)
//! 24  8  replica length in bytes
//! 32 32  replica hash: blake3 of the concatenated chunk hashes (a whole-replica digest that
//!        costs no second pass over the data)
//! 64 ..  chunk hashes, ceil(len / chunk size) of them
//! ```
//! A replica being written has flags = 0 and its chunk hashes appended as packets arrive, so lease
//! recovery can find the verified prefix after a crash. Finalizing writes the header, fsyncs data and
//! meta, renames both into `blocks/` (meta last) and fsyncs the directory: a replica is listed only
//! when both files are there and the header says finalized with a matching data length, so a crash
//! never leaves a half replica that looks complete.
//!
//! Replica data is written around the page cache (`O_DIRECT`) when the filesystem allows it: bulk
//! replica traffic would only evict other data, and copying every byte into the page cache (on 3
//! replicas) was the largest single cost of a write. Reads choose ([`ReadPath`]): clients read
//! through the page cache (kernel readahead streamed cold replicas 15-20% faster than direct reads
//! here, and a replica read again is served from memory); the scrubber and re-replication read
//! the disk directly, so a scrub checks what is on the disk and neither evicts client data. Data passes through 4 KiB-aligned buffers from a small
//! pool ([`IoBuf`]); a block's unaligned tail (its last, short chunk) is written through the page
//! cache, and fsync makes both durable. Without `O_DIRECT` everything is plain buffered I/O.

use crate::error::DatanodeError;
use bytes::Bytes;
use ringfs_proto::chunk::{hash_chunk, Hash, CHUNK_SIZE, PACKET_SIZE};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

type Result<T> = std::result::Result<T, DatanodeError>;

const MAGIC: &[u8; 8] = b"RFSMETA\0";
const META_VERSION: u32 = 1;
const HEADER_LEN: u64 = 64;
const FLAG_FINALIZED: u32 = 1;
/// Replicas being written that nobody touched for this long are garbage: lease recovery, which
/// may still need the last block's replicas, is over within the lease hard limit (10 min by
/// default) of the writer's death. Broken pipelines leave old generations on nodes the recovered
/// pipeline dropped; a day bounds what they hold.
const TMP_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How far ahead of a read the kernel is asked to fetch replica data.
const READ_AHEAD: u64 = 4 * 1024 * 1024;
/// Start writeback of a replica being written every this many bytes, so the final fsync is short
/// (buffered writes only; direct writes are on the device when they return).
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;
/// Memory and file-offset alignment of direct I/O.
const ALIGN: usize = 4096;
/// Bytes read per disk request by [`ReplicaReader::read_chunks`] at most, and the size of pooled
/// buffers: large requests keep the disk streaming without kernel readahead.
pub const READ_UNIT: usize = 4 * PACKET_SIZE;
/// Pooled I/O buffers kept for reuse (more in use at once are allocated and freed): 64 MiB.
const POOL_MAX: usize = 16;

/// One finalized replica as the block map knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub block: u64,
    pub generation: u64,
    pub len: u64,
}

/// A finalized replica plus its replica hash (see [`replica_hash`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finalized {
    pub info: ReplicaInfo,
    pub hash: Hash,
}

/// The replica files of one data dir and the in-memory index of them.
pub struct BlockStore {
    root: PathBuf,
    blocks_dir: PathBuf,
    tmp_dir: PathBuf,
    id: String,
    /// Held (flock) for the store's lifetime so a second datanode cannot use the same dir.
    _lock: File,
    /// The index; guarded because transfers, commands and the scrubber change it concurrently.
    /// Only short, non-blocking sections run under it (no I/O except unlinking replaced files).
    state: Mutex<State>,
    /// The configured capacity (`--capacity`): replica bytes beyond it are refused as out of
    /// space, so a small capacity behaves like a full disk instead of being only a ring weight.
    capacity: Option<u64>,
}

#[derive(Default)]
struct State {
    /// Finalized replicas by block id (at most one generation per block).
    finalized: HashMap<u64, ReplicaInfo>,
    /// (block, generation) of replicas with an open writer.
    writing: HashSet<(u64, u64)>,
    /// (block, generation) of finalized replicas found corrupt (reported, awaiting deletion).
    corrupt: HashSet<(u64, u64)>,
    /// Bytes of finalized replica data.
    used: u64,
    /// Bytes written by open writers (not yet in `used`): counted against the capacity so
    /// concurrent writes cannot together overshoot it.
    reserved: u64,
}

/// Where a replica's two files live.
#[derive(Clone, Debug)]
struct ReplicaPaths {
    data: PathBuf,
    meta: PathBuf,
}

impl BlockStore {
    /// Opens (creating if needed) the data dir: takes the lock, loads or creates the datanode id,
    /// indexes finalized replicas and tidies `tmp/`.
    pub fn open(root: &Path) -> Result<BlockStore> {
        BlockStore::open_with_capacity(root, None)
    }

    /// [`open`](Self::open) with a capacity: writes that would take the replica bytes beyond it
    /// fail with [`DatanodeError::NoSpace`].
    pub fn open_with_capacity(root: &Path, capacity: Option<u64>) -> Result<BlockStore> {
        fs::create_dir_all(root).map_err(DatanodeError::io("create data dir", root))?;
        // A namenode's dir (its store) given by mistake: a datanode would make a second node's
        // files in it and its operator would think the namenode's dir was in use.
        if root.join("namespace.redb").exists() {
            return Err(DatanodeError::Config(format!(
                "{} is a namenode's data dir (it holds namespace.redb), not a datanode's",
                root.display()
            )));
        }
        let lock_path = root.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(DatanodeError::io("open lock file", &lock_path))?;
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(DatanodeError::Locked(root.to_path_buf()));
        }
        let blocks_dir = root.join("blocks");
        let tmp_dir = root.join("tmp");
        for d in [&blocks_dir, &tmp_dir] {
            fs::create_dir_all(d).map_err(DatanodeError::io("create dir", d))?;
        }
        let id = load_or_create_id(root)?;
        let store = BlockStore {
            root: root.to_path_buf(),
            blocks_dir,
            tmp_dir,
            id,
            _lock: lock,
            state: Mutex::new(State::default()),
            capacity,
        };
        store.scan()?;
        Ok(store)
    }

    /// The stable datanode id kept in `<data_dir>/datanode_id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The cluster this data dir joined (`<data_dir>/cluster_id`), `None` before its first
    /// registration.
    pub fn cluster_id(&self) -> Result<Option<String>> {
        let path = self.root.join("cluster_id");
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DatanodeError::io("read", &path)(e)),
        }
    }

    /// Records the cluster this data dir joined (durably, before any block is reported to it).
    pub fn set_cluster_id(&self, id: &str) -> Result<()> {
        write_durably(&self.root, "cluster_id", id)
    }

    /// The data dir.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the index half-updated in a way that matters
        // more than stopping the node would, so keep going with the inner value.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// All finalized replicas (for block reports and the scrubber).
    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        let mut v: Vec<ReplicaInfo> = self.state().finalized.values().copied().collect();
        v.sort_by_key(|r| r.block);
        v
    }

    /// The finalized replica of `block`, if any.
    pub fn get(&self, block: u64) -> Option<ReplicaInfo> {
        self.state().finalized.get(&block).copied()
    }

    /// Bytes of finalized replica data.
    pub fn used(&self) -> u64 {
        self.state().used
    }

    /// Number of finalized replicas.
    pub fn len(&self) -> usize {
        self.state().finalized.len()
    }

    /// True when no finalized replica is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers that a finalized replica failed verification (reads refuse it from now on).
    pub fn mark_corrupt(&self, block: u64, generation: u64) {
        self.state().corrupt.insert((block, generation));
    }

    /// True when the replica was found corrupt.
    pub fn is_corrupt(&self, block: u64, generation: u64) -> bool {
        self.state().corrupt.contains(&(block, generation))
    }

    /// Every replica found corrupt, as (block, generation).
    pub fn corrupt_replicas(&self) -> HashSet<(u64, u64)> {
        self.state().corrupt.clone()
    }

    /// Forgets a corrupt mark (a later full check found the replica good: restored by hand, or
    /// a read error that was not the disk's); true when there was one.
    pub fn clear_corrupt(&self, block: u64, generation: u64) -> bool {
        self.state().corrupt.remove(&(block, generation))
    }

    fn final_paths(&self, block: u64, generation: u64) -> ReplicaPaths {
        let dir = self.blocks_dir.join(format!("{:02x}", block & 0xff));
        ReplicaPaths {
            data: dir.join(format!("{block}_{generation}.data")),
            meta: dir.join(format!("{block}_{generation}.meta")),
        }
    }

    fn tmp_paths(&self, block: u64, generation: u64) -> ReplicaPaths {
        ReplicaPaths {
            data: self.tmp_dir.join(format!("{block}_{generation}.data")),
            meta: self.tmp_dir.join(format!("{block}_{generation}.meta")),
        }
    }

    // ------------------------------------------------------------------ startup scan

    fn scan(&self) -> Result<()> {
        let mut found: HashMap<u64, Vec<(u64, PathBuf)>> = HashMap::new();
        let entries =
            fs::read_dir(&self.blocks_dir).map_err(DatanodeError::io("list", &self.blocks_dir))?;
        for sub in entries {
            let sub = sub
                .map_err(DatanodeError::io("list", &self.blocks_dir))?
                .path();
            if !sub.is_dir() {
                continue;
            }
            for e in fs::read_dir(&sub).map_err(DatanodeError::io("list", &sub))? {
                let p = e.map_err(DatanodeError::io("list", &sub))?.path();
                let parsed = parse_name(&p);
                if let Some((block, generation, _)) = parsed {
                    let at = self.final_paths(block, generation);
                    if p != at.data && p != at.meta {
                        // Not something this datanode wrote (a copy by hand, another layout):
                        // left alone, and not served.
                        tracing::warn!(path = %p.display(), belongs = %at.data.display(),
                            "ignoring a replica file outside the directory of its block");
                        continue;
                    }
                }
                match parsed {
                    Some((block, generation, "data")) => {
                        found.entry(block).or_default().push((generation, p));
                    }
                    Some((block, generation, "meta")) => {
                        if !self.final_paths(block, generation).data.exists() {
                            tracing::warn!(path = %p.display(), "removing meta without data");
                            remove_quietly(&p);
                        }
                    }
                    _ => tracing::warn!(path = %p.display(), "ignoring unknown file in blocks/"),
                }
            }
        }
        let mut state = self.state();
        for (block, mut gens) in found {
            gens.sort_by_key(|(g, _)| std::cmp::Reverse(*g));
            let mut kept = false;
            for (generation, _) in gens {
                let paths = self.final_paths(block, generation);
                if kept {
                    tracing::info!(
                        block,
                        generation,
                        "removing replica replaced by a newer generation"
                    );
                    remove_replica_files(&paths);
                    continue;
                }
                if !paths.meta.exists() {
                    // Crash between the two renames of finalize: the meta is still in tmp/.
                    let tmp = self.tmp_paths(block, generation);
                    if tmp.meta.exists() {
                        let _ = fs::rename(&tmp.meta, &paths.meta);
                    }
                }
                match check_finalized(&paths) {
                    Ok(len) => {
                        state.finalized.insert(
                            block,
                            ReplicaInfo {
                                block,
                                generation,
                                len,
                            },
                        );
                        state.used += len;
                        kept = true;
                    }
                    Err(e) => {
                        tracing::warn!(block, generation, error = %e, "removing incomplete replica");
                        remove_replica_files(&paths);
                    }
                }
            }
        }
        self.tidy_tmp(&state)?;
        tracing::info!(
            replicas = state.finalized.len(),
            used = state.used,
            "block store opened"
        );
        Ok(())
    }

    /// Removes from `tmp/` what a finalized replica supersedes and what is too old to be
    /// recovered (a write abandoned long ago: lease recovery is long over); keeps the rest for
    /// lease recovery (RecoverReplica) and never touches a replica being written. Runs at open and
    /// after every scrub pass, so a datanode that runs for months does not keep them until its
    /// next restart. Returns how many files it removed.
    fn tidy_tmp(&self, state: &State) -> Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        for e in fs::read_dir(&self.tmp_dir).map_err(DatanodeError::io("list", &self.tmp_dir))? {
            let p = e.map_err(DatanodeError::io("list", &self.tmp_dir))?.path();
            let Some((block, generation, _)) = parse_name(&p) else {
                tracing::warn!(path = %p.display(), "removing unknown file in tmp/");
                remove_quietly(&p);
                removed += 1;
                continue;
            };
            if state.writing.contains(&(block, generation)) {
                continue;
            }
            let superseded = state
                .finalized
                .get(&block)
                .is_some_and(|r| r.generation >= generation);
            let age = fs::metadata(&p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            if superseded || age > TMP_MAX_AGE {
                remove_quietly(&p);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// [`tidy_tmp`](Self::tidy_tmp) of a running store (the scrubber calls it after each pass).
    pub fn sweep_tmp(&self) -> Result<usize> {
        let state = self.state();
        self.tidy_tmp(&state)
    }

    // ------------------------------------------------------------------ writing

    /// Starts writing replica `(block, generation)` in `tmp/` (an old tmp replica of the same
    /// generation is overwritten). Refused when a finalized replica of this or a newer generation
    /// exists or the same replica is being written.
    pub fn create(self: &Arc<Self>, block: u64, generation: u64) -> Result<ReplicaWriter> {
        {
            let mut state = self.state();
            if let Some(r) = state.finalized.get(&block) {
                if r.generation >= generation {
                    return Err(DatanodeError::StaleGeneration {
                        block,
                        generation,
                        have: r.generation,
                    });
                }
            }
            if !state.writing.insert((block, generation)) {
                return Err(DatanodeError::WriteInProgress { block, generation });
            }
        }
        let registration = WritingGuard {
            store: self.clone(),
            key: (block, generation),
            reserved: 0,
        };
        let paths = self.tmp_paths(block, generation);
        let (data, direct) = create_data_file(&paths.data)?;
        let mut meta =
            File::create(&paths.meta).map_err(DatanodeError::io("create", &paths.meta))?;
        meta.write_all(&encode_header(0, 0, &[0; 32]))
            .map_err(DatanodeError::io("write", &paths.meta))?;
        Ok(ReplicaWriter {
            _registration: registration,
            store: self.clone(),
            block,
            generation,
            paths,
            data,
            direct,
            meta: BufWriter::with_capacity(64 * 1024, meta),
            hasher: blake3::Hasher::new(),
            len: 0,
            synced_upto: 0,
        })
    }

    /// Installs a finished tmp replica: renames into `blocks/`, drops older generations.
    fn install(&self, block: u64, generation: u64, len: u64, tmp: &ReplicaPaths) -> Result<()> {
        let fin = self.final_paths(block, generation);
        let dir = fin.data.parent().unwrap_or(&self.blocks_dir).to_path_buf();
        fs::create_dir_all(&dir).map_err(DatanodeError::io("create dir", &dir))?;
        let mut state = self.state();
        if let Some(r) = state.finalized.get(&block).copied() {
            if r.generation >= generation {
                drop(state);
                remove_replica_files(tmp);
                return Err(DatanodeError::StaleGeneration {
                    block,
                    generation,
                    have: r.generation,
                });
            }
        }
        // Renames are metadata-only and fast; doing them under the lock keeps the index and the
        // directory in step (no reader sees an indexed replica whose files are not there yet).
        fs::rename(&tmp.data, &fin.data).map_err(DatanodeError::io("rename", &tmp.data))?;
        fs::rename(&tmp.meta, &fin.meta).map_err(DatanodeError::io("rename", &tmp.meta))?;
        if let Some(old) = state.finalized.insert(
            block,
            ReplicaInfo {
                block,
                generation,
                len,
            },
        ) {
            state.used -= old.len;
            state.corrupt.remove(&(block, old.generation));
            remove_replica_files(&self.final_paths(block, old.generation));
        }
        state.used += len;
        drop(state);
        sync_dir(&dir)?;
        sync_dir(&self.tmp_dir)?;
        // Older generations left in tmp/ (broken writes before a pipeline recovery) are garbage now.
        self.remove_tmp_older_than(block, generation);
        Ok(())
    }

    fn remove_tmp_older_than(&self, block: u64, generation: u64) {
        let Ok(entries) = fs::read_dir(&self.tmp_dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if let Some((b, g, _)) = parse_name(&p) {
                if b == block && g < generation && !self.state().writing.contains(&(b, g)) {
                    remove_quietly(&p);
                }
            }
        }
    }

    // ------------------------------------------------------------------ reading

    /// Opens the finalized replica `(block, generation)` for verified reads.
    pub fn open_reader(
        &self,
        block: u64,
        generation: u64,
        path: ReadPath,
    ) -> Result<ReplicaReader> {
        let info = match self.get(block) {
            Some(r) if r.generation == generation => r,
            Some(r) if r.generation > generation => {
                return Err(DatanodeError::StaleGeneration {
                    block,
                    generation,
                    have: r.generation,
                })
            }
            _ => return Err(DatanodeError::ReplicaNotFound { block, generation }),
        };
        let paths = self.final_paths(block, generation);
        // Files missing: deleted between the index lookup and the open (a Delete command or a
        // newer generation leave the index first), or, when the index still lists the replica,
        // lost from the disk.
        let missing = || {
            if self.get(block).is_some_and(|r| r.generation == generation) {
                DatanodeError::ReplicaLost { block, generation }
            } else {
                DatanodeError::ReplicaNotFound { block, generation }
            }
        };
        let (header, hashes) = match read_meta(&paths.meta) {
            Ok(m) => m,
            Err(DatanodeError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(missing())
            }
            Err(e) => return Err(e),
        };
        let (data, direct) = open_data_file(&paths.data, path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => missing(),
            _ => DatanodeError::Io {
                op: "open",
                path: paths.data.clone(),
                source: e,
            },
        })?;
        if !direct {
            advise(&data, 0, 0, Advice::Sequential);
        }
        Ok(ReplicaReader {
            info,
            hash: header.hash,
            hashes,
            data,
            direct: AtomicBool::new(direct),
            path: paths.data,
        })
    }

    // ------------------------------------------------------------------ deletion

    /// Deletes replica `(block, generation)` (finalized or in tmp/), and partial replicas of the
    /// block's older generations in tmp/: whatever makes `generation` garbage (a newer one, or
    /// the block freed) makes them garbage too, and nothing else would remove them before the
    /// day-old sweep (a write that failed through several pipeline recoveries left one per
    /// generation). Returns whether the replica itself was removed.
    pub fn delete(&self, block: u64, generation: u64) -> Result<bool> {
        let mut removed = false;
        {
            let mut state = self.state();
            if state
                .finalized
                .get(&block)
                .is_some_and(|r| r.generation == generation)
            {
                if let Some(old) = state.finalized.remove(&block) {
                    state.used -= old.len;
                }
                state.corrupt.remove(&(block, generation));
                removed = true;
            }
        }
        // A finalized replica's install removed the older partials already: the tmp/ listing
        // is only for what never got finalized here (not on the path of every file removal).
        if !removed {
            self.remove_tmp_older_than(block, generation);
        }
        let fin = self.final_paths(block, generation);
        for p in [&fin.data, &fin.meta] {
            match fs::remove_file(p) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(DatanodeError::Io {
                        op: "remove",
                        path: p.clone(),
                        source: e,
                    })
                }
            }
        }
        if !self.state().writing.contains(&(block, generation)) {
            let tmp = self.tmp_paths(block, generation);
            for p in [&tmp.data, &tmp.meta] {
                if fs::remove_file(p).is_ok() {
                    removed = true;
                }
            }
        }
        Ok(removed)
    }

    // ------------------------------------------------------------------ lease recovery

    /// The length of the longest prefix of replica `(block, generation)` (finalized, or in tmp/)
    /// whose chunks match their hashes.
    pub fn verified_len(&self, block: u64, generation: u64) -> Result<u64> {
        let paths = self.recovery_source(block, generation)?;
        let (_, hashes) = read_meta(&paths.meta)?;
        let data = File::open(&paths.data).map_err(DatanodeError::io("open", &paths.data))?;
        let size = data
            .metadata()
            .map_err(DatanodeError::io("stat", &paths.data))?
            .len();
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut len = 0u64;
        for h in &hashes {
            let n = (size - len).min(CHUNK_SIZE as u64) as usize;
            if n == 0 {
                break;
            }
            data.read_exact_at(&mut buf[..n], len)
                .map_err(DatanodeError::io("read", &paths.data))?;
            if hash_chunk(&buf[..n]) != *h {
                break;
            }
            len += n as u64;
            if n < CHUNK_SIZE {
                break;
            }
        }
        Ok(len)
    }

    fn recovery_source(&self, block: u64, generation: u64) -> Result<ReplicaPaths> {
        {
            let state = self.state();
            if state.writing.contains(&(block, generation)) {
                return Err(DatanodeError::WriteInProgress { block, generation });
            }
            if state
                .finalized
                .get(&block)
                .is_some_and(|r| r.generation == generation)
            {
                return Ok(self.final_paths(block, generation));
            }
        }
        let tmp = self.tmp_paths(block, generation);
        if tmp.data.exists() && tmp.meta.exists() {
            Ok(tmp)
        } else {
            Err(DatanodeError::ReplicaNotFound { block, generation })
        }
    }

    /// Lease recovery: finalizes the first `len` bytes of replica `(block, generation)` as
    /// generation `new_generation` (hashes recomputed, verified against the old ones).
    pub fn finalize_recovered(
        self: &Arc<Self>,
        block: u64,
        generation: u64,
        new_generation: u64,
        len: u64,
    ) -> Result<Finalized> {
        if new_generation <= generation {
            return Err(DatanodeError::InvalidRequest(format!(
                "block {block}: new generation {new_generation} must be newer than {generation}"
            )));
        }
        let verified = self.verified_len(block, generation)?;
        if len > verified {
            return Err(DatanodeError::InvalidRequest(format!(
                "block {block} gen {generation}: cannot finalize at {len} bytes, only {verified} verified here"
            )));
        }
        let src = self.recovery_source(block, generation)?;
        let (_, old_hashes) = read_meta(&src.meta)?;
        let data = File::open(&src.data).map_err(DatanodeError::io("open", &src.data))?;
        let mut w = self.create(block, new_generation)?;
        let mut off = 0u64;
        let mut io = IoBuf::take(PACKET_SIZE);
        let buf = io.as_mut_slice(PACKET_SIZE);
        while off < len {
            let n = ((len - off) as usize).min(buf.len());
            data.read_exact_at(&mut buf[..n], off)
                .map_err(DatanodeError::io("read", &src.data))?;
            let first = (off / CHUNK_SIZE as u64) as usize;
            let hashes: Vec<Hash> = buf[..n].chunks(CHUNK_SIZE).map(hash_chunk).collect();
            for (i, (h, c)) in hashes.iter().zip(buf[..n].chunks(CHUNK_SIZE)).enumerate() {
                // Whole chunks must still match (they were verified a moment ago); the cut chunk is new.
                if c.len() == CHUNK_SIZE && old_hashes.get(first + i) != Some(h) {
                    return Err(DatanodeError::ChecksumMismatch {
                        block,
                        generation,
                        chunk: (first + i) as u64,
                    });
                }
            }
            w.write_packet(&buf[..n], &hashes)?;
            off += n as u64;
        }
        let fin = w.finish()?;
        // The source generation is superseded (install removed it if it was finalized).
        let tmp = self.tmp_paths(block, generation);
        remove_replica_files(&tmp);
        Ok(fin)
    }
}

/// Removes the store's "being written" mark and the writer's space reservation when a writer
/// goes away, finished or not.
struct WritingGuard {
    store: Arc<BlockStore>,
    key: (u64, u64),
    /// Bytes this writer reserved against the capacity.
    reserved: u64,
}

impl Drop for WritingGuard {
    fn drop(&mut self) {
        let mut state = self.store.state();
        state.writing.remove(&self.key);
        state.reserved = state.reserved.saturating_sub(self.reserved);
    }
}

/// Appends verified packets to a replica in `tmp/`. Dropping it without [`finish`](Self::finish)
/// leaves the tmp replica (its verified prefix) for lease recovery. Blocking I/O: use from a
/// blocking thread.
pub struct ReplicaWriter {
    _registration: WritingGuard,
    store: Arc<BlockStore>,
    block: u64,
    generation: u64,
    paths: ReplicaPaths,
    data: File,
    /// `data` is open with `O_DIRECT` (cleared before an unaligned write).
    direct: bool,
    meta: BufWriter<File>,
    hasher: blake3::Hasher,
    len: u64,
    synced_upto: u64,
}

impl ReplicaWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `data` whose chunk hashes (already verified by the caller) are `hashes`. Every
    /// packet but the last must hold whole chunks.
    pub fn write_packet(&mut self, data: &[u8], hashes: &[Hash]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.reserve(data.len() as u64)?;
        if !self.len.is_multiple_of(CHUNK_SIZE as u64) {
            return Err(DatanodeError::InvalidRequest(format!(
                "block {}: data after a short chunk at offset {}",
                self.block, self.len
            )));
        }
        if hashes.len() != data.len().div_ceil(CHUNK_SIZE) {
            return Err(DatanodeError::InvalidRequest(format!(
                "block {}: {} chunk hashes for {} bytes",
                self.block,
                hashes.len(),
                data.len()
            )));
        }
        self.write_data(data)
            .map_err(DatanodeError::io("write", &self.paths.data))?;
        for h in hashes {
            self.meta
                .write_all(h)
                .map_err(DatanodeError::io("write", &self.paths.meta))?;
        }
        for h in hashes {
            self.hasher.update(h);
        }
        self.len += data.len() as u64;
        if !self.direct && self.len - self.synced_upto >= WRITEBACK_EVERY {
            start_writeback(&self.data, self.synced_upto, self.len - self.synced_upto);
            self.synced_upto = self.len;
        }
        Ok(())
    }

    /// Counts `n` more bytes of this replica against the store's capacity, or refuses them.
    fn reserve(&mut self, n: u64) -> Result<()> {
        let Some(capacity) = self.store.capacity else {
            return Ok(());
        };
        let mut state = self.store.state();
        let used = state.used + state.reserved;
        if used.saturating_add(n) > capacity {
            return Err(DatanodeError::NoSpace {
                block: self.block,
                capacity,
                used,
            });
        }
        state.reserved += n;
        self._registration.reserved += n;
        Ok(())
    }

    /// Appends `data` at `self.len`: the aligned part straight to the device (through an aligned
    /// buffer) when the file is open for direct I/O, the rest through the page cache.
    fn write_data(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut off = self.len;
        let mut rest = data;
        if self.direct {
            let mut io = IoBuf::take(PACKET_SIZE);
            while rest.len() >= ALIGN {
                let n = rest.len().min(PACKET_SIZE) / ALIGN * ALIGN;
                let buf = io.as_mut_slice(n);
                buf.copy_from_slice(&rest[..n]);
                match self.data.write_at(buf, off) {
                    Ok(k) if k == n => {}
                    // A short or refused direct write (full disk, a filesystem with other alignment
                    // rules): the rest goes through the page cache, where errors are reported plainly.
                    Ok(k) => {
                        off += k as u64;
                        rest = &rest[k..];
                        self.stop_direct()?;
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        self.stop_direct()?;
                        break;
                    }
                    Err(e) => return Err(e),
                }
                off += n as u64;
                rest = &rest[n..];
            }
            if !rest.is_empty() && self.direct {
                self.stop_direct()?;
            }
        }
        self.data.write_all_at(rest, off)
    }

    /// Switches the data file to buffered I/O (for the unaligned tail, or after a refused direct write).
    fn stop_direct(&mut self) -> std::io::Result<()> {
        clear_direct(&self.data)?;
        self.direct = false;
        Ok(())
    }

    /// Makes the replica durable and visible: header, fsync, rename into `blocks/`, fsync dirs.
    pub fn finish(mut self) -> Result<Finalized> {
        let hash: Hash = *self.hasher.finalize().as_bytes();
        self.meta
            .flush()
            .map_err(DatanodeError::io("write", &self.paths.meta))?;
        let meta = self.meta.get_mut();
        meta.seek(SeekFrom::Start(0))
            .map_err(DatanodeError::io("seek", &self.paths.meta))?;
        meta.write_all(&encode_header(FLAG_FINALIZED, self.len, &hash))
            .map_err(DatanodeError::io("write", &self.paths.meta))?;
        self.data
            .sync_all()
            .map_err(DatanodeError::io("fsync", &self.paths.data))?;
        meta.sync_all()
            .map_err(DatanodeError::io("fsync", &self.paths.meta))?;
        self.store
            .install(self.block, self.generation, self.len, &self.paths)?;
        let info = ReplicaInfo {
            block: self.block,
            generation: self.generation,
            len: self.len,
        };
        Ok(Finalized { info, hash })
    }
}

/// Verified reads of one finalized replica. Blocking I/O: use from a blocking thread.
pub struct ReplicaReader {
    info: ReplicaInfo,
    hash: Hash,
    hashes: Vec<Hash>,
    data: File,
    /// `data` is open with `O_DIRECT` (cleared if the filesystem refuses a direct read).
    direct: AtomicBool,
    path: PathBuf,
}

impl ReplicaReader {
    pub fn info(&self) -> ReplicaInfo {
        self.info
    }

    /// The replica hash recorded at finalization (see [`replica_hash`]).
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The replica's open data file and its stored chunk hashes, for a reader on this host that
    /// reads and verifies the file itself (`crate::local_read`).
    pub fn into_file(self) -> (File, Vec<Hash>) {
        (self.data, self.hashes)
    }

    /// Number of chunks in the replica.
    pub fn chunks(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// Reads up to `max_chunks` chunks starting at chunk `first` and verifies each against the
    /// meta file; returns the bytes and their hashes. Bytes that fail verification are never
    /// returned: the error names the first bad chunk. The bytes live in a pooled buffer that goes
    /// back to the pool when the last `Bytes` referring to it is dropped.
    pub fn read_chunks(&self, first: u64, max_chunks: usize) -> Result<(Bytes, Vec<Hash>)> {
        self.verify(self.read_raw(first, max_chunks)?)
    }

    /// Asks the kernel to fetch chunks `[first, end)` of a buffered reader now (at most
    /// `READ_AHEAD` bytes), so the disk works while earlier chunks are sent. Bounded by what the
    /// caller will read: prefetching past it made every random 4 KiB read fetch 4 MiB.
    pub fn prefetch(&self, first: u64, end: u64) {
        if self.direct.load(Ordering::Relaxed) || end <= first {
            return;
        }
        let from = first.saturating_mul(CHUNK_SIZE as u64);
        let to = end.saturating_mul(CHUNK_SIZE as u64).min(self.info.len);
        if to > from {
            advise(
                &self.data,
                from,
                (to - from).min(READ_AHEAD),
                Advice::WillNeed,
            );
        }
    }

    /// The disk half of [`read_chunks`](Self::read_chunks): reads the chunks without verifying
    /// them (so a caller can read ahead while earlier chunks are verified).
    pub fn read_raw(&self, first: u64, max_chunks: usize) -> Result<RawChunks> {
        let ReplicaInfo {
            block,
            generation,
            len,
        } = self.info;
        let start = first.saturating_mul(CHUNK_SIZE as u64);
        if start >= len {
            return Ok(RawChunks { first, io: None });
        }
        let end = (start + (max_chunks as u64) * CHUNK_SIZE as u64).min(len);
        let want = (end - start) as usize;
        let mut io = IoBuf::take(want.next_multiple_of(ALIGN));
        let got = self
            .read_into(&mut io, start, want)
            .map_err(|source| DatanodeError::Io {
                op: "read",
                path: self.path.clone(),
                source,
            })?;
        if got < want {
            // The data file is shorter than its meta says: the replica is damaged.
            let size = self.data.metadata().map(|m| m.len()).unwrap_or(0);
            let chunk = size.max(start) / CHUNK_SIZE as u64;
            return Err(DatanodeError::ChecksumMismatch {
                block,
                generation,
                chunk,
            });
        }
        io.len = want;
        Ok(RawChunks {
            first,
            io: Some(io),
        })
    }

    /// The checking half of [`read_chunks`](Self::read_chunks): every chunk against the meta file.
    pub fn verify(&self, raw: RawChunks) -> Result<(Bytes, Vec<Hash>)> {
        let Some(io) = raw.io else {
            return Ok((Bytes::new(), Vec::new()));
        };
        let mut hashes = Vec::with_capacity(io.len.div_ceil(CHUNK_SIZE));
        for (i, c) in io.as_ref().chunks(CHUNK_SIZE).enumerate() {
            let idx = raw.first + i as u64;
            let h = hash_chunk(c);
            if self.hashes.get(idx as usize) != Some(&h) {
                return Err(DatanodeError::ChecksumMismatch {
                    block: self.info.block,
                    generation: self.info.generation,
                    chunk: idx,
                });
            }
            hashes.push(h);
        }
        Ok((Bytes::from_owner(io), hashes))
    }

    /// The unchecked alternative to [`verify`](Self::verify), for a reader that verifies every
    /// chunk itself: the bytes with the hashes recorded in the meta file (not recomputed), so a
    /// damaged chunk reaches the reader with the hash it should have had, and fails there.
    pub fn unverified(&self, raw: RawChunks) -> (Bytes, Vec<Hash>) {
        let Some(io) = raw.io else {
            return (Bytes::new(), Vec::new());
        };
        let first = raw.first as usize;
        let n = io.len.div_ceil(CHUNK_SIZE);
        let hashes = self
            .hashes
            .get(first..first + n)
            .map(<[Hash]>::to_vec)
            .unwrap_or_default();
        (Bytes::from_owner(io), hashes)
    }

    /// Reads `want` bytes at `start` (a chunk boundary) into `io`; returns how many bytes were
    /// there (fewer only at the end of the file). Direct reads ask for whole 4 KiB blocks; a
    /// filesystem that refuses them gets buffered reads from then on.
    fn read_into(&self, io: &mut IoBuf, start: u64, want: usize) -> std::io::Result<usize> {
        let mut direct = self.direct.load(Ordering::Relaxed);
        let buf = io.as_mut_slice(want.next_multiple_of(ALIGN));
        let mut got = 0;
        while got < want {
            let ask = if direct { buf.len() } else { want };
            match self.data.read_at(&mut buf[got..ask], start + got as u64) {
                Ok(0) => break,
                // A direct read returns whole blocks except at the end of the file.
                Ok(n) if direct && n % ALIGN != 0 => {
                    got += n;
                    break;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    clear_direct(&self.data)?;
                    self.direct.store(false, Ordering::Relaxed);
                    direct = false;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(got.min(want))
    }
}

/// How a [`ReplicaReader`] reads its data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPath {
    /// Through the page cache, with readahead: what clients read.
    PageCache,
    /// From the disk (`O_DIRECT` where the filesystem allows it): scrubbing, which must check the
    /// stored bytes rather than a cached copy, and bulk copies that should not evict client data.
    Disk,
}

/// Chunks read by [`ReplicaReader::read_raw`], not verified yet.
pub struct RawChunks {
    first: u64,
    io: Option<IoBuf>,
}

/// A heap buffer whose usable part starts at a 4 KiB boundary (direct I/O needs aligned memory).
/// Buffers come from a small process-wide pool and go back to it when dropped, so the hot path
/// never touches freshly mapped memory (which costs a page fault per 4 KiB, and more in a VM).
pub struct IoBuf {
    raw: Vec<u8>,
    /// Offset of the first aligned byte in `raw`.
    off: usize,
    /// Bytes of content (what `as_ref` shows).
    len: usize,
}

/// Free pooled buffers (all of capacity [`READ_UNIT`]); a plain mutex: taken once per packet.
static POOL: Mutex<Vec<IoBuf>> = Mutex::new(Vec::new());

impl IoBuf {
    /// A buffer with room for at least `cap` aligned bytes, from the pool when it fits.
    pub fn take(cap: usize) -> IoBuf {
        if cap <= READ_UNIT {
            let pooled = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
            if let Some(mut b) = pooled {
                b.len = 0;
                return b;
            }
        }
        let size = cap.max(READ_UNIT);
        let raw = vec![0u8; size + ALIGN];
        let off = raw.as_ptr().align_offset(ALIGN);
        IoBuf { raw, off, len: 0 }
    }

    /// The first `n` aligned bytes, writable.
    fn as_mut_slice(&mut self, n: usize) -> &mut [u8] {
        &mut self.raw[self.off..self.off + n]
    }
}

impl AsRef<[u8]> for IoBuf {
    fn as_ref(&self) -> &[u8] {
        &self.raw[self.off..self.off + self.len]
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        if self.raw.len() != READ_UNIT + ALIGN {
            return;
        }
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_MAX {
            pool.push(IoBuf {
                raw: std::mem::take(&mut self.raw),
                off: self.off,
                len: 0,
            });
        }
    }
}

// ---------------------------------------------------------------------- helpers

/// The whole-replica hash of a replica whose chunk hashes are `chunk_hashes`: blake3 over their
/// concatenation. Equal content gives equal hashes, and it is computed without another pass over
/// the data.
pub fn replica_hash(chunk_hashes: &[Hash]) -> Hash {
    let mut h = blake3::Hasher::new();
    for c in chunk_hashes {
        h.update(c);
    }
    *h.finalize().as_bytes()
}

struct Header {
    flags: u32,
    len: u64,
    hash: Hash,
}

fn encode_header(flags: u32, len: u64, hash: &Hash) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&META_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(CHUNK_SIZE as u32).to_le_bytes());
    h[16..20].copy_from_slice(&flags.to_le_bytes());
    h[24..32].copy_from_slice(&len.to_le_bytes());
    h[32..64].copy_from_slice(hash);
    h
}

fn decode_header(path: &Path, h: &[u8]) -> Result<Header> {
    let bad = |reason: String| DatanodeError::BadMeta {
        path: path.to_path_buf(),
        reason,
    };
    if h.len() < HEADER_LEN as usize || &h[0..8] != MAGIC {
        return Err(bad("not a ringfs meta file".into()));
    }
    let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let version = u32_at(8);
    if version != META_VERSION {
        return Err(bad(format!("unsupported format version {version}")));
    }
    let chunk = u32_at(12);
    if chunk as usize != CHUNK_SIZE {
        return Err(bad(format!("chunk size {chunk}, expected {CHUNK_SIZE}")));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&h[24..32]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&h[32..64]);
    Ok(Header {
        flags: u32_at(16),
        len: u64::from_le_bytes(len),
        hash,
    })
}

/// Reads a meta file: header and all chunk hashes present. For a finalized replica the hash count
/// must match the length.
fn read_meta(path: &Path) -> Result<(Header, Vec<Hash>)> {
    let mut f = File::open(path).map_err(DatanodeError::io("open", path))?;
    let mut raw = Vec::new();
    f.read_to_end(&mut raw)
        .map_err(DatanodeError::io("read", path))?;
    let header = decode_header(path, &raw)?;
    let body = &raw[HEADER_LEN as usize..];
    let hashes: Vec<Hash> = body
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect();
    if header.flags & FLAG_FINALIZED != 0
        && hashes.len() as u64 != header.len.div_ceil(CHUNK_SIZE as u64)
    {
        return Err(DatanodeError::BadMeta {
            path: path.to_path_buf(),
            reason: format!("{} chunk hashes for {} bytes", hashes.len(), header.len),
        });
    }
    Ok((header, hashes))
}

/// Checks that a finalized replica's files agree (header finalized, sizes match); returns its length.
fn check_finalized(paths: &ReplicaPaths) -> Result<u64> {
    let mut f = File::open(&paths.meta).map_err(DatanodeError::io("open", &paths.meta))?;
    let mut h = [0u8; HEADER_LEN as usize];
    f.read_exact(&mut h)
        .map_err(DatanodeError::io("read", &paths.meta))?;
    let header = decode_header(&paths.meta, &h)?;
    let bad = |reason: String| DatanodeError::BadMeta {
        path: paths.meta.clone(),
        reason,
    };
    if header.flags & FLAG_FINALIZED == 0 {
        return Err(bad("not finalized".into()));
    }
    let meta_len = f
        .metadata()
        .map_err(DatanodeError::io("stat", &paths.meta))?
        .len();
    let chunks = header.len.div_ceil(CHUNK_SIZE as u64);
    if meta_len != HEADER_LEN + 32 * chunks {
        return Err(bad(format!("{meta_len} bytes for {} chunks", chunks)));
    }
    let data_len = fs::metadata(&paths.data)
        .map_err(DatanodeError::io("stat", &paths.data))?
        .len();
    if data_len != header.len {
        return Err(bad(format!(
            "data file has {data_len} bytes, meta says {}",
            header.len
        )));
    }
    Ok(header.len)
}

/// `<id>_<gen>.<ext>` → (id, gen, ext).
fn parse_name(p: &Path) -> Option<(u64, u64, &str)> {
    let name = p.file_name()?.to_str()?;
    let (stem, ext) = name.rsplit_once('.')?;
    let (id, generation) = stem.split_once('_')?;
    let ext = match ext {
        "data" => "data",
        "meta" => "meta",
        _ => return None,
    };
    Some((id.parse().ok()?, generation.parse().ok()?, ext))
}

fn remove_quietly(p: &Path) {
    if let Err(e) = fs::remove_file(p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %p.display(), error = %e, "could not remove file");
        }
    }
}

fn remove_replica_files(paths: &ReplicaPaths) {
    remove_quietly(&paths.meta);
    remove_quietly(&paths.data);
}

/// Creates (truncating) a replica data file for writing, with `O_DIRECT` when the filesystem
/// supports it. Returns the file and whether it is direct.
fn create_data_file(path: &Path) -> Result<(File, bool)> {
    let open = |direct: bool| {
        let mut o = OpenOptions::new();
        o.write(true).create(true).truncate(true);
        if direct {
            o.custom_flags(direct_flag());
        }
        o.open(path)
    };
    if direct_flag() != 0 {
        match open(true) {
            Ok(f) => return Ok((f, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(DatanodeError::io("create", path)(e)),
        }
    }
    Ok((
        open(false).map_err(DatanodeError::io("create", path))?,
        false,
    ))
}

/// Opens a replica data file for reading, with `O_DIRECT` when `via` asks for the disk and the
/// filesystem supports it.
fn open_data_file(path: &Path, via: ReadPath) -> std::io::Result<(File, bool)> {
    if via == ReadPath::Disk && direct_flag() != 0 {
        match OpenOptions::new()
            .read(true)
            .custom_flags(direct_flag())
            .open(path)
        {
            Ok(f) => return Ok((f, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((File::open(path)?, false))
}

/// `O_DIRECT` where it exists (0 elsewhere: buffered I/O only).
fn direct_flag() -> i32 {
    #[cfg(target_os = "linux")]
    {
        libc::O_DIRECT
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Clears `O_DIRECT` on an open file.
fn clear_direct(f: &File) -> std::io::Result<()> {
    // SAFETY: fcntl on a file descriptor we own; no memory is passed.
    let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !direct_flag()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(DatanodeError::io("fsync dir", dir))
}

enum Advice {
    Sequential,
    WillNeed,
}

/// Page-cache hints for replica reads (Linux `posix_fadvise`). Advisory: errors are ignored.
fn advise(f: &File, offset: u64, len: u64, advice: Advice) {
    #[cfg(target_os = "linux")]
    {
        let advice = match advice {
            Advice::Sequential => libc::POSIX_FADV_SEQUENTIAL,
            Advice::WillNeed => libc::POSIX_FADV_WILLNEED,
        };
        // SAFETY: posix_fadvise on a file descriptor we own; no memory is passed.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), offset as i64, len as i64, advice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, offset, len, advice);
}

/// Asks the kernel to start writing back a range now (Linux), so dirty pages do not pile up and the
/// final fsync has little left to do. Advisory: errors are ignored.
fn start_writeback(f: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    // SAFETY: sync_file_range on a file descriptor we own; no memory is passed.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, offset, len);
}

fn load_or_create_id(root: &Path) -> Result<String> {
    let path = root.join("datanode_id");
    match fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_string();
            ringfs_proto::DatanodeId::try_from(id.clone()).map_err(|e| DatanodeError::BadMeta {
                path: path.clone(),
                reason: e.message().to_string(),
            })?;
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            write_durably(root, "datanode_id", &id)?;
            Ok(id)
        }
        Err(e) => Err(DatanodeError::Io {
            op: "read",
            path,
            source: e,
        }),
    }
}

/// Writes `<root>/<name>` as one line, through a temporary file, fsynced and renamed into place.
fn write_durably(root: &Path, name: &str, value: &str) -> Result<()> {
    let path = root.join(name);
    let tmp = root.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp).map_err(DatanodeError::io("create", &tmp))?;
    f.write_all(format!("{value}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(DatanodeError::io("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(DatanodeError::io("rename", &tmp))?;
    sync_dir(root)
}

/// Total size in bytes of the filesystem holding `path`.
pub fn filesystem_size(path: &Path) -> Result<u64> {
    let (total, _) = statvfs(path)?;
    Ok(total)
}

/// Free bytes (for unprivileged users) on the filesystem holding `path`.
pub fn filesystem_free(path: &Path) -> Result<u64> {
    let (_, free) = statvfs(path)?;
    Ok(free)
}

fn statvfs(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        DatanodeError::InvalidRequest(format!("path {} contains NUL", path.display()))
    })?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer for the duration of the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(DatanodeError::Io {
            op: "statvfs",
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfs_proto::chunk::hash_chunks;

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn write(store: &Arc<BlockStore>, block: u64, generation: u64, bytes: &[u8]) -> Finalized {
        let mut w = store.create(block, generation).unwrap();
        for p in bytes.chunks(ringfs_proto::chunk::PACKET_SIZE) {
            w.write_packet(p, &hash_chunks(p)).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(store: &BlockStore, block: u64, generation: u64) -> Result<Vec<u8>> {
        let r = store.open_reader(block, generation, ReadPath::Disk)?;
        let mut out = Vec::new();
        let mut c = 0;
        while c < r.chunks() {
            let (d, _) = r.read_chunks(c, 16)?;
            out.extend_from_slice(&d);
            c += 16;
        }
        Ok(out)
    }

    #[test]
    fn abandoned_tmp_replicas_are_swept_while_running_but_recent_and_open_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlockStore::open(dir.path()).unwrap());
        let packet = data(ringfs_proto::chunk::PACKET_SIZE, 2);
        let hashes = hash_chunks(&packet);
        // Two abandoned writes (dropped without finish) and one still open.
        for block in [1, 2] {
            let mut w = store.create(block, 1).unwrap();
            w.write_packet(&packet, &hashes).unwrap();
        }
        let mut open = store.create(3, 1).unwrap();
        open.write_packet(&packet, &hashes).unwrap();
        let tmp_files = |b: u64| -> Vec<PathBuf> {
            fs::read_dir(dir.path().join("tmp"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| parse_name(p).is_some_and(|(blk, _, _)| blk == b))
                .collect()
        };
        // Block 1's files are as old as an abandoned write nobody will recover.
        let old = SystemTime::now() - TMP_MAX_AGE - Duration::from_secs(60);
        for p in tmp_files(1).into_iter().chain(tmp_files(3)) {
            fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        assert_eq!(
            store.sweep_tmp().unwrap(),
            2,
            "the data and meta of block 1"
        );
        assert!(tmp_files(1).is_empty());
        assert_eq!(
            tmp_files(2).len(),
            2,
            "a recent abandoned write is kept for lease recovery"
        );
        assert_eq!(
            tmp_files(3).len(),
            2,
            "a replica being written is never swept"
        );
        open.write_packet(&packet, &hashes).unwrap();
        open.finish().unwrap();
        assert_eq!(read_all(&store, 3, 1).unwrap().len(), 2 * packet.len());
    }

    #[test]
    fn writes_beyond_the_capacity_are_refused_as_no_space() {
        // A 3 MiB store: two concurrent 2 MiB writers cannot both fit; the one that would overshoot
        // is refused, and its reservation is released when it goes away.
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlockStore::open_with_capacity(dir.path(), Some(3 << 20)).unwrap());
        let packet = data(ringfs_proto::chunk::PACKET_SIZE, 1);
        let hashes = hash_chunks(&packet);
        let mut a = store.create(1, 1).unwrap();
        let mut b = store.create(2, 1).unwrap();
        a.write_packet(&packet, &hashes).unwrap();
        b.write_packet(&packet, &hashes).unwrap();
        a.write_packet(&packet, &hashes).unwrap();
        let err = b.write_packet(&packet, &hashes).unwrap_err();
        assert!(
            matches!(err, DatanodeError::NoSpace { block: 2, .. }),
            "{err}"
        );
        assert_eq!(
            ringfs_proto::error_kind::ErrorKind::of(&tonic::Status::from(err)),
            ringfs_proto::error_kind::ErrorKind::NoSpace
        );
        drop(b);
        a.finish().unwrap();
        assert_eq!(store.used(), 2 << 20);
        // The failed writer's 1 MiB is free again: exactly one more packet fits, then no more.
        let mut c = store.create(3, 1).unwrap();
        c.write_packet(&packet, &hashes).unwrap();
        assert!(matches!(
            c.write_packet(&packet, &hashes),
            Err(DatanodeError::NoSpace { .. })
        ));
    }

    #[test]
    fn write_read_verify_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlockStore::open(dir.path()).unwrap());
        let bytes = data(3 * 1024 * 1024 + 12345, 7);
        let fin = write(&store, 300, 1, &bytes);
        assert_eq!(
            fin.info,
            ReplicaInfo {
                block: 300,
                generation: 1,
                len: bytes.len() as u64
            }
        );
        assert_eq!(fin.hash, replica_hash(&hash_chunks(&bytes)));
        assert_eq!(read_all(&store, 300, 1).unwrap(), bytes);
        assert!(dir.path().join("blocks/2c/300_1.data").exists());
        assert!(dir.path().join("blocks/2c/300_1.meta").exists());
        assert_eq!(store.used(), bytes.len() as u64);
        let empty = write(&store, 5, 2, &[]);
        assert_eq!(empty.info.len, 0);
        assert_eq!(read_all(&store, 5, 2).unwrap(), Vec::<u8>::new());
        // Reading a middle chunk returns exactly that chunk.
        let r = store.open_reader(300, 1, ReadPath::PageCache).unwrap();
        let (d, h) = r.read_chunks(2, 1).unwrap();
        assert_eq!(d, &bytes[2 * CHUNK_SIZE..3 * CHUNK_SIZE]);
        assert_eq!(h.len(), 1);
        let id = store.id().to_string();
        drop((r, store));
        let store = BlockStore::open(dir.path()).unwrap();
        assert_eq!(store.id(), id, "datanode id is stable across restarts");
        assert_eq!(store.replicas().len(), 2);
        assert_eq!(read_all(&store, 300, 1).unwrap(), bytes);
    }

    #[test]
    fn corrupt_byte_fails_its_chunk_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlockStore::open(dir.path()).unwrap());
        let bytes = data(5 * CHUNK_SIZE, 1);
        write(&store, 9, 4, &bytes);
        let path = dir.path().join("blocks/09/9_4.data");
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(
            &[bytes[3 * CHUNK_SIZE + 10] ^ 0xff],
            (3 * CHUNK_SIZE + 10) as u64,
        )
        .unwrap();
        let r = store.open_reader(9, 4, ReadPath::Disk).unwrap();
        assert_eq!(r.read_chunks(0, 3).unwrap().0, &bytes[..3 * CHUNK_SIZE]);
        match r.read_chunks(0, 16) {
            Err(DatanodeError::ChecksumMismatch {
                block: 9,
                generation: 4,
                chunk: 3,
            }) => {}
            other => panic!("expected mismatch in chunk 3, got {:?}", other.map(|_| ())),
        }
        // A truncated data file is a mismatch too, not an I/O error.
        f.set_len((2 * CHUNK_SIZE) as u64).unwrap();
        assert!(matches!(
            r.read_chunks(0, 16),
            Err(DatanodeError::ChecksumMismatch {
                block: 9,
                chunk: 2,
                ..
            })
        ));
    }

    #[test]
    fn unfinished_write_is_not_listed_and_can_be_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = data(2 * CHUNK_SIZE + 100, 3);
        {
            let store = Arc::new(BlockStore::open(dir.path()).unwrap());
            let mut w = store.create(42, 1).unwrap();
            w.write_packet(&bytes, &hash_chunks(&bytes)).unwrap();
            // "Crash": the writer goes away without finish.
            drop(w);
            assert!(store.get(42).is_none());
            assert!(matches!(
                store.open_reader(42, 1, ReadPath::Disk),
                Err(DatanodeError::ReplicaNotFound { .. })
            ));
        }
        let store = Arc::new(BlockStore::open(dir.path()).unwrap());
        assert!(store.replicas().is_empty(), "a tmp replica is never listed");
        assert_eq!(store.verified_len(42, 1).unwrap(), bytes.len() as u64);
        // Damage the last whole chunk: the verified prefix stops before it.
        let tmp = dir.path().join("tmp/42_1.data");
        OpenOptions::new()
            .write(true)
            .open(&tmp)
            .unwrap()
            .write_all_at(&[0xee], CHUNK_SIZE as u64 + 1)
            .unwrap();
        assert_eq!(store.verified_len(42, 1).unwrap(), CHUNK_SIZE as u64);
        let fin = store.finalize_recovered(42, 1, 2, 1000).unwrap();
        assert_eq!(
            fin.info,
            ReplicaInfo {
                block: 42,
                generation: 2,
                len: 1000
            }
        );
        assert_eq!(fin.hash, replica_hash(&hash_chunks(&bytes[..1000])));
        assert_eq!(read_all(&store, 42, 2).unwrap(), &bytes[..1000]);
        assert!(!tmp.exists(), "the recovered tmp replica is gone");
        assert!(
            store.finalize_recovered(42, 2, 3, 5000).is_err(),
            "cannot finalize past the verified length"
        );
    }

    #[test]
    fn half_finalized_replica_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = data(CHUNK_SIZE + 1, 9);
        {
            let store = Arc::new(BlockStore::open(dir.path()).unwrap());
            write(&store, 7, 1, &bytes);
        }
        // Data without a finalized meta (e.g. a torn finalize) is not a replica.
        let meta = dir.path().join("blocks/07/7_1.meta");
        let mut raw = fs::read(&meta).unwrap();
        raw[16] = 0; // clear the finalized flag
        fs::write(&meta, &raw).unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        assert!(store.replicas().is_empty());
        assert!(!dir.path().join("blocks/07/7_1.data").exists());
    }

    #[test]
    fn replica_files_outside_their_directory_are_left_alone_and_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = data(1000, 3);
        {
            let store = Arc::new(BlockStore::open(dir.path()).unwrap());
            write(&store, 7, 1, &bytes);
        }
        // Copies in another block's directory (by hand): the scan used to "remove" them at the
        // path where they belong, leaving them on disk and saying otherwise at every start.
        let stray = dir.path().join("blocks/b1");
        fs::create_dir_all(&stray).unwrap();
        for f in ["7_1.data", "7_1.meta"] {
            fs::copy(dir.path().join("blocks/07").join(f), stray.join(f)).unwrap();
        }
        fs::write(stray.join("999999_1.data"), b"junk").unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let ids: Vec<u64> = store.replicas().iter().map(|r| r.block).collect();
        assert_eq!(ids, vec![7]);
        assert_eq!(read_all(&store, 7, 1).unwrap(), bytes);
        assert_eq!(store.used(), bytes.len() as u64);
        for f in ["7_1.data", "7_1.meta", "999999_1.data"] {
            assert!(stray.join(f).exists(), "{f} left alone");
        }
    }

    #[test]
    fn newer_generation_replaces_older_and_stale_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlockStore::open(dir.path()).unwrap());
        write(&store, 11, 1, &data(1000, 1));
        let v2 = data(2000, 2);
        write(&store, 11, 2, &v2);
        assert_eq!(
            store.replicas(),
            vec![ReplicaInfo {
                block: 11,
                generation: 2,
                len: 2000
            }]
        );
        assert!(!dir.path().join("blocks/0b/11_1.data").exists());
        assert!(matches!(
            store.open_reader(11, 1, ReadPath::Disk),
            Err(DatanodeError::StaleGeneration { have: 2, .. })
        ));
        assert!(matches!(
            store.create(11, 2),
            Err(DatanodeError::StaleGeneration { .. })
        ));
        assert!(matches!(
            store.create(11, 1),
            Err(DatanodeError::StaleGeneration { .. })
        ));
        assert_eq!(store.used(), 2000);
        // Two generations on disk (crash before the old one was removed): the newest wins on open.
        fs::copy(
            dir.path().join("blocks/0b/11_2.data"),
            dir.path().join("blocks/0b/11_1.data"),
        )
        .unwrap();
        fs::copy(
            dir.path().join("blocks/0b/11_2.meta"),
            dir.path().join("blocks/0b/11_1.meta"),
        )
        .unwrap();
        drop(store);
        let store = BlockStore::open(dir.path()).unwrap();
        assert_eq!(
            store.replicas(),
            vec![ReplicaInfo {
                block: 11,
                generation: 2,
                len: 2000
            }]
        );
        assert!(!dir.path().join("blocks/0b/11_1.data").exists());
        assert_eq!(read_all(&store, 11, 2).unwrap(), v2);
    }

    #[test]
    fn concurrent_writer_refused_and_delete_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlockStore::open(dir.path()).unwrap());
        let w = store.create(3, 1).unwrap();
        assert!(matches!(
            store.create(3, 1),
            Err(DatanodeError::WriteInProgress { .. })
        ));
        assert!(matches!(
            store.verified_len(3, 1),
            Err(DatanodeError::WriteInProgress { .. })
        ));
        drop(w);
        write(&store, 3, 1, &data(10, 0));
        assert!(store.delete(3, 1).unwrap());
        assert!(store.get(3).is_none());
        assert!(!dir.path().join("blocks/03/3_1.data").exists());
        assert!(!dir.path().join("tmp/3_1.data").exists());
        assert!(!store.delete(3, 1).unwrap());
        assert_eq!(store.used(), 0);
    }

    #[test]
    fn two_stores_cannot_share_a_dir() {
        let dir = tempfile::tempdir().unwrap();
        let _a = BlockStore::open(dir.path()).unwrap();
        assert!(matches!(
            BlockStore::open(dir.path()),
            Err(DatanodeError::Locked(_))
        ));
    }

    #[test]
    fn packets_after_a_short_chunk_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlockStore::open(dir.path()).unwrap());
        let mut w = store.create(1, 1).unwrap();
        let a = data(100, 0);
        w.write_packet(&a, &hash_chunks(&a)).unwrap();
        assert!(matches!(
            w.write_packet(&a, &hash_chunks(&a)),
            Err(DatanodeError::InvalidRequest(_))
        ));
    }
}
