//! The client-facing `Namenode` gRPC service: namespace operations, the write protocol (create, add
//! block, pipeline recovery, commit), reads (block locations), admin (fsck, report, statfs,
//! decommission) and cluster locks.

use super::{
    call_id, client_id, entry_sel, inode_id, locate, located_block, node_sel, Shared, State,
};
use crate::datanodes::{AdminState, Command, Datanode, DatanodeRegistry};
use crate::error::{NamenodeError, Result};
use crate::locks::{LockKind, LockOutcome, LockOwner, LockRequest, LockType};
use crate::namespace::{
    BlockRef, Caller, CreateFile, InodeKind, Once, RemoveMode, RenameFlags, SetAttr, TimeSet,
    Timestamp, XattrMode, R_OK,
};
use crate::replication::{self, health};
use ringfs_proto::pb::{self, namenode_server::Namenode};
use ringfs_proto::token::AccessMode;
use ringfs_proto::{BlockId, DatanodeId, InodeId};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// Default and largest page of ReadDir.
const READDIR_DEFAULT: usize = 1000;
const READDIR_MAX: usize = 10_000;
/// Most problems one fsck lists.
const FSCK_MAX_PROBLEMS: usize = 10_000;
/// Largest replication factor a file may ask for.
const MAX_REPLICATION: u32 = 32;

/// The `Namenode` service.
#[derive(Clone)]
pub struct ClientService {
    pub shared: Arc<Shared>,
}

fn caller(c: &Option<pb::Credentials>) -> Caller {
    c.as_ref().map(Caller::from).unwrap_or_default()
}

fn attr_of(st: &State, id: InodeId) -> Result<pb::Attr> {
    st.ns
        .get(id)
        .map(|i| i.to_attr())
        .ok_or(NamenodeError::Stale(id.0))
}

fn time_set(t: &Option<pb::TimeSet>) -> Option<TimeSet> {
    match t.as_ref()?.value.as_ref()? {
        pb::time_set::Value::Now(true) => Some(TimeSet::Now),
        pb::time_set::Value::Now(false) => None,
        pb::time_set::Value::At(t) => Some(TimeSet::At(Timestamp::from(*t))),
    }
}

fn block_ref(b: &pb::CommittedBlock) -> BlockRef {
    BlockRef {
        id: b.id,
        generation: b.generation,
        len: b.len,
    }
}

fn path_or_inode(st: &State, id: InodeId) -> String {
    st.ns.path_of(id).unwrap_or_else(|| format!("inode {id}"))
}

/// Datanode ids of the given addresses (unknown addresses are ignored).
fn ids_of(nodes: &DatanodeRegistry, addresses: &[String]) -> Vec<DatanodeId> {
    addresses
        .iter()
        .filter_map(|a| nodes.by_address(a))
        .map(|n| n.id.clone())
        .collect()
}

/// Enough in-service datanodes for a pipeline of `needed` (see [`pipeline_min`]), or the error the
/// CLI prints.
fn check_datanodes(st: &State, needed: usize) -> Result<()> {
    let live = st.nodes.writable_count();
    if live < needed {
        return Err(NamenodeError::NotEnoughDatanodes {
            needed,
            live,
            full: 0,
            retiring: st.nodes.retiring_count(),
            failed: None,
        });
    }
    Ok(())
}

/// The fewest datanodes a writer's pipeline may have for a file of `replication`: all of them
/// unless the writer accepts fewer (`min_replicas`, the mount: it keeps writing on the live nodes
/// when some are down, as HDFS and MooseFS do; the blocks are under-replicated and the planner
/// copies them when nodes come back). `put` asks for all: it ends with every block on R replicas
/// or fails.
fn pipeline_min(replication: u32, min_replicas: u32) -> usize {
    match min_replicas {
        0 => replication as usize,
        k => k.min(replication) as usize,
    }
}

/// The (replication, block size, path) of a file open for writing by `client`.
fn leased_file(st: &State, inode: InodeId, client: &str) -> Result<(u32, u64)> {
    let node = st.ns.get(inode).ok_or(NamenodeError::Stale(inode.0))?;
    let f = node.file.as_ref().ok_or_else(|| {
        if node.is_dir() {
            NamenodeError::IsADirectory(path_or_inode(st, inode))
        } else {
            NamenodeError::InvalidArgument(format!(
                "{}: not a regular file",
                path_or_inode(st, inode)
            ))
        }
    })?;
    if f.lease.as_deref() != Some(client) {
        return Err(NamenodeError::NoLease {
            path: path_or_inode(st, inode),
            client: client.to_string(),
        });
    }
    Ok((f.replication, f.block_size))
}

/// A write pipeline for a new block of up to `bytes`: the ring owners not excluded and with room
/// for it (HDFS likewise skips nodes without space). If that leaves fewer than `r`, nodes the last
/// heartbeats called full fill the gap (the figure may be stale; a full one fails the write), then
/// excluded live nodes, but only up to `min`, the fewest the writer accepts (it retries them, then
/// recovers the pipeline): a writer that accepts fewer than `r` (the mount) goes on without the
/// node that just stalled it, instead of stalling once more per block.
fn pipeline(
    nodes: &DatanodeRegistry,
    block: BlockId,
    r: u32,
    min: usize,
    excluded: &[DatanodeId],
    bytes: u64,
) -> Vec<DatanodeId> {
    let r = r as usize;
    let mut p = nodes.placement().place_replicas(block, r, &|n| {
        excluded.contains(n) || !nodes.has_room(n, bytes)
    });
    if p.len() < r {
        let ring_order = nodes.placement().owners(block, nodes.writable_count());
        // (which nodes may fill the gap, up to how many nodes in all)
        type Fallback<'a> = (&'a dyn Fn(&DatanodeId) -> bool, usize);
        let fallbacks: [Fallback; 2] = [(&|n| !excluded.contains(n), r), (&|_| true, min.min(r))];
        for (eligible, up_to) in fallbacks {
            for n in ring_order.iter().filter(|n| eligible(n)) {
                if p.len() >= up_to {
                    break;
                }
                if !p.contains(n) {
                    p.push(n.clone());
                }
            }
        }
    }
    p
}

/// The datanode registered at `address`, for the operator's commands that name one.
fn node_at<'a>(nodes: &'a DatanodeRegistry, address: &str) -> Result<&'a Datanode> {
    nodes.by_address(address).ok_or_else(|| {
        NamenodeError::InvalidArgument(format!(
            "{address}: no datanode registered at this address (see `ringfs report`)"
        ))
    })
}

/// The most a file with this block size may commit inline now: the configured limit while the
/// inline budget lasts, else 0 (clients then write blocks).
fn inline_limit(shared: &Shared, st: &State, block_size: u64) -> u64 {
    let cfg = &shared.config;
    if st.ns.inline_bytes() >= cfg.inline_max_total {
        return 0;
    }
    cfg.inline_max.min(block_size)
}

/// An inline commit of `len` bytes to `inode` is allowed: no blocks with it, within the per-file
/// limit and the block size, and within the namenode's budget (counting the file's old inline data
/// as given back).
fn check_inline(
    shared: &Shared,
    st: &State,
    inode: InodeId,
    blocks: &[BlockRef],
    len: u64,
    block_size: u64,
) -> Result<()> {
    let cfg = &shared.config;
    let shown = || path_or_inode(st, inode);
    if !blocks.is_empty() {
        return Err(NamenodeError::InvalidArgument(format!(
            "{}: a commit with inline data cannot list blocks",
            shown()
        )));
    }
    let max = cfg.inline_max.min(block_size);
    if len > max {
        return Err(NamenodeError::InlineRefused(format!(
            "{}: {len} bytes of inline data exceed the inline limit of {max} bytes",
            shown()
        )));
    }
    let old = st
        .ns
        .get(inode)
        .and_then(|i| i.file.as_ref())
        .and_then(|f| f.inline.as_ref())
        .map_or(0, |d| d.len() as u64);
    if st.ns.inline_bytes() - old + len > cfg.inline_max_total {
        return Err(NamenodeError::InlineRefused(format!(
            "{}: the namenode's inline data budget ({} bytes) is used up",
            shown(),
            cfg.inline_max_total
        )));
    }
    Ok(())
}

