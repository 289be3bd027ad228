//! Attribute changes and symlinks, for the CLI: [`Client::chmod`], [`Client::chown`],
//! [`Client::touch_times`],
//! [`Client::symlink`], [`Client::access`], [`Client::resolve`] (a path with its final symlinks
//! followed). Like the
//! other path-level changes of this library the changes sync before they return (the mount makes
//! the same calls by inode and syncs on fsync).

use crate::client::{attr_of, describe, entry_path, inode_ref, Client};
use crate::error::ClientError;
use ringfs_proto::{pb, ErrorKind};

impl Client {
    /// Sets the permission bits (07777) of `node` (a path's final symlink is followed, as
    /// chmod(2) does; by inode, that inode).
    pub async fn chmod(&self, node: pb::NodeRef, mode: u32) -> Result<pb::Attr, ClientError> {
        self.set_attr(
            node,
            pb::SetAttrRequest {
                mode: Some(mode & 0o7777),
                ..Default::default()
            },
        )
        .await
    }

    /// Sets the owner and/or group of `node` (`None` leaves one as it is). By inode a symlink
    /// itself changes (lchown). Only root may change the owner; the owner may change the group to
    /// one of its groups, as chown(2) allows.
    pub async fn chown(
        &self,
        node: pb::NodeRef,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<pb::Attr, ClientError> {
        self.set_attr(
            node,
            pb::SetAttrRequest {
                uid,
                gid,
                ..Default::default()
            },
        )
        .await
    }

    /// Sets the access and modification times of `node` to the namenode's now (touch(1)); the
    /// caller must own it or may write it, as utimensat(2) with UTIME_NOW allows.
    pub async fn touch_times(&self, node: pb::NodeRef) -> Result<pb::Attr, ClientError> {
        let now = || pb::TimeSet {
            value: Some(pb::time_set::Value::Now(true)),
        };
        self.set_attr(
            node,
            pb::SetAttrRequest {
                atime: Some(now()),
                mtime: Some(now()),
                ..Default::default()
            },
        )
        .await
    }

    /// Creates the symlink `path` pointing at `target` (stored as given, like symlink(2)).
    pub async fn symlink(&self, target: &str, path: &str) -> Result<pb::Attr, ClientError> {
        let req = pb::SymlinkRequest {
            creds: Some(self.creds().clone()),
            entry: Some(entry_path(path)),
            target: target.to_string(),
            retry: Some(self.retry_id()),
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.symlink(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        self.sync().await?;
        attr_of(resp.into_inner().attr, path)
    }

    /// Creates the special file `path` (fifo, socket or device `rdev`) of `kind`, like mknod(2).
    pub async fn mknod(
        &self,
        path: &str,
        kind: pb::FileKind,
        mode: u32,
        rdev: u32,
    ) -> Result<pb::Attr, ClientError> {
        let req = pb::MknodRequest {
            creds: Some(self.creds().clone()),
            entry: Some(entry_path(path)),
            kind: kind as i32,
            mode,
            rdev,
            retry: Some(self.retry_id()),
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.mknod(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        self.sync().await?;
        attr_of(resp.into_inner().attr, path)
    }

    /// Whether the caller may access `node` as `mask` says (R_OK 4, W_OK 2, X_OK 1; 0: exists),
    /// as access(2) answers: Ok, or the refusal ("permission denied", "no such file ...").
    pub async fn access(&self, node: pb::NodeRef, mask: u32) -> Result<(), ClientError> {
        let req = pb::AccessRequest {
            creds: Some(self.creds().clone()),
            node: Some(node),
            mask,
        };
        self.again_in_transport(&req, |mut nn, req| async move { nn.access(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        Ok(())
    }

    /// `path` with every symlink at its end followed (as stat(2) does, up to 40 of them): the
    /// path reached and its attributes. A relative target is taken from the link's directory.
    pub async fn resolve(&self, path: &str) -> Result<(String, pb::Attr), ClientError> {
        let mut path = path.to_string();
        for _ in 0..=MAX_SYMLINKS {
            let attr = self.stat(&path).await?;
            if attr.kind != pb::FileKind::Symlink as i32 {
                return Ok((path, attr));
            }
            let target = self.readlink(inode_ref(attr.inode)).await?;
            let base = if target.starts_with('/') {
                String::new()
            } else {
                parent_of(&path)
            };
            path = normalize(&format!("{base}/{target}"));
        }
        Err(ClientError::Status {
            kind: ErrorKind::TooManyLinks,
            message: format!("{path}: too many levels of symbolic links"),
        })
    }

    /// One SetAttr of `node` with the changes in `change` (its node, credentials and client id
    /// are filled in here). SetAttr sets absolute values, so sending it again is harmless.
    async fn set_attr(
        &self,
        node: pb::NodeRef,
        change: pb::SetAttrRequest,
    ) -> Result<pb::Attr, ClientError> {
        let what = describe(&node);
        let req = pb::SetAttrRequest {
            creds: Some(self.creds().clone()),
            node: Some(node),
            client_id: self.client_id().to_string(),
            ..change
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.set_attr(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        self.sync().await?;
        attr_of(resp.into_inner().attr, &what)
    }
}

/// Symlinks followed in one path before giving up with ELOOP (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// The directory part of an absolute path ("" for the root's children).
fn parent_of(path: &str) -> String {
    let t = path.trim_end_matches('/');
    match t.rfind('/') {
        Some(i) => t[..i].to_string(),
        None => String::new(),
    }
}

/// An absolute path with `.`, `..` and empty components taken out (lexically; `..` at the root
/// stays at the root).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_resolve_lexically() {
        assert_eq!(normalize("/a/b/../c"), "/a/c");
        assert_eq!(normalize("/../../x"), "/x");
        assert_eq!(normalize("//a/./b/"), "/a/b");
        assert_eq!(normalize("/"), "/");
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(parent_of("/a"), "");
    }
}
