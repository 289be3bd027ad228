//! The datanode registry: who is registered, where, how full, alive or dead, and the commands waiting
//! for each node's next heartbeat. The ring of nodes that may receive new replicas lives here too, so
//! liveness and placement never disagree.

use crate::placement::Placement;
use ringfs_proto::{BlockId, DatanodeId};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Operator state of a datanode (independent of whether it is alive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// In service: takes new replicas.
    Normal,
    /// Being drained: serves reads and acts as a copy source, takes no new replicas.
    Decommissioning,
    /// Drained: holds nothing the cluster needs; may be stopped.
    Decommissioned,
}

/// A command for a datanode, delivered in a heartbeat reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Copy the replica of `block` at `generation` to `targets` (a write pipeline from the node).
    Replicate {
        block: BlockId,
        generation: u64,
        len: u64,
        targets: Vec<DatanodeId>,
    },
    /// Delete the replica of `block` at `generation`.
    Delete { block: BlockId, generation: u64 },
    /// Check the replica of `block` at `generation`, held corrupt here, against its hashes.
    Verify { block: BlockId, generation: u64 },
}

/// What the namenode knows about one datanode.
#[derive(Clone, Debug)]
pub struct Datanode {
    pub id: DatanodeId,
    /// host:port of its DataTransfer service.
    pub address: String,
    /// Declared rack ("" = none).
    pub rack: String,
    pub capacity: u64,
    pub used: u64,
    pub remaining: u64,
    /// Copies it reported being busy with at its last heartbeat.
    pub active_transfers: u32,
    /// Replicas it reported holding at its last heartbeat.
    pub reported_blocks: u64,
    pub last_heartbeat: Instant,
    /// Heartbeats arrive; a node without one for `dead_after` is dead.
    pub alive: bool,
    pub admin: AdminState,
    /// Whether a full block report arrived since it (re-)registered.
    pub reported: bool,
    /// Known from before a namenode restart and not registered since (`restore_known`).
    pub restored: bool,
    /// Commands for its next heartbeat reply.
    pub commands: VecDeque<Command>,
}

impl Datanode {
    /// The state name used by `report`: "live", "dead", "decommissioning", "decommissioned".
    pub fn state_name(&self) -> &'static str {
        match (self.alive, self.admin) {
            (_, AdminState::Decommissioned) => "decommissioned",
            (false, _) => "dead",
            (true, AdminState::Decommissioning) => "decommissioning",
            (true, AdminState::Normal) => "live",
        }
    }

    /// Alive and in service: may receive new replicas.
    pub fn is_writable(&self) -> bool {
        self.alive && self.admin == AdminState::Normal
    }
}

/// What a restarted namenode remembers of a registered datanode until it registers again.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KnownDatanode {
    pub address: String,
    #[serde(default)]
    pub rack: String,
    #[serde(default)]
    pub capacity: u64,
}

/// What a registration changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// First time this id is seen.
    pub new: bool,
    /// The node was dead (or unknown) and is alive again: its replica locations must be rebuilt from a report.
    pub revived: bool,
    /// Other ids registered with the same address, now dropped (the node was reinstalled).
    pub displaced: Vec<DatanodeId>,
}

/// Stats a heartbeat carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatStats {
    pub capacity: u64,
    pub used: u64,
    pub remaining: u64,
    pub active_transfers: u32,
    pub blocks: u64,
}

/// Every datanode ever registered since the namenode started, plus the placement ring of writable ones.
#[derive(Debug, Default)]
pub struct DatanodeRegistry {
    nodes: BTreeMap<DatanodeId, Datanode>,
    placement: Placement,
    /// Bumped whenever ring membership changes (the replication planner re-checks placements).
    ring_epoch: u64,
    /// Saved operator states of nodes that have not registered since the namenode started.
    restored_admin: BTreeMap<DatanodeId, AdminState>,
}

impl DatanodeRegistry {
    pub fn new() -> DatanodeRegistry {
        DatanodeRegistry::default()
    }