/// The offset of block `id` in a file's block list (sum of the lengths before it).
fn offset_of(st: &State, inode: InodeId, id: u64) -> u64 {
    let Some(f) = st.ns.get(inode).and_then(|i| i.file.as_ref()) else {
        return 0;
    };
    let mut off = 0;
    for b in &f.blocks {
        if b.id == id && !b.is_hole() {
            return off;
        }
        off += b.len;
    }
    off
}

fn write_block(
    shared: &Shared,
    st: &State,
    id: u64,
    generation: u64,
    offset: u64,
    p: &[DatanodeId],
) -> pb::LocatedBlock {
    pb::LocatedBlock {
        id,
        generation,
        offset,
        len: 0,
        locations: p
            .iter()
            .map(|n| super::datanode_info(&st.nodes, n))
            .collect(),
        access_token: shared.token(id, generation, AccessMode::Write),
        corrupt: false,
    }
}

/// A block reference of `inode` whose generation is older than the block's `current` one.
fn older_generation(st: &State, inode: InodeId, b: &BlockRef, current: u64) -> NamenodeError {
    NamenodeError::InvalidArgument(format!(
        "{}: block {} generation {} is older than the current {current}",
        path_or_inode(st, inode),
        b.id,
        b.generation
    ))
}

impl ClientService {
    /// If `e` says another client holds the lease and that client has gone silent past the soft
    /// limit, start recovering the file so a retry can succeed.
    fn maybe_preempt(&self, e: &NamenodeError, target: Option<InodeId>) {
        let (NamenodeError::LeaseHeld { holder, .. }, Some(inode)) = (e, target) else {
            return;
        };
        let soft = self.shared.config.lease_soft_limit;
        let expired = self
            .shared
            .lock()
            .leases
            .is_expired(holder, Instant::now(), soft);
        if expired {
            tracing::info!(inode = inode.0, holder = %holder, "lease holder silent past the soft limit: recovering");
            super::recovery::spawn(self.shared.clone(), inode);
        }
    }

    fn lease_target(
        &self,
        caller: &Caller,
        node: Option<crate::namespace::NodeSel<'_>>,
    ) -> Option<InodeId> {
        let st = self.shared.lock();
        node.and_then(|n| st.ns.resolve(caller, n, true).ok())
    }

    async fn do_create(&self, req: pb::CreateRequest) -> Result<pb::OpenResponse> {
        let c = caller(&req.creds);
        let entry = entry_sel(&req.entry)?;
        let cfg = &self.shared.config;
        let replication = if req.replication == 0 {
            cfg.replication
        } else {
            req.replication
        };
        if replication > MAX_REPLICATION {
            return Err(NamenodeError::InvalidArgument(format!(
                "replication {replication} is larger than {MAX_REPLICATION}"
            )));
        }
        let block_size = if req.block_size == 0 {
            cfg.block_size
        } else {
            req.block_size
        };
        let chunk = ringfs_proto::chunk::CHUNK_SIZE as u64;
        if block_size % chunk != 0 || block_size > 1 << 40 {
            return Err(NamenodeError::InvalidArgument(format!(
                "block size {block_size} must be a positive multiple of 64 KiB (at most 1 TiB)"
            )));
        }
        let lease = if req.open_for_write {
            Some(client_id(&req.client_id)?.to_string())
        } else {
            None
        };
        let call = call_id(&req.retry)?;
        if req.open_for_write {
            // Live is enough here: a create writes no block (small files stay inline), and
            // its blocks wait for room when they are allocated.
            self.shared
                .await_datanodes_after_restart(replication, None, &[])
                .await;
        }
        let now = Timestamp::now();
        let r = self
            .shared
            .mutate(|st, after| {
                let opts = CreateFile {
                    mode: req.mode,
                    replication,
                    block_size,
                    exclusive: req.exclusive,
                    overwrite: req.overwrite,
                    lease: lease.clone(),
                };
                // A repeat: the file is there and the lease the first call took is this client's.
                let created = st.ns.once(
                    call.as_ref(),
                    now,
                    // No datanode check, as in HDFS: a create writes no block (a small file stays
                    // inline in the namespace, and an empty one needs nothing); a writer learns
                    // that datanodes are short when it allocates a block (`put` checks first).
                    |ns| ns.create_file(&c, entry, opts, now),
                    |(id, _)| Some(*id),
                )?;
                let id = match created {
                    Once::Ran((id, freed)) => {
                        after.freed = freed;
                        id
                    }
                    Once::Repeat(applied) => applied.inode()?,
                };
                if let Some(l) = &lease {
                    st.leases.renew(l, Instant::now());
                }
                Ok(pb::OpenResponse {
                    attr: Some(attr_of(st, id)?),
                    blocks: Vec::new(),
                    inline_data: Vec::new(),
                    inline_limit: inline_limit(&self.shared, st, block_size),
                })
            })
            .await;
        if let Err(e) = &r {
            let target = {
                let st = self.shared.lock();
                st.ns.lookup(&c, entry).ok()
            };
            self.maybe_preempt(e, target);
        }
        r
    }

    async fn do_open_write(&self, req: pb::OpenWriteRequest) -> Result<pb::OpenResponse> {
        let c = caller(&req.creds);
        let node = node_sel(&req.node)?;
        let client = client_id(&req.client_id)?.to_string();
        let now = Timestamp::now();
        let r = self
            .shared
            .mutate(|st, after| {
                let (id, freed) = st.ns.open_write(&c, node, &client, req.truncate, now)?;
                after.freed = freed;
                st.leases.renew(&client, Instant::now());
                let attr = attr_of(st, id)?;
                let file = st.ns.get(id).and_then(|i| i.file.as_ref());
                let blocks = file.map(|f| f.blocks.clone()).unwrap_or_default();
                let inline_data = file.and_then(|f| f.inline.clone()).unwrap_or_default();
                let blocks = locate(&self.shared, st, &blocks, 0, 0);
                Ok(pb::OpenResponse {
                    inline_limit: inline_limit(&self.shared, st, attr.block_size),
                    attr: Some(attr),
                    blocks,
                    inline_data,
                })
            })
            .await;
        if let Err(e) = &r {
            self.maybe_preempt(e, self.lease_target(&c, Some(node)));
        }
        r
    }

    async fn do_add_block(&self, req: pb::AddBlockRequest) -> Result<pb::LocatedBlock> {
        self.shared
            .await_datanodes_after_restart(self.shared.config.replication, Some(req.inode), &[])
            .await;
        let inode = inode_id(req.inode)?;
        let client = client_id(&req.client_id)?.to_string();
        let previous = req.previous.as_ref().map(block_ref);
        self.shared
            .mutate(|st, after| {
                let (replication, block_size) = leased_file(st, inode, &client)?;
                check_datanodes(st, replication as usize)?;
                st.leases.renew(&client, Instant::now());
                if let Some(p) = &previous {
                    if let Some(b) = st.blocks.get(BlockId(p.id)) {
                        if p.generation < b.generation {
                            return Err(older_generation(st, inode, p, b.generation));
                        }
                    }
                }
                let id = st.ns.next_block_id();
                let generation = st.ns.next_generation();
                st.ns.add_block(inode, &client, previous, BlockRef { id, generation, len: 0 })?;
                if let Some(p) = previous.filter(|p| !p.is_hole()) {
                    let stale = st.blocks.commit(BlockId(p.id), p.generation, p.len, inode, replication);
                    after.stale(BlockId(p.id), stale);
                }
                let excluded = ids_of(&st.nodes, &req.excluded);
                let min = replication as usize;
                let p = pipeline(&st.nodes, BlockId(id), replication, min, &excluded, block_size);
                st.blocks.allocate(BlockId(id), generation, inode, replication, None, p.clone());
                let offset = offset_of(st, inode, id);
                tracing::debug!(inode = inode.0, block = id, generation, pipeline = ?p, "block added");
                Ok(write_block(&self.shared, st, id, generation, offset, &p))
            })
            .await
    }

