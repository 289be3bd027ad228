//! Short-circuit reads (`ringfs_proto::local_read`): when a replica's datanode runs on this host,
//! the reader gets the replica file's descriptor from the datanode over a Unix socket and reads the
//! file itself, verifying every chunk against the hashes the datanode stored at write time. A
//! datanode that is not local, refuses, or fails is read over gRPC as before.
//!
//! Descriptors are kept for a while per (datanode, block, generation): random reads of the same
//! block (a mount serving 4 KiB reads) then cost one `pread` and one chunk hash each. A finalized
//! replica file never changes (a new generation is a new file), so a kept descriptor always reads
//! the bytes its hashes describe.

use bytes::Bytes;
use ringfs_proto::chunk::{hash_chunk, Hash, CHUNK_SIZE};
use ringfs_proto::local_read::{self, LocalReadRequest, LocalReadResponse};
use ringfs_proto::pb;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Descriptors kept at most (each holds an open file and 32 bytes of hash per 64 KiB chunk).
const MAX_OPEN: usize = 128;
/// A kept descriptor is asked for again after this long (the datanode may have lost the replica
/// to a newer generation or a delete; a reader should not go on reading a superseded copy).
const KEEP_OPEN: Duration = Duration::from_secs(30);
/// Bytes read per `pread` of a short-circuit read (then hashed while still in the CPU cache).
const VERIFY_STEP: usize = 4 * CHUNK_SIZE;
/// A datanode found not local (or failing) is not asked again for this long.
const NOT_LOCAL_FOR: Duration = Duration::from_secs(10);

/// A replica file opened by its datanode for this process.
pub(crate) struct LocalReplica {
    file: File,
    len: u64,
    hashes: Vec<Hash>,
}

/// Why a local read stopped.
pub(crate) enum LocalError {
    /// Chunk `chunk` does not match its stored hash: the replica is bad.
    Mismatch { chunk: u64 },
    /// The file could not be read as the datanode described it.
    Other(String),
}

impl LocalReplica {
    /// Replica length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Reads `[start, end)` (`start` on a chunk boundary, `end` a chunk boundary or the replica
    /// length) and verifies every chunk. Blocking.
    pub(crate) fn read_verified(&self, start: u64, end: u64) -> Result<Bytes, LocalError> {
        debug_assert_eq!(start % CHUNK_SIZE as u64, 0);
        let want = end.saturating_sub(start) as usize;
        let first = start / CHUNK_SIZE as u64;
        // Filled by pread without zeroing it first (zeroing cost as much as a third of the copy),
        // a few chunks per call, each hashed right after it lands (while it is still in the CPU
        // cache: hashing a whole 4 MiB read afterwards fetched it from memory again).
        let mut buf: Vec<u8> = Vec::with_capacity(want);
        let mut checked = 0;
        while checked < want {
            let got = buf.len();
            let step = (want - got).min(VERIFY_STEP);
            let spare = &mut buf.spare_capacity_mut()[..step];
            // SAFETY: pread writes at most `spare.len()` bytes into the spare capacity, and only
            // the bytes it reports written are counted as initialized below.
            let n = unsafe {
                libc::pread(
                    self.file.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    (start + got as u64) as libc::off_t,
                )
            };
            match n {
                0 => {
                    return Err(LocalError::Other(format!(
                        "replica file ends at {} bytes, {} expected",
                        start + got as u64,
                        self.len
                    )))
                }
                // SAFETY: pread initialized `n` more bytes (n <= spare.len()).
                n if n > 0 => unsafe { buf.set_len(got + n as usize) },
                _ => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(LocalError::Other(format!("reading the replica file: {e}")));
                    }
                }
            }
            // Whole chunks, and the last (short) one once everything is there.
            let upto = if buf.len() == want {
                want
            } else {
                buf.len() - buf.len() % CHUNK_SIZE
            };
            for c in buf[checked..upto].chunks(CHUNK_SIZE) {
                let idx = first + (checked / CHUNK_SIZE) as u64;
                if self.hashes.get(idx as usize) != Some(&hash_chunk(c)) {
                    return Err(LocalError::Mismatch { chunk: idx });
                }
                checked += c.len();
            }
        }
        Ok(Bytes::from(buf))
    }
}

enum NodeState {
    /// The local-read connection to this datanode (one request at a time).
    Local(Arc<Mutex<UnixStream>>),
    /// Not on this host (or failing) as of this instant.
    NotLocal(Instant),
}

type ReplicaKey = (String, u64, u64);

#[derive(Default)]
struct Inner {
    nodes: HashMap<String, NodeState>,
    open: HashMap<ReplicaKey, (Arc<LocalReplica>, Instant)>,
    /// Keys of `open`, oldest first.
    order: VecDeque<ReplicaKey>,
}

/// This client's local-read connections and kept descriptors.
pub(crate) struct LocalReads {
    enabled: bool,
    inner: Mutex<Inner>,
}