    /// Registers (or re-registers) a node. A known id may come back with a new address; an address
    /// held by another id moves to this one: the old id is dropped from the registry, alive or dead
    /// (a reinstalled node, its data dir wiped: what the old id held is gone, and listing it as a
    /// dead node forever would only confuse `report`; HDFS drops it the same way).
    pub fn register(
        &mut self,
        id: DatanodeId,
        address: String,
        rack: String,
        capacity: u64,
        used: u64,
        now: Instant,
    ) -> Registration {
        let displaced: Vec<DatanodeId> = self
            .nodes
            .values()
            .filter(|n| n.address == address && n.id != id)
            .map(|n| n.id.clone())
            .collect();
        for old in &displaced {
            self.set_dead(old);
            self.nodes.remove(old);
        }
        let remaining = capacity.saturating_sub(used);
        let (new, revived) = match self.nodes.get_mut(&id) {
            Some(n) => {
                let revived = !n.alive;
                // Restarted with another rack or capacity (quicker than `dead_after`): the ring
                // must place by the new ones, not keep the old position and weight.
                if (n.rack != rack || n.capacity != capacity) && self.placement.contains(&id) {
                    self.placement.remove(&id);
                    self.ring_epoch += 1;
                }
                n.address = address;
                n.rack = rack;
                n.capacity = capacity;
                n.used = used;
                n.remaining = remaining;
                n.last_heartbeat = now;
                n.alive = true;
                n.reported = false;
                n.restored = false;
                if revived {
                    n.commands.clear();
                }
                (false, revived)
            }
            None => {
                self.nodes.insert(
                    id.clone(),
                    Datanode {
                        id: id.clone(),
                        address,
                        rack,
                        capacity,
                        used,
                        remaining,
                        active_transfers: 0,
                        reported_blocks: 0,
                        last_heartbeat: now,
                        alive: true,
                        admin: self
                            .restored_admin
                            .remove(&id)
                            .unwrap_or(AdminState::Normal),
                        reported: false,
                        restored: false,
                        commands: VecDeque::new(),
                    },
                );
                (true, true)
            }
        };
        self.sync_ring(&id);
        Registration {
            new,
            revived,
            displaced,
        }
    }

    /// Room left on `id` as the node itself reports it (its disk's free space counts, which
    /// `register` cannot know from capacity and used alone).
    pub fn set_remaining(&mut self, id: &DatanodeId, remaining: u64) {
        if let Some(n) = self.nodes.get_mut(id) {
            n.remaining = remaining;
        }
    }

    /// Records a heartbeat and hands out the queued commands (at most `max`). `None` when the node is
    /// unknown or was declared dead: it must register again and send a full block report.
    pub fn heartbeat(
        &mut self,
        id: &DatanodeId,
        stats: HeartbeatStats,
        now: Instant,
        max: usize,
    ) -> Option<Vec<Command>> {
        let n = self.nodes.get_mut(id).filter(|n| n.alive)?;
        n.last_heartbeat = now;
        if stats.capacity > 0 {
            n.capacity = stats.capacity;
        }
        n.used = stats.used;
        n.remaining = stats.remaining;
        n.active_transfers = stats.active_transfers;
        n.reported_blocks = stats.blocks;
        let k = n.commands.len().min(max);
        Some(n.commands.drain(..k).collect())
    }

    /// Pushes the last heartbeat of every live node back by `by` (not past `now`): the namenode
    /// was paused that long, and no heartbeat could reach it meanwhile.
    pub fn extend_heartbeats(&mut self, by: Duration, now: Instant) {
        for n in self.nodes.values_mut().filter(|n| n.alive) {
            n.last_heartbeat = (n.last_heartbeat + by).min(now);
        }
    }