    async fn do_allocate_block(&self, req: pb::AllocateBlockRequest) -> Result<pb::LocatedBlock> {
        self.shared
            .await_datanodes_after_restart(self.shared.config.replication, Some(req.inode), &[])
            .await;
        let inode = inode_id(req.inode)?;
        let client = client_id(&req.client_id)?.to_string();
        self.shared
            .mutate(|st, _| {
                let (replication, block_size) = leased_file(st, inode, &client)?;
                let min = pipeline_min(replication, req.min_replicas);
                check_datanodes(st, min)?;
                st.leases.renew(&client, Instant::now());
                let id = st.ns.next_block_id();
                let generation = st.ns.next_generation();
                let excluded = ids_of(&st.nodes, &req.excluded);
                let p = pipeline(&st.nodes, BlockId(id), replication, min, &excluded, block_size);
                st.blocks.allocate(BlockId(id), generation, inode, replication, Some(client.clone()), p.clone());
                tracing::debug!(inode = inode.0, block = id, generation, pipeline = ?p, "block allocated");
                Ok(write_block(&self.shared, st, id, generation, 0, &p))
            })
            .await
    }

    /// Applies an operator state change (`change`) to the datanode at `address`, then saves
    /// the operator states: answered only once saved, so a restart does not undo it.
    fn change_admin_state(
        &self,
        address: &str,
        change: fn(&mut DatanodeRegistry, &DatanodeId) -> bool,
        what: &str,
    ) -> Result<pb::Empty> {
        {
            let mut st = self.shared.lock();
            let id = node_at(&st.nodes, address)?.id.clone();
            change(&mut st.nodes, &id);
            tracing::info!(datanode = %id, %address, "{what}");
        }
        self.shared.save_admin_states()?;
        Ok(pb::Empty {})
    }

    /// Drops the dead datanode at `address` from the registry and the saved lists.
    fn forget(&self, address: &str) -> Result<pb::Empty> {
        {
            let mut st = self.shared.lock();
            let n = node_at(&st.nodes, address)?;
            let id = n.id.clone();
            if n.alive {
                return Err(NamenodeError::FailedPrecondition(format!(
                    "{address}: datanode {id} is alive: stop it first (or decommission it to \
                     drain it)"
                )));
            }
            st.nodes.forget(&id);
            st.blocks.remove_node(&id);
            st.in_flight.drop_node(&id);
            tracing::info!(datanode = %id, %address, "dead datanode forgotten");
        }
        self.shared.save_known_datanodes()?;
        self.shared.save_admin_states()?;
        Ok(pb::Empty {})
    }

    async fn do_update_pipeline(&self, req: pb::UpdatePipelineRequest) -> Result<pb::LocatedBlock> {
        // Right after a restart the replacements are still re-registering, as for AllocateBlock.
        self.shared
            .await_datanodes_after_restart(
                self.shared.config.replication,
                Some(req.inode),
                &req.failed,
            )
            .await;
        let inode = inode_id(req.inode)?;
        let client = client_id(&req.client_id)?.to_string();
        let block = BlockId(req.block_id);
        // The whole request identifies a repeat (client, generation, failed and surviving nodes).
        let request = prost::Message::encode_to_vec(&req);
        self.shared
            .mutate(|st, after| {
                let (replication, block_size) = leased_file(st, inode, &client)?;
                st.leases.renew(&client, Instant::now());
                let path = path_or_inode(st, inode);
                // A block allocated before a namenode restart is unknown to this one (allocations
                // are not logged; its replicas are held as unclaimed). When its writer, holding
                // the file's lease, asks to recover its pipeline, the allocation is taken up again
                // at the writer's generation, as a commit of it would be. Ids never handed out, or
                // in another file, stay refused.
                let counters = st.ns.counters();
                if st.blocks.get(block).is_none()
                    && block.get() < counters.next_block
                    && req.generation < counters.next_generation
                    && st.ns.block_owner(block.get()).is_none()
                {
                    tracing::info!(inode = inode.0, %block, generation = req.generation, "pipeline recovery of a block allocated before the restart");
                    st.blocks.allocate(block, req.generation, inode, replication, Some(client.clone()), Vec::new());
                }
                let Some(b) = st.blocks.get(block).filter(|b| b.inode == inode) else {
                    return Err(NamenodeError::InvalidArgument(format!("{path}: block {block} is not a block of it")));
                };
                // The same request again (the client sends it again when the connection broke
                // before the answer): answer what the first one got instead of refusing it.
                if b.recovered_by.as_deref() == Some(request.as_slice()) {
                    let (generation, p) = (b.generation, b.pipeline.clone());
                    let offset = offset_of(st, inode, block.get());
                    tracing::info!(inode = inode.0, %block, generation, "pipeline recovery sent again: answered as before");
                    return Ok(write_block(&self.shared, st, block.get(), generation, offset, &p));
                }
                if req.generation != b.generation {
                    return Err(NamenodeError::InvalidArgument(format!(
                        "{path}: block {block} generation {} is not the current {}",
                        req.generation, b.generation
                    )));
                }
                let failed = ids_of(&st.nodes, &req.failed);
                let mut p: Vec<DatanodeId> = ids_of(&st.nodes, &req.survivors)
                    .into_iter()
                    .filter(|n| st.nodes.is_alive(n) && !failed.contains(n))
                    .collect();
                p.dedup();
                let replacements = st.nodes.placement().place_replicas(block, replication as usize, &|n| {
                    p.contains(n) || failed.contains(n) || !st.nodes.has_room(n, block_size)
                });
                for n in replacements {
                    if p.len() >= replication as usize {
                        break;
                    }
                    p.push(n);
                }
                // The first failed node is where the pipeline broke; the ones listed after it
                // are there because a node cannot tell whether the hops behind a broken one
                // stored anything, or because they failed earlier for this block. They may be
                // fine: retry them rather than give up, but only to reach the fewest nodes the
                // writer accepts. A writer that accepts fewer than R (the mount) goes on with
                // the good ones: offering it the failed ones again swapped a dead or full node
                // in and out until it gave up with EIO while a live node held the block.
                let needed = pipeline_min(replication, req.min_replicas);
                for n in failed.iter().skip(1).rev() {
                    if p.len() >= needed {
                        break;
                    }
                    if st.nodes.is_writable(n) && !p.contains(n) {
                        p.push(n.clone());
                    }
                }
                // Then nodes the last heartbeats called full: the figure may be stale.
                for n in st.nodes.placement().owners(block, st.nodes.writable_count()) {
                    if p.len() >= needed {
                        break;
                    }
                    if !p.contains(&n) && !failed.contains(&n) {
                        p.push(n);
                    }
                }
                // A shorter pipeline would let the writer acknowledge a block on fewer replicas
                // than the file asks for: `put` must either end with every block on R replicas or
                // fail; the mount accepts fewer (`pipeline_min`). The broken node may not be
                // declared dead yet; it does not count as live.
                if p.len() < needed {
                    let live: Vec<_> = st
                        .nodes
                        .all()
                        .filter(|n| n.is_writable() && failed.first() != Some(&n.id))
                        .collect();
                    let full = live
                        .iter()
                        .filter(|n| !st.nodes.has_room(&n.id, block_size))
                        .count();
                    return Err(NamenodeError::NotEnoughDatanodes {
                        needed,
                        live: live.len(),
                        full,
                        retiring: st.nodes.retiring_count(),
                        failed: failed
                            .first()
                            .map(|id| st.nodes.get(id).map_or(id.0.clone(), |n| n.address.clone())),
                    });
                }
                // Nodes of the old pipeline left out of the new one hold a partial replica of the
                // old generation in tmp/, which no report shows (only finalized replicas are
                // reported): delete it (the writer rewrites the whole block to the new pipeline).
                let dropped: Vec<(DatanodeId, u64)> = b
                    .pipeline
                    .iter()
                    .filter(|n| !p.contains(n))
                    .map(|n| (n.clone(), req.generation))
                    .collect();
                let generation = st.ns.next_generation();
                let stale = st.blocks.set_generation(block, generation);
                after.stale(block, stale);
                after.stale(block, dropped);
                st.blocks.set_pipeline(block, p.clone());
                st.blocks.set_recovered_by(block, request.clone());
                let offset = offset_of(st, inode, block.get());
                tracing::info!(inode = inode.0, %block, generation, pipeline = ?p, failed = ?req.failed, "pipeline updated");
                Ok(write_block(&self.shared, st, block.get(), generation, offset, &p))
            })
            .await
    }

