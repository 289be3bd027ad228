//! Cluster-wide locks: `fcntl` byte-range locks and `flock` go to the namenode's lock table as
//! (this mount's client id, the kernel's lock owner). The namenode drops them when this mount's
//! lease expires, so a killed mount cannot hold a lock for long.
//!
//! fuser 0.18 does not pass the kernel's FUSE_LK_FLOCK flag to `setlk`, so `flock` requests
//! cannot be told from whole-file `fcntl` locks: both are sent as POSIX locks. The kernel gives
//! them different owners (the open file for `flock`, the process's file table for `fcntl`), so
//! exclusion between mounts works for each; as on NFS, a `flock` and an `fcntl` lock on the same
//! file conflict with each other, where a local Linux file system keeps them apart.

use crate::creds::{interrupted, Caller};
use crate::error::{Fail, Res};
use crate::ops::{locked, Inner};
use fuser::Errno;
use ringfs_proto::{pb, ErrorKind};
use std::time::Duration;

/// The kernel's "to end of file" (OFFSET_MAX) as FUSE sends it.
const KERNEL_EOF: u64 = i64::MAX as u64;

fn lock_type(typ: i32) -> Res<pb::LockType> {
    match typ {
        libc::F_RDLCK => Ok(pb::LockType::Read),
        libc::F_WRLCK => Ok(pb::LockType::Write),
        libc::F_UNLCK => Ok(pb::LockType::Unlock),
        _ => Err(Fail::new(Errno::EINVAL, format!("lock type {typ}"))),
    }
}

fn kernel_type(t: i32) -> i32 {
    match pb::LockType::try_from(t) {
        Ok(pb::LockType::Read) => libc::F_RDLCK,
        Ok(pb::LockType::Write) => libc::F_WRLCK,
        _ => libc::F_UNLCK,
    }
}

fn to_wire_end(end: u64) -> u64 {
    if end >= KERNEL_EOF {
        u64::MAX
    } else {
        end
    }
}

fn to_kernel_end(end: u64) -> u64 {
    end.min(KERNEL_EOF)
}

/// The conflicting lock `getlk` reports: (start, end, type, pid); type F_UNLCK when none.
pub(crate) type Conflict = (u64, u64, i32, u32);

impl Inner {
    fn lock_request(
        &self,
        ino: u64,
        owner: u64,
        start: u64,
        end: u64,
        typ: pb::LockType,
        pid: u32,
    ) -> pb::LockRequest {
        pb::LockRequest {
            inode: ino,
            client_id: self.client.client_id().to_string(),
            owner,
            kind: pb::LockKind::Posix as i32,
            r#type: typ as i32,
            start,
            end: to_wire_end(end),
            pid,
        }
    }

    pub(crate) async fn getlk(
        &self,
        ino: u64,
        owner: u64,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
    ) -> Res<Conflict> {
        let t = lock_type(typ)?;
        let req = self.lock_request(ino, owner, start, end, t, pid);
        let r = self
            .query(&req, |mut nn, req| async move { nn.test_lock(req).await })
            .await?;
        let ct = kernel_type(r.conflict_type);
        if ct == libc::F_UNLCK {
            return Ok((start, end, libc::F_UNLCK, 0));
        }
        Ok((
            r.conflict_start,
            to_kernel_end(r.conflict_end),
            ct,
            r.conflict_pid,
        ))
    }

