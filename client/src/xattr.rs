//! Extended attributes: `Client` methods for the namenode's SetXattr, GetXattr, ListXattr and
//! RemoveXattr (names with their namespace prefix, e.g. `user.mime_type`; the rules are the
//! namenode's, see `proto/ringfs.proto`).
//!
//! Every call is sent again when it fails in transport ([`Client::again_in_transport`]): reads are
//! harmless to repeat, and set/remove carry a [`Client::retry_id`], so a repeat of one the namenode
//! applied before it died is answered as the first was (an `XATTR_CREATE` is not refused as
//! existing, a remove not as missing). A change is in the namenode's log when it returns (it
//! survives a crash of the namenode process); [`Client::sync`] makes it survive a power loss too.

use crate::client::Client;
use crate::error::ClientError;
use ringfs_proto::pb;

/// How a node is named in error messages.
fn shown(node: &pb::NodeRef) -> String {
    match &node.target {
        Some(pb::node_ref::Target::Path(p)) => p.clone(),
        Some(pb::node_ref::Target::Inode(i)) => format!("inode {i}"),
        None => "(no node)".to_string(),
    }
}

fn attr_of(resp: pb::AttrResponse, node: &pb::NodeRef) -> Result<pb::Attr, ClientError> {
    resp.attr.ok_or_else(|| {
        ClientError::Protocol(format!(
            "{}: namenode answered without attributes",
            shown(node)
        ))
    })
}

impl Client {
    /// setxattr(2): sets attribute `name` of `node` to `value`. `mode` is `XattrSetCreate` (fails
    /// with "already exists" if it exists), `XattrSetReplace` (fails with kind `NoData` if it does
    /// not) or `XattrSetAny`. A path's final symlink is followed unless `no_follow` (lsetxattr).
    /// Returns the node's attributes after the change (its new ctime).
    pub async fn set_xattr(
        &self,
        node: pb::NodeRef,
        no_follow: bool,
        name: &str,
        value: &[u8],
        mode: pb::XattrSetMode,
    ) -> Result<pb::Attr, ClientError> {
        let req = pb::SetXattrRequest {
            creds: Some(self.creds().clone()),
            node: Some(node.clone()),
            no_follow,
            name: name.to_string(),
            value: value.to_vec(),
            mode: mode as i32,
            retry: Some(self.retry_id()),
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.set_xattr(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        attr_of(resp.into_inner(), &node)
    }

    /// getxattr(2): the value of attribute `name` of `node` (kind `NoData` when it has none, or
    /// the caller may not see it).
    pub async fn get_xattr(
        &self,
        node: pb::NodeRef,
        no_follow: bool,
        name: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let req = pb::GetXattrRequest {
            creds: Some(self.creds().clone()),
            node: Some(node),
            no_follow,
            name: name.to_string(),
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.get_xattr(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        Ok(resp.into_inner().value)
    }

    /// listxattr(2): the names of `node`'s attributes the caller may see, sorted.
    pub async fn list_xattr(
        &self,
        node: pb::NodeRef,
        no_follow: bool,
    ) -> Result<Vec<String>, ClientError> {
        let req = pb::ListXattrRequest {
            creds: Some(self.creds().clone()),
            node: Some(node),
            no_follow,
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.list_xattr(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        Ok(resp.into_inner().names)
    }

    /// removexattr(2): removes attribute `name` of `node` (kind `NoData` when it has none).
    /// Returns the node's attributes after the change (its new ctime).
    pub async fn remove_xattr(
        &self,
        node: pb::NodeRef,
        no_follow: bool,
        name: &str,
    ) -> Result<pb::Attr, ClientError> {
        let req = pb::RemoveXattrRequest {
            creds: Some(self.creds().clone()),
            node: Some(node.clone()),
            no_follow,
            name: name.to_string(),
            retry: Some(self.retry_id()),
        };
        let resp = self
            .again_in_transport(
                &req,
                |mut nn, req| async move { nn.remove_xattr(req).await },
            )
            .await
            .map_err(|s| self.nn_err(s))?;
        attr_of(resp.into_inner(), &node)
    }
}