    async fn do_commit_blocks(&self, req: pb::CommitBlocksRequest) -> Result<pb::AttrResponse> {
        let inode = inode_id(req.inode)?;
        let client = client_id(&req.client_id)?.to_string();
        let blocks: Vec<BlockRef> = req.blocks.iter().map(block_ref).collect();
        let mtime = req.mtime.map(Timestamp::from);
        let now = Timestamp::now();
        let mut inline = req.inline_data;
        self.shared
            .mutate(|st, after| {
                if req.close
                    && st
                        .ns
                        .closed_as_committed(inode, &blocks, inline.as_deref(), req.size)
                {
                    // A closing commit sent again after the namenode restarted: it was applied.
                    return Ok(pb::AttrResponse {
                        attr: Some(attr_of(st, inode)?),
                    });
                }
                let (replication, block_size) = leased_file(st, inode, &client)?;
                st.leases.renew(&client, Instant::now());
                if let Some(data) = inline.take() {
                    check_inline(
                        &self.shared,
                        st,
                        inode,
                        &blocks,
                        data.len() as u64,
                        block_size,
                    )?;
                    after.freed = st
                        .ns
                        .commit_inline(inode, &client, data, req.size, req.close, mtime, now)?;
                } else {
                    for b in blocks.iter().filter(|b| !b.is_hole()) {
                        if let Some(info) = st.blocks.get(BlockId(b.id)) {
                            if info.inode != inode {
                                return Err(NamenodeError::InvalidArgument(format!(
                                    "{}: block {} belongs to another file",
                                    path_or_inode(st, inode),
                                    b.id
                                )));
                            }
                            if b.generation < info.generation {
                                return Err(older_generation(st, inode, b, info.generation));
                            }
                        }
                    }
                    after.freed = st.ns.commit_blocks(
                        inode,
                        &client,
                        blocks.clone(),
                        req.size,
                        req.close,
                        mtime,
                        now,
                    )?;
                    for b in blocks.iter().filter(|b| !b.is_hole()) {
                        let stale = st.blocks.commit(
                            BlockId(b.id),
                            b.generation,
                            b.len,
                            inode,
                            replication,
                        );
                        after.stale(BlockId(b.id), stale);
                    }
                }
                if req.close {
                    // Blocks allocated for copy-on-write that did not make it into the file.
                    after.free_uncommitted(&st.blocks, inode, &client);
                }
                Ok(pb::AttrResponse {
                    attr: Some(attr_of(st, inode)?),
                })
            })
            .await
    }

    /// The client is done: its locks go, its open files are closed (recovered when a block is still
    /// being written), copy-on-write blocks it never committed are freed.
    /// Gives back the client's leases: of every file and lock (`inode` 0: the client is done), or
    /// of that one file only (a failed final commit: the file is closed at what it holds).
    async fn do_release_lease(&self, client: String, inode: u64) -> Result<()> {
        let files = self
            .shared
            .mutate(|st, _| {
                let mut files = st.ns.files_with_lease(&client);
                if inode == 0 {
                    st.leases.remove(&client);
                    let n = st.ns.locks_mut().release_client(&client);
                    if n > 0 {
                        tracing::debug!(client = %client, locks = n, "locks released");
                    }
                } else {
                    files.retain(|f| f.0 == inode);
                }
                Ok(files)
            })
            .await?;
        for inode in files {
            let recover = self
                .shared
                .mutate(|st, after| {
                    let last_writing = st
                        .ns
                        .get(inode)
                        .and_then(|i| i.file.as_ref())
                        .and_then(|f| f.blocks.iter().rev().find(|b| !b.is_hole()))
                        .and_then(|b| st.blocks.get(BlockId(b.id)))
                        .is_some_and(|b| b.writing);
                    after.free_uncommitted(&st.blocks, inode, &client);
                    if last_writing {
                        return Ok(true);
                    }
                    st.ns.release_lease(inode, &client)?;
                    Ok(false)
                })
                .await?;
            if recover {
                super::recovery::spawn(self.shared.clone(), inode);
            }
        }
        Ok(())
    }

    fn do_get_block_locations(
        &self,
        req: pb::GetBlockLocationsRequest,
    ) -> Result<pb::GetBlockLocationsResponse> {
        let c = caller(&req.creds);
        let node = node_sel(&req.node)?;
        let st = self.shared.lock();
        let id = st.ns.resolve(&c, node, true)?;
        st.ns
            .access(&c, crate::namespace::NodeSel::Inode(id), R_OK)?;
        let inode = st.ns.get(id).ok_or(NamenodeError::Stale(id.0))?;
        let Some(f) = inode.file.as_ref() else {
            let shown = path_or_inode(&st, id);
            return Err(if inode.is_dir() {
                NamenodeError::IsADirectory(shown)
            } else {
                NamenodeError::InvalidArgument(format!("{shown}: not a regular file"))
            });
        };
        let blocks = locate(&self.shared, &st, &f.blocks, req.offset, req.len);
        Ok(pb::GetBlockLocationsResponse {
            attr: Some(inode.to_attr()),
            blocks,
            inline_data: f.inline.clone().unwrap_or_default(),
        })
    }

    fn do_fsck(&self, req: pb::FsckRequest) -> Result<pb::FsckResponse> {
        fsck_of(&self.shared, &self.shared.lock(), &req)
    }

    fn do_report(&self) -> pb::ReportResponse {
        report_of(&self.shared, &self.shared.lock(), Instant::now())
    }

    fn do_statfs(&self) -> pb::StatfsResponse {
        statfs_of(&self.shared, &self.shared.lock())
    }

