//! The replication planner: reconciles where replicas are (block map) with where they should be (ring),
//! as a pure function producing commands per datanode. Repairs come first (fewest live replicas first,
//! corrupt replicas replaced before they are deleted), then trimming of extra replicas (ring owners
//! kept), then moves of misplaced replicas (rebalancing), within per-node, global and bandwidth limits.
//! Rebalancing never takes more than half of any limit, so an at-risk block always finds a slot.

use crate::block_map::{BlockInfo, BlockMap};
use crate::datanodes::{AdminState, Command, DatanodeRegistry};
use ringfs_proto::{BlockId, DatanodeId};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Why a copy was scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyKind {
    /// The block has fewer good replicas than wanted.
    Repair,
    /// The block is healthy but not on its ring owners (rebalancing, decommission is a repair).
    Move,
}

/// A copy scheduled and not yet reported done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCopy {
    pub block: BlockId,
    pub generation: u64,
    pub len: u64,
    pub source: DatanodeId,
    pub target: DatanodeId,
    pub kind: CopyKind,
    pub started: Instant,
    /// When the command reached the source (in a heartbeat reply).
    pub delivered: Option<Instant>,
}

/// How long a copy may take: the configured timeout plus 1 s per 8 MiB (a throttled copy of a big
/// block is slow, not lost).
pub fn copy_timeout(base: Duration, len: u64) -> Duration {
    base + Duration::from_secs(len >> 23)
}

/// How long a copy target that failed is avoided for the same block.
pub const FAILED_TARGET_PAUSE: Duration = Duration::from_secs(30);

/// Copies in flight, so the planner neither repeats them nor exceeds its limits, and targets that
/// recently failed a copy of a block, so it is not sent there again right away.
#[derive(Debug, Default)]
pub struct InFlight {
    copies: Vec<PendingCopy>,
    failed: HashMap<(BlockId, DatanodeId), Instant>,
}

impl InFlight {
    pub fn new() -> InFlight {
        InFlight::default()
    }

    pub fn add(&mut self, c: PendingCopy) {
        self.copies.push(c);
    }

    /// `target` reported the block: that copy is done.
    pub fn complete(&mut self, block: BlockId, target: &DatanodeId) -> bool {
        let before = self.copies.len();
        self.copies
            .retain(|c| !(c.block == block && &c.target == target));
        before != self.copies.len()
    }

    /// Gives up copies older than `timeout` (they are planned again, to another target). Returns how many.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> usize {
        let (gone, kept): (Vec<PendingCopy>, Vec<PendingCopy>) =
            self.copies.drain(..).partition(|c| {
                let since = c.delivered.unwrap_or(c.started);
                now.saturating_duration_since(since) >= copy_timeout(timeout, c.len)
            });
        self.copies = kept;
        for c in &gone {
            self.failed.insert((c.block, c.target.clone()), now);
        }
        self.failed
            .retain(|_, t| now.saturating_duration_since(*t) < FAILED_TARGET_PAUSE);
        gone.len()
    }

    /// The command for this copy went out to its source.
    pub fn mark_delivered(&mut self, block: BlockId, target: &DatanodeId, now: Instant) {
        for c in self
            .copies
            .iter_mut()
            .filter(|c| c.block == block && &c.target == target)
        {
            c.delivered.get_or_insert(now);
        }
    }

    /// The source reports no transfer running: copies it was given before `delivered_before` ended
    /// without their target reporting the block, so they failed. Returns them.
    pub fn source_idle(
        &mut self,
        source: &DatanodeId,
        delivered_before: Instant,
        now: Instant,
    ) -> Vec<PendingCopy> {
        let (failed, kept): (Vec<PendingCopy>, Vec<PendingCopy>) =
            self.copies.drain(..).partition(|c| {
                &c.source == source && c.delivered.is_some_and(|d| d <= delivered_before)
            });
        self.copies = kept;
        for c in &failed {
            self.failed.insert((c.block, c.target.clone()), now);
        }
        failed
    }

    /// Whether `target` failed a copy of `block` lately.
    pub fn failed_recently(&self, block: BlockId, target: &DatanodeId, now: Instant) -> bool {
        self.failed
            .get(&(block, target.clone()))
            .is_some_and(|t| now.saturating_duration_since(*t) < FAILED_TARGET_PAUSE)
    }

    /// Forgets copies from or to a node (it died).
    pub fn drop_node(&mut self, node: &DatanodeId) {
        self.copies
            .retain(|c| &c.source != node && &c.target != node);
    }

    /// Forgets copies of a block (it was deleted or rewritten).
    pub fn drop_block(&mut self, block: BlockId) {
        self.copies.retain(|c| c.block != block);
    }

    pub fn len(&self) -> usize {
        self.copies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PendingCopy> {
        self.copies.iter()
    }
}

/// How much the planner may start in one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Copies a node takes part in at once (as source or target).
    pub per_node: u32,
    /// Copies in flight cluster-wide.
    pub total: u32,
    /// Bytes of copies this round may start (`None` = unlimited).
    pub bytes: Option<u64>,
    /// Check placement and move misplaced replicas to their ring owners (the caller skips this while
    /// nothing changed since a round found every block in place).
    pub rebalance: bool,
}

