//! Replica placement on a consistent-hash ring of live datanodes, virtual nodes weighted by capacity.
//!
//! The ring says where a block's replicas *should* be; the block map says where they *are*. The ring
//! hashes through `std::hash::Hash` (FNV-1a), which is not promised stable across compilers, so
//! placements are only ever used for new decisions; existing replica locations are stored, never recomputed.

use consistent_hash_ring::{Ring, RingBuilder};
use ringfs_proto::{BlockId, DatanodeId};
use std::collections::{BTreeMap, HashSet};

/// Virtual nodes per GiB of capacity.
pub const VNODES_PER_GIB: u64 = 8;
/// Fewest virtual nodes a datanode gets (balance is ±5 % from a few hundred up).
pub const MIN_VNODES: usize = 200;
/// Most virtual nodes a datanode gets (ring updates cost O(vnodes²)).
pub const MAX_VNODES: usize = 1000;

/// The number of virtual nodes for a datanode of `capacity` bytes: proportional to capacity between
/// 25 GiB and 125 GiB, clamped outside so every node is balanced and ring updates stay cheap.
pub fn vnodes_for_capacity(capacity: u64) -> usize {
    let v = (capacity >> 30).saturating_mul(VNODES_PER_GIB);
    (v.min(MAX_VNODES as u64) as usize).max(MIN_VNODES)
}

/// The ring of datanodes that may receive new replicas (live, not decommissioning).
#[derive(Clone)]
pub struct Placement {
    ring: Ring<DatanodeId>,
    /// Rack of every node in the ring ("" = undeclared, treated as one rack).
    racks: BTreeMap<DatanodeId, String>,
}

impl Default for Placement {
    fn default() -> Self {
        Placement::new()
    }
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placement")
            .field("nodes", &self.racks)
            .finish()
    }
}

impl Placement {
    pub fn new() -> Placement {
        Placement {
            ring: RingBuilder::default().vnodes(MIN_VNODES).build(),
            racks: BTreeMap::new(),
        }
    }

    /// Adds (or re-weights) a node with `vnodes` virtual nodes.
    pub fn insert(&mut self, node: DatanodeId, vnodes: usize, rack: &str) {
        self.ring.insert_weight(node.clone(), vnodes.max(1));
        self.racks.insert(node, rack.to_string());
    }

    /// Adds a node weighted by its capacity in bytes.
    pub fn insert_capacity(&mut self, node: DatanodeId, capacity: u64, rack: &str) {
        self.insert(node, vnodes_for_capacity(capacity), rack);
    }

    /// Takes a node out of the ring (dead, decommissioning); its share spreads to its neighbours.
    pub fn remove(&mut self, node: &DatanodeId) {
        if self.racks.remove(node).is_some() {
            self.ring.remove(node);
        }
    }

    pub fn contains(&self, node: &DatanodeId) -> bool {
        self.racks.contains_key(node)
    }

    /// Number of nodes in the ring.
    pub fn len(&self) -> usize {
        self.racks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.racks.is_empty()
    }

    /// The rack `node` is placed in, if it is in the ring.
    pub fn rack(&self, node: &DatanodeId) -> Option<&str> {
        self.racks.get(node).map(String::as_str)
    }

    /// Virtual nodes of `node`, if it is in the ring.
    pub fn weight(&self, node: &DatanodeId) -> Option<usize> {
        self.ring.weight(node)
    }