    async fn do_lock(&self, req: pb::LockRequest, test: bool) -> Result<pb::LockResponse> {
        let inode = inode_id(req.inode)?;
        let client = client_id(&req.client_id)?.to_string();
        let kind = match pb::LockKind::try_from(req.kind) {
            Ok(pb::LockKind::Flock) => LockKind::Flock,
            Ok(pb::LockKind::Posix) => LockKind::Posix,
            _ => {
                return Err(NamenodeError::InvalidArgument(format!(
                    "inode {inode}: lock kind {} is not valid",
                    req.kind
                )))
            }
        };
        let typ = match pb::LockType::try_from(req.r#type) {
            Ok(pb::LockType::Read) => Some(LockType::Read),
            Ok(pb::LockType::Write) => Some(LockType::Write),
            Ok(pb::LockType::Unlock) => None,
            _ => {
                return Err(NamenodeError::InvalidArgument(format!(
                    "inode {inode}: lock type {} is not valid",
                    req.r#type
                )))
            }
        };
        if kind == LockKind::Posix && req.start > req.end {
            return Err(NamenodeError::InvalidArgument(format!(
                "inode {inode}: lock range {}..={} is empty",
                req.start, req.end
            )));
        }
        let lr = LockRequest {
            owner: LockOwner {
                client: client.clone(),
                owner: req.owner,
            },
            kind,
            typ,
            start: req.start,
            end: req.end,
            pid: req.pid,
        };
        let apply = |st: &mut State| {
            if st.ns.get(inode).is_none() {
                return Err(NamenodeError::Stale(inode.0));
            }
            st.leases.renew(&client, Instant::now());
            Ok(if test {
                match st.ns.locks().test(inode.0, &lr) {
                    Some(c) => LockOutcome::Conflict(c),
                    None => LockOutcome::Granted(0),
                }
            } else {
                st.ns.locks_mut().lock(inode.0, &lr)
            })
        };
        // A grant or release is logged like a namespace change (a restart keeps it); a test or a
        // refusal changes nothing and logs nothing.
        let outcome = if test {
            apply(&mut self.shared.lock())?
        } else {
            self.shared.mutate(|st, _| apply(st)).await?
        };
        Ok(match outcome {
            LockOutcome::Granted(token) => pb::LockResponse {
                granted: true,
                fencing_token: token,
                conflict_type: pb::LockType::Unlock as i32,
                ..Default::default()
            },
            LockOutcome::Conflict(c) => pb::LockResponse {
                granted: false,
                fencing_token: 0,
                conflict_type: match c.typ {
                    LockType::Read => pb::LockType::Read as i32,
                    LockType::Write => pb::LockType::Write as i32,
                },
                conflict_start: c.start,
                conflict_end: c.end,
                conflict_pid: c.pid,
            },
        })
    }
}

fn push_problem(
    out: &mut pb::FsckResponse,
    path: &str,
    block: u64,
    problem: &str,
    live: u32,
    expected: u32,
) {
    if out.problems.len() < FSCK_MAX_PROBLEMS {
        out.problems.push(pb::FsckProblem {
            path: path.to_string(),
            block_id: block,
            problem: problem.to_string(),
            live_replicas: live,
            expected,
        });
    }
}

/// Fsck of the tree under `req.path` ("/" when empty) as `req.creds` sees it: the `Fsck` RPC and
/// the status page ([`crate::status`]) both take it from here.
pub fn fsck_of(shared: &Shared, st: &State, req: &pb::FsckRequest) -> Result<pb::FsckResponse> {
    let c = caller(&req.creds);
    let path = if req.path.is_empty() {
        "/"
    } else {
        req.path.as_str()
    };
    let root = st
        .ns
        .resolve(&c, crate::namespace::NodeSel::Path(path), false)?;
    let mut out = pb::FsckResponse {
        safe_mode: st.safe_mode.is_on(),
        ..Default::default()
    };
    // Directories (the namespace walk lists files only).
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        let Some(n) = st.ns.get(d) else { continue };
        if let Some(children) = &n.children {
            out.directories += 1;
            for child in children.values() {
                if st.ns.get(*child).is_some_and(|c| c.is_dir()) {
                    stack.push(*child);
                }
            }
        }
    }
    for (fpath, id) in st.ns.walk_files(root) {
        let Some(f) = st.ns.get(id).and_then(|i| i.file.as_ref()) else {
            continue;
        };
        out.files += 1;
        out.total_bytes += f.size;
        if let Some(d) = &f.inline {
            out.inline_files += 1;
            out.inline_bytes += d.len() as u64;
        }
        if f.lease.is_some() {
            out.open_files += 1;
        }
        let mut offset = 0;
        let mut listed = Vec::new();
        for b in &f.blocks {
            let start = offset;
            offset += b.len;
            if b.is_hole() {
                continue;
            }
            out.blocks += 1;
            if req.list_blocks {
                listed.push(located_block(shared, st, b, start));
            }
            let Some(info) = st.blocks.get(BlockId(b.id)) else {
                out.missing += 1;
                push_problem(&mut out, &fpath, b.id, "missing", 0, f.replication);
                continue;
            };
            if info.writing || info.pending.is_some() {
                continue;
            }
            let h = health(BlockId(b.id), info, &st.nodes, true);
            // Replicas on a node still decommissioning count, as for under-replication.
            out.replicas += u64::from(h.live + h.draining);
            out.corrupt_replicas += h.corrupt_replicas as u64;
            if h.is_healthy() {
                out.healthy_blocks += 1;
            }
            let problem = if h.missing {
                out.missing += 1;
                Some("missing")
            } else if h.corrupt_replicas > 0 {
                Some("corrupt")
            } else if h.under_replicated {
                Some("under_replicated")
            } else if h.over_replicated {
                Some("over_replicated")
            } else if h.misplaced {
                Some("misplaced")
            } else {
                None
            };
            if h.corrupt_replicas > 0 {
                out.corrupt += 1;
            }
            if h.under_replicated && !h.missing {
                out.under_replicated += 1;
            }
            if h.over_replicated {
                out.over_replicated += 1;
            }
            if h.misplaced {
                out.misplaced += 1;
            }
            if let Some(p) = problem {
                push_problem(&mut out, &fpath, b.id, p, h.live, h.expected);
            }
        }
        if req.list_blocks {
            out.file_blocks.push(pb::FsckFile {
                path: fpath,
                size: f.size,
                blocks: listed,
            });
        }
    }
    Ok(out)
}

/// The cluster report at `now` (datanodes, block health, capacity): the `Report` RPC.
pub fn report_of(shared: &Shared, st: &State, now: Instant) -> pb::ReportResponse {
    report_with(
        shared,
        st,
        now,
        &replication::summarize(&st.blocks, &st.nodes, true),
    )
}

/// [`report_of`] with the block health `s` already classified (the status page has it from its
/// fsck of "/" and does not classify every block twice under the lock).
pub fn report_with(
    shared: &Shared,
    st: &State,
    now: Instant,
    s: &replication::Summary,
) -> pb::ReportResponse {
    let mut out = pb::ReportResponse {
        safe_mode: st.safe_mode.is_on(),
        restarting: shared.restarting(),
        storage_failure: shared.journal.failure().unwrap_or_default(),
        blocks: s.blocks,
        under_replicated: s.under_replicated,
        over_replicated: s.over_replicated,
        misplaced: s.misplaced,
        corrupt: s.corrupt,
        missing: s.missing,
        pending_replications: st.in_flight.len() as u64,
        default_replication: shared.config.replication,
        default_block_size: shared.config.block_size,
        ..Default::default()
    };
    // A node known from before a restart is listed (dead) only once it has had `dead_after` to
    // register again: right after a restart every node would flash "dead" for a heartbeat.
    let listed = |n: &&Datanode| {
        !(n.restored && now.saturating_duration_since(n.last_heartbeat) < shared.config.dead_after)
    };
    for n in st.nodes.all().filter(listed) {
        let pending = n.commands.len()
            + st.in_flight
                .iter()
                .filter(|c| c.source == n.id || c.target == n.id)
                .count();
        let decommission_remaining = if n.admin == AdminState::Decommissioning {
            replication::decommission_remaining(&st.blocks, &st.nodes, &n.id)
        } else {
            0
        };
        out.datanodes.push(pb::DatanodeReport {
            id: n.id.0.clone(),
            address: n.address.clone(),
            rack: n.rack.clone(),
            state: n.state_name().to_string(),
            capacity: n.capacity,
            used: n.used,
            remaining: n.remaining,
            blocks: st.blocks.replica_count_on(&n.id) as u64,
            last_heartbeat_ms: now.saturating_duration_since(n.last_heartbeat).as_millis() as u64,
            pending_commands: pending as u64,
            decommission_remaining,
        });
        add_to_totals(n, &mut out.capacity, &mut out.used, &mut out.remaining);
    }
    out
}

