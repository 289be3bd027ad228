//! The gRPC adapters and the shared namenode state they drive: requests are decoded, the core is
//! called under one short-lived lock, namespace changes are journaled before the reply, and answers
//! are encoded. Errors reach the wire only through `From<NamenodeError> for Status`.
//!
//! - [`client`]: the client-facing `Namenode` service
//! - [`datanode`]: the datanode-facing `DatanodeProtocol` service
//! - [`monitors`]: background loops (dead nodes, leases, replication + safe mode)
//! - [`recovery`]: lease recovery of files whose writer went away

pub mod client;
pub mod datanode;
pub mod monitors;
pub mod recovery;

use crate::block_map::BlockMap;
use crate::config::Config;
use crate::datanodes::{Command, DatanodeRegistry};
use crate::error::{NamenodeError, Result};
use crate::journal::Journal;
use crate::leases::Leases;
use crate::namespace::{BlockRef, EntrySel, Mutation, Namespace, NodeSel, RECOVERY_HOLDER, ROOT};
use crate::replication::{InFlight, SafeMode};
use crate::retry_cache::CallId;
use ringfs_proto::pb;
use ringfs_proto::token::{AccessMode, Secret};
use ringfs_proto::{BlockId, DatanodeId, InodeId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Everything the namenode knows, behind one lock. Critical sections are short and never span an
/// `.await`: handlers lock, apply, submit the journal batch (so journal order = operation order),
/// unlock, then wait for durability.
pub struct State {
    pub ns: Namespace,
    pub blocks: BlockMap,
    pub nodes: DatanodeRegistry,
    pub leases: Leases,
    pub in_flight: InFlight,
    pub safe_mode: SafeMode,
    /// Files whose lease recovery runs or waits for a retry: inode → earliest next attempt.
    pub recovering: HashMap<InodeId, Instant>,
}

/// Work that may only happen once a mutation is durable: deleting replicas of blocks the namespace
/// no longer references must never run ahead of the journal (a crash would resurrect the reference).
#[derive(Debug, Default)]
pub struct After {
    /// Blocks freed by the namespace (or never committed): forget them and delete every replica.
    pub freed: Vec<BlockRef>,
    /// Individual replicas to delete (stale generations).
    pub deletes: Vec<(DatanodeId, Command)>,
}

impl After {
    /// Frees the blocks allocated for `client` on `inode` that never made it into the file
    /// (copy-on-write blocks of a writer that closes, gives up its lease or is recovered).
    fn free_uncommitted(&mut self, blocks: &BlockMap, inode: InodeId, client: &str) {
        self.free_pending(blocks.pending_of(inode, client));
    }

    /// Frees the uncommitted blocks of files the change deleted: a put that failed removes its
    /// temporary file, and a file may be removed or renamed over while another client writes it.
    /// Without this their replicas stayed on the datanodes, counted as used, until a restart.
    fn free_of_deleted_files(&mut self, blocks: &BlockMap, changes: &[Mutation]) {
        let deleted: HashSet<InodeId> = changes
            .iter()
            .filter_map(|m| match m {
                Mutation::DeleteInode(id) => Some(InodeId(*id)),
                _ => None,
            })
            .collect();
        if !deleted.is_empty() {
            self.free_pending(blocks.pending_of_files(&deleted));
        }
    }

    fn free_pending(&mut self, ids: Vec<BlockId>) {
        self.freed.extend(ids.into_iter().map(|id| BlockRef {
            id: id.get(),
            generation: 0,
            len: 0,
        }));
    }

    fn stale(&mut self, block: BlockId, stale: Vec<(DatanodeId, u64)>) {
        for (n, generation) in stale {
            self.deletes
                .push((n, Command::Delete { block, generation }));
        }
    }
}

/// The namenode: config, secret, journal and the state, shared by services and background loops.
pub struct Shared {
    pub config: Config,
    pub secret: Secret,
    pub journal: Journal,
    state: Mutex<State>,
    /// When this namenode started on a namespace that already held files (a restart): datanodes
    /// are still re-registering for a while after it.
    restarted: Option<Instant>,
    /// Serializes saves of the datanodes' operator states.
    admin_save: Mutex<()>,
    /// Blocks the last replication round found short of replicas and could not serve within the
    /// stream limits (shown on the status page; written by the replication monitor only).
    pub repair_backlog: AtomicU64,
}

impl Shared {
    /// Builds the in-memory state from a loaded namespace: the block map from every file's block list
    /// (locations come later from block reports), leases restarted for every open file's holder.
    pub fn new(config: Config, journal: Journal, ns: Namespace) -> Shared {
        let now = Instant::now();
        let mut blocks = BlockMap::new();
        let mut leases = Leases::new();
        let files = ns.walk_files(ROOT);
        // Anything besides the root: this namenode ran before, its datanodes will re-register
        // (a fresh cluster has nobody to wait for).
        let restarted = (ns.inode_count() > 1).then_some(now);
        for (_, id) in files {
            let Some(f) = ns.get(id).and_then(|i| i.file.as_ref()) else {
                continue;
            };
            for b in f.blocks.iter().filter(|b| !b.is_hole()) {
                blocks.commit(BlockId(b.id), b.generation, b.len, id, f.replication);
            }
            if f.lease.is_some() {
                if let Some(last) = f.blocks.iter().rev().find(|b| !b.is_hole()) {
                    blocks.set_writing(BlockId(last.id), true);
                }
            }
        }
        for (_, holder) in ns.leases() {
            if holder != RECOVERY_HOLDER {
                leases.renew(&holder, now);
            }
        }
        // A lock holder gets a full lease period to renew (a mount that died meanwhile loses its
        // locks at the soft limit, as it would have without the restart).
        for holder in ns.locks().holders() {
            leases.renew(&holder, now);
        }
        let safe_mode = SafeMode::new(
            !blocks.is_empty(),
            config.safe_mode_threshold,
            config.safe_mode_extension,
        );
        if safe_mode.is_on() {
            tracing::info!(
                blocks = blocks.len(),
                "in safe mode until datanodes report enough blocks"
            );
        }
        let mut nodes = DatanodeRegistry::new();
        match crate::admin::load_known(&config.data_dir) {
            Ok(known) => nodes.restore_known(known, now),
            // Only `report` is poorer for it: nodes that do not come back go unlisted.
            Err(e) => tracing::error!(error = %e, "known datanodes not loaded"),
        }
        match crate::admin::load(&config.data_dir) {
            Ok(states) => nodes.restore_admin(states),
            // Starting matters more than the operator's list, but it must not go unnoticed: the
            // nodes it named take new replicas again until decommissioned anew.
            Err(e) => {
                tracing::error!(error = %e, "decommission states not loaded; every datanode starts in service")
            }
        }
        let secret = Secret::new(config.effective_secret().as_bytes());
        Shared {
            config,
            secret,
            journal,
            restarted,
            admin_save: Mutex::new(()),
            repair_backlog: AtomicU64::new(0),
            state: Mutex::new(State {
                ns,
                blocks,
                nodes,
                leases,
                in_flight: InFlight::new(),
                safe_mode,
                recovering: HashMap::new(),
            }),
        }
    }

    /// Waits until `needed` datanodes are writable with room for a block of file `inode` (any
    /// live node for `None`; besides the ones at the `failed` addresses), but only in the first `dead_after` after a restart: until
    /// then a datanode that has not re-registered is late, not dead (it notices the restart at its
    /// next heartbeat), so a write waits for it instead of failing at once with "not enough live
    /// datanodes". Counting a full node as one made a pipeline of it while a node with room was
    /// still re-registering, and its recovery then found no node left. Returns at once otherwise;
    /// the caller then checks as usual.
    pub async fn await_datanodes_after_restart(
        &self,
        needed: u32,
        inode: Option<u64>,
        failed: &[String],
    ) {
        let Some(started) = self.restarted else {
            return;
        };
        let deadline = started + self.config.dead_after;
        if Instant::now() >= deadline {
            return;
        }
        let bytes = inode.map_or(0, |i| self.block_size_of(i));
        while Instant::now() < deadline
            && self.lock().nodes.writable_with_room(bytes, failed) < needed as usize
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The block size of file `inode` (the cluster's default if it is not a file).
    fn block_size_of(&self, inode: u64) -> u64 {
        self.lock()
            .ns
            .get(ringfs_proto::InodeId(inode))
            .and_then(|n| n.file.as_ref())
            .map(|f| f.block_size)
            .unwrap_or(self.config.block_size)
    }

    /// Whether this namenode started on existing files less than `dead_after` ago: a datanode that
    /// has not re-registered yet is late, not dead.
    pub fn restarting(&self) -> bool {
        self.restarted
            .is_some_and(|t| t.elapsed() < self.config.dead_after)
    }

    /// Whether this namenode restarted on existing files less than `dead_after` ago and not every
    /// block is reported yet: datanodes may still be re-registering, so a block without a known
    /// replica is probably not lost (yet).
    pub fn awaiting_reports(&self) -> bool {
        self.restarting() && self.lock().safe_mode.is_on()
    }

    /// The state lock (a panic elsewhere does not make the namenode unusable).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a namespace mutation: apply under the lock and log it in order (from then on it
    /// survives a crash of this process, so the caller may acknowledge it). The follow-up work
    /// (replica deletions) waits until the change is durable in the store: after a power loss the
    /// store must not reference a replica that is already deleted. Once the journal has failed
    /// nothing is changed; a change that could not be logged is taken back out of memory.
    pub async fn mutate<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut State, &mut After) -> Result<T>,
    ) -> Result<T> {
        let mut after = After::default();
        let (result, logged) = {
            let mut st = self.lock();
            // A failed journal logs nothing more: refuse before anything changes in memory.
            self.journal.check()?;
            let result = f(&mut st, &mut after);
            let changes = st.ns.drain_changes();
            if result.is_ok() {
                after.free_of_deleted_files(&st.blocks, &changes);
            }
            let logged = self.journal.log(changes);
            if logged.is_err() {
                // The change is in memory but not in the log: readers must not see what a
                // restart would lose, so the namespace goes back to what the disk holds.
                match self.journal.reload() {
                    Ok(ns) => st.ns = ns,
                    Err(e) => tracing::error!(error = %e,
                        "cannot reload the namespace after a failed log write: it shows a change that is not logged"),
                }
            }
            (result, logged)
        };
        let durable = logged?;
        let value = result?;
        if !after.freed.is_empty() || !after.deletes.is_empty() {
            let shared = self.clone();
            tokio::spawn(async move {
                if durable.await.is_ok() {
                    shared.apply_after(after);
                }
            });
        }
        Ok(value)
    }

    /// Saves the datanodes' operator states (`crate::admin`) as they are now. Runs outside the
    /// state lock; concurrent saves each write a complete snapshot, and the one taken last wins.
    pub fn save_admin_states(&self) -> Result<()> {
        let _one_at_a_time = self.admin_save.lock().unwrap_or_else(|p| p.into_inner());
        let states = self.lock().nodes.admin_states();
        crate::admin::save(&self.config.data_dir, &states)
    }

    /// Saves the registered datanodes (`crate::admin`) as they are now, like
    /// [`save_admin_states`](Self::save_admin_states).
    pub fn save_known_datanodes(&self) -> Result<()> {
        let _one_at_a_time = self.admin_save.lock().unwrap_or_else(|p| p.into_inner());
        let known = self.lock().nodes.known();
        crate::admin::save_known(&self.config.data_dir, &known)
    }

    /// After a storage failure: gets the journal working again if the disk allows (see
    /// [`Journal::recover`]) and serves the namespace it holds, which is everything acknowledged.
    pub fn recover_storage(&self) {
        match self.journal.recover() {
            Ok(None) => {}
            Ok(Some(ns)) => {
                // Changes are refused until `resume`: nothing changes the namespace meanwhile.
                self.lock().ns = ns;
                self.journal.resume();
            }
            Err(e) => tracing::debug!(error = %e, "metadata storage still failing"),
        }
    }

    /// Resolves when every change acknowledged so far is durable in the store.
    pub async fn sync(&self) -> Result<()> {
        self.journal.sync().await
    }

    fn apply_after(&self, after: After) {
        let mut st = self.lock();
        let State {
            blocks,
            nodes,
            in_flight,
            ..
        } = &mut *st;
        for b in after.freed.iter().filter(|b| !b.is_hole()) {
            let id = BlockId(b.id);
            in_flight.drop_block(id);
            if let Some(info) = blocks.remove(id) {
                for (n, r) in &info.replicas {
                    nodes.queue(
                        n,
                        Command::Delete {
                            block: id,
                            generation: r.generation,
                        },
                    );
                }
                // Nodes of its write pipeline that never reported it hold a partial replica in
                // tmp/ (a write that failed or was abandoned): it goes too.
                for n in info
                    .pipeline
                    .iter()
                    .filter(|n| !info.replicas.contains_key(*n))
                {
                    nodes.queue(
                        n,
                        Command::Delete {
                            block: id,
                            generation: info.generation,
                        },
                    );
                }
                tracing::debug!(block = b.id, replicas = info.replicas.len(), "block freed");
            }
        }
        for (n, cmd) in after.deletes {
            nodes.queue(&n, cmd);
        }
    }

    /// A block access token.
    pub fn token(&self, block: u64, generation: u64, mode: AccessMode) -> String {
        self.secret.block_token(block, generation, mode)
    }
}

// ------------------------------------------------------------------------ request decoding helpers

/// The node a request names.
pub fn node_sel(n: &Option<pb::NodeRef>) -> Result<NodeSel<'_>> {
    match n.as_ref().and_then(|n| n.target.as_ref()) {
        Some(pb::node_ref::Target::Path(p)) => Ok(NodeSel::Path(p)),
        Some(pb::node_ref::Target::Inode(i)) => Ok(NodeSel::Inode(inode_id(*i)?)),
        None => Err(NamenodeError::InvalidArgument(
            "request names no node (path or inode)".into(),
        )),
    }
}