/// What one planning round decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Commands to queue, per datanode, in priority order.
    pub commands: Vec<(DatanodeId, Command)>,
    /// The copies among them (to record as in flight).
    pub copies: Vec<PendingCopy>,
    /// Replicas being deleted (node, block, generation), to mark in the block map now.
    pub deletes: Vec<(DatanodeId, BlockId, u64)>,
    /// Decommissioning nodes whose every block now has its replicas elsewhere.
    pub decommissioned: Vec<DatanodeId>,
    /// Blocks with fewer good replicas than wanted that this round could not (fully) serve.
    pub backlog: usize,
    /// Misplaced blocks seen (when placement was checked), moved this round or not.
    pub misplaced: usize,
}

impl Plan {
    /// Deletes `node`'s replica of `block`: the command, and the mark for the block map.
    fn delete(&mut self, node: &DatanodeId, block: BlockId, generation: u64) {
        self.commands
            .push((node.clone(), Command::Delete { block, generation }));
        self.deletes.push((node.clone(), block, generation));
    }
}

/// The health of one block, as fsck reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockHealth {
    /// Good replicas: current generation, not corrupt, on a live in-service node.
    pub live: u32,
    pub expected: u32,
    /// Good replicas on decommissioning/decommissioned live nodes (readable, not counted).
    pub retiring: u32,
    /// Those of `retiring` on nodes still decommissioning: they stand in for the copies being
    /// made elsewhere, so a drain alone does not make a block under-replicated (HDFS's fsck
    /// likewise counts decommissioning replicas and stays HEALTHY during a decommission).
    pub draining: u32,
    pub corrupt_replicas: u32,
    /// No readable replica anywhere.
    pub missing: bool,
    pub under_replicated: bool,
    pub over_replicated: bool,
    /// Healthy count but not on the ring owners.
    pub misplaced: bool,
}

impl BlockHealth {
    /// Enough good replicas and none corrupt.
    pub fn is_healthy(&self) -> bool {
        self.live + self.draining >= self.expected && self.corrupt_replicas == 0
    }
}

/// Replicas of a block by role.
struct Roles {
    /// Good and counted (in-service live nodes).
    good: Vec<DatanodeId>,
    /// Good, live, but retiring (decommissioning or decommissioned).
    retiring: Vec<DatanodeId>,
    /// Corrupt replicas on live nodes.
    corrupt: Vec<DatanodeId>,
    /// Every node with any replica of the block (any generation, dead or alive).
    holders: HashSet<DatanodeId>,
}

fn roles_in(blocks: &BlockMap, id: BlockId, b: &BlockInfo, nodes: &DatanodeRegistry) -> Roles {
    let mut r = roles(b, nodes);
    r.holders.extend(blocks.deleting_on(id).cloned());
    r
}

fn roles(b: &BlockInfo, nodes: &DatanodeRegistry) -> Roles {
    let mut r = Roles {
        good: Vec::new(),
        retiring: Vec::new(),
        corrupt: Vec::new(),
        holders: HashSet::new(),
    };
    for (n, rep) in &b.replicas {
        r.holders.insert(n.clone());
        let Some(node) = nodes.get(n).filter(|d| d.alive) else {
            continue;
        };
        if rep.generation != b.generation {
            continue;
        }
        if rep.corrupt {
            r.corrupt.push(n.clone());
        } else if node.admin == AdminState::Normal {
            r.good.push(n.clone());
        } else {
            r.retiring.push(n.clone());
        }
    }
    r
}

/// Whether a block is settled enough to plan for: committed to a file and not being written.
fn plannable(b: &BlockInfo) -> bool {
    b.pending.is_none() && !b.writing
}

/// Classifies a block (for fsck and report). With `placement`, a block with the right number of good
/// replicas that are not its ring owners is misplaced.
pub fn health(
    id: BlockId,
    b: &BlockInfo,
    nodes: &DatanodeRegistry,
    placement: bool,
) -> BlockHealth {
    let r = roles(b, nodes);
    let expected = b.replication;
    let live = r.good.len() as u32;
    let draining = r
        .retiring
        .iter()
        .filter(|n| {
            nodes
                .get(n)
                .is_some_and(|d| d.admin == AdminState::Decommissioning)
        })
        .count() as u32;
    let mut h = BlockHealth {
        live,
        expected,
        retiring: r.retiring.len() as u32,
        draining,
        corrupt_replicas: r.corrupt.len() as u32,
        missing: r.good.is_empty() && r.retiring.is_empty(),
        under_replicated: live + draining < expected,
        over_replicated: live > expected,
        misplaced: false,
    };
    if placement && live == expected && nodes.writable_count() >= expected as usize {
        let owners = nodes.placement().owners(id, expected as usize);
        // Only an owner with room can take its replica: a block whose missing owner is full is
        // as well placed as it can be (the planner does not move it), not waiting for a move.
        h.misplaced = owners
            .iter()
            .any(|o| !r.good.contains(o) && nodes.has_room(o, b.len));
    }
    h
}

/// Parts a stream is counted in: a copy of a block of [`FULL_STREAM`] bytes or more takes them
/// all; a smaller block takes its share (at least one part). The stream limits are about disk and
/// network load, which a 100 KiB copy barely adds to: counted whole, small blocks were repaired a
/// handful at a time (about 5 a second after a node loss, one heartbeat per batch).
const STREAM_PARTS: u64 = 16;
const FULL_STREAM: u64 = 16 << 20;

