//! The block map: for every block the namespace knows (plus blocks allocated but not yet committed),
//! its owner, generation, length, expected replication and where its replicas are. Locations are not
//! persisted: they are rebuilt from datanode block reports after a restart.
//!
//! Replicas of blocks the map does not know are *unclaimed*, not deleted at once: a namenode
//! restart forgets blocks that were allocated but not yet committed, and the writer that holds
//! them commits them after the restart (its lease survives). Unclaimed replicas are attached when
//! their block is committed, and deleted only when nobody claimed them within a grace period.
//! A block this namenode freed itself (its file deleted, or allocated and never committed) is
//! remembered for a while: a replica of it reported late (a write that finished as its file was
//! removed) is garbage and deleted at once, instead of holding its room for the grace period.

use ringfs_proto::{BlockId, DatanodeId, InodeId};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// One replica as a datanode reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replica {
    pub generation: u64,
    pub len: u64,
    /// Reported bad (by a reader, the scrubber, or a length mismatch).
    pub corrupt: bool,
}

/// What the namenode knows about one block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    pub inode: InodeId,
    /// Current generation: replicas with an older one are stale.
    pub generation: u64,
    pub len: u64,
    /// Replicas wanted (the file's replication factor).
    pub replication: u32,
    /// Allocated for `client` (AllocateBlock, copy-on-write) but not yet in the file's block list.
    pub pending: Option<String>,
    /// Handed to a writer and not committed yet (its replicas may still be growing).
    pub writing: bool,
    /// The write pipeline the block was handed out with (lease recovery asks these nodes).
    pub pipeline: Vec<DatanodeId>,
    /// The request of the last pipeline recovery that produced `generation`, so that the same
    /// request sent again (its answer lost) is answered again rather than refused as stale.
    pub recovered_by: Option<Vec<u8>>,
    /// Replicas by datanode. Generations newer than `generation` (a pipeline recovery the namespace has
    /// not committed yet) are kept but not counted.
    pub replicas: BTreeMap<DatanodeId, Replica>,
}

impl BlockInfo {
    /// Nodes with a replica at the current generation that is not corrupt.
    pub fn valid_holders(&self) -> impl Iterator<Item = &DatanodeId> + '_ {
        self.replicas
            .iter()
            .filter(|(_, r)| r.generation == self.generation && !r.corrupt)
            .map(|(n, _)| n)
    }

    /// Nodes whose current-generation replica is corrupt.
    pub fn corrupt_holders(&self) -> impl Iterator<Item = &DatanodeId> + '_ {
        self.replicas
            .iter()
            .filter(|(_, r)| r.generation == self.generation && r.corrupt)
            .map(|(n, _)| n)
    }
}

/// What to do with a reported replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaVerdict {
    /// Recorded (or already known).
    Accepted,
    /// Not a block of any file nor pending: held as unclaimed (see the module doc), not deleted yet.
    Unclaimed,
    /// An older generation than the block's: delete it.
    Stale,
    /// A delete was already sent for it and is not confirmed yet: send it again.
    Deleting,
    /// A block this namenode freed: delete it.
    Freed,
}

/// Freed block ids remembered (the newest): enough to cover the replicas reported in the seconds
/// after a large delete; older ones fall back to the unclaimed grace period.
const FREED_REMEMBERED: usize = 100_000;

/// Block id → block info, plus the reverse index node → blocks it holds.
#[derive(Debug, Default)]
pub struct BlockMap {
    blocks: HashMap<u64, BlockInfo>,
    by_node: HashMap<DatanodeId, HashSet<u64>>,
    /// Replicas a delete command went out for, not confirmed yet: block → node → generation. A
    /// report listing one of them must not resurrect it (e.g. a corrupt replica counted as good).
    deleting: HashMap<u64, BTreeMap<DatanodeId, u64>>,
    /// Replicas of unknown blocks: block → node → (replica, when first reported).
    unclaimed: HashMap<u64, BTreeMap<DatanodeId, (Replica, Instant)>>,
    /// Index of `BlockInfo::pending`: (file, client) → its allocated, uncommitted blocks, so a
    /// close or lease release finds them without scanning every block.
    pending: HashMap<(InodeId, String), BTreeSet<u64>>,
    /// Blocks freed since this namenode started (ids are never reused), oldest first.
    freed: HashSet<u64>,
    freed_order: VecDeque<u64>,
}