/// The directory entry a request names.
pub fn entry_sel(e: &Option<pb::EntryRef>) -> Result<EntrySel<'_>> {
    match e.as_ref().and_then(|e| e.target.as_ref()) {
        Some(pb::entry_ref::Target::Path(p)) => Ok(EntrySel::Path(p)),
        Some(pb::entry_ref::Target::Child(c)) => Ok(EntrySel::Child(inode_id(c.parent)?, &c.name)),
        None => Err(NamenodeError::InvalidArgument(
            "request names no entry (path or parent + name)".into(),
        )),
    }
}

pub fn inode_id(v: u64) -> Result<InodeId> {
    if v == 0 {
        Err(NamenodeError::InvalidArgument(
            "inode id 0 is not valid".into(),
        ))
    } else {
        Ok(InodeId(v))
    }
}

/// A client id: non-empty, printable, at most 256 bytes.
pub fn client_id(s: &str) -> Result<&str> {
    if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) || s == RECOVERY_HOLDER {
        Err(NamenodeError::InvalidArgument(format!(
            "invalid client id {s:?}"
        )))
    } else {
        Ok(s)
    }
}

/// The retry cache's name of a call (`None`: the request carries no retry id).
pub fn call_id(r: &Option<pb::RetryId>) -> Result<Option<CallId>> {
    r.as_ref()
        .map(|r| {
            Ok(CallId {
                client: client_id(&r.client_id)?.to_string(),
                call: r.call_id,
            })
        })
        .transpose()
}

