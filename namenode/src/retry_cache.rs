//! The retry cache (as HDFS has): the non-idempotent calls (create, mkdir, mknod, symlink, link,
//! remove, rename, setxattr, removexattr) that were applied, by client id + call id, so that a call a client sends again
//! because the namenode died under it is answered as the first one was instead of running twice
//! (a second mkdir would fail with EEXIST, a second unlink with ENOENT).
//!
//! An entry is part of the namespace's state: it is recorded in the same journal batch as the change
//! it belongs to, so it is durable exactly when that change is and the store and log replay rebuild
//! it. Entries expire after [`EXPIRY`] (and the oldest go early beyond [`MAX_CALLS`]); each expiry is
//! a row deletion, so the store holds no more than the live entries.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::namespace::{InodeId, Mutation, Timestamp};

/// How long a call is remembered (HDFS's default too): clients send a call again within seconds.
pub const EXPIRY: std::time::Duration = std::time::Duration::from_secs(600);
/// Most calls remembered; beyond it the oldest are forgotten early (a repeat of one then runs again,
/// as it did before there was a cache).
pub const MAX_CALLS: usize = if cfg!(test) { 8 } else { 200_000 };

/// Names one call of one client: the client's id (its lease holder name) and a number the client
/// does not reuse.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallId {
    /// The client's id.
    pub client: String,
    /// The call's number at that client.
    pub call: u64,
}

/// A remembered call, as the journal persists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Which call.
    pub id: CallId,
    /// The inode its answer names (0: none, e.g. a remove or a rename).
    pub inode: u64,
    /// When it was applied (namenode clock).
    pub at: Timestamp,
}

/// What a repeated call is answered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The inode the first call's answer named (its attributes now make the repeat's answer).
    pub inode: Option<InodeId>,
}

impl Applied {
    /// The inode the first call's answer named. (Every call remembered with an inode answered
    /// about one; a call id reused for another kind of call has none.)
    pub fn inode(self) -> crate::error::Result<InodeId> {
        self.inode.ok_or_else(|| {
            crate::error::NamenodeError::InvalidArgument(
                "this call id was used by a call that answered about no inode".into(),
            )
        })
    }
}

/// The remembered calls, plus which of them changed since the last drain.
#[derive(Debug, Default)]
pub struct RetryCache {
    /// Every remembered call: (inode or 0, when).
    calls: HashMap<CallId, (u64, Timestamp)>,
    /// Calls in the order they were recorded (the oldest expire first).
    order: VecDeque<(Timestamp, CallId)>,
    /// Calls recorded or forgotten since the last drain.
    dirty: BTreeSet<CallId>,
}

/// Whether a call recorded at `at` has expired at `now`.
fn expired(at: Timestamp, now: Timestamp) -> bool {
    at.secs.saturating_add(EXPIRY.as_secs() as i64) < now.secs
}

impl RetryCache {
    /// Rebuilt from persisted records; those expired at `now` are forgotten (their rows go with the
    /// next drain).
    pub fn load(records: impl IntoIterator<Item = CallRecord>, now: Timestamp) -> RetryCache {
        let mut records: Vec<CallRecord> = records.into_iter().collect();
        records.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        let mut cache = RetryCache::default();
        for r in records {
            cache.calls.insert(r.id.clone(), (r.inode, r.at));
            cache.order.push_back((r.at, r.id));
        }
        cache.expire(now);
        cache
    }

    /// The answer of `id` if it was applied and has not expired at `now`.
    pub fn applied(&self, id: &CallId, now: Timestamp) -> Option<Applied> {
        let &(inode, at) = self.calls.get(id)?;
        (!expired(at, now)).then_some(Applied {
            inode: (inode != 0).then_some(InodeId(inode)),
        })
    }

    /// Remembers that `id` was applied at `now` with an answer naming `inode`, and forgets what
    /// expired. A call already remembered keeps its first record.
    pub fn record(&mut self, id: CallId, inode: Option<InodeId>, now: Timestamp) {
        self.expire(now);
        if self.calls.contains_key(&id) {
            return;
        }
        self.calls
            .insert(id.clone(), (inode.map_or(0, |i| i.0), now));
        self.order.push_back((now, id.clone()));
        self.dirty.insert(id);
        self.expire(now);
    }