/// What a copy of `len` bytes costs against the stream limits, in parts.
fn stream_parts(len: u64) -> u32 {
    len.saturating_mul(STREAM_PARTS)
        .div_ceil(FULL_STREAM)
        .clamp(1, STREAM_PARTS) as u32
}

/// Per-node and global stream accounting for one round, in parts of a stream ([`stream_parts`]).
struct Budget<'a> {
    limits: &'a Limits,
    per_node: HashMap<DatanodeId, u32>,
    moves_per_node: HashMap<DatanodeId, u32>,
    total: u32,
    moves: u32,
    bytes_left: Option<u64>,
}

impl<'a> Budget<'a> {
    fn new(limits: &'a Limits, in_flight: &InFlight) -> Budget<'a> {
        let mut b = Budget {
            limits,
            per_node: HashMap::new(),
            moves_per_node: HashMap::new(),
            total: 0,
            moves: 0,
            bytes_left: limits.bytes,
        };
        for c in in_flight.iter() {
            // In flight: their bytes were paid for when they were planned.
            b.count(c.kind, &c.source, &c.target, c.len, false);
        }
        b
    }

    fn count(
        &mut self,
        kind: CopyKind,
        source: &DatanodeId,
        target: &DatanodeId,
        len: u64,
        pay_bytes: bool,
    ) {
        let parts = stream_parts(len);
        for n in [source, target] {
            *self.per_node.entry(n.clone()).or_default() += parts;
            if kind == CopyKind::Move {
                *self.moves_per_node.entry(n.clone()).or_default() += parts;
            }
        }
        self.total += parts;
        if kind == CopyKind::Move {
            self.moves += parts;
        }
        if let Some(b) = self.bytes_left.as_mut().filter(|_| pay_bytes) {
            *b = b.saturating_sub(len);
        }
    }

    /// Moves may use at most half of every limit, so repairs always find room.
    fn node_free(&self, n: &DatanodeId, kind: CopyKind) -> bool {
        let limit = self.limits.per_node * STREAM_PARTS as u32;
        let used = self.per_node.get(n).copied().unwrap_or(0);
        match kind {
            CopyKind::Repair => used < limit,
            CopyKind::Move => {
                let moves = self.moves_per_node.get(n).copied().unwrap_or(0);
                used < limit && moves < (limit / 2).max(1)
            }
        }
    }

    fn global_free(&self, kind: CopyKind, len: u64) -> bool {
        let limit = self.limits.total * STREAM_PARTS as u32;
        let bytes_ok = self
            .bytes_left
            .is_none_or(|b| b > 0 && (b >= len || self.total == 0));
        let total_ok = match kind {
            CopyKind::Repair => self.total < limit,
            CopyKind::Move => self.total < limit && self.moves < (limit / 2).max(1),
        };
        bytes_ok && total_ok
    }

    fn load(&self, n: &DatanodeId) -> u32 {
        self.per_node.get(n).copied().unwrap_or(0)
    }
}

/// Plans one round. Pure: reads the block map, the registry (liveness, ring) and the copies in flight.
pub fn plan(
    blocks: &BlockMap,
    nodes: &DatanodeRegistry,
    in_flight: &InFlight,
    limits: &Limits,
    now: Instant,
) -> Plan {
    let mut plan = Plan::default();
    let mut budget = Budget::new(limits, in_flight);
    let mut inflight_targets: HashMap<BlockId, Vec<&DatanodeId>> = HashMap::new();
    for c in in_flight.iter() {
        inflight_targets.entry(c.block).or_default().push(&c.target);
    }

    // A node that has not sent its full report since it registered may hold anything: no copies to it.
    let reported = |n: &DatanodeId| nodes.get(n).is_some_and(|d| d.reported);

    // Classify every block.
    let mut under: Vec<(u32, BlockId)> = Vec::new();
    let mut settled: Vec<BlockId> = Vec::new();
    // Decommissioning nodes still holding a block that lacks replicas elsewhere.
    let mut draining: HashMap<DatanodeId, usize> = nodes
        .all()
        .filter(|n| n.alive && n.admin == AdminState::Decommissioning)
        .map(|n| (n.id.clone(), 0))
        .collect();
    for (id, b) in blocks.iter() {
        if !plannable(b) {
            continue;
        }
        let r = roles(b, nodes);
        let good = r.good.len() as u32;
        let flying = inflight_targets.get(&id).map_or(0, Vec::len) as u32;
        if good < b.replication {
            for n in &r.retiring {
                if let Some(c) = draining.get_mut(n) {
                    *c += 1;
                }
            }
        }
        if r.good.is_empty() && r.retiring.is_empty() {
            continue; // missing: nothing to copy from
        }
        if good + flying < b.replication {
            under.push((good, id));
        } else if flying == 0 {
            settled.push(id);
        }
    }
    under.sort();

    // 1. Repairs, fewest good replicas first.
    let writable: Vec<&DatanodeId> = nodes
        .all()
        .filter(|n| n.is_writable())
        .map(|n| &n.id)
        .collect();
    for (good, id) in &under {
        let Some(b) = blocks.get(*id) else { continue };
        if !budget.global_free(CopyKind::Repair, b.len) {
            plan.backlog += 1;
            continue;
        }
        let r = roles_in(blocks, *id, b, nodes);
        let flying: Vec<&DatanodeId> = inflight_targets.get(id).cloned().unwrap_or_default();
        let deficit = (b.replication as usize).saturating_sub(r.good.len() + flying.len());
        let at_risk = *good <= 1;
        // Eligible targets in ring preference order.
        let ordered = nodes
            .placement()
            .place_replicas(*id, writable.len(), &|n: &DatanodeId| {
                r.holders.contains(n)
                    || flying.contains(&n)
                    || !reported(n)
                    || in_flight.failed_recently(*id, n, now)
                    || !nodes.has_room(n, b.len)
            });
        // Too few nodes to copy to, and a node holding a corrupt replica is in the way (3 nodes,
        // R=3): delete the corrupt replica now, so a later round can copy a good one there. It
        // was waiting to be replaced first, but nothing else can replace it, and a corrupt copy
        // adds nothing (its bad chunks fail every read).
        if ordered.len() < deficit && !r.good.is_empty() {
            for n in r.corrupt.iter().filter(|n| writable.contains(n)) {
                plan.delete(n, *id, b.generation);
            }
        }
        let mut targets: Vec<DatanodeId> = Vec::new();
        for t in ordered.iter() {
            if targets.len() == deficit {
                break;
            }
            if budget.node_free(t, CopyKind::Repair) {
                targets.push(t.clone());
            } else if !at_risk && targets.len() < deficit {
                // Wait for the ring owner rather than placing the replica somewhere it must move from later.
                break;
            }
        }
        let mut served = 0;
        for t in targets {
            if !budget.global_free(CopyKind::Repair, b.len) {
                break;
            }
            // The least busy source, good replicas before retiring ones only on ties.
            let source = r
                .good
                .iter()
                .chain(r.retiring.iter())
                .filter(|s| budget.node_free(s, CopyKind::Repair))
                .min_by_key(|s| budget.load(s))
                .cloned();
            let Some(source) = source else { break };
            schedule(
                &mut plan,
                &mut budget,
                *id,
                b,
                source,
                t,
                CopyKind::Repair,
                now,
            );
            served += 1;
        }
        if served < deficit {
            plan.backlog += 1;
        }
    }

    // 2. Settled blocks: delete corrupt replicas once replaced, trim extras, move misplaced ones.
    settled.sort();
    let repairs_waiting = plan.backlog > 0;
    for id in settled {
        let Some(b) = blocks.get(id) else { continue };
        let r = roles_in(blocks, id, b, nodes);
        let expected = b.replication as usize;
        for n in &r.corrupt {
            plan.delete(n, id, b.generation);
        }
        let check_placement = limits.rebalance && !repairs_waiting;
        if r.good.len() <= expected && !check_placement {
            continue;
        }
        let owners = nodes.placement().owners(id, expected);
        if r.good.len() > expected {
            // Keep ring owners first, then the rest in id order.
            let mut keep: Vec<&DatanodeId> = owners.iter().filter(|o| r.good.contains(o)).collect();
            for n in &r.good {
                if keep.len() >= expected {
                    break;
                }
                if !keep.contains(&n) {
                    keep.push(n);
                }
            }
            for n in &r.good {
                if !keep.contains(&n) {
                    plan.delete(n, id, b.generation);
                }
            }
        } else if check_placement && owners.len() == expected {
            // Misplaced: copy to one missing owner; trimming removes the non-owner once it arrived.
            // An owner without room cannot take it; the block stays where it is meanwhile.
            let Some(target) = owners
                .iter()
                .find(|o| !r.holders.contains(*o) && nodes.has_room(o, b.len))
            else {
                continue;
            };
            plan.misplaced += 1;
            if !reported(target) || in_flight.failed_recently(id, target, now) {
                continue;
            }
            if !budget.global_free(CopyKind::Move, b.len)
                || !budget.node_free(target, CopyKind::Move)
            {
                continue;
            }
            let source = r
                .good
                .iter()
                .filter(|s| budget.node_free(s, CopyKind::Move))
                .min_by_key(|s| budget.load(s))
                .cloned();
            if let Some(source) = source {
                schedule(
                    &mut plan,
                    &mut budget,
                    id,
                    b,
                    source,
                    target.clone(),
                    CopyKind::Move,
                    now,
                );
            }
        }
    }

    plan.decommissioned = draining
        .into_iter()
        .filter(|(_, c)| *c == 0)
        .map(|(n, _)| n)
        .collect();
    plan.decommissioned.sort();
    plan
}

#[allow(clippy::too_many_arguments)]
fn schedule(
    plan: &mut Plan,
    budget: &mut Budget<'_>,
    id: BlockId,
    b: &BlockInfo,
    source: DatanodeId,
    target: DatanodeId,
    kind: CopyKind,
    now: Instant,
) {
    budget.count(kind, &source, &target, b.len, true);
    plan.commands.push((
        source.clone(),
        Command::Replicate {
            block: id,
            generation: b.generation,
            len: b.len,
            targets: vec![target.clone()],
        },
    ));
    plan.copies.push(PendingCopy {
        block: id,
        generation: b.generation,
        len: b.len,
        source,
        target,
        kind,
        started: now,
        delivered: None,
    });
}

/// Counts per problem over all blocks, for report (and the status page, which shows it as is).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub blocks: u64,
    pub replicas: u64,
    pub healthy: u64,
    pub under_replicated: u64,
    pub over_replicated: u64,
    pub misplaced: u64,
    pub corrupt: u64,
    pub corrupt_replicas: u64,
    pub missing: u64,
}