    /// Marks every node without a heartbeat for `dead_after` dead (it leaves the ring). Returns them.
    pub fn mark_dead(&mut self, now: Instant, dead_after: Duration) -> Vec<DatanodeId> {
        let expired: Vec<DatanodeId> = self
            .nodes
            .values()
            .filter(|n| n.alive && now.saturating_duration_since(n.last_heartbeat) >= dead_after)
            .map(|n| n.id.clone())
            .collect();
        for id in &expired {
            self.set_dead(id);
        }
        expired
    }

    fn set_dead(&mut self, id: &DatanodeId) {
        if let Some(n) = self.nodes.get_mut(id) {
            n.alive = false;
            n.reported = false;
            n.commands.clear();
        }
        self.sync_ring(id);
    }

    /// Starts draining a node: it leaves the ring and its replicas stop counting towards replication.
    pub fn decommission(&mut self, id: &DatanodeId) -> bool {
        let Some(n) = self.nodes.get_mut(id) else {
            return false;
        };
        if n.admin == AdminState::Normal {
            n.admin = AdminState::Decommissioning;
        }
        self.sync_ring(id);
        true
    }

    /// Puts a node back in service (undoes [`decommission`](Self::decommission)): it joins the
    /// ring again when alive. False when the node is unknown.
    pub fn recommission(&mut self, id: &DatanodeId) -> bool {
        self.restored_admin.remove(id);
        let Some(n) = self.nodes.get_mut(id) else {
            return false;
        };
        n.admin = AdminState::Normal;
        self.sync_ring(id);
        true
    }

    /// Operator states saved before a restart (`crate::admin`): each applies when its node
    /// registers (at once if it already has).
    pub fn restore_admin(&mut self, states: BTreeMap<DatanodeId, AdminState>) {
        for (id, state) in states {
            match self.nodes.get_mut(&id) {
                Some(n) => {
                    n.admin = state;
                    self.sync_ring(&id);
                }
                None => {
                    self.restored_admin.insert(id, state);
                }
            }
        }
    }

    /// Every node registered, with what `report` shows of a node that is down, to save
    /// (`crate::admin`): a restarted namenode lists the ones that do not come back as dead.
    pub fn known(&self) -> BTreeMap<DatanodeId, KnownDatanode> {
        self.nodes
            .values()
            .map(|n| {
                let k = KnownDatanode {
                    address: n.address.clone(),
                    rack: n.rack.clone(),
                    capacity: n.capacity,
                };
                (n.id.clone(), k)
            })
            .collect()
    }

    /// Nodes registered before a restart (`crate::admin`), as dead until they register again.
    /// Call before [`restore_admin`](Self::restore_admin).
    pub fn restore_known(&mut self, known: BTreeMap<DatanodeId, KnownDatanode>, now: Instant) {
        for (id, k) in known {
            self.nodes.entry(id.clone()).or_insert_with(|| Datanode {
                id,
                address: k.address,
                rack: k.rack,
                capacity: k.capacity,
                used: 0,
                remaining: 0,
                active_transfers: 0,
                reported_blocks: 0,
                last_heartbeat: now,
                alive: false,
                admin: AdminState::Normal,
                reported: false,
                restored: true,
                commands: VecDeque::new(),
            });
        }
    }

    /// Drops a node that is not alive from the registry for good (`ringfs admin forget`). False
    /// when the node is unknown or alive.
    pub fn forget(&mut self, id: &DatanodeId) -> bool {
        if self.nodes.get(id).is_none_or(|n| n.alive) {
            return false;
        }
        self.nodes.remove(id);
        self.restored_admin.remove(id);
        true
    }

    /// Every node's operator state other than in service, to save (`crate::admin`).
    pub fn admin_states(&self) -> BTreeMap<DatanodeId, AdminState> {
        let mut out = self.restored_admin.clone();
        out.extend(
            self.nodes
                .values()
                .filter(|n| n.admin != AdminState::Normal)
                .map(|n| (n.id.clone(), n.admin)),
        );
        out
    }