/// A datanode's share of the cluster totals (report, statfs): live nodes that are not
/// decommissioned count their capacity and use, and only nodes in service (that take new
/// blocks) count their free space, as `df` on the mount should show what writes can use.
fn add_to_totals(n: &Datanode, capacity: &mut u64, used: &mut u64, remaining: &mut u64) {
    if !n.alive || n.admin == AdminState::Decommissioned {
        return;
    }
    *capacity += n.capacity;
    *used += n.used;
    if n.is_writable() {
        *remaining += n.remaining;
    }
}

/// File system totals of live datanodes (`Statfs`, the status page).
pub fn statfs_of(shared: &Shared, st: &State) -> pb::StatfsResponse {
    let mut out = pb::StatfsResponse {
        inodes: st.ns.inode_count(),
        block_size: shared.config.block_size,
        replication: shared.config.replication,
        ..Default::default()
    };
    for n in st.nodes.all() {
        add_to_totals(n, &mut out.capacity, &mut out.used, &mut out.remaining);
    }
    out
}

/// Marks a replica corrupt (from a reader or a datanode). Unknown nodes or blocks are ignored.
/// A replica reported bad, by a reader (`by_reader`) or by its own datanode. A reader's report
/// also asks the datanode to check the replica itself: the reader may have been wrong (bytes
/// damaged on the way or in its memory), and a replica held corrupt that is not is a good copy
/// lost for nothing (with every replica of a block reported, the block would show as missing).
pub fn report_bad_replica(shared: &Shared, req: &pb::ReportBadReplicaRequest, by_reader: bool) {
    let mut st = shared.lock();
    let Some(node) = st.nodes.by_address(&req.datanode).map(|n| n.id.clone()) else {
        tracing::warn!(block = req.block_id, datanode = %req.datanode, "bad replica reported on an unknown datanode");
        return;
    };
    let block = BlockId(req.block_id);
    if st.blocks.mark_corrupt(&node, block, req.generation) {
        tracing::warn!(block = req.block_id, generation = req.generation, datanode = %req.datanode, reason = %req.reason,
            "replica marked corrupt");
        if by_reader {
            st.nodes.queue(
                &node,
                Command::Verify {
                    block,
                    generation: req.generation,
                },
            );
        }
    }
}