impl Summary {
    pub fn add(&mut self, h: &BlockHealth) {
        self.blocks += 1;
        self.replicas += h.live as u64;
        self.healthy += h.is_healthy() as u64;
        self.under_replicated += (h.under_replicated && !h.missing) as u64;
        self.over_replicated += h.over_replicated as u64;
        self.misplaced += h.misplaced as u64;
        self.corrupt += (h.corrupt_replicas > 0) as u64;
        self.corrupt_replicas += h.corrupt_replicas as u64;
        self.missing += h.missing as u64;
    }
}

/// Health of every committed block (pending and written-to blocks are skipped).
pub fn summarize(blocks: &BlockMap, nodes: &DatanodeRegistry, placement: bool) -> Summary {
    let mut s = Summary::default();
    for (id, b) in blocks.iter() {
        if plannable(b) {
            s.add(&health(id, b, nodes, placement));
        }
    }
    s
}

/// Blocks of `node` that still lack their replicas elsewhere (decommission progress).
pub fn decommission_remaining(
    blocks: &BlockMap,
    nodes: &DatanodeRegistry,
    node: &DatanodeId,
) -> u64 {
    blocks
        .blocks_on(node)
        .filter_map(|id| blocks.get(id))
        .filter(|b| plannable(b) && (roles(b, nodes).good.len() as u32) < b.replication)
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of the test worlds: big enough for a copy to take a whole stream.
    const LEN: u64 = 64 << 20;
    use crate::datanodes::HeartbeatStats;
    use ringfs_proto::InodeId;

    fn dn(i: usize) -> DatanodeId {
        DatanodeId(format!("dn{i}"))
    }

    struct World {
        nodes: DatanodeRegistry,
        blocks: BlockMap,
        t0: Instant,
    }

    /// Heartbeat figures of an empty 100 GiB node.
    fn roomy() -> HeartbeatStats {
        HeartbeatStats {
            capacity: 100 << 30,
            used: 0,
            remaining: 100 << 30,
            ..HeartbeatStats::default()
        }
    }

    /// `world(n)` with blocks `ids` placed on their ring owners.
    fn world_with_owned_blocks(n: usize, ids: impl IntoIterator<Item = u64>) -> World {
        let mut w = world(n);
        for id in ids {
            w.owned_block(id);
        }
        w
    }

    fn world(n: usize) -> World {
        let mut w = World {
            nodes: DatanodeRegistry::new(),
            blocks: BlockMap::new(),
            t0: Instant::now(),
        };
        for i in 0..n {
            w.join(i);
        }
        w
    }

    impl World {
        /// A committed block with replicas on `on`.
        fn block(&mut self, id: u64, on: &[usize]) {
            self.blocks.commit(BlockId(id), 1, LEN, InodeId(2), 3);
            for i in on {
                self.blocks.add_replica(&dn(*i), BlockId(id), 1, LEN);
            }
        }

        /// A block placed on its ring owners.
        fn owned_block(&mut self, id: u64) -> Vec<DatanodeId> {
            let owners = self.nodes.placement().owners(BlockId(id), 3);
            self.blocks.commit(BlockId(id), 1, LEN, InodeId(2), 3);
            for o in &owners {
                self.blocks.add_replica(o, BlockId(id), 1, LEN);
            }
            owners
        }

        /// Node `i` registers (100 GiB) and sends its (empty) full report.
        fn join(&mut self, i: usize) {
            self.nodes.register(
                dn(i),
                format!("127.0.0.1:{}", 9000 + i),
                String::new(),
                100 << 30,
                0,
                self.t0,
            );
            self.nodes.mark_reported(&dn(i));
        }

        fn kill(&mut self, i: usize) {
            // Silence everyone else's clock by heartbeating them, then expire the victim.
            let later = self.t0 + Duration::from_secs(100);
            for n in 0..20 {
                if n != i {
                    self.nodes.heartbeat(&dn(n), roomy(), later, 0);
                }
            }
            assert_eq!(
                self.nodes.mark_dead(later, Duration::from_secs(50)),
                vec![dn(i)]
            );
            self.blocks.remove_node(&dn(i));
        }

        fn plan(&self, limits: Limits) -> Plan {
            plan(
                &self.blocks,
                &self.nodes,
                &InFlight::new(),
                &limits,
                self.t0,
            )
        }
    }

    fn limits() -> Limits {
        Limits {
            per_node: 100,
            total: 1000,
            bytes: None,
            rebalance: true,
        }
    }

    fn copies_of(p: &Plan) -> Vec<(u64, DatanodeId, DatanodeId)> {
        p.copies
            .iter()
            .map(|c| (c.block.get(), c.source.clone(), c.target.clone()))
            .collect()
    }

    #[test]
    fn blocks_whose_new_owner_is_full_are_not_misplaced() {
        // A node joins with no room: it owns part of the ring, but nothing can move there, so
        // fsck must not show those blocks as misplaced forever, and the planner copies nothing.
        let mut w = world_with_owned_blocks(5, 1..=100);
        w.join(5);
        let full = HeartbeatStats {
            remaining: 100,
            ..roomy()
        };
        w.nodes.heartbeat(&dn(5), full, w.t0, 0);
        let s = summarize(&w.blocks, &w.nodes, true);
        assert_eq!((s.misplaced, s.healthy), (0, 100), "{s:?}");
        let p = w.plan(limits());
        assert!(p.copies.is_empty(), "{:?}", copies_of(&p));
        assert_eq!(p.misplaced, 0);
        // Room again: its share moves, and fsck counts what waits to move.
        w.nodes.heartbeat(&dn(5), roomy(), w.t0, 0);
        let p = w.plan(limits());
        let s = summarize(&w.blocks, &w.nodes, true);
        assert!(
            s.misplaced > 0 && s.misplaced as usize == p.copies.len(),
            "{s:?}"
        );
    }

    #[test]
    fn healthy_owned_blocks_need_nothing() {
        let w = world_with_owned_blocks(5, 1..50);
        assert_eq!(w.plan(limits()), Plan::default());
        let s = summarize(&w.blocks, &w.nodes, true);
        assert_eq!(
            (s.blocks, s.replicas, s.healthy, s.misplaced),
            (49, 147, 49, 0)
        );
    }

    #[test]
    fn at_risk_blocks_are_repaired_first() {
        let mut w = world(5);
        w.block(1, &[0, 1]); // two good replicas
        w.block(2, &[2]); // one: at risk
        w.block(3, &[0, 3]);
        // Only one copy may run: it must be block 2's.
        let p = w.plan(Limits {
            total: 1,
            ..limits()
        });
        assert_eq!(p.copies.len(), 1);
        assert_eq!(p.copies[0].block, BlockId(2));
        assert_eq!(p.copies[0].source, dn(2));
        assert_eq!(p.backlog, 3);
        // With room, block 2 gets two copies and the others one each, from a live replica to a non-holder.
        let p = w.plan(limits());
        let c = copies_of(&p);
        assert_eq!(c.iter().filter(|x| x.0 == 2).count(), 2);
        assert_eq!(c.iter().filter(|x| x.0 == 1).count(), 1);
        assert_eq!(c.iter().filter(|x| x.0 == 3).count(), 1);
        assert_eq!(c[0].0, 2, "priority order: at-risk first");
        for (b, s, t) in &c {
            let info = w.blocks.get(BlockId(*b)).unwrap();
            assert!(info.replicas.contains_key(s));
            assert!(!info.replicas.contains_key(t));
        }
        assert_eq!(p.backlog, 0);
    }

    #[test]
    fn dead_node_blocks_go_to_the_new_ring_owner() {
        let mut w = world(5);
        let mut owners = HashMap::new();
        for b in 1..100 {
            owners.insert(b, w.owned_block(b));
        }
        w.kill(4);
        let p = w.plan(limits());
        let expected: usize = owners.values().filter(|o| o.contains(&dn(4))).count();
        assert_eq!(p.copies.len(), expected);
        for c in &p.copies {
            let new_owners = w.nodes.placement().owners(c.block, 3);
            assert!(
                new_owners.contains(&c.target),
                "{c:?} not to an owner {new_owners:?}"
            );
            assert_ne!(c.target, dn(4));
        }
    }

    #[test]
    fn a_full_node_gets_no_repair_copies() {
        let mut w = world_with_owned_blocks(5, 1..100);
        let full = HeartbeatStats {
            remaining: LEN - 1,
            ..roomy()
        };
        w.kill(4);
        let later = w.t0 + Duration::from_secs(100);
        assert!(w.nodes.heartbeat(&dn(3), full, later, 0).is_some());
        let p = w.plan(limits());
        assert!(!p.copies.is_empty());
        assert!(
            p.copies.iter().all(|c| c.target != dn(3)),
            "copies to a node without room for the block: {:?}",
            p.copies
        );
    }

    #[test]
    fn corrupt_replica_replaced_then_deleted() {
        let mut w = world(4);
        let owners = w.owned_block(1);
        w.blocks.mark_corrupt(&owners[0], BlockId(1), 1);
        let p = w.plan(limits());
        assert_eq!(p.copies.len(), 1);
        assert!(
            p.deletes.is_empty(),
            "the corrupt replica stays until it is replaced"
        );
        assert_ne!(p.copies[0].source, owners[0]);
        // The new replica arrives: now the corrupt one goes.
        w.blocks
            .add_replica(&p.copies[0].target, BlockId(1), 1, LEN);
        let p = w.plan(limits());
        assert_eq!(p.deletes, vec![(owners[0].clone(), BlockId(1), 1)]);
        assert!(p.copies.is_empty());
        let h = health(
            BlockId(1),
            w.blocks.get(BlockId(1)).unwrap(),
            &w.nodes,
            false,
        );
        assert_eq!((h.live, h.corrupt_replicas, h.is_healthy()), (3, 1, false));
    }

    #[test]
    fn a_corrupt_replica_nothing_else_can_replace_is_deleted_to_make_room_for_a_copy() {
        // 3 nodes, R=3: the only node without a good replica is the corrupt one's.
        let mut w = world(3);
        let owners = w.owned_block(1);
        w.blocks.mark_corrupt(&owners[0], BlockId(1), 1);
        let p = w.plan(limits());
        assert!(p.copies.is_empty());
        assert_eq!(p.deletes, vec![(owners[0].clone(), BlockId(1), 1)]);
        // Once the delete is confirmed, the node gets a good copy.
        w.blocks.mark_deleting(&owners[0], BlockId(1), 1);
        w.blocks.deleted(&owners[0], BlockId(1), 1);
        let p = w.plan(limits());
        assert_eq!(copies_of(&p).len(), 1);
        assert_eq!(p.copies[0].target, owners[0]);
        assert!(p.deletes.is_empty());
    }

    #[test]
    fn over_replicated_trimmed_keeping_ring_owners() {
        let mut w = world(6);
        let owners = w.owned_block(1);
        let extra: Vec<usize> = (0..6)
            .filter(|i| !owners.contains(&dn(*i)))
            .take(2)
            .collect();
        for i in &extra {
            w.blocks.add_replica(&dn(*i), BlockId(1), 1, LEN);
        }
        let p = w.plan(limits());
        let mut deleted: Vec<DatanodeId> = p.deletes.iter().map(|d| d.0.clone()).collect();
        deleted.sort();
        assert_eq!(deleted, extra.iter().map(|i| dn(*i)).collect::<Vec<_>>());
        assert!(p.copies.is_empty());
    }

    #[test]
    fn new_node_gets_its_share_by_moves_and_moves_yield_to_repairs() {
        let mut w = world_with_owned_blocks(5, 1..=300);
        w.join(5);
        let p = w.plan(Limits {
            per_node: 1000,
            total: 1000,
            ..limits()
        });
        assert!(p
            .copies
            .iter()
            .all(|c| c.kind == CopyKind::Move && c.target == dn(5)));
        let ideal = 300.0 * 3.0 / 6.0;
        let moved = p.copies.len() as f64;
        assert!(
            moved > 0.0 && moved <= 1.25 * ideal,
            "moved {moved}, ideal {ideal}"
        );
        let s = summarize(&w.blocks, &w.nodes, true);
        assert_eq!(s.misplaced as usize, p.copies.len());
        // Moves never take more than half of a limit.
        let p = w.plan(Limits {
            per_node: 4,
            total: 10,
            ..limits()
        });
        assert!(p.copies.len() <= 2, "{}", p.copies.len());
        // With an at-risk block around, no moves at all until it is served.
        w.block(1000, &[0]);
        let p = w.plan(Limits {
            per_node: 1,
            total: 1,
            ..limits()
        });
        assert_eq!(copies_of(&p).len(), 1);
        assert_eq!(p.copies[0].block, BlockId(1000));
        assert_eq!(p.copies[0].kind, CopyKind::Repair);
    }

    #[test]
    fn small_blocks_take_a_share_of_a_stream() {
        // Limits count streams of 16 MiB: copies of 64 KiB blocks take a sixteenth each, so a
        // node loss full of small files is repaired many blocks at a time, not 2 per round.
        let mut w = world(5);
        for b in 1..=100 {
            w.blocks.commit(BlockId(b), 1, 64 << 10, InodeId(2), 3);
            w.blocks.add_replica(&dn(0), BlockId(b), 1, 64 << 10);
        }
        let l = Limits {
            per_node: 2,
            total: 100,
            bytes: None,
            rebalance: true,
        };
        let p = plan(&w.blocks, &w.nodes, &InFlight::new(), &l, w.t0);
        assert_eq!(
            p.copies.len(),
            32,
            "dn0, the only source: 2 streams of 16 parts"
        );
        assert_eq!(
            (stream_parts(0), stream_parts(1 << 20), stream_parts(LEN)),
            (1, 1, 16)
        );
        assert_eq!(stream_parts((1 << 20) + 1), 2);
    }

    #[test]
    fn in_flight_copies_are_not_repeated_and_limits_hold() {
        let mut w = world(5);
        for b in 1..=20 {
            w.block(b, &[0]);
        }
        let l = Limits {
            per_node: 2,
            total: 100,
            bytes: None,
            rebalance: true,
        };
        let p = plan(&w.blocks, &w.nodes, &InFlight::new(), &l, w.t0);
        // dn0 is the only source: at most 2 copies at once.
        assert_eq!(p.copies.len(), 2);
        let mut inf = InFlight::new();
        for c in p.copies {
            inf.add(c);
        }
        let p = plan(&w.blocks, &w.nodes, &inf, &l, w.t0);
        assert!(p.copies.is_empty());
        // (5 s, and 1 s per 8 MiB of block.)
        assert_eq!(
            inf.expire(w.t0 + Duration::from_secs(14), Duration::from_secs(5)),
            2
        );
        // A byte budget limits the round too.
        let p = plan(
            &w.blocks,
            &w.nodes,
            &InFlight::new(),
            &Limits {
                per_node: 100,
                bytes: Some(2 * LEN + LEN / 2),
                ..l
            },
            w.t0,
        );
        assert_eq!(p.copies.len(), 2);
    }

    #[test]
    fn failed_copies_are_detected_and_their_target_avoided() {
        let mut w = world(5);
        w.block(1, &[0, 1]);
        let p = w.plan(limits());
        assert_eq!(p.copies.len(), 1);
        let first = p.copies[0].clone();
        let mut inf = InFlight::new();
        inf.add(first.clone());
        let t1 = w.t0 + Duration::from_secs(1);
        // Not delivered yet: an idle source says nothing about it.
        assert!(inf.source_idle(&first.source, t1, t1).is_empty());
        inf.mark_delivered(first.block, &first.target, w.t0);
        assert_eq!(
            inf.source_idle(&first.source, t1, t1),
            vec![PendingCopy {
                delivered: Some(w.t0),
                ..first.clone()
            }]
        );
        assert!(inf.is_empty());
        assert!(inf.failed_recently(first.block, &first.target, t1));
        // Planned again, elsewhere.
        let p = plan(&w.blocks, &w.nodes, &inf, &limits(), t1);
        assert_eq!(p.copies.len(), 1);
        assert_ne!(p.copies[0].target, first.target);
        assert!(!inf.failed_recently(first.block, &first.target, t1 + FAILED_TARGET_PAUSE));
    }

    #[test]
    fn missing_blocks_are_reported_not_planned() {
        let mut w = world(3);
        w.block(1, &[0]);
        w.kill(0);
        let p = w.plan(limits());
        assert!(p.copies.is_empty());
        let s = summarize(&w.blocks, &w.nodes, false);
        assert_eq!((s.missing, s.under_replicated), (1, 0));
    }

    #[test]
    fn safe_mode_waits_for_the_threshold_and_the_extension() {
        let t0 = Instant::now();
        let mut s = SafeMode::new(true, 0.9, Duration::from_secs(2));
        assert!(!s.update(8, 10, t0));
        assert!(s.is_on());
        assert!(!s.update(9, 10, t0 + Duration::from_secs(1)));
        assert!(s.is_on());
        assert!(s.update(10, 10, t0 + Duration::from_secs(3)));
        assert!(!s.is_on());
        assert!(!SafeMode::new(false, 0.9, Duration::ZERO).is_on());
        let mut s = SafeMode::new(true, 0.9, Duration::ZERO);
        assert!(!s.give_up(false, Duration::ZERO, Instant::now()));
        assert!(!s.give_up(true, Duration::from_secs(60), Instant::now()));
        assert!(s.give_up(true, Duration::ZERO, Instant::now()));
        assert!(!s.is_on());
        let mut w = world(3);
        w.block(1, &[0]);
        w.block(2, &[]);
        assert_eq!(reported_share(&w.blocks, &w.nodes), (1, 2));
    }

    #[test]
    fn decommission_drains_then_finishes() {
        let mut w = world_with_owned_blocks(5, 1..=30);
        let victim = dn(0);
        let held: Vec<BlockId> = w.blocks.blocks_on(&victim).collect();
        assert!(!held.is_empty());
        w.nodes.decommission(&victim);
        let p = w.plan(limits());
        assert!(p.decommissioned.is_empty());
        assert_eq!(p.copies.len(), held.len());
        assert!(p.copies.iter().all(|c| c.target != victim));
        assert_eq!(
            decommission_remaining(&w.blocks, &w.nodes, &victim),
            held.len() as u64
        );
        // Status while draining: the victim's replicas still count, nothing is under-replicated.
        let s = summarize(&w.blocks, &w.nodes, false);
        assert_eq!((s.under_replicated, s.healthy), (0, 30), "{s:?}");
        for c in &p.copies {
            w.blocks.add_replica(&c.target, c.block, 1, LEN);
        }
        let p = w.plan(limits());
        assert_eq!(p.decommissioned, vec![victim.clone()]);
        assert!(p.deletes.is_empty(), "retiring replicas are not deleted");
        assert_eq!(decommission_remaining(&w.blocks, &w.nodes, &victim), 0);
    }
}

