//! Extended attributes of an inode: the name namespaces, limits, setxattr flags and Linux's
//! permission rules (`fs/xattr.c` `xattr_permission`) of [`Namespace::set_xattr`] and its
//! siblings, and the row form the journal persists them in.
//!
//! Attributes belong to the inode (hard links share them, a rename keeps them, they go with the
//! inode) and live in [`Inode::xattrs`]; a change marks the inode in `dirty_xattrs`, and the drain
//! writes all of that inode's attributes as one `PutXattrs` row (or `DeleteXattrs` when none is
//! left), next to the `PutInode` of its new ctime.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{is_path, permits, Caller, Inode, InodeId, InodeKind, Namespace, NodeSel, Shown};
use super::{Timestamp, R_OK, S_ISVTX, W_OK};
use crate::error::{NamenodeError, Result};

/// Longest attribute name, prefix included (Linux's XATTR_NAME_MAX).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest attribute value (Linux's XATTR_SIZE_MAX).
pub const XATTR_VALUE_MAX: usize = 64 * 1024;
/// Most bytes of names and values one inode holds (attributes live in the namenode's memory).
pub const XATTR_TOTAL_MAX: usize = 64 * 1024;

/// The extended attributes of one inode, by name.
pub type Xattrs = BTreeMap<String, Vec<u8>>;

/// setxattr(2) flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XattrMode {
    /// Create or replace.
    #[default]
    Any,
    /// XATTR_CREATE: fail with AlreadyExists if the attribute exists.
    Create,
    /// XATTR_REPLACE: fail with NoXattr if it does not.
    Replace,
}

/// One attribute as the journal persists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XattrRow {
    /// Name, with its namespace prefix.
    pub name: String,
    /// Value (encoded as a byte string: one copy instead of a call per byte).
    #[serde(with = "raw_bytes")]
    pub value: Vec<u8>,
}