impl LocalReads {
    pub(crate) fn new(enabled: bool) -> LocalReads {
        LocalReads {
            enabled,
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The replica of `block` on datanode `addr`, opened here, when that datanode runs on this
    /// host and grants it; `Ok(None)`: read it over gRPC. `Err`: the datanode took the request
    /// but did not answer in time (a hung process: gRPC would hang too).
    pub(crate) async fn open(
        &self,
        addr: &str,
        block: &pb::LocatedBlock,
    ) -> Result<Option<Arc<LocalReplica>>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let key = (addr.to_string(), block.id, block.generation);
        let conn = {
            let inner = self.inner();
            if let Some((r, at)) = inner.open.get(&key) {
                if at.elapsed() < KEEP_OPEN {
                    return Ok(Some(r.clone()));
                }
            }
            match inner.nodes.get(addr) {
                Some(NodeState::NotLocal(at)) if at.elapsed() < NOT_LOCAL_FOR => return Ok(None),
                Some(NodeState::Local(c)) => Some(c.clone()),
                _ => None,
            }
        };
        let req = LocalReadRequest {
            block_id: block.id,
            generation: block.generation,
            access_token: block.access_token.clone(),
        };
        let target = addr.to_string();
        let asked = tokio::task::spawn_blocking(move || {
            // A kept connection may be to a datanode that restarted since: one fresh try.
            let retry = conn.is_some();
            match ask(conn, &target, &req) {
                Err(AskError::NotLocal(_)) if retry => ask(None, &target, &req),
                r => r,
            }
        })
        .await;
        let (conn, answer) = match asked {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.inner()
                    .nodes
                    .insert(addr.to_string(), NodeState::NotLocal(Instant::now()));
                return match e {
                    AskError::NotLocal(reason) => {
                        tracing::debug!(datanode = addr, %reason, "no local reads from this datanode");
                        Ok(None)
                    }
                    AskError::NoAnswer(reason) => Err(reason),
                };
            }
            Err(_) => return Ok(None),
        };
        let mut inner = self.inner();
        inner.nodes.insert(addr.to_string(), NodeState::Local(conn));
        let replica = match answer {
            Ok(r) => Arc::new(r),
            Err(reason) => {
                tracing::debug!(datanode = addr, block = block.id, %reason, "local read refused");
                return Ok(None);
            }
        };
        if inner
            .open
            .insert(key.clone(), (replica.clone(), Instant::now()))
            .is_some()
        {
            inner.order.retain(|k| k != &key);
        }
        inner.order.push_back(key);
        while inner.order.len() > MAX_OPEN {
            if let Some(old) = inner.order.pop_front() {
                inner.open.remove(&old);
            }
        }
        Ok(Some(replica))
    }

    /// Closes the kept descriptors older than [`KEEP_OPEN`] (each `open` would ask again for
    /// them anyway).
    pub(crate) fn sweep(&self) {
        let mut inner = self.inner();
        let inner = &mut *inner;
        while let Some(key) = inner.order.front() {
            match inner.open.get(key) {
                Some((_, at)) if at.elapsed() < KEEP_OPEN => break,
                _ => {
                    if let Some(key) = inner.order.pop_front() {
                        inner.open.remove(&key);
                    }
                }
            }
        }
    }

    /// Drops the kept descriptor of a replica that failed a read.
    pub(crate) fn forget(&self, addr: &str, block: &pb::LocatedBlock) {
        let key = (addr.to_string(), block.id, block.generation);
        let mut inner = self.inner();
        if inner.open.remove(&key).is_some() {
            inner.order.retain(|k| k != &key);
        }
    }
}

/// Why [`ask`] got no answer.
enum AskError {
    /// No datanode of that address is reachable here, or the connection broke: use gRPC.
    NotLocal(String),
    /// The datanode took the request and did not answer within [`ANSWER_TIMEOUT`].
    NoAnswer(String),
}

/// How long a datanode may take to answer a local-read request (an open and a meta read; a
/// stopped process still accepts connections, so only a timeout shows it).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one request on `conn` (connecting first when there is none): the connection, and the
/// replica or the datanode's reason for refusing it.
#[allow(clippy::type_complexity)]
fn ask(
    conn: Option<Arc<Mutex<UnixStream>>>,
    addr: &str,
    req: &LocalReadRequest,
) -> Result<(Arc<Mutex<UnixStream>>, Result<LocalReplica, String>), AskError> {
    let io_error = |what: &str, e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            AskError::NoAnswer(format!(
                "no answer on its local-read socket within {ANSWER_TIMEOUT:?}"
            ))
        } else {
            AskError::NotLocal(format!("{what}: {e}"))
        }
    };
    let conn = match conn {
        Some(c) => c,
        None => {
            let s = local_read::connect(addr).map_err(|e| io_error("connecting", e))?;
            s.set_read_timeout(Some(ANSWER_TIMEOUT))
                .and_then(|()| s.set_write_timeout(Some(ANSWER_TIMEOUT)))
                .map_err(|e| io_error("setting timeouts", e))?;
            Arc::new(Mutex::new(s))
        }
    };
    let answer = {
        let mut s = conn.lock().unwrap_or_else(|p| p.into_inner());
        local_read::send(&mut s, req, None::<&File>).map_err(|e| io_error("sending", e))?;
        local_read::recv::<LocalReadResponse>(&mut s)
            .map_err(|e| io_error("receiving", e))?
            .ok_or_else(|| AskError::NotLocal("the datanode closed the connection".into()))?
    };
    let (resp, fd) = answer;
    if resp.datanode != addr {
        return Err(AskError::NotLocal(format!(
            "the local socket of {addr} is served by datanode {}",
            resp.datanode
        )));
    }
    if !resp.error.is_empty() {
        return Ok((conn, Err(resp.error)));
    }
    let Some(fd) = fd else {
        return Ok((conn, Err("no descriptor came with the answer".into())));
    };
    let hashes: Vec<Hash> = resp
        .chunk_hashes
        .chunks_exact(32)
        .filter_map(|h| h.try_into().ok())
        .collect();
    if resp.chunk_hashes.len() % 32 != 0
        || hashes.len() as u64 != resp.len.div_ceil(CHUNK_SIZE as u64)
    {
        return Ok((
            conn,
            Err(format!(
                "{} bytes of chunk hashes for a replica of {} bytes",
                resp.chunk_hashes.len(),
                resp.len
            )),
        ));
    }
    Ok((
        conn,
        Ok(LocalReplica {
            file: File::from(fd),
            len: resp.len,
            hashes,
        }),
    ))
}
