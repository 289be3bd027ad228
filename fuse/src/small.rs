//! Small files on the mount: content stored inline in the namenode's metadata instead of in
//! replicated blocks. Closing a small file is then one journaled `CommitBlocks` (no block
//! allocation, no datanode pipeline), and reading it needs no datanode (the client's reader serves
//! `inline_data`). `file.rs` calls in when it takes a file's lease (the inline content becomes
//! the overlay's dirty block 0, since it is not in any block) and when it commits.

use crate::error::Res;
use crate::overlay::{Overlay, Piece};
use ringfs_client::Client;
use ringfs_proto::pb;

/// After `Create`/`OpenWrite` answered `inline_data`/`inline_limit` and the overlay was built on the
/// (empty) block list: records the limit and makes the inline content the overlay's dirty copy of
/// block 0. Returns the bytes it added to the overlay (for the mount's dirty-bytes count).
pub(crate) fn adopt(client: &Client, ov: Option<&mut Overlay>, data: Vec<u8>, limit: u64) -> u64 {
    client.note_inline_limit(limit);
    let Some(ov) = ov else { return 0 };
    if data.is_empty() || data.len() as u64 > ov.block_size() {
        return 0;
    }
    let before = ov.bytes();
    ov.insert_loaded(0, data);
    ov.set_inline_base();
    ov.bytes() - before
}

/// The whole content of the overlay when it is small enough to be stored inline. Bytes still in
/// a committed block (a block file cut or partly rewritten below the limit) are read from it: this
/// mount holds the lease, so the committed file is what the overlay was built on. The read costs
/// less than the copy-on-write of that block it replaces, and the block is freed.
async fn inline_content(client: &Client, ino: u64, ov: &Overlay) -> Res<Option<Vec<u8>>> {
    let size = ov.size();
    let limit = client.inline_limit().min(ov.block_size());
    if size == 0 || size > limit {
        return Ok(None);
    }
    let mut data = Vec::with_capacity(size as usize);
    for piece in ov.read_plan(0, size) {
        match piece {
            Piece::Mem(b) => data.extend_from_slice(&b),
            Piece::Zeros(n) => data.resize(data.len() + n as usize, 0),
            Piece::Base { offset, len } => {
                let b = client.read_range(ino, offset, len).await?;
                data.extend_from_slice(&b[..b.len().min(len as usize)]);
                data.resize(data.len() + (len as usize).saturating_sub(b.len()), 0);
            }
        }
    }
    Ok((data.len() as u64 == size).then_some(data))
}

/// The commit of a dirty overlay, inline when it is small (see [`inline_content`]); `None` = it
/// is not (or the namenode's inline budget is used up): the caller commits blocks as usual. A
/// commit that keeps the overlay (fsync, or the commit before a timestamp change that `cp -p`,
/// `rsync` and `tar` make on an open file) leaves the content in it as clean block 0
/// ([`Overlay::committed_inline`]), so a small file's fsync never goes through the datanodes.
/// `mtime` None = the namenode's now.
pub(crate) async fn commit(
    client: &Client,
    ino: u64,
    ov: &mut Overlay,
    close: bool,
    mtime: Option<pb::Time>,
) -> Res<Option<pb::Attr>> {
    let Some(data) = inline_content(client, ino, ov).await? else {
        return Ok(None);
    };
    if close {
        return Ok(client
            .commit_inline(ino, data, ov.size(), true, mtime)
            .await?);
    }
    let attr = client
        .commit_inline(ino, data.clone(), ov.size(), false, mtime)
        .await?;
    if attr.is_some() {
        ov.committed_inline(data);
    }
    Ok(attr)
}

/// The closing commit of an overlay that holds exactly the committed inline content: gives the
/// lease back without changing the content or its `mtime` (a block commit would drop the inline
/// content, since the overlay's base has no blocks). `None` = the overlay is not in that state.
pub(crate) async fn close_clean(
    client: &Client,
    ino: u64,
    ov: &Overlay,
    mtime: Option<pb::Time>,
) -> Res<Option<pb::Attr>> {
    let Some(data) = ov.clean_inline() else {
        return Ok(None);
    };
    Ok(client
        .commit_inline(ino, data.to_vec(), ov.size(), true, mtime)
        .await?)
}
