//! Extended attributes through the mount: setxattr/getxattr/listxattr/removexattr go to the
//! namenode (which keeps them with the inode and checks Linux's rules) with the caller's
//! credentials; this module adds the FUSE side: the setxattr flags, size queries and ERANGE, the
//! NUL-separated name list, EROFS on a read-only mount, and the open file's remembered attributes
//! after a change (the kernel updates its cached ctime itself).
//!
//! The kernel asks for `security.capability` before every `write(2)` (to drop file capabilities,
//! as it drops set-user-ID bits): that answer is kept per inode for `attr_ttl`, the time the
//! kernel keeps other attributes, and answered in the callback itself (no task), so a stream of
//! small writes costs no namenode call each (still one FUSE round trip each: 4 KiB `dd` writes
//! measured 50-57 MB/s, against 52-61 MB/s when the mount answered ENOSYS to every xattr call
//! and the kernel stopped asking, and 42-44 MB/s when the answer went through a task); a
//! change made through this mount drops it at once, one made on another mount is seen after
//! at most `attr_ttl`, as for the other attributes.
//!
//! Likewise `ls -l` reads `security.selinux` of every file it lists: while the attributes the
//! kernel got from this mount within `attr_ttl` say an inode has no extended attribute at all
//! (`Attr.xattrs`), a `security.*` read of it is answered ENODATA in the callback (measured:
//! `ls -l` of 100 files made 101 namenode calls for it before). `user.*` and `trusted.*` reads
//! and every list always ask the namenode, so they see other mounts' changes at once.

use crate::creds::Caller;
use crate::error::{Fail, Res};
use crate::ops::{locked, Inner};
use fuser::Errno;
use ringfs_client::inode_ref;
use ringfs_proto::{pb, ErrorKind};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The attribute the kernel reads before each write.
const CAPABILITY: &str = "security.capability";
/// Most inodes whose `security.capability` answer is kept (then the cache starts over).
const CAPABILITY_CACHE_MAX: usize = 10_000;

/// A `security.capability` answer: when it was given, and the value (`None`: there is none).
type Answer = (Instant, Option<Vec<u8>>);

/// Recent `security.capability` answers by inode.
#[derive(Default)]
pub(crate) struct CapabilityCache(Mutex<HashMap<u64, Answer>>);

/// Inodes whose attributes, when the kernel last got them from this mount, said they have no
/// extended attribute (`Attr.xattrs`), and when: for `attr_ttl` a `security.*` read of one is
/// answered as missing without asking the namenode.
#[derive(Default)]
pub(crate) struct Bare(Mutex<HashMap<u64, Instant>>);

impl Bare {
    fn note(&self, a: &pb::Attr) {
        let mut bare = locked(&self.0);
        if a.xattrs {
            bare.remove(&a.inode);
        } else {
            if bare.len() >= CAPABILITY_CACHE_MAX {
                bare.clear();
            }
            bare.insert(a.inode, Instant::now());
        }
    }

    fn is_bare(&self, ino: u64, ttl: std::time::Duration) -> bool {
        locked(&self.0).get(&ino).is_some_and(|t| t.elapsed() < ttl)
    }
}

/// setxattr(2) flags as the namenode's mode: EINVAL for both or unknown bits.
fn set_mode(flags: i32) -> Res<pb::XattrSetMode> {
    match flags {
        0 => Ok(pb::XattrSetMode::XattrSetAny),
        libc::XATTR_CREATE => Ok(pb::XattrSetMode::XattrSetCreate),
        libc::XATTR_REPLACE => Ok(pb::XattrSetMode::XattrSetReplace),
        _ => Err(Fail::new(
            Errno::EINVAL,
            format!("setxattr flags {flags:#x} are not XATTR_CREATE or XATTR_REPLACE"),
        )),
    }
}

/// What a getxattr/listxattr reply carries: the size (for a size-0 query) or the bytes.
pub(crate) enum Sized {
    /// `size` was 0: how many bytes the answer needs.
    Size(u32),
    /// The answer, which fits the caller's buffer.
    Data(Vec<u8>),
}