    /// A drained node is marked decommissioned.
    pub fn finish_decommission(&mut self, id: &DatanodeId) {
        if let Some(n) = self.nodes.get_mut(id) {
            n.admin = AdminState::Decommissioned;
        }
        self.sync_ring(id);
    }

    /// The node is in the ring iff it is writable.
    fn sync_ring(&mut self, id: &DatanodeId) {
        let Some(n) = self.nodes.get(id) else { return };
        let in_ring = self.placement.contains(id);
        if n.is_writable() && !in_ring {
            self.placement
                .insert_capacity(id.clone(), n.capacity, &n.rack);
            self.ring_epoch += 1;
        } else if !n.is_writable() && in_ring {
            self.placement.remove(id);
            self.ring_epoch += 1;
        }
    }

    pub fn mark_reported(&mut self, id: &DatanodeId) {
        if let Some(n) = self.nodes.get_mut(id) {
            n.reported = true;
        }
    }

    pub fn get(&self, id: &DatanodeId) -> Option<&Datanode> {
        self.nodes.get(id)
    }

    pub fn by_address(&self, address: &str) -> Option<&Datanode> {
        let mut found = self.nodes.values().filter(|n| n.address == address);
        let first = found.next()?;
        // Prefer the alive one when a reinstalled node left a dead entry with the same address.
        if first.alive {
            return Some(first);
        }
        found.find(|n| n.alive).or(Some(first))
    }

    pub fn all(&self) -> impl Iterator<Item = &Datanode> {
        self.nodes.values()
    }

    /// Alive (heartbeating) nodes: they serve reads, whatever their admin state.
    pub fn is_alive(&self, id: &DatanodeId) -> bool {
        self.nodes.get(id).is_some_and(|n| n.alive)
    }

    /// Alive and in service.
    pub fn is_writable(&self, id: &DatanodeId) -> bool {
        self.nodes.get(id).is_some_and(Datanode::is_writable)
    }

    /// Number of nodes that may receive new replicas.
    /// Whether `id` has room for a new replica of `bytes` by its last heartbeat. Blocks placed
    /// since are not counted (what a block will hold is known only when it is committed): the
    /// figure may be a heartbeat old, and a write that finds the disk full fails at the datanode
    /// and the writer recovers its pipeline.
    pub fn has_room(&self, id: &DatanodeId, bytes: u64) -> bool {
        self.nodes.get(id).is_some_and(|n| n.remaining >= bytes)
    }

    pub fn writable_count(&self) -> usize {
        self.placement.len()
    }

    /// Writable nodes with room for a new replica of `bytes` by their last heartbeat, leaving
    /// out those at the addresses in `failed`: the nodes a pipeline can be built from.
    pub fn writable_with_room(&self, bytes: u64, failed: &[String]) -> usize {
        self.nodes
            .values()
            .filter(|n| {
                self.placement.contains(&n.id)
                    && self.has_room(&n.id, bytes)
                    && !failed.contains(&n.address)
            })
            .count()
    }