fn ok<T>(r: Result<T>) -> std::result::Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl Namenode for ClientService {
    async fn lookup(
        &self,
        req: Request<pb::LookupRequest>,
    ) -> std::result::Result<Response<pb::AttrResponse>, Status> {
        let req = req.into_inner();
        ok((|| {
            let st = self.shared.lock();
            let id = st.ns.lookup(&caller(&req.creds), entry_sel(&req.entry)?)?;
            Ok(pb::AttrResponse {
                attr: Some(attr_of(&st, id)?),
            })
        })())
    }

    async fn get_attr(
        &self,
        req: Request<pb::GetAttrRequest>,
    ) -> std::result::Result<Response<pb::AttrResponse>, Status> {
        let req = req.into_inner();
        ok((|| {
            let st = self.shared.lock();
            let c = caller(&req.creds);
            let id = st.ns.resolve(&c, node_sel(&req.node)?, false)?;
            let mut attr = attr_of(&st, id)?;
            attr.hidden_elsewhere =
                !req.client_id.is_empty() && st.ns.hidden_elsewhere(id, &req.client_id);
            let is_dir = attr.kind == pb::FileKind::Directory as i32;
            let mask = if is_dir {
                req.access_mask & !crate::namespace::W_OK
            } else {
                req.access_mask
            };
            if mask != 0 {
                st.ns
                    .access(&c, crate::namespace::NodeSel::Inode(id), mask)?;
            }
            Ok(pb::AttrResponse { attr: Some(attr) })
        })())
    }

    async fn set_attr(
        &self,
        req: Request<pb::SetAttrRequest>,
    ) -> std::result::Result<Response<pb::AttrResponse>, Status> {
        let req = req.into_inner();
        let c = caller(&req.creds);
        let r = async {
            let node = node_sel(&req.node)?;
            let attr = SetAttr {
                mode: req.mode,
                uid: req.uid,
                gid: req.gid,
                atime: time_set(&req.atime),
                mtime: time_set(&req.mtime),
                size: req.size,
                client: (!req.client_id.is_empty()).then(|| req.client_id.clone()),
            };
            let now = Timestamp::now();
            self.shared
                .mutate(|st, after| {
                    let (id, freed) = st.ns.set_attr(&c, node, attr, now)?;
                    after.freed = freed;
                    Ok(pb::AttrResponse {
                        attr: Some(attr_of(st, id)?),
                    })
                })
                .await
        };
        let r = r.await;
        // A truncation (`: > f`, `cp` over f) of a file whose writer died is refused while
        // its lease lasts, as an open for writing is: past the soft limit both take it back.
        if let (Err(e @ NamenodeError::LeaseHeld { .. }), Ok(node)) = (&r, node_sel(&req.node)) {
            self.maybe_preempt(e, self.lease_target(&c, Some(node)));
        }
        ok(r)
    }

    async fn set_replication(
        &self,
        req: Request<pb::SetReplicationRequest>,
    ) -> std::result::Result<Response<pb::SetReplicationResponse>, Status> {
        let req = req.into_inner();
        let c = caller(&req.creds);
        let want = req.replication;
        let r = async {
            let node = node_sel(&req.node)?;
            let now = Timestamp::now();
            self.shared
                .mutate(|st, _| {
                    let r = st
                        .ns
                        .set_replication(&c, node, want, MAX_REPLICATION, now)?;
                    // The planner reads the expected count per block: it follows the file's (the
                    // block map is rebuilt from the files' factors after a restart).
                    for id in &r.blocks {
                        st.blocks.set_replication(BlockId(*id), want);
                    }
                    if r.previous != want {
                        tracing::info!(
                            inode = %r.inode,
                            blocks = r.blocks.len(),
                            from = r.previous,
                            to = want,
                            "replication factor changed"
                        );
                    }
                    Ok(pb::SetReplicationResponse {
                        attr: Some(attr_of(st, r.inode)?),
                        previous: r.previous,
                    })
                })
                .await
        };
        ok(r.await)
    }

    async fn read_dir(
        &self,
        req: Request<pb::ReadDirRequest>,
    ) -> std::result::Result<Response<pb::ReadDirResponse>, Status> {
        let req = req.into_inner();
        ok((|| {
            let c = caller(&req.creds);
            let dir = node_sel(&req.dir)?;
            let limit = if req.limit == 0 {
                READDIR_DEFAULT
            } else {
                (req.limit as usize).min(READDIR_MAX)
            };
            let st = self.shared.lock();
            let (entries, more) = st.ns.read_dir(&c, dir, &req.after, limit)?;
            let dir_id = st.ns.resolve(&c, dir, true)?;
            let entries = entries
                .into_iter()
                .filter_map(|(name, id)| {
                    st.ns.get(id).map(|i| pb::DirEntry {
                        name,
                        attr: Some(i.to_attr()),
                    })
                })
                .collect();
            Ok(pb::ReadDirResponse {
                entries,
                more,
                dir: Some(attr_of(&st, dir_id)?),
            })
        })())
    }

    async fn mkdir(
        &self,
        req: Request<pb::MkdirRequest>,
    ) -> std::result::Result<Response<pb::AttrResponse>, Status> {
        let req = req.into_inner();
        let r = async {
            let c = caller(&req.creds);
            let entry = entry_sel(&req.entry)?;
            let call = call_id(&req.retry)?;
            let now = Timestamp::now();
            self.shared
                .mutate(|st, _| {
                    let id = st.ns.once_inode(call.as_ref(), now, |ns| {
                        ns.mkdir(&c, entry, req.mode, req.parents, now)
                    })?;
                    Ok(pb::AttrResponse {
                        attr: Some(attr_of(st, id)?),
                    })
                })
                .await
        };
        ok(r.await)
    }

    async fn mknod(
        &self,
        req: Request<pb::MknodRequest>,
    ) -> std::result::Result<Response<pb::AttrResponse>, Status> {
        let req = req.into_inner();
        let r = async {
            let c = caller(&req.creds);
            let entry = entry_sel(&req.entry)?;
            let kind = pb::FileKind::try_from(req.kind)
                .ok()
                .and_then(InodeKind::from_pb)
                .ok_or_else(|| {
                    NamenodeError::InvalidArgument(format!(
                        "mknod: file kind {} is not valid",
                        req.kind
                    ))
                })?;
            let call = call_id(&req.retry)?;
            let now = Timestamp::now();
            let cfg = &self.shared.config;
            self.shared
                .mutate(|st, _| {
                    let make = |ns: &mut crate::namespace::Namespace| match kind {
                        InodeKind::File => {
                            let opts = CreateFile {
                                mode: req.mode,
                                replication: cfg.replication,
                                block_size: cfg.block_size,
                                exclusive: true,
                                overwrite: false,
                                lease: None,
                            };
                            Ok(ns.create_file(&c, entry, opts, now)?.0)
                        }
                        InodeKind::Directory | InodeKind::Symlink => {
                            Err(NamenodeError::InvalidArgument(format!(
                                "mknod cannot create a {}",
                                kind.to_pb()
                            )))
                        }
                        _ => ns.mknod(&c, entry, kind, req.mode, req.rdev, now),
                    };
                    let id = st.ns.once_inode(call.as_ref(), now, make)?;
                    Ok(pb::AttrResponse {
                        attr: Some(attr_of(st, id)?),
                    })
                })
                .await
        };
        ok(r.await)
    }

    async fn symlink(
        &self,
        req: Request<pb::SymlinkRequest>,
    ) -> std::result::Result<Response<pb::AttrResponse>, Status> {
        let req = req.into_inner();
        let r = async {
            let c = caller(&req.creds);
            let entry = entry_sel(&req.entry)?;
            let call = call_id(&req.retry)?;
            let now = Timestamp::now();
            self.shared
                .mutate(|st, _| {
                    let id = st.ns.once_inode(call.as_ref(), now, |ns| {
                        ns.symlink(&c, entry, &req.target, now)
                    })?;
                    Ok(pb::AttrResponse {
                        attr: Some(attr_of(st, id)?),
                    })
                })
                .await
        };
        ok(r.await)
    }

    async fn readlink(
        &self,
        req: Request<pb::ReadlinkRequest>,
    ) -> std::result::Result<Response<pb::ReadlinkResponse>, Status> {
        let req = req.into_inner();
        ok((|| {
            let st = self.shared.lock();
            let target = st.ns.readlink(&caller(&req.creds), node_sel(&req.node)?)?;
            Ok(pb::ReadlinkResponse { target })
        })())
    }

    async fn link(
        &self,
        req: Request<pb::LinkRequest>,
    ) -> std::result::Result<Response<pb::AttrResponse>, Status> {
        let req = req.into_inner();
        let r = async {
            let c = caller(&req.creds);
            let existing = node_sel(&req.existing)?;
            let entry = entry_sel(&req.new_entry)?;
            let call = call_id(&req.retry)?;
            let now = Timestamp::now();
            self.shared
                .mutate(|st, _| {
                    let id = st
                        .ns
                        .once_inode(call.as_ref(), now, |ns| ns.link(&c, existing, entry, now))?;
                    Ok(pb::AttrResponse {
                        attr: Some(attr_of(st, id)?),
                    })
                })
                .await
        };
        ok(r.await)
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> std::result::Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        let r = async {
            let c = caller(&req.creds);
            let entry = entry_sel(&req.entry)?;
            let mode = RemoveMode {
                recursive: req.recursive,
                directory: req.directory,
                any_kind: req.any_kind,
                keep_parent_times: req.keep_parent_times,
            };
            let call = call_id(&req.retry)?;
            let now = Timestamp::now();
            self.shared
                .mutate(|st, after| {
                    let removed = st.ns.once(
                        call.as_ref(),
                        now,
                        |ns| ns.remove(&c, entry, mode, now),
                        |_| None,
                    )?;
                    after.freed = removed.ran().unwrap_or_default();
                    Ok(pb::Empty {})
                })
                .await
        };
        ok(r.await)
    }

    async fn rename(
        &self,
        req: Request<pb::RenameRequest>,
    ) -> std::result::Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        let r = async {
            let c = caller(&req.creds);
            let from = entry_sel(&req.from)?;
            let to = entry_sel(&req.to)?;
            let flags = RenameFlags {
                no_replace: req.no_replace,
                exchange: req.exchange,
            };
            let call = call_id(&req.retry)?;
            let now = Timestamp::now();
            self.shared
                .mutate(|st, after| {
                    let renamed = st.ns.once(
                        call.as_ref(),
                        now,
                        |ns| ns.rename(&c, from, to, flags, now),
                        |_| None,
                    )?;
                    after.freed = renamed.ran().unwrap_or_default();
                    Ok(pb::Empty {})
                })
                .await
        };
        ok(r.await)
    }

    async fn access(
        &self,
        req: Request<pb::AccessRequest>,
    ) -> std::result::Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        ok((|| {
            let st = self.shared.lock();
            st.ns
                .access(&caller(&req.creds), node_sel(&req.node)?, req.mask)?;
            Ok(pb::Empty {})
        })())
    }

    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> std::result::Result<Response<pb::OpenResponse>, Status> {
        ok(self.do_create(req.into_inner()).await)
    }

    async fn open_write(
        &self,
        req: Request<pb::OpenWriteRequest>,
    ) -> std::result::Result<Response<pb::OpenResponse>, Status> {
        ok(self.do_open_write(req.into_inner()).await)
    }

    async fn add_block(
        &self,
        req: Request<pb::AddBlockRequest>,
    ) -> std::result::Result<Response<pb::LocatedBlock>, Status> {
        ok(self.do_add_block(req.into_inner()).await)
    }

    async fn allocate_block(
        &self,
        req: Request<pb::AllocateBlockRequest>,
    ) -> std::result::Result<Response<pb::LocatedBlock>, Status> {
        ok(self.do_allocate_block(req.into_inner()).await)
    }

    async fn update_pipeline(
        &self,
        req: Request<pb::UpdatePipelineRequest>,
    ) -> std::result::Result<Response<pb::LocatedBlock>, Status> {
        ok(self.do_update_pipeline(req.into_inner()).await)
    }

    async fn commit_blocks(
        &self,
        req: Request<pb::CommitBlocksRequest>,
    ) -> std::result::Result<Response<pb::AttrResponse>, Status> {
        ok(self.do_commit_blocks(req.into_inner()).await)
    }

    async fn renew_lease(
        &self,
        req: Request<pb::RenewLeaseRequest>,
    ) -> std::result::Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        ok((|| {
            let client = client_id(&req.client_id)?;
            self.shared.lock().leases.renew(client, Instant::now());
            Ok(pb::Empty {})
        })())
    }

    async fn release_lease(
        &self,
        req: Request<pb::RenewLeaseRequest>,
    ) -> std::result::Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        let r = async {
            let client = client_id(&req.client_id)?.to_string();
            self.do_release_lease(client, req.inode).await?;
            Ok(pb::Empty {})
        };
        ok(r.await)
    }

    async fn get_block_locations(
        &self,
        req: Request<pb::GetBlockLocationsRequest>,
    ) -> std::result::Result<Response<pb::GetBlockLocationsResponse>, Status> {
        let req = req.into_inner();
        let mut located = self.do_get_block_locations(req.clone());
        // Just after a restart no replica is known until the datanodes report theirs (a second or
        // so): a read waits for them, as a write waits for datanodes, instead of failing with
        // "no replica is known" (sqlite on a mount saw EIO, then "database disk image is
        // malformed", at every namenode restart).
        let unknown = |r: &Result<pb::GetBlockLocationsResponse>| {
            r.as_ref()
                .is_ok_and(|r| r.blocks.iter().any(|b| b.id != 0 && b.locations.is_empty()))
        };
        while unknown(&located) && self.shared.awaiting_reports() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            located = self.do_get_block_locations(req.clone());
        }
        ok(located)
    }

    async fn report_bad_replica(
        &self,
        req: Request<pb::ReportBadReplicaRequest>,
    ) -> std::result::Result<Response<pb::Empty>, Status> {
        report_bad_replica(&self.shared, &req.into_inner(), true);
        Ok(Response::new(pb::Empty {}))
    }

    async fn fsck(
        &self,
        req: Request<pb::FsckRequest>,
    ) -> std::result::Result<Response<pb::FsckResponse>, Status> {
        ok(self.do_fsck(req.into_inner()))
    }

    async fn report(
        &self,
        _req: Request<pb::ReportRequest>,
    ) -> std::result::Result<Response<pb::ReportResponse>, Status> {
        Ok(Response::new(self.do_report()))
    }

    async fn statfs(
        &self,
        _req: Request<pb::StatfsRequest>,
    ) -> std::result::Result<Response<pb::StatfsResponse>, Status> {
        Ok(Response::new(self.do_statfs()))
    }

    async fn decommission(
        &self,
        req: Request<pb::DecommissionRequest>,
    ) -> std::result::Result<Response<pb::Empty>, Status> {
        let address = req.into_inner().address;
        ok(self.change_admin_state(&address, DatanodeRegistry::decommission, "decommissioning"))
    }

    async fn recommission(
        &self,
        req: Request<pb::DecommissionRequest>,
    ) -> std::result::Result<Response<pb::Empty>, Status> {
        let address = req.into_inner().address;
        ok(self.change_admin_state(&address, DatanodeRegistry::recommission, "back in service"))
    }

    async fn forget_datanode(
        &self,
        req: Request<pb::DecommissionRequest>,
    ) -> std::result::Result<Response<pb::Empty>, Status> {
        let address = req.into_inner().address;
        ok(self.forget(&address))
    }

    async fn lock(
        &self,
        req: Request<pb::LockRequest>,
    ) -> std::result::Result<Response<pb::LockResponse>, Status> {
        ok(self.do_lock(req.into_inner(), false).await)
    }

    async fn test_lock(
        &self,
        req: Request<pb::LockRequest>,
    ) -> std::result::Result<Response<pb::LockResponse>, Status> {
        ok(self.do_lock(req.into_inner(), true).await)
    }

    async fn sync(
        &self,
        _req: Request<pb::SyncRequest>,
    ) -> std::result::Result<Response<pb::Empty>, Status> {
        ok(self.shared.sync().await.map(|()| pb::Empty {}))
    }

    async fn set_xattr(
        &self,
        req: Request<pb::SetXattrRequest>,
    ) -> std::result::Result<Response<pb::AttrResponse>, Status> {
        let req = req.into_inner();
        let r = async {
            let c = caller(&req.creds);
            let node = node_sel(&req.node)?;
            let mode = match pb::XattrSetMode::try_from(req.mode) {
                Ok(pb::XattrSetMode::XattrSetAny) => XattrMode::Any,
                Ok(pb::XattrSetMode::XattrSetCreate) => XattrMode::Create,
                Ok(pb::XattrSetMode::XattrSetReplace) => XattrMode::Replace,
                Err(_) => {
                    return Err(NamenodeError::InvalidArgument(format!(
                        "setxattr: mode {} is not valid",
                        req.mode
                    )))
                }
            };
            let call = call_id(&req.retry)?;
            let now = Timestamp::now();
            self.shared
                .mutate(|st, _| {
                    let id = st.ns.once_inode(call.as_ref(), now, |ns| {
                        ns.set_xattr(&c, node, req.no_follow, &req.name, &req.value, mode, now)
                    })?;
                    Ok(pb::AttrResponse {
                        attr: Some(attr_of(st, id)?),
                    })
                })
                .await
        };
        ok(r.await)
    }

    async fn get_xattr(
        &self,
        req: Request<pb::GetXattrRequest>,
    ) -> std::result::Result<Response<pb::GetXattrResponse>, Status> {
        let req = req.into_inner();
        ok((|| {
            let st = self.shared.lock();
            let value = st
                .ns
                .get_xattr(
                    &caller(&req.creds),
                    node_sel(&req.node)?,
                    req.no_follow,
                    &req.name,
                )?
                .to_vec();
            Ok(pb::GetXattrResponse { value })
        })())
    }

    async fn list_xattr(
        &self,
        req: Request<pb::ListXattrRequest>,
    ) -> std::result::Result<Response<pb::ListXattrResponse>, Status> {
        let req = req.into_inner();
        ok((|| {
            let st = self.shared.lock();
            let names =
                st.ns
                    .list_xattr(&caller(&req.creds), node_sel(&req.node)?, req.no_follow)?;
            Ok(pb::ListXattrResponse { names })
        })())
    }

    async fn remove_xattr(
        &self,
        req: Request<pb::RemoveXattrRequest>,
    ) -> std::result::Result<Response<pb::AttrResponse>, Status> {
        let req = req.into_inner();
        let r = async {
            let c = caller(&req.creds);
            let node = node_sel(&req.node)?;
            let call = call_id(&req.retry)?;
            let now = Timestamp::now();
            self.shared
                .mutate(|st, _| {
                    let id = st.ns.once_inode(call.as_ref(), now, |ns| {
                        ns.remove_xattr(&c, node, req.no_follow, &req.name, now)
                    })?;
                    Ok(pb::AttrResponse {
                        attr: Some(attr_of(st, id)?),
                    })
                })
                .await
        };
        ok(r.await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(n: usize) -> DatanodeRegistry {
        let mut r = DatanodeRegistry::new();
        for i in 0..n {
            let id = DatanodeId(format!("dn{i}"));
            r.register(
                id,
                format!("127.0.0.1:{}", 9000 + i),
                String::new(),
                1 << 40,
                0,
                Instant::now(),
            );
            r.set_remaining(&DatanodeId(format!("dn{i}")), 1 << 40);
        }
        r
    }

    #[test]
    fn excluded_nodes_fill_a_pipeline_only_up_to_what_the_writer_needs() {
        let nodes = registry(3);
        let block = BlockId(7);
        let all = pipeline(&nodes, block, 3, 3, &[], 1 << 20);
        assert_eq!(all.len(), 3);
        let hung = all[1].clone();
        // `put` needs all 3: the excluded node comes last, as a last resort.
        let p = pipeline(&nodes, block, 3, 3, std::slice::from_ref(&hung), 1 << 20);
        assert_eq!(p.len(), 3);
        assert_eq!(p.last(), Some(&hung));
        // The mount accepts 1: it goes on with the other two.
        let p = pipeline(&nodes, block, 3, 1, std::slice::from_ref(&hung), 1 << 20);
        assert_eq!(p.len(), 2);
        assert!(!p.contains(&hung), "{p:?}");
        // Every node excluded: the writer still gets the fewest it accepts.
        let p = pipeline(&nodes, block, 3, 1, &all, 1 << 20);
        assert_eq!(p.len(), 1);
        // More nodes than R: the excluded one is replaced by another.
        let nodes = registry(5);
        let first = pipeline(&nodes, block, 3, 1, &[], 1 << 20);
        let p = pipeline(&nodes, block, 3, 1, &first[..1], 1 << 20);
        assert_eq!(p.len(), 3);
        assert!(!p.contains(&first[0]), "{p:?}");
    }
}