    /// The nodes in ring order for `block` (all of them, distinct, deterministic).
    pub fn candidates(&self, block: BlockId) -> impl Iterator<Item = &DatanodeId> + '_ {
        self.ring.replicas(block.get())
    }

    /// The first `r` distinct nodes from the block's ring position that are not `excluded`, preferring
    /// nodes on racks not used yet (when every node is on the same or no rack this is plain ring order).
    /// Returns fewer than `r` when the ring has fewer eligible nodes.
    pub fn place_replicas(
        &self,
        block: BlockId,
        r: usize,
        excluded: &dyn Fn(&DatanodeId) -> bool,
    ) -> Vec<DatanodeId> {
        let mut chosen: Vec<DatanodeId> = Vec::with_capacity(r);
        let mut skipped: Vec<&DatanodeId> = Vec::new();
        let mut racks_used: HashSet<&str> = HashSet::new();
        for node in self.ring.replicas(block.get()) {
            if chosen.len() == r {
                break;
            }
            if excluded(node) {
                continue;
            }
            let rack = self.racks.get(node).map(String::as_str).unwrap_or("");
            if racks_used.insert(rack) {
                chosen.push(node.clone());
            } else {
                skipped.push(node);
            }
        }
        for node in skipped {
            if chosen.len() == r {
                break;
            }
            chosen.push(node.clone());
        }
        chosen
    }

    /// The block's ring owners with nothing excluded: where its replicas should be.
    pub fn owners(&self, block: BlockId, r: usize) -> Vec<DatanodeId> {
        self.place_replicas(block, r, &|_| false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn dn(i: usize) -> DatanodeId {
        DatanodeId(format!("dn-{i}"))
    }

    fn ring(n: usize, vnodes: usize) -> Placement {
        let mut p = Placement::new();
        for i in 0..n {
            p.insert(dn(i), vnodes, "");
        }
        p
    }

    /// FNV-1a 64, the hash the ring crate uses through `std::hash::Hash`.
    fn fnv(bytes: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    }

    /// Brute-force reference: walk the ring's ranges linearly. Replica k starts at the k-times-rehashed
    /// key position and scans clockwise to the first node not chosen yet.
    fn reference(p: &Placement, block: u64, r: usize) -> Vec<DatanodeId> {
        let ranges: Vec<(u64, u64, DatanodeId)> = p
            .ring
            .resident_ranges()
            .map(|res| (*res.keys().start(), *res.keys().end(), res.node().clone()))
            .collect();
        let mut out: Vec<DatanodeId> = Vec::new();
        let mut h = fnv(&block.to_ne_bytes());
        while out.len() < r.min(p.len()) {
            let start = ranges
                .iter()
                .position(|(s, e, _)| *s <= h && h <= *e)
                .expect("ranges cover the key space");
            let node = (0..ranges.len())
                .map(|i| &ranges[(start + i) % ranges.len()].2)
                .find(|n| !out.contains(n))
                .expect("an unused node exists");
            out.push(node.clone());
            h = fnv(&h.to_ne_bytes());
        }
        out
    }

    #[test]
    fn matches_brute_force_reference() {
        let p = ring(7, 50);
        for b in 1..2000u64 {
            assert_eq!(p.owners(BlockId(b), 3), reference(&p, b, 3), "block {b}");
        }
    }

    #[test]
    fn deterministic_and_distinct() {
        let a = ring(5, 300);
        let b = ring(5, 300);
        for blk in 1..5000u64 {
            let x = a.owners(BlockId(blk), 3);
            assert_eq!(x, b.owners(BlockId(blk), 3));
            assert_eq!(x.len(), 3);
            let set: HashSet<_> = x.iter().collect();
            assert_eq!(set.len(), 3, "block {blk}: {x:?}");
        }
        // Fewer nodes than r: as many as there are.
        assert_eq!(ring(2, 300).owners(BlockId(9), 3).len(), 2);
        assert!(Placement::new().owners(BlockId(9), 3).is_empty());
    }

    #[test]
    fn balanced_within_ten_percent() {
        let p = ring(5, vnodes_for_capacity(100 << 30));
        let mut count: HashMap<DatanodeId, usize> = HashMap::new();
        let blocks = 10_000u64;
        for b in 1..=blocks {
            for n in p.owners(BlockId(b), 3) {
                *count.entry(n).or_default() += 1;
            }
        }
        let ideal = (blocks * 3) as f64 / 5.0;
        for (n, c) in &count {
            let dev = (*c as f64 - ideal).abs() / ideal;
            assert!(
                dev <= 0.10,
                "{n}: {c} replicas vs ideal {ideal} ({:.1} %)",
                dev * 100.0
            );
        }
    }

    #[test]
    fn adding_a_node_moves_close_to_the_ideal_share() {
        let (r, blocks) = (3usize, 10_000u64);
        let vn = vnodes_for_capacity(100 << 30);
        let before = ring(5, vn);
        let mut after = before.clone();
        after.insert(dn(5), vn, "");
        let (mut changed_blocks, mut moved_replicas) = (0usize, 0usize);
        for b in 1..=blocks {
            let old: HashSet<_> = before.owners(BlockId(b), r).into_iter().collect();
            let new = after.owners(BlockId(b), r);
            let moved = new.iter().filter(|n| !old.contains(*n)).count();
            if moved > 0 {
                changed_blocks += 1;
            }
            moved_replicas += moved;
            // Only the new node gains replicas.
            for n in new.iter().filter(|n| !old.contains(*n)) {
                assert_eq!(n, &dn(5), "block {b}: replica moved between old nodes");
            }
        }
        let n = 6.0;
        let ideal_share = r as f64 / n; // blocks that should gain the new node
        let block_share = changed_blocks as f64 / blocks as f64;
        let replica_share = moved_replicas as f64 / (blocks as f64 * r as f64);
        eprintln!(
            "ring 5 -> 6 nodes, R={r}, {blocks} blocks: {:.1} % of blocks changed (ideal {:.1} %), \
             {:.1} % of replicas moved (ideal {:.1} %)",
            100.0 * changed_blocks as f64 / blocks as f64,
            100.0 * r as f64 / 6.0,
            100.0 * replica_share,
            100.0 / 6.0
        );
        assert!(
            block_share <= 1.25 * ideal_share,
            "{block_share:.3} of blocks changed, ideal {ideal_share:.3}"
        );
        assert!(
            replica_share <= 1.25 / n,
            "{replica_share:.3} of replicas moved, ideal {:.3}",
            1.0 / n
        );
        assert!(
            replica_share >= 0.75 / n,
            "new node got too little: {replica_share:.3}"
        );
    }

    #[test]
    fn weights_follow_capacity() {
        let mut p = Placement::new();
        p.insert_capacity(dn(0), 50 << 30, "");
        p.insert_capacity(dn(1), 100 << 30, "");
        p.insert_capacity(dn(2), 50 << 30, "");
        assert_eq!(p.weight(&dn(1)), Some(2 * p.weight(&dn(0)).unwrap()));
        let mut count: HashMap<DatanodeId, usize> = HashMap::new();
        for b in 1..=20_000u64 {
            let o = p.owners(BlockId(b), 1);
            *count.entry(o[0].clone()).or_default() += 1;
        }
        let ratio = count[&dn(1)] as f64 / count[&dn(0)] as f64;
        assert!((1.7..=2.3).contains(&ratio), "big/small = {ratio:.2}");
        assert_eq!(vnodes_for_capacity(0), MIN_VNODES);
        assert_eq!(vnodes_for_capacity(1 << 50), MAX_VNODES);
    }

    #[test]
    fn prefers_distinct_racks_and_honours_exclusions() {
        let mut p = Placement::new();
        for i in 0..6 {
            p.insert(dn(i), 200, if i < 3 { "a" } else { "b" });
        }
        for b in 1..2000u64 {
            let o = p.owners(BlockId(b), 3);
            let racks: HashSet<_> = o.iter().map(|n| p.racks[n].clone()).collect();
            assert_eq!(racks.len(), 2, "block {b}: {o:?}");
            let ex = o[0].clone();
            let o2 = p.place_replicas(BlockId(b), 3, &|n| *n == ex);
            assert_eq!(o2.len(), 3);
            assert!(!o2.contains(&ex));
        }
        p.remove(&dn(0));
        assert!(!p.contains(&dn(0)));
        for b in 1..500u64 {
            assert!(!p.owners(BlockId(b), 3).contains(&dn(0)));
        }
    }
}