/// Safe mode after a start: no re-replication or deletion of "missing" replicas until enough blocks
/// have a reported replica (plus an extension for slow datanodes). Reads and writes work meanwhile.
#[derive(Clone, Debug)]
pub struct SafeMode {
    on: bool,
    threshold: f64,
    extension: Duration,
    /// When the threshold was first met.
    reached: Option<Instant>,
    started: Instant,
}

impl SafeMode {
    pub fn new(on: bool, threshold: f64, extension: Duration) -> SafeMode {
        SafeMode {
            on,
            threshold,
            extension,
            reached: None,
            started: Instant::now(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Ends safe mode even below the threshold once every live datanode has sent its full report and
    /// `wait` has passed since the start: the missing blocks are missing (a namenode stuck in safe mode
    /// would repair nothing). Returns true when safe mode just ended.
    pub fn give_up(&mut self, all_reported: bool, wait: Duration, now: Instant) -> bool {
        if self.on && all_reported && now.saturating_duration_since(self.started) >= wait {
            self.on = false;
            return true;
        }
        false
    }

    /// Re-evaluates with the current share of reported blocks. Returns true when safe mode just ended.
    pub fn update(&mut self, reported: u64, total: u64, now: Instant) -> bool {
        if !self.on {
            return false;
        }
        let share = if total == 0 {
            1.0
        } else {
            reported as f64 / total as f64
        };
        if share + 1e-12 < self.threshold {
            self.reached = None;
            return false;
        }
        let since = *self.reached.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.extension {
            self.on = false;
            return true;
        }
        false
    }
}

/// (blocks with at least one readable replica, blocks that need one) for safe mode. Empty blocks
/// and blocks being written do not count.
pub fn reported_share(blocks: &BlockMap, nodes: &DatanodeRegistry) -> (u64, u64) {
    let (mut reported, mut total) = (0, 0);
    for (_, b) in blocks.iter() {
        if !plannable(b) || b.len == 0 {
            continue;
        }
        total += 1;
        let r = roles(b, nodes);
        if !r.good.is_empty() || !r.retiring.is_empty() {
            reported += 1;
        }
    }
    (reported, total)
}
