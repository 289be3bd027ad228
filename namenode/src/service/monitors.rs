//! Background loops, each a named unit with `run(self, shutdown)`: the dead-node monitor, the lease
//! monitor (locks on the soft limit, file recovery on the hard limit), the storage monitor
//! (changes accepted again once the metadata disk works after a failure) and the replication
//! monitor (safe mode, then planning rounds whose commands ride on heartbeat replies).

use super::Shared;
use crate::datanodes::Command;
use crate::namespace::{Caller, EntrySel, RemoveMode, Timestamp, RECOVERY_HOLDER};
use crate::replication::{self, CopyKind, Limits};
use ringfs_proto::InodeId;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a "every block is on its ring owners" verdict is trusted without a change.
const RECHECK: Duration = Duration::from_secs(10);

/// Waits for `period` or shutdown; false on shutdown.
async fn tick(period: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(period) => true,
        _ = shutdown.changed() => false,
    }
}

/// A loop tick this much later than its period means the namenode itself did not run (stopped
/// with SIGSTOP, a frozen VM, a starved runtime): nobody's heartbeat or renewal could arrive.
const PAUSE_SLACK: Duration = Duration::from_secs(2);

/// Tells a monitor loop how long the namenode was paused since its last tick, beyond the tick's
/// period. Deadlines measured across the pause are pushed back by that much: after a 40 s stop
/// every datanode looked dead and every client's lease expired at once, though none of them was
/// silent (HDFS likewise skips its heartbeat check after a long pause).
struct PauseDetector {
    last: Instant,
    period: Duration,
}

impl PauseDetector {
    fn new(period: Duration) -> PauseDetector {
        PauseDetector {
            last: Instant::now(),
            period,
        }
    }

    /// The pause since the previous call, if there was one.
    fn paused(&mut self, now: Instant) -> Option<Duration> {
        let gap = now.saturating_duration_since(self.last);
        self.last = now;
        (gap > self.period + PAUSE_SLACK).then(|| gap - self.period)
    }
}

/// Declares datanodes dead after `dead_after` without a heartbeat: they leave the ring and their
/// replicas stop counting (the replication monitor then repairs).
pub struct DeadNodeMonitor {
    pub shared: Arc<Shared>,
}

impl DeadNodeMonitor {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let cfg = &self.shared.config;
        let period =
            (cfg.heartbeat_interval / 2).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut pause = PauseDetector::new(period);
        while tick(period, &mut shutdown).await {
            let now = Instant::now();
            let mut st = self.shared.lock();
            let st = &mut *st;
            if let Some(p) = pause.paused(now) {
                tracing::warn!(paused = ?p, "the namenode did not run for a while: datanode deadlines pushed back as much");
                st.nodes.extend_heartbeats(p, now);
            }
            for id in st.nodes.mark_dead(now, cfg.dead_after) {
                let lost = st.blocks.remove_node(&id);
                st.in_flight.drop_node(&id);
                tracing::warn!(datanode = %id, replicas = lost.len(), "datanode dead: no heartbeat for {}",
                    humantime::format_duration(cfg.dead_after));
            }
        }
    }
}

/// How often a namenode whose metadata storage failed tries it again.
const STORAGE_RETRY: Duration = Duration::from_secs(2);

/// After a storage failure (a full disk, an I/O error) tries the journal again every
/// [`STORAGE_RETRY`]: once the disk takes writes, changes are accepted again without a restart.
pub struct StorageMonitor {
    pub shared: Arc<Shared>,
}

impl StorageMonitor {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        while tick(STORAGE_RETRY, &mut shutdown).await {
            if self.shared.journal.failure().is_none() {
                continue;
            }
            let shared = self.shared.clone();
            // Reopening and replaying into the store is disk work.
            let _ = tokio::task::spawn_blocking(move || shared.recover_storage()).await;
        }
    }
}

/// Expires client leases: past the soft limit a client's locks are released; past the hard limit its
/// open files are recovered. Files stuck in recovery are retried.
pub struct LeaseMonitor {
    pub shared: Arc<Shared>,
}