/// The wire form of a datanode.
pub fn datanode_info(nodes: &DatanodeRegistry, id: &DatanodeId) -> pb::DatanodeInfo {
    let (address, rack) = nodes
        .get(id)
        .map(|n| (n.address.clone(), n.rack.clone()))
        .unwrap_or_default();
    pb::DatanodeInfo {
        id: id.0.clone(),
        address,
        rack,
    }
}

/// The wire form of a datanode command.
pub fn encode_command(
    shared: &Shared,
    nodes: &DatanodeRegistry,
    cmd: Command,
) -> pb::DatanodeCommand {
    use pb::datanode_command::Command as C;
    let c = match cmd {
        Command::Replicate {
            block,
            generation,
            len,
            targets,
        } => C::Replicate(pb::ReplicateCommand {
            block_id: block.get(),
            generation,
            len,
            targets: targets.iter().map(|t| datanode_info(nodes, t)).collect(),
            access_token: shared.token(block.get(), generation, AccessMode::Write),
        }),
        Command::Delete { block, generation } => C::Delete(pb::DeleteCommand {
            block_id: block.get(),
            generation,
        }),
        Command::Verify { block, generation } => C::Verify(pb::VerifyCommand {
            block_id: block.get(),
            generation,
        }),
    };
    pb::DatanodeCommand { command: Some(c) }
}

