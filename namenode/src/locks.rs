//! The cluster lock table: `flock` (whole file) and POSIX byte-range locks, owned by (client, owner),
//! with kernel-like range splitting and merging per owner and a monotonic fencing token per grant.
//! A client's locks go away when its lease expires.
//!
//! The table is part of the namespace's durable state: every inode whose locks changed is drained
//! with the namespace's changes ([`LockTable::drain`]) and logged in the same batch, so a lock
//! that was granted is still held after a namenode restart (a mount that took it keeps believing
//! it does; losing it would let another mount take it too).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

use crate::namespace::Mutation;

/// Which lock family (they do not conflict with each other, as on Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockKind {
    Flock,
    Posix,
}

/// Shared or exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockType {
    Read,
    Write,
}

/// Who holds a lock: the mount (client id) and the owner within it (open file or process).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LockOwner {
    pub client: String,
    pub owner: u64,
}

/// One granted lock. `end` is inclusive; `u64::MAX` = to EOF and beyond.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub owner: LockOwner,
    pub kind: LockKind,
    pub typ: LockType,
    pub start: u64,
    pub end: u64,
    pub pid: u32,
    pub token: u64,
}

/// A lock in the way of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub typ: LockType,
    pub start: u64,
    pub end: u64,
    pub pid: u32,
}

/// A lock request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockRequest {
    pub owner: LockOwner,
    pub kind: LockKind,
    /// `None` = unlock.
    pub typ: Option<LockType>,
    pub start: u64,
    pub end: u64,
    pub pid: u32,
}

/// The outcome of [`LockTable::lock`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockOutcome {
    /// Granted (or unlocked) with this fencing token.
    Granted(u64),
    /// Refused: someone else's lock conflicts.
    Conflict(Conflict),
}

/// Locks by inode.
#[derive(Debug, Default)]
pub struct LockTable {
    by_inode: HashMap<u64, Vec<Lock>>,
    /// Last fencing token handed out (monotonic across restarts: see [`LockTable::load`]).
    last_token: u64,
    /// Inodes whose locks changed since the last drain.
    dirty: BTreeSet<u64>,
}

fn overlaps(a_start: u64, a_end: u64, b_start: u64, b_end: u64) -> bool {
    a_start <= b_end && b_start <= a_end
}

impl LockTable {
    pub fn new() -> LockTable {
        LockTable::default()
    }

    /// The table as logged (the locks of each inode), after a restart. Fencing tokens go on above
    /// every loaded one and above `token_floor` (the caller passes the wall clock in microseconds:
    /// tokens of locks released before the restart are not stored, and no namenode hands out a
    /// token per microsecond on average, so new ones stay above every token seen before).
    pub fn load(rows: impl IntoIterator<Item = (u64, Vec<Lock>)>, token_floor: u64) -> LockTable {
        let by_inode: HashMap<u64, Vec<Lock>> =
            rows.into_iter().filter(|(_, l)| !l.is_empty()).collect();
        let last_token = by_inode
            .values()
            .flatten()
            .map(|l| l.token)
            .max()
            .unwrap_or(0)
            .max(token_floor);
        LockTable {
            by_inode,
            last_token,
            dirty: BTreeSet::new(),
        }
    }

    /// Appends the row changes since the last drain: the current locks of every inode whose
    /// locks changed.
    pub fn drain(&mut self, out: &mut Vec<Mutation>) {
        for inode in std::mem::take(&mut self.dirty) {
            out.push(match self.by_inode.get(&inode) {
                Some(locks) => Mutation::PutLocks {
                    inode,
                    locks: locks.clone(),
                },
                None => Mutation::DeleteLocks(inode),
            });
        }
    }

    /// Number of locks held (all kinds, all inodes).
    pub fn len(&self) -> usize {
        self.by_inode.values().map(Vec::len).sum()
    }

    /// No lock is held.
    pub fn is_empty(&self) -> bool {
        self.by_inode.is_empty()
    }

    /// Clients holding at least one lock.
    pub fn holders(&self) -> BTreeSet<String> {
        self.by_inode
            .values()
            .flatten()
            .map(|l| l.owner.client.clone())
            .collect()
    }