impl LeaseMonitor {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let cfg = &self.shared.config;
        let period =
            (cfg.lease_soft_limit / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut pause = PauseDetector::new(period);
        let mut orphans = HashMap::new();
        while tick(period, &mut shutdown).await {
            let now = Instant::now();
            if let Some(p) = pause.paused(now) {
                tracing::warn!(paused = ?p, "the namenode did not run for a while: client leases pushed back as much");
                self.shared.lock().leases.extend(p, now);
                // Nobody could renew meanwhile either.
                for since in orphans.values_mut() {
                    *since = now;
                }
            }
            self.remove_orphaned_hidden_files(&mut orphans, now).await;
            // Locks of silent clients go, logged like any change (a restart must not bring them
            // back). A failed log leaves them for the next tick.
            let released = self
                .shared
                .mutate(|st, _| {
                    let expired = st
                        .leases
                        .expire(now, cfg.lease_soft_limit, cfg.lease_hard_limit);
                    for c in expired.soft.iter().chain(&expired.hard) {
                        let n = st.ns.locks_mut().release_client(c);
                        if n > 0 {
                            tracing::info!(client = %c, locks = n, "lease expired: locks released");
                        }
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = released {
                // Only after the journal failed (reported then, as an ERROR): nothing changes.
                tracing::debug!(error = %e, "cannot log the release of expired clients' locks");
            }
            let to_recover = {
                let st = self.shared.lock();
                // Recovery needs datanodes to have reported: wait for the end of safe mode.
                if st.safe_mode.is_on() {
                    continue;
                }
                let mut out = Vec::new();
                for (inode, holder) in st.ns.leases() {
                    let due = holder == RECOVERY_HOLDER
                        || st.leases.is_expired(&holder, now, cfg.lease_hard_limit);
                    let waiting = st.recovering.get(&inode).is_some_and(|t| *t > now);
                    if due && !waiting {
                        out.push((inode, holder));
                    }
                }
                out
            };
            for (inode, holder) in to_recover {
                tracing::info!(inode = inode.0, holder = %holder, "lease hard limit passed: recovering the file");
                super::recovery::spawn(self.shared.clone(), inode);
            }
        }
    }

    /// Removes the hidden names of open unlinked files (`.ringfs-open-<inode>-<mount>`) whose
    /// mount has not renewed its lease for the hard limit: a killed mount cannot remove them at
    /// their last close, and nothing lists them, so their space was held for good. `orphans`
    /// keeps when each was first seen without a live mount (a restarted namenode knows no lease
    /// yet: its live mounts renew within a second and are not taken for dead).
    async fn remove_orphaned_hidden_files(
        &self,
        orphans: &mut HashMap<(InodeId, String), Instant>,
        now: Instant,
    ) {
        let hard = self.shared.config.lease_hard_limit;
        let due: Vec<(InodeId, String)> = {
            let st = self.shared.lock();
            if st.ns.hidden_open_files().next().is_none() {
                // The usual case: nothing to look at, no client set to build under the lock.
                orphans.clear();
                return;
            }
            let live: HashSet<String> = st
                .leases
                .clients()
                .map(ringfs_proto::open_file_hidden_tag)
                .collect();
            let orphaned: HashSet<&(InodeId, String)> = st
                .ns
                .hidden_open_files()
                .filter(|(_, name)| {
                    ringfs_proto::open_file_hidden_owner(name).is_some_and(|t| !live.contains(t))
                })
                .collect();
            orphans.retain(|k, _| orphaned.contains(k));
            orphaned
                .into_iter()
                .filter(|&k| {
                    let since = *orphans.entry(k.clone()).or_insert(now);
                    now.saturating_duration_since(since) >= hard
                })
                .cloned()
                .collect()
        };
        if due.is_empty() {
            return;
        }
        let removed = self
            .shared
            .mutate(|st, after| {
                for (parent, name) in &due {
                    match st.ns.remove(
                        &Caller::root(),
                        EntrySel::Child(*parent, name),
                        RemoveMode::default(),
                        Timestamp::now(),
                    ) {
                        Ok(freed) => {
                            after.freed.extend(freed);
                            tracing::info!(parent = parent.0, %name,
                                "removed the hidden name of an open unlinked file: its mount is gone");
                        }
                        Err(e) => tracing::debug!(parent = parent.0, %name, error = %e,
                            "hidden name of a gone mount not removed"),
                    }
                }
                Ok(())
            })
            .await;
        match removed {
            Ok(()) => {
                for k in &due {
                    orphans.remove(k);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot log the removal of gone mounts' hidden names")
            }
        }
    }
}

/// Ends safe mode when enough blocks are reported, then plans replication rounds: repairs,
/// trimming, rebalancing and decommission progress, within the configured limits.
pub struct ReplicationMonitor {
    pub shared: Arc<Shared>,
}

impl ReplicationMonitor {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let cfg = &self.shared.config;
        let period = cfg
            .replication_interval
            .min(cfg.heartbeat_interval)
            .max(Duration::from_millis(20));
        // Bytes of copies the bandwidth limit allows now; negative is a debt: a copy larger than
        // the allowance may start when nothing else runs (blocks are up to 64 MiB), and its
        // excess is paid back before the next one (forgiven, the limit was passed 2.4 times; QA).
        let mut allowance: i64 = 0;
        let mut last = Instant::now();
        // Placement is checked (an O(blocks × ring) scan) only when something may have moved blocks
        // off their owners: the ring changed, repairs ran, or a while passed.
        let mut balanced: Option<(u64, Instant)> = None;
        while tick(period, &mut shutdown).await {
            let now = Instant::now();
            let mut guard = self.shared.lock();
            let st = &mut *guard;
            if st.safe_mode.is_on() {
                let (reported, total) = replication::reported_share(&st.blocks, &st.nodes);
                if st.safe_mode.update(reported, total, now) {
                    tracing::info!(reported, total, "leaving safe mode");
                }
                let alive: Vec<_> = st.nodes.all().filter(|n| n.alive).collect();
                let all_reported = !alive.is_empty() && alive.iter().all(|n| n.reported);
                let wait = cfg.dead_after * 2 + cfg.safe_mode_extension;
                if st.safe_mode.give_up(all_reported, wait, now) {
                    tracing::warn!(
                        reported,
                        total,
                        "leaving safe mode below the threshold: every live datanode \
                        has reported, the other blocks are missing"
                    );
                }
                if st.safe_mode.is_on() {
                    last = now;
                    continue;
                }
            }
            // Replicas of blocks nobody committed within the lease hard limit (after it, the
            // writer that might still commit them has lost its lease) are garbage.
            for (node, block, generation) in st.blocks.expire_unclaimed(now, cfg.lease_hard_limit) {
                tracing::info!(datanode = %node, %block, generation, "unclaimed replica expired: deleting");
                st.blocks.mark_deleting(&node, block, generation);
                st.nodes.queue(&node, Command::Delete { block, generation });
            }
            let expired = st.in_flight.expire(now, cfg.replication_timeout);
            if expired > 0 {
                tracing::warn!(
                    copies = expired,
                    "replication copies timed out; planning them again"
                );
            }
            let bytes = if cfg.replication_bandwidth == 0 {
                None
            } else {
                let dt = now.saturating_duration_since(last).as_secs_f64();
                let rate = i64::try_from(cfg.replication_bandwidth).unwrap_or(i64::MAX);
                let cap = rate.saturating_mul(2);
                allowance = allowance.saturating_add((rate as f64 * dt) as i64).min(cap);
                Some(u64::try_from(allowance).unwrap_or(0))
            };
            last = now;
            let epoch = st.nodes.ring_epoch();
            let settled = balanced
                .is_some_and(|(e, at)| e == epoch && now.saturating_duration_since(at) < RECHECK);
            let limits = Limits {
                per_node: cfg.replication_max_streams_per_node,
                total: cfg.replication_max_streams,
                bytes,
                rebalance: cfg.rebalance && !settled,
            };
            let plan = replication::plan(&st.blocks, &st.nodes, &st.in_flight, &limits, now);
            self.shared
                .repair_backlog
                .store(plan.backlog as u64, std::sync::atomic::Ordering::Relaxed);
            let repairs = plan.copies.iter().any(|c| c.kind == CopyKind::Repair);
            if repairs || plan.backlog > 0 {
                balanced = None;
            } else if limits.rebalance
                && plan.misplaced == 0
                && !st.in_flight.iter().any(|c| c.kind == CopyKind::Move)
            {
                balanced = Some((epoch, now));
            }
            let scheduled: u64 = plan.copies.iter().map(|c| c.len).sum();
            allowance = allowance.saturating_sub(i64::try_from(scheduled).unwrap_or(i64::MAX));
            if !plan.copies.is_empty() || !plan.deletes.is_empty() {
                tracing::info!(
                    copies = plan.copies.len(),
                    deletes = plan.deletes.len(),
                    backlog = plan.backlog,
                    in_flight = st.in_flight.len(),
                    "replication round"
                );
            }
            for (node, block, generation) in &plan.deletes {
                st.blocks.mark_deleting(node, *block, *generation);
            }
            for (node, cmd) in plan.commands {
                st.nodes.queue(&node, cmd);
            }
            for c in plan.copies {
                st.in_flight.add(c);
            }
            for id in &plan.decommissioned {
                st.nodes.finish_decommission(id);
                tracing::info!(datanode = %id, "decommissioned: every block has its replicas elsewhere");
            }
            drop(guard);
            if !plan.decommissioned.is_empty() {
                if let Err(e) = self.shared.save_admin_states() {
                    tracing::error!(error = %e, "cannot save the decommissioned state; a restart shows these nodes decommissioning again");
                }
            }
        }
    }
}