    /// setlk/setlkw. A blocking request polls the namenode with backoff until it is granted or
    /// the caller has a signal pending (EINTR).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn setlk(
        &self,
        c: &Caller,
        ino: u64,
        fh: u64,
        owner: u64,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
    ) -> Res<()> {
        let t = lock_type(typ)?;
        let mut synced = Ok(());
        if t == pb::LockType::Unlock {
            // What was written under the lock must be visible to the next holder on another
            // mount (as NFS flushes at unlock), and that holder must be able to write: the
            // commit gives the lease back (a later write here takes it again). The lock goes
            // even when the commit fails; the written data stays for fsync/close.
            let f = locked(&self.files).get(&ino).cloned();
            if let Some(f) = f {
                synced = self.commit_at_unlock(&f).await;
            }
        } else {
            locked(&self.lock_owners).insert((ino, owner));
            if let Ok(h) = self.handle(fh) {
                let mut owners = locked(&h.lock_owners);
                if !owners.contains(&owner) {
                    owners.push(owner);
                }
            }
        }
        let mut pause = Duration::from_millis(10);
        loop {
            let req = self.lock_request(ino, owner, start, end, t, pid);
            // Sent again after a failure in transport: taking a lock its owner holds, or
            // dropping one it does not, changes nothing.
            let granted = match self
                .query(&req, |mut nn, req| async move { nn.lock(req).await })
                .await
            {
                Ok(r) => r.granted || t == pb::LockType::Unlock,
                Err(s) if ErrorKind::of(&s) == ErrorKind::WouldBlock => false,
                Err(s) => return Err(s.into()),
            };
            if granted {
                if t != pb::LockType::Unlock {
                    // The previous holder may have changed the file on another mount. The
                    // lock is held now: a failed check must not report it as not granted (the
                    // caller would go on without it while others wait), so the caches go.
                    if let Err(e) = self.revalidate(c, ino).await {
                        tracing::debug!(ino, error = %e.why, "revalidation after a lock failed; caches dropped");
                        self.forget_cached(ino).await;
                    }
                }
                return synced;
            }
            if !sleep {
                return Err(Errno::EAGAIN.into());
            }
            if interrupted(c.pid) {
                return Err(Errno::EINTR.into());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.opts.lock_poll_max);
        }
    }

    /// Drops every lock `owner` holds on `ino` through this mount (close of a descriptor for
    /// POSIX locks, last close of the open file for flock). No RPC when it never locked.
    pub(crate) async fn unlock_owner(&self, ino: u64, owner: u64) {
        if !locked(&self.lock_owners).remove(&(ino, owner)) {
            return;
        }
        let req = self.lock_request(ino, owner, 0, KERNEL_EOF, pb::LockType::Unlock, 0);
        let unlock = self.query(&req, |mut nn, req| async move { nn.lock(req).await });
        if let Err(e) = unlock.await {
            tracing::warn!(ino, owner, error = %e.message(), "unlock at close failed; sending it again until the namenode takes it");
            self.unlock_later(ino, owner);
        }
    }

    /// Sends the unlock of `owner`'s locks on `ino` again until the namenode takes it. This
    /// mount's lease renewals keep its locks for as long as it runs, so an unlock lost to a
    /// namenode outage held the lock on every mount for good (QA). Stops when `owner` locks the
    /// file again (that lock is rightly held) or the mount ends.
    fn unlock_later(&self, ino: u64, owner: u64) {
        self.retry_in_background(move |inner| async move {
            if locked(&inner.lock_owners).contains(&(ino, owner)) {
                return true;
            }
            let req = inner.lock_request(ino, owner, 0, KERNEL_EOF, pb::LockType::Unlock, 0);
            match inner.nn().lock(req).await {
                Ok(_) => {
                    tracing::info!(ino, owner, "unlock that failed at close sent again: done");
                    true
                }
                Err(e) => {
                    tracing::debug!(ino, owner, error = %e.message(), "unlock failed again");
                    false
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ranges_and_types_convert_both_ways() {
        assert_eq!(to_wire_end(KERNEL_EOF), u64::MAX);
        assert_eq!(to_wire_end(99), 99);
        assert_eq!(to_kernel_end(u64::MAX), KERNEL_EOF);
        assert_eq!(lock_type(libc::F_WRLCK).unwrap(), pb::LockType::Write);
        assert!(lock_type(77).is_err());
        assert_eq!(kernel_type(pb::LockType::Read as i32), libc::F_RDLCK);
        assert_eq!(kernel_type(pb::LockType::Unspecified as i32), libc::F_UNLCK);
    }
}