    /// Forgets the calls that expired at `now`, and the oldest beyond [`MAX_CALLS`].
    fn expire(&mut self, now: Timestamp) {
        while let Some((at, id)) = self.order.front() {
            if !expired(*at, now) && self.calls.len() <= MAX_CALLS {
                break;
            }
            if self.calls.get(id).is_some_and(|&(_, t)| t == *at) {
                self.calls.remove(id);
                self.dirty.insert(id.clone());
            }
            self.order.pop_front();
        }
    }

    /// Number of remembered calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is remembered.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The row changes since the last drain.
    pub fn drain(&mut self, out: &mut Vec<Mutation>) {
        for id in std::mem::take(&mut self.dirty) {
            out.push(match self.calls.get(&id) {
                Some(&(inode, at)) => Mutation::PutCall(CallRecord { id, inode, at }),
                None => Mutation::DeleteCall(id),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(call: u64) -> CallId {
        CallId {
            client: "c1".into(),
            call,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp { secs, nanos: 0 }
    }

    fn drained(c: &mut RetryCache) -> Vec<Mutation> {
        let mut out = Vec::new();
        c.drain(&mut out);
        out
    }

    #[test]
    fn a_recorded_call_is_answered_until_it_expires_and_its_row_then_goes() {
        let mut c = RetryCache::default();
        c.record(id(1), Some(InodeId(7)), at(1000));
        c.record(id(2), None, at(1001));
        let inode7 = Some(Applied {
            inode: Some(InodeId(7)),
        });
        assert_eq!(c.applied(&id(1), at(1000)), inode7);
        assert_eq!(c.applied(&id(2), at(1001)), Some(Applied { inode: None }));
        assert_eq!(c.applied(&id(3), at(1001)), None);
        let other = CallId {
            client: "c2".into(),
            call: 1,
        };
        assert_eq!(c.applied(&other, at(1001)), None, "another client's call 1");
        assert_eq!(
            drained(&mut c),
            vec![
                Mutation::PutCall(CallRecord {
                    id: id(1),
                    inode: 7,
                    at: at(1000)
                }),
                Mutation::PutCall(CallRecord {
                    id: id(2),
                    inode: 0,
                    at: at(1001)
                }),
            ]
        );
        let limit = 1000 + EXPIRY.as_secs() as i64;
        assert_eq!(c.applied(&id(1), at(limit)), inode7);
        assert_eq!(c.applied(&id(1), at(limit + 1)), None, "expired");
        // The next record forgets the expired calls: their rows are deleted with it.
        c.record(id(3), None, at(limit + 1));
        assert_eq!(c.len(), 2);
        let rows = drained(&mut c);
        assert!(rows.contains(&Mutation::DeleteCall(id(1))), "{rows:?}");
        assert!(!rows.contains(&Mutation::DeleteCall(id(2))), "{rows:?}");
        assert_eq!(drained(&mut c), vec![]);
    }

    #[test]
    fn the_oldest_calls_go_beyond_the_cap() {
        let mut c = RetryCache::default();
        for n in 0..MAX_CALLS as u64 + 3 {
            c.record(id(n), None, at(1000 + n as i64));
        }
        assert_eq!(c.len(), MAX_CALLS);
        for n in 0..3 {
            assert_eq!(c.applied(&id(n), at(1100)), None, "call {n}");
        }
        assert!(c.applied(&id(3), at(1100)).is_some());
        // Forgotten before they were ever persisted: put then deleted in the same drain.
        let rows = drained(&mut c);
        assert_eq!(
            rows.iter()
                .filter(|m| matches!(m, Mutation::DeleteCall(_)))
                .count(),
            3
        );
    }

    #[test]
    fn a_call_recorded_again_keeps_its_first_record() {
        let mut c = RetryCache::default();
        c.record(id(1), Some(InodeId(7)), at(1000));
        c.record(id(1), Some(InodeId(9)), at(1005));
        assert_eq!(c.applied(&id(1), at(1005)).unwrap().inode, Some(InodeId(7)));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn loading_forgets_expired_records_and_deletes_their_rows() {
        let now = at(10_000);
        let old = at(10_000 - EXPIRY.as_secs() as i64 - 1);
        let records = vec![
            CallRecord {
                id: id(1),
                inode: 5,
                at: old,
            },
            CallRecord {
                id: id(2),
                inode: 6,
                at: at(9_999),
            },
        ];
        let mut c = RetryCache::load(records, now);
        assert_eq!(c.applied(&id(1), now), None);
        assert_eq!(c.applied(&id(2), now).unwrap().inode, Some(InodeId(6)));
        assert_eq!(drained(&mut c), vec![Mutation::DeleteCall(id(1))]);
    }
}