/// Located blocks of a file, readers' view: replicas on live nodes, good ones first (least busy
/// first), corrupt ones only when nothing else is left. `range` limits to blocks overlapping
/// [offset, offset + len) (len 0 = to the end).
pub fn locate(
    shared: &Shared,
    st: &State,
    blocks: &[BlockRef],
    offset: u64,
    len: u64,
) -> Vec<pb::LocatedBlock> {
    let end = if len == 0 {
        u64::MAX
    } else {
        offset.saturating_add(len)
    };
    let mut out = Vec::new();
    let mut pos = 0u64;
    for b in blocks {
        let start = pos;
        pos = pos.saturating_add(b.len);
        let overlaps = start < end && (pos > offset || (b.len == 0 && start >= offset));
        if !overlaps {
            continue;
        }
        out.push(located_block(shared, st, b, start));
    }
    out
}

/// One located block for readers.
pub fn located_block(shared: &Shared, st: &State, b: &BlockRef, offset: u64) -> pb::LocatedBlock {
    if b.is_hole() {
        return pb::LocatedBlock {
            id: 0,
            generation: 0,
            offset,
            len: b.len,
            ..Default::default()
        };
    }
    // Least busy first; among equals an order that differs per block, so reads spread over replicas.
    let mut good: Vec<(u32, u64, &DatanodeId)> = Vec::new();
    let mut corrupt: Vec<&DatanodeId> = Vec::new();
    if let Some(info) = st.blocks.get(BlockId(b.id)) {
        for (n, r) in &info.replicas {
            let Some(node) = st.nodes.get(n).filter(|d| d.alive) else {
                continue;
            };
            if r.generation != b.generation {
                continue;
            }
            if r.corrupt {
                corrupt.push(n);
            } else {
                good.push((node.active_transfers, spread(b.id, n), n));
            }
        }
    }
    good.sort();
    let all_corrupt = good.is_empty() && !corrupt.is_empty();
    // A block still being written has no finalized replica yet: show its pipeline.
    if good.is_empty() && corrupt.is_empty() {
        if let Some(info) = st.blocks.get(BlockId(b.id)).filter(|i| i.writing) {
            let locations = info
                .pipeline
                .iter()
                .filter(|n| st.nodes.is_alive(n))
                .map(|n| datanode_info(&st.nodes, n))
                .collect();
            return pb::LocatedBlock {
                id: b.id,
                generation: info.generation,
                offset,
                len: b.len,
                locations,
                access_token: shared.token(b.id, info.generation, AccessMode::Read),
                corrupt: false,
            };
        }
    }
    let locations: Vec<pb::DatanodeInfo> = if all_corrupt {
        corrupt
            .iter()
            .map(|n| datanode_info(&st.nodes, n))
            .collect()
    } else {
        good.iter()
            .map(|(_, _, n)| datanode_info(&st.nodes, n))
            .collect()
    };
    pb::LocatedBlock {
        id: b.id,
        generation: b.generation,
        offset,
        len: b.len,
        locations,
        access_token: shared.token(b.id, b.generation, AccessMode::Read),
        corrupt: all_corrupt,
    }
}

/// A per-(block, node) pseudo-random rank (FNV-1a), stable across calls.
fn spread(block: u64, node: &DatanodeId) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in block.to_le_bytes().iter().chain(node.0.as_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