/// The rows of an inode's attributes, sorted by name.
pub(super) fn rows_of(x: &Xattrs) -> Vec<XattrRow> {
    x.iter()
        .map(|(name, value)| XattrRow {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// Serde of `Vec<u8>` as a byte string (postcard: the length and the raw bytes).
mod raw_bytes {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    struct BufVisitor;

    impl<'de> Visitor<'de> for BufVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(b) = seq.next_element()? {
                v.push(b);
            }
            Ok(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BufVisitor)
    }
}

/// The namespace an attribute name is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// "user.": regular files and directories, mode bits decide.
    User,
    /// "trusted.": root only.
    Trusted,
    /// "security.": the owner or root may change them, anyone may read them.
    Security,
}

/// The namespace of `name`: Range for an empty or too long name, NotSupported for "system." (POSIX
/// ACLs are not enforced, so storing them would mislead) and unknown prefixes, InvalidArgument for
/// a bare prefix or a NUL.
fn classify(name: &str, shown: &dyn Fn() -> String) -> Result<Class> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(NamenodeError::XattrNameRange(format!(
            "{}: attribute name of {} bytes is out of range 1..={XATTR_NAME_MAX}",
            shown(),
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(NamenodeError::InvalidArgument(format!(
            "{}: attribute name {name:?} contains a NUL",
            shown()
        )));
    }
    let (class, rest) = if let Some(rest) = name.strip_prefix("user.") {
        (Class::User, rest)
    } else if let Some(rest) = name.strip_prefix("trusted.") {
        (Class::Trusted, rest)
    } else if let Some(rest) = name.strip_prefix("security.") {
        (Class::Security, rest)
    } else {
        return Err(NamenodeError::NotSupported(format!(
            "{}: attribute {name:?} (only user., trusted. and security. attributes are kept)",
            shown()
        )));
    };
    if rest.is_empty() {
        return Err(NamenodeError::InvalidArgument(format!(
            "{}: attribute name {name:?} is only a prefix",
            shown()
        )));
    }
    Ok(class)
}

/// Whether `n` may carry "user." attributes (Linux: regular files and directories only).
fn takes_user(n: &Inode) -> bool {
    matches!(n.kind, InodeKind::File | InodeKind::Directory)
}

/// Whether `caller` may set or remove an attribute of `class` on `n`: NotPermitted (EPERM) for
/// "trusted." unless root, "security." unless owner or root, "user." on other kinds than files and
/// directories or on a sticky directory of someone else; PermissionDenied (EACCES) for "user."
/// without write permission.
fn check_change(
    caller: &Caller,
    n: &Inode,
    class: Class,
    shown: &dyn Fn() -> String,
) -> Result<()> {
    let owner = caller.is_root() || caller.uid == n.uid;
    let refused = match class {
        Class::Trusted => !caller.is_root(),
        Class::Security => !owner,
        Class::User => !takes_user(n) || n.is_dir() && n.mode & S_ISVTX != 0 && !owner,
    };
    if refused {
        return Err(NamenodeError::NotPermitted(shown()));
    }
    if class == Class::User && !permits(caller, n, W_OK) {
        return Err(NamenodeError::PermissionDenied(shown()));
    }
    Ok(())
}

/// Whether `caller` sees attributes of `class` on `n` (a hidden one reads as missing: "trusted."
/// for others than root, "user." on kinds that cannot have them); PermissionDenied (EACCES) for a
/// "user." attribute without read permission.
fn visible(caller: &Caller, n: &Inode, class: Class, shown: &dyn Fn() -> String) -> Result<bool> {
    match class {
        Class::Trusted => Ok(caller.is_root()),
        Class::Security => Ok(true),
        Class::User if !takes_user(n) => Ok(false),
        Class::User if !permits(caller, n, R_OK) => Err(NamenodeError::PermissionDenied(shown())),
        Class::User => Ok(true),
    }
}

/// Bytes of names and values.
fn bytes_of(x: &Xattrs) -> usize {
    x.iter().map(|(k, v)| k.len() + v.len()).sum()
}

impl Namespace {
    /// The node an attribute call names: a path follows a final symlink unless `no_follow`
    /// (lsetxattr), an inode is taken as it is.
    fn xattr_node(
        &self,
        caller: &Caller,
        node: NodeSel<'_>,
        no_follow: bool,
    ) -> Result<(InodeId, Shown)> {
        self.resolve_shown(caller, node, is_path(&node) && !no_follow)
    }

    /// setxattr(2): sets attribute `name` of a node to `value` (see [`XattrMode`] for the flags)
    /// and its ctime to `now`. Checks, in Linux's order: the name (Range, NotSupported,
    /// InvalidArgument), the value size (XattrTooBig), permission, the flags, the per-inode total
    /// (XattrSpace). Returns the inode.
    #[allow(clippy::too_many_arguments)]
    pub fn set_xattr(
        &mut self,
        caller: &Caller,
        node: NodeSel<'_>,
        no_follow: bool,
        name: &str,
        value: &[u8],
        mode: XattrMode,
        now: Timestamp,
    ) -> Result<InodeId> {
        let (id, shown) = self.xattr_node(caller, node, no_follow)?;
        let n = self.node(id)?;
        let shown = || self.show(&shown);
        let class = classify(name, &shown)?;
        if value.len() > XATTR_VALUE_MAX {
            return Err(NamenodeError::XattrTooBig(format!(
                "{}: value of attribute {name} is {} bytes (at most {XATTR_VALUE_MAX})",
                shown(),
                value.len()
            )));
        }
        check_change(caller, n, class, &shown)?;
        let old = n.xattrs.get(name);
        match (mode, old) {
            (XattrMode::Create, Some(_)) => {
                return Err(NamenodeError::AlreadyExists(format!(
                    "{}: attribute {name}",
                    shown()
                )))
            }
            (XattrMode::Replace, None) => {
                return Err(NamenodeError::NoXattr {
                    path: shown(),
                    name: name.to_string(),
                })
            }
            _ => {}
        }
        let total = bytes_of(&n.xattrs) - old.map_or(0, |v| name.len() + v.len())
            + name.len()
            + value.len();
        if total > XATTR_TOTAL_MAX {
            return Err(NamenodeError::XattrSpace(format!(
                "{}: attribute {name} would make its attributes {total} bytes (at most \
                 {XATTR_TOTAL_MAX} of names and values per inode)",
                shown()
            )));
        }
        // ---- checks done; apply.
        self.dirty_xattrs.insert(id);
        if let Some(n) = self.touch(id) {
            n.xattrs.insert(name.to_string(), value.to_vec());
            n.ctime = now;
        }
        Ok(id)
    }

    /// getxattr(2): the value of attribute `name` of a node. NoXattr when it has none of that name
    /// or the caller may not see it; PermissionDenied for a "user." attribute without read
    /// permission.
    pub fn get_xattr(
        &self,
        caller: &Caller,
        node: NodeSel<'_>,
        no_follow: bool,
        name: &str,
    ) -> Result<&[u8]> {
        let (id, shown) = self.xattr_node(caller, node, no_follow)?;
        let n = self.node(id)?;
        let shown = || self.show(&shown);
        let class = classify(name, &shown)?;
        let missing = || NamenodeError::NoXattr {
            path: shown(),
            name: name.to_string(),
        };
        if !visible(caller, n, class, &shown)? {
            return Err(missing());
        }
        n.xattrs.get(name).map(Vec::as_slice).ok_or_else(missing)
    }

    /// listxattr(2): the names of a node's attributes the caller may see ("trusted." ones only for
    /// root), sorted. As on Linux, listing needs no permission on the node itself.
    pub fn list_xattr(
        &self,
        caller: &Caller,
        node: NodeSel<'_>,
        no_follow: bool,
    ) -> Result<Vec<String>> {
        let (id, _) = self.xattr_node(caller, node, no_follow)?;
        let n = self.node(id)?;
        Ok(n.xattrs
            .keys()
            .filter(|k| caller.is_root() || !k.starts_with("trusted."))
            .cloned()
            .collect())
    }

    /// removexattr(2): removes attribute `name` of a node (NoXattr when it has none) and sets its
    /// ctime to `now`; the permission rules are those of [`Namespace::set_xattr`]. Returns the
    /// inode.
    pub fn remove_xattr(
        &mut self,
        caller: &Caller,
        node: NodeSel<'_>,
        no_follow: bool,
        name: &str,
        now: Timestamp,
    ) -> Result<InodeId> {
        let (id, shown) = self.xattr_node(caller, node, no_follow)?;
        let n = self.node(id)?;
        let shown = || self.show(&shown);
        let class = classify(name, &shown)?;
        check_change(caller, n, class, &shown)?;
        if !n.xattrs.contains_key(name) {
            return Err(NamenodeError::NoXattr {
                path: shown(),
                name: name.to_string(),
            });
        }
        // ---- checks done; apply.
        self.dirty_xattrs.insert(id);
        if let Some(n) = self.touch(id) {
            n.xattrs.remove(name);
            n.ctime = now;
        }
        Ok(id)
    }

    /// Gives inodes their persisted attributes (after [`Namespace::from_records`]). Fails with
    /// `Storage` for the attributes of an inode that does not exist.
    pub fn load_xattrs(
        &mut self,
        rows: impl IntoIterator<Item = (u64, Vec<XattrRow>)>,
    ) -> Result<()> {
        for (id, attrs) in rows {
            let Some(n) = self.inodes.get_mut(&InodeId(id)) else {
                return Err(NamenodeError::Storage(format!(
                    "inconsistent namespace: extended attributes of missing inode {id}"
                )));
            };
            n.xattrs = attrs.into_iter().map(|r| (r.name, r.value)).collect();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CreateFile, EntrySel, Mutation, RemoveMode, RenameFlags, ROOT};
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp { secs, nanos: 0 }
    }
    fn root() -> Caller {
        Caller::root()
    }
    fn alice() -> Caller {
        Caller::user(1000, 1000)
    }
    fn bob() -> Caller {
        Caller::user(1001, 1001)
    }
    fn p(path: &str) -> NodeSel<'_> {
        NodeSel::Path(path)
    }
    fn create(ns: &mut Namespace, c: &Caller, path: &str, mode: u32) -> InodeId {
        let o = CreateFile {
            mode,
            replication: 1,
            block_size: 4096,
            ..Default::default()
        };
        ns.create_file(c, EntrySel::Path(path), o, t(1)).unwrap().0
    }
    fn set(
        ns: &mut Namespace,
        c: &Caller,
        path: &str,
        name: &str,
        value: &[u8],
    ) -> Result<InodeId> {
        ns.set_xattr(c, p(path), false, name, value, XattrMode::Any, t(5))
    }
    fn get(ns: &Namespace, c: &Caller, path: &str, name: &str) -> Result<Vec<u8>> {
        ns.get_xattr(c, p(path), false, name).map(<[u8]>::to_vec)
    }
    fn list(ns: &Namespace, c: &Caller, path: &str) -> Vec<String> {
        ns.list_xattr(c, p(path), false).unwrap()
    }
    fn kind<T: std::fmt::Debug>(r: Result<T>) -> ringfs_proto::ErrorKind {
        r.expect_err("must fail").kind()
    }

    /// A namespace with /d (alice's, 0777) and /d/f (alice's, 0644).
    fn setup() -> Namespace {
        let mut ns = Namespace::new();
        ns.mkdir(&root(), EntrySel::Path("/d"), 0o777, false, t(1))
            .unwrap();
        ns.set_attr(
            &root(),
            p("/d"),
            super::super::SetAttr {
                uid: Some(1000),
                gid: Some(1000),
                ..Default::default()
            },
            t(1),
        )
        .unwrap();
        create(&mut ns, &alice(), "/d/f", 0o644);
        ns
    }

    #[test]
    fn names_values_and_totals_are_limited_as_on_linux() {
        use ringfs_proto::ErrorKind::*;
        let mut ns = setup();
        let a = alice();
        assert_eq!(kind(set(&mut ns, &a, "/d/f", "", b"v")), Range);
        let long = format!("user.{}", "n".repeat(XATTR_NAME_MAX - 4));
        assert_eq!(kind(set(&mut ns, &a, "/d/f", &long, b"v")), Range);
        set(&mut ns, &a, "/d/f", &long[..XATTR_NAME_MAX], b"v").unwrap();
        assert_eq!(kind(set(&mut ns, &a, "/d/f", "plain", b"v")), NotSupported);
        assert_eq!(
            kind(set(&mut ns, &a, "/d/f", "other.x", b"v")),
            NotSupported
        );
        assert_eq!(
            kind(set(
                &mut ns,
                &root(),
                "/d/f",
                "system.posix_acl_access",
                b"v"
            )),
            NotSupported
        );
        assert_eq!(
            kind(get(&ns, &root(), "/d/f", "system.posix_acl_access")),
            NotSupported
        );
        assert_eq!(
            kind(set(&mut ns, &a, "/d/f", "user.", b"v")),
            InvalidArgument
        );
        let value = vec![1u8; XATTR_VALUE_MAX + 1];
        assert_eq!(kind(set(&mut ns, &a, "/d/f", "user.big", &value)), TooBig);
        // Exactly 64 KiB of value fits alone, not next to the long name set above.
        let value = &value[..XATTR_VALUE_MAX];
        assert_eq!(kind(set(&mut ns, &a, "/d/f", "user.big", value)), NoSpace);
        ns.remove_xattr(&a, p("/d/f"), false, &long[..XATTR_NAME_MAX], t(6))
            .unwrap();
        assert_eq!(kind(set(&mut ns, &a, "/d/f", "user.big", value)), NoSpace);
        let fits = &value[..XATTR_TOTAL_MAX - "user.big".len()];
        set(&mut ns, &a, "/d/f", "user.big", fits).unwrap();
        assert_eq!(kind(set(&mut ns, &a, "/d/f", "user.c", b"")), NoSpace);
        // Replacing counts the new value instead of the old one.
        set(&mut ns, &a, "/d/f", "user.big", &fits["user.c".len()..]).unwrap();
        set(&mut ns, &a, "/d/f", "user.c", b"").unwrap();
        assert_eq!(get(&ns, &a, "/d/f", "user.c").unwrap(), b"");
    }

    #[test]
    fn create_and_replace_flags_missing_attributes_and_ctime() {
        use ringfs_proto::ErrorKind::*;
        let mut ns = setup();
        let a = alice();
        let f = ns.resolve(&a, p("/d/f"), false).unwrap();
        let mode = |ns: &mut Namespace, m, v: &[u8]| {
            ns.set_xattr(&alice(), NodeSel::Inode(f), false, "user.k", v, m, t(10))
        };
        assert_eq!(kind(mode(&mut ns, XattrMode::Replace, b"1")), NoData);
        assert_eq!(kind(get(&ns, &a, "/d/f", "user.k")), NoData);
        mode(&mut ns, XattrMode::Create, b"1").unwrap();
        assert_eq!(ns.get(f).unwrap().ctime, t(10));
        assert_eq!(kind(mode(&mut ns, XattrMode::Create, b"2")), AlreadyExists);
        mode(&mut ns, XattrMode::Replace, b"3").unwrap();
        assert_eq!(get(&ns, &a, "/d/f", "user.k").unwrap(), b"3");
        set(&mut ns, &a, "/d/f", "user.a", b"").unwrap();
        set(&mut ns, &a, "/d/f", "security.s", b"s").unwrap();
        assert_eq!(list(&ns, &a, "/d/f"), ["security.s", "user.a", "user.k"]);
        ns.remove_xattr(&a, p("/d/f"), false, "user.k", t(20))
            .unwrap();
        assert_eq!(ns.get(f).unwrap().ctime, t(20));
        assert_eq!(
            kind(ns.remove_xattr(&a, p("/d/f"), false, "user.k", t(30))),
            NoData
        );
        assert_eq!(
            ns.get(f).unwrap().ctime,
            t(20),
            "a failed remove changes nothing"
        );
        assert_eq!(list(&ns, &a, "/d/f"), ["security.s", "user.a"]);
    }

    #[test]
    fn permissions_follow_linux() {
        use ringfs_proto::ErrorKind::*;
        let mut ns = setup();
        let (a, b) = (alice(), bob());
        // user.*: write permission to set or remove, read permission to get; listing needs neither.
        set(&mut ns, &a, "/d/f", "user.k", b"v").unwrap();
        assert_eq!(
            kind(set(&mut ns, &b, "/d/f", "user.k", b"w")),
            PermissionDenied
        );
        assert_eq!(
            kind(ns.remove_xattr(&b, p("/d/f"), false, "user.k", t(9))),
            PermissionDenied
        );
        assert_eq!(get(&ns, &b, "/d/f", "user.k").unwrap(), b"v");
        set(&mut ns, &root(), "/d/f", "user.r", b"root may").unwrap();
        let mode = |m| super::super::SetAttr {
            mode: Some(m),
            ..Default::default()
        };
        ns.set_attr(&a, p("/d/f"), mode(0o600), t(2)).unwrap();
        assert_eq!(kind(get(&ns, &b, "/d/f", "user.k")), PermissionDenied);
        assert_eq!(list(&ns, &b, "/d/f"), ["user.k", "user.r"]);
        // The owner without the write bit is refused too (cp -a makes its copy writable first).
        ns.set_attr(&a, p("/d/f"), mode(0o400), t(2)).unwrap();
        assert_eq!(
            kind(set(&mut ns, &a, "/d/f", "user.k", b"w")),
            PermissionDenied
        );
        ns.set_attr(&a, p("/d/f"), mode(0o644), t(2)).unwrap();
        // trusted.*: root only; hidden from others.
        assert_eq!(
            kind(set(&mut ns, &a, "/d/f", "trusted.t", b"v")),
            NotPermitted
        );
        set(&mut ns, &root(), "/d/f", "trusted.t", b"v").unwrap();
        assert_eq!(kind(get(&ns, &a, "/d/f", "trusted.t")), NoData);
        assert_eq!(get(&ns, &root(), "/d/f", "trusted.t").unwrap(), b"v");
        assert_eq!(list(&ns, &a, "/d/f"), ["user.k", "user.r"]);
        assert_eq!(
            list(&ns, &root(), "/d/f"),
            ["trusted.t", "user.k", "user.r"]
        );
        assert_eq!(
            kind(ns.remove_xattr(&a, p("/d/f"), false, "trusted.t", t(9))),
            NotPermitted
        );
        // security.*: the owner or root changes them, anyone reads them.
        set(&mut ns, &a, "/d/f", "security.s", b"v").unwrap();
        assert_eq!(
            kind(set(&mut ns, &b, "/d/f", "security.s", b"w")),
            NotPermitted
        );
        assert_eq!(get(&ns, &b, "/d/f", "security.s").unwrap(), b"v");
        // user.* only on files and directories: EPERM to set, ENODATA to get, for everyone.
        ns.symlink(&a, EntrySel::Path("/d/l"), "f", t(1)).unwrap();
        ns.mknod(&a, EntrySel::Path("/d/p"), InodeKind::Fifo, 0o666, 0, t(1))
            .unwrap();
        for node in ["/d/l", "/d/p"] {
            let r = ns.set_xattr(&root(), p(node), true, "user.k", b"v", XattrMode::Any, t(3));
            assert_eq!(kind(r), NotPermitted, "{node}");
            assert_eq!(kind(ns.get_xattr(&root(), p(node), true, "user.k")), NoData);
        }
        // ... but trusted.* and security.* are fine on a symlink itself (lsetxattr).
        ns.set_xattr(
            &root(),
            p("/d/l"),
            true,
            "trusted.l",
            b"link",
            XattrMode::Any,
            t(3),
        )
        .unwrap();
        assert_eq!(
            ns.get_xattr(&root(), p("/d/l"), true, "trusted.l").unwrap(),
            b"link"
        );
        // A path follows the final symlink unless no_follow.
        assert_eq!(get(&ns, &a, "/d/l", "user.k").unwrap(), b"v");
        assert_eq!(kind(get(&ns, &root(), "/d/l", "trusted.l")), NoData);
        // A sticky directory: only its owner (or root) changes its user.* attributes.
        ns.mkdir(&a, EntrySel::Path("/d/s"), 0o1777, false, t(1))
            .unwrap();
        assert_eq!(kind(set(&mut ns, &b, "/d/s", "user.k", b"v")), NotPermitted);
        set(&mut ns, &a, "/d/s", "user.k", b"v").unwrap();
        set(&mut ns, &root(), "/d/s", "user.k", b"w").unwrap();
        assert_eq!(get(&ns, &b, "/d/s", "user.k").unwrap(), b"w");
    }

    #[test]
    fn attributes_belong_to_the_inode_and_go_with_it() {
        let mut ns = setup();
        let a = alice();
        ns.drain_changes();
        let f = set(&mut ns, &a, "/d/f", "user.k", b"v").unwrap();
        let rows = ns.drain_changes();
        assert!(
            rows.contains(&Mutation::PutXattrs {
                inode: f.0,
                xattrs: vec![XattrRow {
                    name: "user.k".into(),
                    value: b"v".to_vec()
                }]
            }),
            "{rows:?}"
        );
        assert!(rows
            .iter()
            .any(|m| matches!(m, Mutation::PutInode(r) if r.id == f.0)));
        assert!(
            ns.get(f).unwrap().to_attr().xattrs,
            "Attr.xattrs says it has some"
        );
        // A hard link shares them; a rename keeps them.
        ns.link(&a, p("/d/f"), EntrySel::Path("/d/h"), t(2))
            .unwrap();
        set(&mut ns, &a, "/d/h", "user.h", b"h").unwrap();
        assert_eq!(list(&ns, &a, "/d/f"), ["user.h", "user.k"]);
        let flags = RenameFlags::default();
        ns.rename(
            &a,
            EntrySel::Path("/d/f"),
            EntrySel::Path("/g"),
            flags,
            t(3),
        )
        .unwrap_err();
        ns.rename(
            &a,
            EntrySel::Path("/d/f"),
            EntrySel::Path("/d/g"),
            flags,
            t(3),
        )
        .unwrap();
        assert_eq!(get(&ns, &a, "/d/g", "user.k").unwrap(), b"v");
        ns.drain_changes();
        // Unlinking one link keeps them; the last one deletes their row with the inode.
        ns.remove(&a, EntrySel::Path("/d/h"), RemoveMode::default(), t(4))
            .unwrap();
        assert!(!ns
            .drain_changes()
            .iter()
            .any(|m| matches!(m, Mutation::DeleteXattrs(_))));
        assert_eq!(get(&ns, &a, "/d/g", "user.h").unwrap(), b"h");
        // A rename over a file with attributes frees it and its row.
        let victim = create(&mut ns, &a, "/d/v", 0o644);
        set(&mut ns, &a, "/d/v", "user.v", b"v").unwrap();
        ns.drain_changes();
        ns.rename(
            &a,
            EntrySel::Path("/d/g"),
            EntrySel::Path("/d/v"),
            flags,
            t(5),
        )
        .unwrap();
        let rows = ns.drain_changes();
        assert!(rows.contains(&Mutation::DeleteXattrs(victim.0)), "{rows:?}");
        assert_eq!(get(&ns, &a, "/d/v", "user.k").unwrap(), b"v");
        // Removing the last attribute deletes the row; a file never given one writes none.
        for name in ["user.h", "user.k"] {
            ns.remove_xattr(&a, p("/d/v"), false, name, t(6)).unwrap();
        }
        assert!(ns.drain_changes().contains(&Mutation::DeleteXattrs(f.0)));
        assert!(!ns.get(f).unwrap().to_attr().xattrs);
        create(&mut ns, &a, "/d/plain", 0o644);
        ns.remove(&a, EntrySel::Path("/d/plain"), RemoveMode::default(), t(7))
            .unwrap();
        assert!(!ns
            .drain_changes()
            .iter()
            .any(|m| matches!(m, Mutation::DeleteXattrs(_) | Mutation::PutXattrs { .. })));
        // The root directory takes them too.
        ns.set_xattr(
            &root(),
            NodeSel::Inode(ROOT),
            false,
            "user.r",
            b"r",
            XattrMode::Any,
            t(8),
        )
        .unwrap();
        assert_eq!(list(&ns, &root(), "/"), ["user.r"]);
    }

    #[test]
    fn calls_sent_again_are_answered_without_a_second_effect() {
        let mut ns = setup();
        let id = crate::retry_cache::CallId {
            client: "m1".into(),
            call: 7,
        };
        let a = alice();
        let run = |ns: &mut Namespace, m| {
            ns.once_inode(Some(&id), t(9), |ns| {
                ns.set_xattr(&a, p("/d/f"), false, "user.once", b"1", m, t(9))
            })
        };
        let f = run(&mut ns, XattrMode::Create).unwrap();
        // The same call again is not a second create (which would be EEXIST).
        assert_eq!(run(&mut ns, XattrMode::Create).unwrap(), f);
        let rm = crate::retry_cache::CallId {
            client: "m1".into(),
            call: 8,
        };
        for _ in 0..2 {
            let r = ns.once_inode(Some(&rm), t(9), |ns| {
                ns.remove_xattr(&a, p("/d/f"), false, "user.once", t(9))
            });
            assert_eq!(r.unwrap(), f);
        }
        assert!(list(&ns, &a, "/d/f").is_empty());
    }

    #[test]
    fn a_row_for_a_missing_inode_is_refused() {
        let mut ns = Namespace::new();
        let row = XattrRow {
            name: "user.a".into(),
            value: vec![1],
        };
        assert!(ns.load_xattrs([(ROOT.0, vec![row.clone()])]).is_ok());
        assert!(ns.load_xattrs([(99, vec![row])]).is_err());
        let encoded = postcard::to_allocvec(&vec![XattrRow {
            name: "user.a".into(),
            value: vec![0; 3],
        }])
        .unwrap();
        assert_eq!(
            encoded,
            [1, 6, b'u', b's', b'e', b'r', b'.', b'a', 3, 0, 0, 0]
        );
    }
}