/// Answers a getxattr/listxattr of `buf_size` with `bytes`: their size for a size query, ERANGE
/// when they do not fit.
fn sized(bytes: Vec<u8>, buf_size: u32, what: &str) -> Res<Sized> {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    if buf_size == 0 {
        Ok(Sized::Size(len))
    } else if len > buf_size {
        Err(Fail::new(
            Errno::ERANGE,
            format!("{what}: {len} bytes do not fit a buffer of {buf_size}"),
        ))
    } else {
        Ok(Sized::Data(bytes))
    }
}

/// A getxattr answer: the value sized for the buffer, or ENODATA.
fn answer(value: Option<Vec<u8>>, size: u32, what: impl Fn() -> String) -> Res<Sized> {
    match value {
        Some(v) => sized(v, size, &what()),
        None => Err(Fail::new(Errno::ENODATA, what())),
    }
}

/// Names as listxattr(2) returns them: each followed by a NUL.
fn name_list(names: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
    for n in names {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
    }
    out
}

impl CapabilityCache {
    fn get(&self, ino: u64, ttl: std::time::Duration) -> Option<Option<Vec<u8>>> {
        let cache = locked(&self.0);
        let (at, v) = cache.get(&ino)?;
        (at.elapsed() < ttl).then(|| v.clone())
    }

    fn put(&self, ino: u64, value: Option<Vec<u8>>) {
        let mut cache = locked(&self.0);
        if cache.len() >= CAPABILITY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(ino, (Instant::now(), value));
    }

    fn forget(&self, ino: u64) {
        locked(&self.0).remove(&ino);
    }
}

impl Inner {
    fn refuse_if_read_only(&self, what: &str, ino: u64) -> Res<()> {
        if self.opts.read_only {
            return Err(Fail::new(
                Errno::EROFS,
                format!("{what} of inode {ino}: the mount is read-only"),
            ));
        }
        Ok(())
    }

    /// After this mount changed an attribute of `ino`: the open file's remembered attributes
    /// take the new ctime, and a kept `security.capability` answer goes.
    async fn xattr_changed(&self, a: &pb::Attr, name: &str) {
        if name == CAPABILITY {
            self.capability.forget(a.inode);
        }
        self.note_xattrs(a);
        self.remember_attr(a).await;
    }

    pub(crate) async fn setxattr(
        &self,
        c: &Caller,
        ino: u64,
        name: &str,
        value: &[u8],
        flags: i32,
    ) -> Res<()> {
        self.refuse_if_read_only("setxattr", ino)?;
        let mode = set_mode(flags)?;
        let client = self.client.with_creds(c.creds.clone());
        let a = client
            .set_xattr(inode_ref(ino), true, name, value, mode)
            .await?;
        self.xattr_changed(&a, name).await;
        Ok(())
    }

    /// The answer to a getxattr of `name` the mount has at hand (a `security.*` attribute of an
    /// inode the kernel was told lately has none, a recent `security.capability`), so the
    /// callback can answer at once, without a task.
    pub(crate) fn getxattr_at_hand(&self, ino: u64, name: &str, size: u32) -> Option<Res<Sized>> {
        let what = || format!("getxattr {name} of inode {ino}");
        let ttl = self.opts.attr_ttl;
        if name.starts_with("security.") && self.bare.is_bare(ino, ttl) {
            return Some(answer(None, size, what));
        }
        if name != CAPABILITY {
            return None;
        }
        let value = self.capability.get(ino, ttl)?;
        Some(answer(value, size, what))
    }

    /// Records whether `a` says its inode has extended attributes, as the kernel gets `a` now.
    pub(crate) fn note_xattrs(&self, a: &pb::Attr) {
        self.bare.note(a);
    }