    /// The first lock of another owner that conflicts with `req` (a read lock conflicts with writes,
    /// a write lock with everything).
    pub fn test(&self, inode: u64, req: &LockRequest) -> Option<Conflict> {
        let typ = req.typ?;
        let (start, end) = self.range_of(req);
        self.by_inode.get(&inode)?.iter().find_map(|l| {
            let conflicts = l.kind == req.kind
                && l.owner != req.owner
                && overlaps(l.start, l.end, start, end)
                && (typ == LockType::Write || l.typ == LockType::Write);
            conflicts.then_some(Conflict {
                typ: l.typ,
                start: l.start,
                end: l.end,
                pid: l.pid,
            })
        })
    }

    fn range_of(&self, req: &LockRequest) -> (u64, u64) {
        match req.kind {
            LockKind::Flock => (0, u64::MAX),
            LockKind::Posix => (req.start, req.end.max(req.start)),
        }
    }

    /// Takes, converts or releases a lock (non-blocking: a conflict refuses it and changes nothing).
    pub fn lock(&mut self, inode: u64, req: &LockRequest) -> LockOutcome {
        if let Some(c) = self.test(inode, req) {
            return LockOutcome::Conflict(c);
        }
        let (start, end) = self.range_of(req);
        let locks = self.by_inode.entry(inode).or_default();
        // A grant always changes the list (a new token at least); an unlock only when it cuts.
        let mut changed = req.typ.is_some();
        // Cut [start, end] out of this owner's locks of the same kind (splitting where needed).
        let mut kept: Vec<Lock> = Vec::with_capacity(locks.len() + 2);
        for l in locks.drain(..) {
            if l.owner != req.owner || l.kind != req.kind || !overlaps(l.start, l.end, start, end) {
                kept.push(l);
                continue;
            }
            changed = true;
            if l.start < start {
                kept.push(Lock {
                    end: start - 1,
                    ..l.clone()
                });
            }
            if l.end > end {
                kept.push(Lock {
                    start: end + 1,
                    ..l
                });
            }
        }
        let token = match req.typ {
            None => self.last_token,
            Some(typ) => {
                self.last_token += 1;
                let mut new = Lock {
                    owner: req.owner.clone(),
                    kind: req.kind,
                    typ,
                    start,
                    end,
                    pid: req.pid,
                    token: self.last_token,
                };
                // Merge with this owner's adjacent locks of the same type, like the kernel.
                kept.retain(|l| {
                    let adjacent = l.owner == new.owner
                        && l.kind == new.kind
                        && l.typ == new.typ
                        && (l.end.checked_add(1) == Some(new.start)
                            || new.end.checked_add(1) == Some(l.start));
                    if adjacent {
                        new.start = new.start.min(l.start);
                        new.end = new.end.max(l.end);
                    }
                    !adjacent
                });
                kept.push(new);
                self.last_token
            }
        };
        kept.sort_by_key(|l| (l.start, l.end));
        if changed {
            self.dirty.insert(inode);
        }
        if kept.is_empty() {
            self.by_inode.remove(&inode);
        } else {
            *locks = kept;
        }
        LockOutcome::Granted(token)
    }

    /// Drops every lock of `client` (its lease expired). Returns how many were dropped.
    pub fn release_client(&mut self, client: &str) -> usize {
        let mut n = 0;
        let dirty = &mut self.dirty;
        self.by_inode.retain(|inode, locks| {
            let before = locks.len();
            locks.retain(|l| l.owner.client != client);
            if locks.len() != before {
                n += before - locks.len();
                dirty.insert(*inode);
            }
            !locks.is_empty()
        });
        n
    }

    /// Drops every lock on an inode (it was deleted).
    pub fn release_inode(&mut self, inode: u64) {
        if self.by_inode.remove(&inode).is_some() {
            self.dirty.insert(inode);
        }
    }

    /// The locks on an inode, sorted by range.
    pub fn locks_on(&self, inode: u64) -> &[Lock] {
        self.by_inode.get(&inode).map_or(&[], Vec::as_slice)
    }