impl BlockMap {
    pub fn new() -> BlockMap {
        BlockMap::default()
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn get(&self, id: BlockId) -> Option<&BlockInfo> {
        self.blocks.get(&id.get())
    }

    pub fn iter(&self) -> impl Iterator<Item = (BlockId, &BlockInfo)> + '_ {
        self.blocks.iter().map(|(id, b)| (BlockId(*id), b))
    }

    /// Ids of the blocks `node` holds a replica of (any generation).
    pub fn blocks_on(&self, node: &DatanodeId) -> impl Iterator<Item = BlockId> + '_ {
        self.by_node
            .get(node)
            .into_iter()
            .flat_map(|s| s.iter().map(|b| BlockId(*b)))
    }

    pub fn replica_count_on(&self, node: &DatanodeId) -> usize {
        self.by_node.get(node).map_or(0, HashSet::len)
    }

    /// Records a block handed to a writer (AddBlock / AllocateBlock) with its pipeline.
    pub fn allocate(
        &mut self,
        id: BlockId,
        generation: u64,
        inode: InodeId,
        replication: u32,
        pending: Option<String>,
        pipeline: Vec<DatanodeId>,
    ) {
        let b = self.blocks.entry(id.get()).or_insert_with(|| BlockInfo {
            inode,
            generation,
            len: 0,
            replication,
            pending: None,
            writing: true,
            pipeline: Vec::new(),
            recovered_by: None,
            replicas: BTreeMap::new(),
        });
        let old = b.pending.take().map(|c| (b.inode, c));
        b.inode = inode;
        b.writing = true;
        b.generation = generation;
        b.replication = replication;
        b.pending = pending.clone();
        b.pipeline = pipeline;
        b.recovered_by = None;
        if let Some(old) = old {
            self.unindex_pending(id, old);
        }
        if let Some(client) = pending {
            self.pending
                .entry((inode, client))
                .or_default()
                .insert(id.get());
        }
        // Held replicas of an older generation stay held (the grace sweep deletes them).
        if let Some(found) = self.unclaimed.remove(&id.get()) {
            for (node, (r, since)) in found {
                if self.add_replica(&node, id, r.generation, r.len) == ReplicaVerdict::Stale {
                    self.unclaimed
                        .entry(id.get())
                        .or_default()
                        .insert(node, (r, since));
                }
            }
        }
    }

    /// The block is (now) in `inode`'s block list at `generation` with `len` bytes. Returns replicas that
    /// became stale (node, their generation) to delete.
    pub fn commit(
        &mut self,
        id: BlockId,
        generation: u64,
        len: u64,
        inode: InodeId,
        replication: u32,
    ) -> Vec<(DatanodeId, u64)> {
        let b = self.blocks.entry(id.get()).or_insert_with(|| BlockInfo {
            inode,
            generation,
            len,
            replication,
            pending: None,
            writing: false,
            pipeline: Vec::new(),
            recovered_by: None,
            replicas: BTreeMap::new(),
        });
        let old = b.pending.take().map(|c| (b.inode, c));
        b.inode = inode;
        b.writing = false;
        b.len = len;
        b.replication = replication;
        let mut stale = Self::advance(b, generation);
        if let Some(old) = old {
            self.unindex_pending(id, old);
        }
        stale.extend(self.claim(id));
        stale
    }

    /// Attaches the unclaimed replicas of a block that just became known. Returns those of an
    /// older generation (stale: to delete).
    fn claim(&mut self, id: BlockId) -> Vec<(DatanodeId, u64)> {
        let Some(found) = self.unclaimed.remove(&id.get()) else {
            return Vec::new();
        };
        let mut stale = Vec::new();
        for (node, (r, _)) in found {
            if self.add_replica(&node, id, r.generation, r.len) == ReplicaVerdict::Stale {
                stale.push((node, r.generation));
            }
        }
        stale
    }

    /// Unclaimed replicas first reported at least `grace` before `now`, taken out of the map:
    /// (node, block, generation) to delete.
    pub fn expire_unclaimed(
        &mut self,
        now: Instant,
        grace: Duration,
    ) -> Vec<(DatanodeId, BlockId, u64)> {
        let mut out = Vec::new();
        self.unclaimed.retain(|block, nodes| {
            nodes.retain(|node, (r, since)| {
                let expired = now.saturating_duration_since(*since) >= grace;
                if expired {
                    out.push((node.clone(), BlockId(*block), r.generation));
                }
                !expired
            });
            !nodes.is_empty()
        });
        out
    }

    /// How many unclaimed replicas are held.
    pub fn unclaimed_count(&self) -> usize {
        self.unclaimed.values().map(BTreeMap::len).sum()
    }

    /// Sets a newer generation (pipeline recovery, lease recovery). Returns stale replicas to delete.
    pub fn set_generation(&mut self, id: BlockId, generation: u64) -> Vec<(DatanodeId, u64)> {
        match self.blocks.get_mut(&id.get()) {
            Some(b) => Self::advance(b, generation),
            None => Vec::new(),
        }
    }

    fn advance(b: &mut BlockInfo, generation: u64) -> Vec<(DatanodeId, u64)> {
        if generation > b.generation {
            b.generation = generation;
        }
        let stale: Vec<(DatanodeId, u64)> = b
            .replicas
            .iter()
            .filter(|(_, r)| r.generation < b.generation)
            .map(|(n, r)| (n.clone(), r.generation))
            .collect();
        for (n, _) in &stale {
            b.replicas.remove(n);
        }
        stale
    }

    /// Marks a committed block as being written again (lease recovery of a restarted namenode's open file).
    pub fn set_writing(&mut self, id: BlockId, writing: bool) {
        if let Some(b) = self.blocks.get_mut(&id.get()) {
            b.writing = writing;
        }
    }

    /// Updates the pipeline of a block being written (pipeline recovery replaced a node).
    pub fn set_pipeline(&mut self, id: BlockId, pipeline: Vec<DatanodeId>) {
        if let Some(b) = self.blocks.get_mut(&id.get()) {
            b.pipeline = pipeline;
            b.recovered_by = None;
        }
    }

    /// Records the pipeline recovery request that produced the block's current generation (see
    /// [`BlockInfo::recovered_by`]); call after [`BlockMap::set_pipeline`].
    pub fn set_recovered_by(&mut self, id: BlockId, request: Vec<u8>) {
        if let Some(b) = self.blocks.get_mut(&id.get()) {
            b.recovered_by = Some(request);
        }
    }

    /// Sets the expected replication of every block of a file (setrep).
    pub fn set_replication(&mut self, id: BlockId, replication: u32) {
        if let Some(b) = self.blocks.get_mut(&id.get()) {
            b.replication = replication;
        }
    }

    /// Forgets a block (freed by the namespace). Returns its info so every replica can be deleted.
    pub fn remove(&mut self, id: BlockId) -> Option<BlockInfo> {
        self.deleting.remove(&id.get());
        let b = self.blocks.remove(&id.get())?;
        if self.freed.insert(id.get()) {
            self.freed_order.push_back(id.get());
            if self.freed_order.len() > FREED_REMEMBERED {
                if let Some(old) = self.freed_order.pop_front() {
                    self.freed.remove(&old);
                }
            }
        }
        for n in b.replicas.keys() {
            if let Some(s) = self.by_node.get_mut(n) {
                s.remove(&id.get());
            }
        }
        if let Some(client) = &b.pending {
            self.unindex_pending(id, (b.inode, client.clone()));
        }
        Some(b)
    }

    fn unindex_pending(&mut self, id: BlockId, key: (InodeId, String)) {
        if let Some(set) = self.pending.get_mut(&key) {
            set.remove(&id.get());
            if set.is_empty() {
                self.pending.remove(&key);
            }
        }
    }

    /// Allocated, uncommitted blocks of `files`, whatever client allocated them (the files were
    /// deleted while being written).
    pub fn pending_of_files(&self, files: &HashSet<InodeId>) -> Vec<BlockId> {
        self.pending
            .iter()
            .filter(|((inode, _), _)| files.contains(inode))
            .flat_map(|(_, ids)| ids.iter().map(|id| BlockId(*id)))
            .collect()
    }

    /// Blocks allocated for `client` on `inode` that never made it into the file.
    pub fn pending_of(&self, inode: InodeId, client: &str) -> Vec<BlockId> {
        self.pending
            .get(&(inode, client.to_string()))
            .map(|set| set.iter().map(|id| BlockId(*id)).collect())
            .unwrap_or_default()
    }

    /// A datanode reports holding a finalized replica.
    pub fn add_replica(
        &mut self,
        node: &DatanodeId,
        id: BlockId,
        generation: u64,
        len: u64,
    ) -> ReplicaVerdict {
        if self.deleting.get(&id.get()).and_then(|m| m.get(node)) == Some(&generation) {
            return ReplicaVerdict::Deleting;
        }
        let Some(b) = self.blocks.get_mut(&id.get()) else {
            if self.freed.contains(&id.get()) {
                return ReplicaVerdict::Freed;
            }
            let replica = Replica {
                generation,
                len,
                corrupt: false,
            };
            let held = self.unclaimed.entry(id.get()).or_default();
            match held.get_mut(node) {
                // Re-reported: keep the time it was first seen, so the grace period runs out.
                Some((r, _)) => *r = replica,
                None => {
                    held.insert(node.clone(), (replica, Instant::now()));
                }
            }
            return ReplicaVerdict::Unclaimed;
        };
        if generation < b.generation {
            // An older replica we still track on this node is replaced by nothing: forget it too.
            if b.replicas
                .get(node)
                .is_some_and(|r| r.generation == generation)
            {
                b.replicas.remove(node);
                if let Some(s) = self.by_node.get_mut(node) {
                    s.remove(&id.get());
                }
            }
            return ReplicaVerdict::Stale;
        }
        let prev = b.replicas.insert(
            node.clone(),
            Replica {
                generation,
                len,
                corrupt: false,
            },
        );
        // A corrupt mark sticks until the replica is deleted or rewritten at a new generation.
        if let Some(p) = prev {
            if p.corrupt && p.generation == generation {
                if let Some(r) = b.replicas.get_mut(node) {
                    r.corrupt = true;
                }
            }
        }
        self.by_node
            .entry(node.clone())
            .or_default()
            .insert(id.get());
        ReplicaVerdict::Accepted
    }

    /// A replica is gone (deleted, or the node reported it missing).
    pub fn remove_replica(&mut self, node: &DatanodeId, id: BlockId) {
        if let Some(b) = self.blocks.get_mut(&id.get()) {
            b.replicas.remove(node);
        }
        if let Some(s) = self.by_node.get_mut(node) {
            s.remove(&id.get());
        }
    }

    /// The replicas on `node` held corrupt, at their block's current generation.
    pub fn corrupt_on(&self, node: &DatanodeId) -> Vec<(BlockId, u64)> {
        let Some(ids) = self.by_node.get(node) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| {
                let b = self.blocks.get(id)?;
                let r = b.replicas.get(node)?;
                (r.corrupt && r.generation == b.generation).then_some((BlockId(*id), r.generation))
            })
            .collect()
    }

    /// The node checked a replica held corrupt and found it good (e.g. restored by hand, or a
    /// reader's report was wrong): it counts again. Returns whether a mark was dropped.
    pub fn clear_corrupt(&mut self, node: &DatanodeId, id: BlockId, generation: u64) -> bool {
        let Some(r) = self
            .blocks
            .get_mut(&id.get())
            .and_then(|b| b.replicas.get_mut(node))
        else {
            return false;
        };
        let was = r.corrupt && r.generation == generation;
        if was {
            r.corrupt = false;
        }
        was
    }

    /// Marks a replica corrupt (it must have the block's current generation). Returns whether anything changed.
    pub fn mark_corrupt(&mut self, node: &DatanodeId, id: BlockId, generation: u64) -> bool {
        let Some(b) = self.blocks.get_mut(&id.get()) else {
            return false;
        };
        if generation != b.generation {
            return false;
        }
        match b.replicas.get_mut(node) {
            Some(r) if r.generation == generation && !r.corrupt => {
                r.corrupt = true;
                true
            }
            Some(_) => false,
            None => {
                // Not reported yet (e.g. found by a reader before the report): remember it as corrupt.
                b.replicas.insert(
                    node.clone(),
                    Replica {
                        generation,
                        len: b.len,
                        corrupt: true,
                    },
                );
                self.by_node
                    .entry(node.clone())
                    .or_default()
                    .insert(id.get());
                true
            }
        }
    }

    /// A delete command goes out for this replica: it stops counting now, and reports of it are
    /// answered with the delete again until the node confirms.
    pub fn mark_deleting(&mut self, node: &DatanodeId, id: BlockId, generation: u64) {
        self.deleting
            .entry(id.get())
            .or_default()
            .insert(node.clone(), generation);
        self.remove_replica(node, id);
    }

    /// Nodes with an unconfirmed delete of the block (not copy targets until it is gone).
    pub fn deleting_on(&self, id: BlockId) -> impl Iterator<Item = &DatanodeId> + '_ {
        self.deleting
            .get(&id.get())
            .into_iter()
            .flat_map(|m| m.keys())
    }

    /// The node confirmed deleting its replica (incremental report).
    pub fn deleted(&mut self, node: &DatanodeId, id: BlockId, generation: u64) {
        if let Some(m) = self.deleting.get_mut(&id.get()) {
            if m.get(node) == Some(&generation) {
                m.remove(node);
            }
            if m.is_empty() {
                self.deleting.remove(&id.get());
            }
        }
        let ours = self
            .blocks
            .get(&id.get())
            .and_then(|b| b.replicas.get(node))
            .is_some_and(|r| r.generation == generation);
        if ours {
            self.remove_replica(node, id);
        }
    }

    fn forget_unclaimed(&mut self, node: &DatanodeId, keep: impl Fn(u64, u64) -> bool) {
        self.unclaimed.retain(|block, m| {
            m.retain(|n, (r, _)| n != node || keep(*block, r.generation));
            !m.is_empty()
        });
    }

    fn forget_deleting(&mut self, node: &DatanodeId, keep: impl Fn(u64, u64) -> bool) {
        self.deleting.retain(|block, m| {
            m.retain(|n, g| n != node || keep(*block, *g));
            !m.is_empty()
        });
    }

    /// The node is dead: its replicas stop counting. Returns the blocks that lost a replica.
    pub fn remove_node(&mut self, node: &DatanodeId) -> Vec<BlockId> {
        self.forget_deleting(node, |_, _| false);
        self.forget_unclaimed(node, |_, _| false);
        let ids = self.by_node.remove(node).unwrap_or_default();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(b) = self.blocks.get_mut(&id) {
                b.replicas.remove(node);
            }
            out.push(BlockId(id));
        }
        out
    }

    /// A full block report: the node's replica set becomes exactly what it reports. Returns the
    /// replicas to delete (stale generations, deletes not confirmed yet) with the reason; replicas
    /// of unknown blocks are held as unclaimed.
    pub fn full_report(
        &mut self,
        node: &DatanodeId,
        replicas: impl IntoIterator<Item = (BlockId, u64, u64)>,
    ) -> Vec<(BlockId, u64, ReplicaVerdict)> {
        let mut seen: BTreeSet<u64> = BTreeSet::new();
        let mut delete = Vec::new();
        let replicas: Vec<(BlockId, u64, u64)> = replicas.into_iter().collect();
        // Deletes not in the report any more are done.
        let listed: HashSet<(u64, u64)> = replicas.iter().map(|(b, g, _)| (b.get(), *g)).collect();
        self.forget_deleting(node, |block, generation| {
            listed.contains(&(block, generation))
        });
        self.forget_unclaimed(node, |block, generation| {
            listed.contains(&(block, generation))
        });
        for (id, generation, len) in replicas {
            match self.add_replica(node, id, generation, len) {
                ReplicaVerdict::Accepted => {
                    seen.insert(id.get());
                }
                ReplicaVerdict::Unclaimed => {}
                v => delete.push((id, generation, v)),
            }
        }
        let before: Vec<u64> = self
            .by_node
            .get(node)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for id in before {
            if !seen.contains(&id) {
                self.remove_replica(node, BlockId(id));
            }
        }
        delete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(i: usize) -> DatanodeId {
        DatanodeId(format!("dn{i}"))
    }

    fn map_with(id: u64, generation: u64) -> BlockMap {
        let mut m = BlockMap::new();
        m.commit(BlockId(id), generation, 100, InodeId(2), 3);
        m
    }

    #[test]
    fn a_replica_of_a_freed_block_is_deleted_not_held() {
        let mut m = map_with(1, 5);
        assert!(m.remove(BlockId(1)).is_some());
        // Reported late, after its file was deleted: garbage, not an unclaimed replica.
        assert_eq!(
            m.add_replica(&dn(0), BlockId(1), 5, 100),
            ReplicaVerdict::Freed
        );
        assert_eq!(m.unclaimed_count(), 0);
        let del = m.full_report(&dn(1), [(BlockId(1), 5, 100)]);
        assert_eq!(del, vec![(BlockId(1), 5, ReplicaVerdict::Freed)]);
        // A block never known (allocated before a restart) is still held.
        assert_eq!(
            m.add_replica(&dn(0), BlockId(9), 1, 100),
            ReplicaVerdict::Unclaimed
        );
    }

    #[test]
    fn reports_accept_known_and_reject_unknown_or_stale() {
        let mut m = map_with(1, 5);
        assert_eq!(
            m.add_replica(&dn(0), BlockId(1), 5, 100),
            ReplicaVerdict::Accepted
        );
        assert_eq!(
            m.add_replica(&dn(1), BlockId(1), 4, 100),
            ReplicaVerdict::Stale
        );
        assert_eq!(
            m.add_replica(&dn(1), BlockId(2), 1, 100),
            ReplicaVerdict::Unclaimed
        );
        // A newer generation is kept but not counted.
        assert_eq!(
            m.add_replica(&dn(2), BlockId(1), 6, 100),
            ReplicaVerdict::Accepted
        );
        let b = m.get(BlockId(1)).unwrap();
        assert_eq!(b.valid_holders().cloned().collect::<Vec<_>>(), vec![dn(0)]);
        // Committing the newer generation makes dn0's replica stale and dn2's valid.
        let stale = m.commit(BlockId(1), 6, 100, InodeId(2), 3);
        assert_eq!(stale, vec![(dn(0), 5)]);
        let b = m.get(BlockId(1)).unwrap();
        assert_eq!(b.valid_holders().cloned().collect::<Vec<_>>(), vec![dn(2)]);
        assert_eq!(m.blocks_on(&dn(2)).collect::<Vec<_>>(), vec![BlockId(1)]);
    }

    #[test]
    fn a_replica_verified_good_loses_its_corrupt_mark() {
        let mut m = map_with(1, 5);
        m.add_replica(&dn(0), BlockId(1), 5, 100);
        m.add_replica(&dn(1), BlockId(1), 5, 100);
        assert!(m.mark_corrupt(&dn(0), BlockId(1), 5));
        // A full report does not clear it (the node may not know its replica is bad)...
        m.full_report(&dn(0), [(BlockId(1), 5, 100)]);
        assert_eq!(m.corrupt_on(&dn(0)), vec![(BlockId(1), 5)]);
        assert!(m.corrupt_on(&dn(1)).is_empty());
        // ...a check of an older generation does not either; the node's own check does.
        assert!(!m.clear_corrupt(&dn(0), BlockId(1), 4));
        assert!(m.clear_corrupt(&dn(0), BlockId(1), 5));
        assert!(m.corrupt_on(&dn(0)).is_empty());
        let b = m.get(BlockId(1)).unwrap();
        assert_eq!(b.valid_holders().count(), 2);
    }

    #[test]
    fn full_report_replaces_the_node_set() {
        let mut m = map_with(1, 1);
        m.commit(BlockId(2), 1, 100, InodeId(2), 3);
        m.add_replica(&dn(0), BlockId(1), 1, 100);
        m.add_replica(&dn(0), BlockId(2), 1, 100);
        let del = m.full_report(
            &dn(0),
            [
                (BlockId(2), 1, 100),
                (BlockId(9), 1, 10),
                (BlockId(1), 0, 100),
            ],
        );
        assert_eq!(del, vec![(BlockId(1), 0, ReplicaVerdict::Stale)]);
        assert_eq!(m.unclaimed_count(), 1, "block 9 is held, not deleted");
        assert_eq!(m.blocks_on(&dn(0)).collect::<Vec<_>>(), vec![BlockId(2)]);
        assert_eq!(m.get(BlockId(1)).unwrap().replicas.len(), 0);
    }

    #[test]
    fn corrupt_marks_stick_until_rewritten() {
        let mut m = map_with(1, 1);
        m.add_replica(&dn(0), BlockId(1), 1, 100);
        m.add_replica(&dn(1), BlockId(1), 1, 100);
        assert!(m.mark_corrupt(&dn(0), BlockId(1), 1));
        assert!(!m.mark_corrupt(&dn(0), BlockId(1), 1));
        assert!(
            !m.mark_corrupt(&dn(1), BlockId(1), 0),
            "wrong generation is ignored"
        );
        m.full_report(&dn(0), [(BlockId(1), 1, 100)]);
        let b = m.get(BlockId(1)).unwrap();
        assert_eq!(
            b.corrupt_holders().cloned().collect::<Vec<_>>(),
            vec![dn(0)]
        );
        assert_eq!(b.valid_holders().cloned().collect::<Vec<_>>(), vec![dn(1)]);
    }

    #[test]
    fn deleting_replicas_are_not_resurrected_by_reports() {
        let mut m = map_with(1, 1);
        m.add_replica(&dn(0), BlockId(1), 1, 100);
        m.mark_corrupt(&dn(0), BlockId(1), 1);
        m.mark_deleting(&dn(0), BlockId(1), 1);
        assert_eq!(m.get(BlockId(1)).unwrap().replicas.len(), 0);
        assert_eq!(
            m.deleting_on(BlockId(1)).cloned().collect::<Vec<_>>(),
            vec![dn(0)]
        );
        // Still listed: delete again, do not count it.
        let del = m.full_report(&dn(0), [(BlockId(1), 1, 100)]);
        assert_eq!(del, vec![(BlockId(1), 1, ReplicaVerdict::Deleting)]);
        assert_eq!(m.get(BlockId(1)).unwrap().replicas.len(), 0);
        // Gone from the next report: the delete is done and the node may hold the block again.
        assert!(m.full_report(&dn(0), []).is_empty());
        assert_eq!(m.deleting_on(BlockId(1)).count(), 0);
        assert_eq!(
            m.add_replica(&dn(0), BlockId(1), 1, 100),
            ReplicaVerdict::Accepted
        );
        // Incremental confirmation works too.
        m.mark_deleting(&dn(0), BlockId(1), 1);
        m.deleted(&dn(0), BlockId(1), 1);
        assert_eq!(m.deleting_on(BlockId(1)).count(), 0);
    }

    #[test]
    fn dead_node_and_removed_blocks_are_forgotten() {
        let mut m = map_with(1, 1);
        m.add_replica(&dn(0), BlockId(1), 1, 100);
        m.add_replica(&dn(1), BlockId(1), 1, 100);
        assert_eq!(m.remove_node(&dn(0)), vec![BlockId(1)]);
        assert_eq!(m.get(BlockId(1)).unwrap().replicas.len(), 1);
        let b = m.remove(BlockId(1)).unwrap();
        assert_eq!(b.replicas.keys().cloned().collect::<Vec<_>>(), vec![dn(1)]);
        assert_eq!(m.replica_count_on(&dn(1)), 0);
    }

    #[test]
    fn pending_blocks_are_known_to_reports() {
        let mut m = BlockMap::new();
        m.allocate(
            BlockId(7),
            3,
            InodeId(5),
            3,
            Some("c1".into()),
            vec![dn(0), dn(1)],
        );
        assert_eq!(
            m.add_replica(&dn(0), BlockId(7), 3, 10),
            ReplicaVerdict::Accepted
        );
        assert_eq!(m.pending_of(InodeId(5), "c1"), vec![BlockId(7)]);
        m.commit(BlockId(7), 3, 10, InodeId(5), 3);
        assert!(m.pending_of(InodeId(5), "c1").is_empty());
        // Re-allocated to another writer, then freed: the index follows.
        m.allocate(BlockId(8), 4, InodeId(5), 3, Some("c1".into()), vec![]);
        m.allocate(BlockId(8), 5, InodeId(5), 3, Some("c2".into()), vec![]);
        assert!(m.pending_of(InodeId(5), "c1").is_empty());
        assert_eq!(m.pending_of(InodeId(5), "c2"), vec![BlockId(8)]);
        m.remove(BlockId(8));
        assert!(m.pending_of(InodeId(5), "c2").is_empty());
    }

    #[test]
    fn unclaimed_replicas_join_their_block_when_it_is_committed() {
        // A restart forgot block 8's allocation; its replicas are reported before the writer's
        // commit: they are held, then counted once the commit makes the block known.
        let mut m = BlockMap::new();
        for i in 0..3 {
            assert_eq!(
                m.add_replica(&dn(i), BlockId(8), 4, 100),
                ReplicaVerdict::Unclaimed
            );
        }
        m.add_replica(&dn(3), BlockId(8), 3, 100);
        assert_eq!(m.unclaimed_count(), 4);
        let stale = m.commit(BlockId(8), 4, 100, InodeId(2), 3);
        assert_eq!(stale, vec![(dn(3), 3)], "the old generation is stale");
        let b = m.get(BlockId(8)).unwrap();
        assert_eq!(b.valid_holders().count(), 3);
        assert_eq!(m.unclaimed_count(), 0);
        assert_eq!(m.blocks_on(&dn(1)).collect::<Vec<_>>(), vec![BlockId(8)]);
    }

    #[test]
    fn unclaimed_replicas_expire_after_the_grace_period() {
        let mut m = BlockMap::new();
        m.add_replica(&dn(0), BlockId(9), 1, 10);
        m.full_report(&dn(1), [(BlockId(9), 1, 10), (BlockId(10), 2, 10)]);
        let t0 = Instant::now();
        let grace = Duration::from_secs(60);
        assert!(
            m.expire_unclaimed(t0, grace).is_empty(),
            "expired too early"
        );
        // A full report that no longer lists a replica drops it; a dead node's are forgotten.
        m.full_report(&dn(1), [(BlockId(9), 1, 10)]);
        assert_eq!(m.unclaimed_count(), 2);
        let mut gone = m.expire_unclaimed(t0 + grace + Duration::from_secs(1), grace);
        gone.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
        assert_eq!(gone, vec![(dn(0), BlockId(9), 1), (dn(1), BlockId(9), 1)]);
        assert_eq!(m.unclaimed_count(), 0);
        m.add_replica(&dn(2), BlockId(11), 1, 10);
        m.remove_node(&dn(2));
        assert_eq!(m.unclaimed_count(), 0);
    }
}