    /// Live nodes that take no new replicas because an operator is retiring them
    /// (decommissioning or decommissioned).
    pub fn retiring_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.alive && n.admin != AdminState::Normal)
            .count()
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    pub fn ring_epoch(&self) -> u64 {
        self.ring_epoch
    }

    /// Queues a command for the node's next heartbeat (dropped if the node is not alive).
    pub fn queue(&mut self, id: &DatanodeId, cmd: Command) {
        if let Some(n) = self.nodes.get_mut(id).filter(|n| n.alive) {
            if !n.commands.contains(&cmd) {
                n.commands.push_back(cmd);
            }
        }
    }

    pub fn address(&self, id: &DatanodeId) -> Option<&str> {
        self.nodes.get(id).map(|n| n.address.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(i: usize) -> DatanodeId {
        DatanodeId(format!("dn{i}"))
    }

    #[test]
    fn nodes_known_before_a_restart_are_dead_until_they_register_and_can_be_forgotten() {
        let t0 = Instant::now();
        let mut before = DatanodeRegistry::new();
        for i in 0..2 {
            before.register(
                dn(i),
                format!("127.0.0.1:{}", 9000 + i),
                "r".into(),
                1 << 30,
                0,
                t0,
            );
        }
        let known = before.known();
        assert_eq!(known[&dn(1)].address, "127.0.0.1:9001");
        let mut r = DatanodeRegistry::new();
        r.restore_known(known.clone(), t0);
        r.restore_admin(BTreeMap::from([(dn(1), AdminState::Decommissioning)]));
        assert_eq!(r.all().count(), 2);
        assert!(r.all().all(|n| n.state_name() == "dead" && n.restored));
        assert_eq!(r.writable_count(), 0);
        assert_eq!(r.known(), known);
        let reg = r.register(dn(0), "127.0.0.1:9000".into(), "r".into(), 1 << 30, 0, t0);
        assert!(reg.revived && !reg.new);
        assert_eq!(r.writable_count(), 1);
        assert_eq!(r.get(&dn(0)).unwrap().state_name(), "live");
        assert!(!r.get(&dn(0)).unwrap().restored);
        // A live node is not forgotten; a dead one is, with its saved operator state.
        assert!(!r.forget(&dn(0)));
        assert_eq!(r.admin_states().len(), 1);
        assert!(r.forget(&dn(1)));
        assert!(!r.forget(&dn(1)));
        assert_eq!(r.all().count(), 1);
        assert!(r.admin_states().is_empty());
    }

    #[test]
    fn silent_nodes_die_and_leave_the_ring() {
        let t0 = Instant::now();
        let mut r = DatanodeRegistry::new();
        for i in 0..3 {
            let reg = r.register(
                dn(i),
                format!("127.0.0.1:{}", 9000 + i),
                String::new(),
                100 << 30,
                0,
                t0,
            );
            assert!(reg.new && reg.revived);
        }
        assert_eq!(r.writable_count(), 3);
        let epoch = r.ring_epoch();
        let t1 = t0 + Duration::from_secs(2);
        assert!(r
            .heartbeat(&dn(0), HeartbeatStats::default(), t1, 10)
            .is_some());
        assert!(r
            .heartbeat(&dn(1), HeartbeatStats::default(), t1, 10)
            .is_some());
        let dead = r.mark_dead(t0 + Duration::from_secs(3), Duration::from_secs(3));
        assert_eq!(dead, vec![dn(2)]);
        assert_eq!(r.writable_count(), 2);
        assert!(r.ring_epoch() > epoch);
        assert_eq!(r.get(&dn(2)).unwrap().state_name(), "dead");
        // A dead node's heartbeat asks it to register again.
        assert!(r
            .heartbeat(&dn(2), HeartbeatStats::default(), t1, 10)
            .is_none());
        assert!(r
            .heartbeat(&dn(9), HeartbeatStats::default(), t1, 10)
            .is_none());
        let reg = r.register(
            dn(2),
            "127.0.0.1:9100".into(),
            String::new(),
            100 << 30,
            0,
            t1,
        );
        assert!(!reg.new && reg.revived);
        assert_eq!(r.address(&dn(2)), Some("127.0.0.1:9100"));
        assert_eq!(r.writable_count(), 3);
    }

    #[test]
    fn a_node_back_with_another_rack_or_capacity_is_placed_by_them() {
        // Restarted within `dead_after` with new flags: the ring kept its old rack and weight.
        let t0 = Instant::now();
        let mut r = DatanodeRegistry::new();
        r.register(dn(0), "a:1".into(), "r1".into(), 1 << 30, 0, t0);
        let (weight, epoch) = (r.placement.weight(&dn(0)).unwrap(), r.ring_epoch());
        r.register(dn(0), "a:1".into(), "r2".into(), 100 << 30, 0, t0);
        assert!(r.placement.weight(&dn(0)).unwrap() > weight);
        assert_eq!(r.placement.rack(&dn(0)), Some("r2"));
        assert!(r.ring_epoch() > epoch);
        // The same flags again change nothing.
        let epoch = r.ring_epoch();
        r.register(dn(0), "a:1".into(), "r2".into(), 100 << 30, 0, t0);
        assert_eq!(r.ring_epoch(), epoch);
    }

    #[test]
    fn a_pause_of_the_namenode_pushes_the_deadlines_back() {
        let t0 = Instant::now();
        let mut r = DatanodeRegistry::new();
        r.register(dn(0), "a:1".into(), String::new(), 1 << 30, 0, t0);
        let after = t0 + Duration::from_secs(40);
        r.extend_heartbeats(Duration::from_secs(39), after);
        assert!(r.mark_dead(after, Duration::from_secs(10)).is_empty());
        assert_eq!(
            r.mark_dead(after + Duration::from_secs(10), Duration::from_secs(10)),
            vec![dn(0)]
        );
    }

    #[test]
    fn commands_are_delivered_once_in_order() {
        let t0 = Instant::now();
        let mut r = DatanodeRegistry::new();
        r.register(dn(0), "a:1".into(), String::new(), 1 << 30, 0, t0);
        let c1 = Command::Delete {
            block: BlockId(1),
            generation: 1,
        };
        let c2 = Command::Delete {
            block: BlockId(2),
            generation: 1,
        };
        r.queue(&dn(0), c1.clone());
        r.queue(&dn(0), c2.clone());
        r.queue(&dn(0), c1.clone());
        assert_eq!(
            r.heartbeat(&dn(0), HeartbeatStats::default(), t0, 1),
            Some(vec![c1])
        );
        assert_eq!(
            r.heartbeat(&dn(0), HeartbeatStats::default(), t0, 10),
            Some(vec![c2])
        );
        assert_eq!(
            r.heartbeat(&dn(0), HeartbeatStats::default(), t0, 10),
            Some(vec![])
        );
    }

    #[test]
    fn room_is_what_the_last_heartbeat_said() {
        let t0 = Instant::now();
        let mut r = DatanodeRegistry::new();
        r.register(dn(0), "a:1".into(), String::new(), 100, 40, t0);
        assert!(r.has_room(&dn(0), 60));
        assert!(!r.has_room(&dn(0), 61));
        let stats = HeartbeatStats {
            capacity: 100,
            used: 70,
            remaining: 30,
            ..HeartbeatStats::default()
        };
        r.heartbeat(&dn(0), stats, t0, 0);
        assert!(r.has_room(&dn(0), 30));
        assert!(!r.has_room(&dn(0), 31));
        assert!(!r.has_room(&dn(1), 0), "an unknown node has no room");
    }

    #[test]
    fn nodes_to_build_a_pipeline_from_have_room_and_did_not_fail() {
        let t0 = Instant::now();
        let mut r = DatanodeRegistry::new();
        r.register(dn(0), "a:1".into(), String::new(), 100, 40, t0);
        r.register(dn(1), "b:1".into(), String::new(), 100, 99, t0);
        r.register(dn(2), "c:1".into(), String::new(), 100, 0, t0);
        assert_eq!(r.writable_count(), 3);
        assert_eq!(r.writable_with_room(0, &[]), 3);
        assert_eq!(r.writable_with_room(10, &[]), 2, "b is full");
        assert_eq!(r.writable_with_room(10, &["c:1".to_string()]), 1);
        assert_eq!(r.writable_with_room(61, &[]), 1);
    }

    #[test]
    fn same_address_new_id_displaces_the_old_entry() {
        let t0 = Instant::now();
        let mut r = DatanodeRegistry::new();
        r.register(dn(0), "a:1".into(), String::new(), 1 << 30, 0, t0);
        let reg = r.register(dn(1), "a:1".into(), String::new(), 1 << 30, 0, t0);
        assert_eq!(reg.displaced, vec![dn(0)]);
        assert!(!r.is_alive(&dn(0)));
        assert!(r.get(&dn(0)).is_none(), "the replaced id is still listed");
        assert_eq!(r.by_address("a:1").unwrap().id, dn(1));
        assert_eq!(r.all().count(), 1);
        assert_eq!(r.writable_count(), 1);
        // Reinstalled after the old id was declared dead: dropped too.
        r.mark_dead(t0 + Duration::from_secs(60), Duration::from_secs(30));
        let reg = r.register(dn(2), "a:1".into(), String::new(), 1 << 30, 0, t0);
        assert_eq!(reg.displaced, vec![dn(1)]);
        assert_eq!(
            r.all().map(|n| n.id.clone()).collect::<Vec<_>>(),
            vec![dn(2)]
        );
        assert_eq!(r.writable_count(), 1);
    }

    #[test]
    fn restored_admin_states_apply_when_their_nodes_register() {
        let t0 = Instant::now();
        let mut before = DatanodeRegistry::new();
        for i in 0..3 {
            before.register(dn(i), format!("a:{i}"), String::new(), 1 << 30, 0, t0);
        }
        before.decommission(&dn(0));
        before.decommission(&dn(1));
        before.finish_decommission(&dn(1));
        let saved = before.admin_states();
        assert_eq!(
            saved,
            BTreeMap::from([
                (dn(0), AdminState::Decommissioning),
                (dn(1), AdminState::Decommissioned)
            ])
        );
        // A restarted namenode: states wait for their nodes' registrations.
        let mut r = DatanodeRegistry::new();
        r.restore_admin(saved.clone());
        assert_eq!(
            r.admin_states(),
            saved,
            "kept (and saved again) until they register"
        );
        for i in 0..3 {
            r.register(dn(i), format!("a:{i}"), String::new(), 1 << 30, 0, t0);
        }
        assert_eq!(r.get(&dn(0)).unwrap().state_name(), "decommissioning");
        assert_eq!(r.get(&dn(1)).unwrap().state_name(), "decommissioned");
        assert_eq!(r.get(&dn(2)).unwrap().state_name(), "live");
        assert_eq!(
            r.writable_count(),
            1,
            "only the node in service takes new replicas"
        );
        assert_eq!(r.admin_states(), saved);
    }

    #[test]
    fn recommissioning_puts_a_node_back_in_the_ring() {
        let t0 = Instant::now();
        let mut r = DatanodeRegistry::new();
        r.register(dn(0), "a:1".into(), String::new(), 1 << 30, 0, t0);
        assert!(r.decommission(&dn(0)));
        assert!(!r.placement().contains(&dn(0)));
        assert!(r.recommission(&dn(0)));
        assert!(r.placement().contains(&dn(0)));
        assert_eq!(r.get(&dn(0)).unwrap().admin, AdminState::Normal);
        assert!(r.admin_states().is_empty(), "nothing left to save");
        assert!(!r.recommission(&dn(1)));
    }

    #[test]
    fn decommissioning_leaves_the_ring_but_stays_alive() {
        let t0 = Instant::now();
        let mut r = DatanodeRegistry::new();
        r.register(dn(0), "a:1".into(), String::new(), 1 << 30, 0, t0);
        r.register(dn(1), "a:2".into(), String::new(), 1 << 30, 0, t0);
        assert!(r.decommission(&dn(0)));
        assert!(r.is_alive(&dn(0)) && !r.is_writable(&dn(0)));
        assert_eq!(r.get(&dn(0)).unwrap().state_name(), "decommissioning");
        assert_eq!(r.writable_count(), 1);
        r.finish_decommission(&dn(0));
        assert_eq!(r.get(&dn(0)).unwrap().state_name(), "decommissioned");
        // Re-registering does not put a decommissioned node back in service.
        r.register(dn(0), "a:1".into(), String::new(), 1 << 30, 0, t0);
        assert_eq!(r.writable_count(), 1);
    }
}
