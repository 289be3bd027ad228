//! Attribute changes and symlinks by path, for the CLI: [`Client::chmod`], [`Client::chown`],
//! [`Client::symlink`]. Like the other path-level changes of this library they sync before they
//! return (the mount makes the same calls by inode and syncs on fsync).

use crate::client::{attr_of, entry_path, path_ref, Client};
use crate::error::ClientError;
use ringfs_proto::pb;

impl Client {
    /// Sets the permission bits (07777) of `path` (a final symlink is not followed: a symlink's
    /// own mode is meaningless, so callers skip symlinks).
    pub async fn chmod(&self, path: &str, mode: u32) -> Result<pb::Attr, ClientError> {
        self.set_attr(
            path,
            pb::SetAttrRequest {
                mode: Some(mode & 0o7777),
                ..Default::default()
            },
        )
        .await
    }

    /// Sets the owner and/or group of `path` (`None` leaves one as it is). Only root may change
    /// the owner; the owner may change the group to one of its groups, as chown(2) allows.
    pub async fn chown(
        &self,
        path: &str,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<pb::Attr, ClientError> {
        self.set_attr(
            path,
            pb::SetAttrRequest {
                uid,
                gid,
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

    /// One SetAttr of `path` with the changes in `change` (its node, credentials and client id
    /// are filled in here). SetAttr sets absolute values, so sending it again is harmless.
    async fn set_attr(
        &self,
        path: &str,
        change: pb::SetAttrRequest,
    ) -> Result<pb::Attr, ClientError> {
        let req = pb::SetAttrRequest {
            creds: Some(self.creds().clone()),
            node: Some(path_ref(path)),
            client_id: self.client_id().to_string(),
            ..change
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.set_attr(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        self.sync().await?;
        attr_of(resp.into_inner().attr, path)
    }
}