    /// Whether `client` holds any lock (its lease must then be kept alive by renewals).
    pub fn holds_any(&self, client: &str) -> bool {
        self.by_inode
            .values()
            .flatten()
            .any(|l| l.owner.client == client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(c: &str, o: u64) -> LockOwner {
        LockOwner {
            client: c.into(),
            owner: o,
        }
    }

    fn posix(o: &LockOwner, typ: Option<LockType>, start: u64, end: u64) -> LockRequest {
        LockRequest {
            owner: o.clone(),
            kind: LockKind::Posix,
            typ,
            start,
            end,
            pid: 42,
        }
    }

    fn flock(o: &LockOwner, typ: Option<LockType>) -> LockRequest {
        LockRequest {
            owner: o.clone(),
            kind: LockKind::Flock,
            typ,
            start: 0,
            end: 0,
            pid: 7,
        }
    }

    fn ranges(t: &LockTable, inode: u64) -> Vec<(u64, u64, LockType)> {
        t.locks_on(inode)
            .iter()
            .map(|l| (l.start, l.end, l.typ))
            .collect()
    }

    fn drained(t: &mut LockTable) -> Vec<Mutation> {
        let mut out = Vec::new();
        t.drain(&mut out);
        out
    }

    #[test]
    fn only_changes_are_drained_and_a_loaded_table_keeps_locks_and_raises_tokens() {
        let (a, b) = (owner("m1", 1), owner("m2", 1));
        let mut t = LockTable::new();
        let LockOutcome::Granted(first) = t.lock(1, &flock(&a, Some(LockType::Write))) else {
            panic!("free lock refused")
        };
        t.lock(2, &posix(&b, Some(LockType::Read), 0, 9));
        assert_eq!(
            drained(&mut t),
            vec![
                Mutation::PutLocks {
                    inode: 1,
                    locks: t.locks_on(1).to_vec()
                },
                Mutation::PutLocks {
                    inode: 2,
                    locks: t.locks_on(2).to_vec()
                },
            ]
        );
        // A refusal, a test and an unlock of nothing change nothing.
        assert!(matches!(
            t.lock(1, &flock(&b, Some(LockType::Write))),
            LockOutcome::Conflict(_)
        ));
        assert!(t.test(1, &flock(&b, Some(LockType::Read))).is_some());
        t.lock(3, &posix(&a, None, 0, 9));
        assert_eq!(drained(&mut t), vec![]);

        let rows: Vec<(u64, Vec<Lock>)> =
            vec![(1, t.locks_on(1).to_vec()), (2, t.locks_on(2).to_vec())];
        let mut loaded = LockTable::load(rows.clone(), 0);
        assert_eq!(
            loaded.holders().into_iter().collect::<Vec<_>>(),
            vec!["m1", "m2"]
        );
        assert!(
            matches!(
                loaded.lock(1, &flock(&b, Some(LockType::Write))),
                LockOutcome::Conflict(_)
            ),
            "a loaded lock still excludes"
        );
        let LockOutcome::Granted(next) = loaded.lock(4, &flock(&b, Some(LockType::Write))) else {
            panic!("free lock refused")
        };
        assert!(
            next > first && next > 2,
            "tokens go on above the loaded ones: {next}"
        );
        let floor = 1_000_000;
        let LockOutcome::Granted(next) =
            LockTable::load(rows, floor).lock(5, &flock(&a, Some(LockType::Read)))
        else {
            panic!("free lock refused")
        };
        assert!(next > floor, "tokens go on above the floor: {next}");

        // Releasing a client drains its inodes: emptied ones as deleted.
        assert_eq!(loaded.release_client("m2"), 2);
        assert_eq!(
            drained(&mut loaded),
            vec![Mutation::DeleteLocks(2), Mutation::DeleteLocks(4)]
        );
    }

    #[test]
    fn readers_share_writers_exclude() {
        let (a, b) = (owner("m1", 1), owner("m2", 1));
        let mut t = LockTable::new();
        assert!(matches!(
            t.lock(1, &posix(&a, Some(LockType::Read), 0, 99)),
            LockOutcome::Granted(_)
        ));
        assert!(matches!(
            t.lock(1, &posix(&b, Some(LockType::Read), 50, 149)),
            LockOutcome::Granted(_)
        ));
        let refused = t.lock(1, &posix(&b, Some(LockType::Write), 90, 95));
        assert_eq!(
            refused,
            LockOutcome::Conflict(Conflict {
                typ: LockType::Read,
                start: 0,
                end: 99,
                pid: 42
            })
        );
        // Not overlapping: fine. Another inode: fine.
        assert!(matches!(
            t.lock(1, &posix(&b, Some(LockType::Write), 200, 300)),
            LockOutcome::Granted(_)
        ));
        assert!(matches!(
            t.lock(2, &posix(&b, Some(LockType::Write), 0, u64::MAX)),
            LockOutcome::Granted(_)
        ));
        // The same owner never conflicts with itself; test reports nothing for it.
        assert_eq!(t.test(1, &posix(&a, Some(LockType::Write), 0, 10)), None);
        assert!(t
            .test(1, &posix(&a, Some(LockType::Write), 0, 60))
            .is_some());
    }

    #[test]
    fn ranges_split_and_merge_per_owner() {
        let a = owner("m1", 1);
        let mut t = LockTable::new();
        t.lock(1, &posix(&a, Some(LockType::Write), 0, 99));
        t.lock(1, &posix(&a, Some(LockType::Read), 40, 59));
        assert_eq!(
            ranges(&t, 1),
            vec![
                (0, 39, LockType::Write),
                (40, 59, LockType::Read),
                (60, 99, LockType::Write)
            ]
        );
        t.lock(1, &posix(&a, None, 50, 69));
        assert_eq!(
            ranges(&t, 1),
            vec![
                (0, 39, LockType::Write),
                (40, 49, LockType::Read),
                (70, 99, LockType::Write)
            ]
        );
        t.lock(1, &posix(&a, Some(LockType::Write), 40, 69));
        assert_eq!(ranges(&t, 1), vec![(0, 99, LockType::Write)]);
        t.lock(1, &posix(&a, None, 0, u64::MAX));
        assert!(ranges(&t, 1).is_empty());
    }

    #[test]
    fn flock_is_whole_file_and_separate_from_posix() {
        let (a, b) = (owner("m1", 1), owner("m1", 2));
        let mut t = LockTable::new();
        assert!(matches!(
            t.lock(1, &flock(&a, Some(LockType::Write))),
            LockOutcome::Granted(_)
        ));
        assert!(matches!(
            t.lock(1, &flock(&b, Some(LockType::Read))),
            LockOutcome::Conflict(_)
        ));
        assert!(matches!(
            t.lock(1, &posix(&b, Some(LockType::Write), 0, 10)),
            LockOutcome::Granted(_)
        ));
        // Downgrade then share.
        assert!(matches!(
            t.lock(1, &flock(&a, Some(LockType::Read))),
            LockOutcome::Granted(_)
        ));
        assert!(matches!(
            t.lock(1, &flock(&b, Some(LockType::Read))),
            LockOutcome::Granted(_)
        ));
        assert_eq!(
            t.locks_on(1)
                .iter()
                .filter(|l| l.kind == LockKind::Flock)
                .count(),
            2
        );
    }

    #[test]
    fn tokens_increase_and_client_release_frees_everything() {
        let (a, b) = (owner("m1", 1), owner("m2", 1));
        let mut t = LockTable::new();
        let LockOutcome::Granted(t1) = t.lock(1, &posix(&a, Some(LockType::Write), 0, 9)) else {
            panic!()
        };
        let LockOutcome::Granted(t2) = t.lock(3, &flock(&a, Some(LockType::Write))) else {
            panic!()
        };
        assert!(t2 > t1 && t1 >= 1);
        assert!(t.holds_any("m1"));
        assert!(matches!(
            t.lock(1, &posix(&b, Some(LockType::Write), 5, 5)),
            LockOutcome::Conflict(_)
        ));
        assert_eq!(t.release_client("m1"), 2);
        assert!(!t.holds_any("m1"));
        let LockOutcome::Granted(t3) = t.lock(1, &posix(&b, Some(LockType::Write), 5, 5)) else {
            panic!()
        };
        assert!(t3 > t2);
    }
}