    pub(crate) async fn getxattr(&self, c: &Caller, ino: u64, name: &str, size: u32) -> Res<Sized> {
        let what = || format!("getxattr {name} of inode {ino}");
        let cached = (name == CAPABILITY)
            .then(|| self.capability.get(ino, self.opts.attr_ttl))
            .flatten();
        let value = match cached {
            Some(v) => v,
            None => {
                let client = self.client.with_creds(c.creds.clone());
                let v = match client.get_xattr(inode_ref(ino), true, name).await {
                    Ok(v) => Some(v),
                    Err(e) if e.kind() == ErrorKind::NoData => None,
                    Err(e) => return Err(e.into()),
                };
                if name == CAPABILITY {
                    self.capability.put(ino, v.clone());
                }
                v
            }
        };
        answer(value, size, what)
    }

    pub(crate) async fn listxattr(&self, c: &Caller, ino: u64, size: u32) -> Res<Sized> {
        let client = self.client.with_creds(c.creds.clone());
        let names = client.list_xattr(inode_ref(ino), true).await?;
        sized(
            name_list(&names),
            size,
            &format!("listxattr of inode {ino}"),
        )
    }

    pub(crate) async fn removexattr(&self, c: &Caller, ino: u64, name: &str) -> Res<()> {
        self.refuse_if_read_only("removexattr", ino)?;
        let client = self.client.with_creds(c.creds.clone());
        let a = client.remove_xattr(inode_ref(ino), true, name).await?;
        self.xattr_changed(&a, name).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_buffers_and_name_lists_follow_linux() {
        assert!(matches!(sized(b"abc".to_vec(), 0, "x"), Ok(Sized::Size(3))));
        assert!(matches!(sized(b"abc".to_vec(), 3, "x"), Ok(Sized::Data(d)) if d == b"abc"));
        let e = sized(b"abc".to_vec(), 2, "x").err().map(|f| f.errno);
        assert_eq!(e, Some(Errno::ERANGE));
        assert!(matches!(sized(Vec::new(), 0, "x"), Ok(Sized::Size(0))));
        let names = ["user.a".to_string(), "security.b".to_string()];
        assert_eq!(name_list(&names), b"user.a\0security.b\0");
        assert!(name_list(&[]).is_empty());
        assert_eq!(set_mode(0).ok(), Some(pb::XattrSetMode::XattrSetAny));
        assert_eq!(
            set_mode(libc::XATTR_CREATE).ok(),
            Some(pb::XattrSetMode::XattrSetCreate)
        );
        assert_eq!(
            set_mode(libc::XATTR_REPLACE).ok(),
            Some(pb::XattrSetMode::XattrSetReplace)
        );
        let both = set_mode(libc::XATTR_CREATE | libc::XATTR_REPLACE);
        assert_eq!(both.err().map(|f| f.errno), Some(Errno::EINVAL));
    }

    #[test]
    fn inodes_without_attributes_are_known_until_their_attributes_say_otherwise() {
        let b = Bare::default();
        let ttl = std::time::Duration::from_secs(60);
        let mut a = pb::Attr {
            inode: 9,
            ..Default::default()
        };
        assert!(!b.is_bare(9, ttl), "unknown inodes are asked about");
        b.note(&a);
        assert!(b.is_bare(9, ttl));
        assert!(!b.is_bare(9, std::time::Duration::ZERO), "expired");
        a.xattrs = true;
        b.note(&a);
        assert!(!b.is_bare(9, ttl));
    }

    #[test]
    fn capability_answers_expire_and_are_forgotten() {
        let c = CapabilityCache::default();
        let ttl = std::time::Duration::from_secs(60);
        assert_eq!(c.get(5, ttl), None);
        c.put(5, None);
        assert_eq!(c.get(5, ttl), Some(None));
        assert_eq!(c.get(5, std::time::Duration::ZERO), None, "expired");
        c.put(5, Some(b"cap".to_vec()));
        assert_eq!(c.get(5, ttl), Some(Some(b"cap".to_vec())));
        c.forget(5);
        assert_eq!(c.get(5, ttl), None);
    }
}
