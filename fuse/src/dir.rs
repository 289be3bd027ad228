//! Directory handles: `readdir`/`readdirplus` page through `ReadDir` (name cursor `after`), one
//! page in memory per open directory, so a directory of any size lists in bounded memory.
//!
//! Stream positions: 0 = ".", 1 = "..", 2 + k = the k-th entry in name order. The offset the
//! kernel gets with each entry is the position of the next one.

use crate::creds::Caller;
use crate::error::Res;
use crate::ops::{locked, node, Inner};
use fuser::Errno;
use ringfs_proto::pb;
use std::sync::Arc;

/// Entries fetched per `ReadDir` call.
const PAGE: u32 = 1000;

pub(crate) struct DirHandle {
    ino: u64,
    creds: pb::Credentials,
    page: tokio::sync::Mutex<Page>,
}

/// The page of entries in memory: entries `start ..` of the stream of real entries.
struct Page {
    start: u64,
    entries: Vec<pb::DirEntry>,
    more: bool,
    dir: pb::Attr,
}

/// What `fill_dir` hands to the reply: a position to continue from and the entry.
pub(crate) enum Entry<'a> {
    Dot(&'a pb::Attr),
    DotDot(&'a pb::Attr),
    Child(&'a pb::DirEntry),
}

impl Inner {
    pub(crate) async fn read_dir_page(
        &self,
        creds: &pb::Credentials,
        ino: u64,
        after: &str,
    ) -> Res<pb::ReadDirResponse> {
        let req = pb::ReadDirRequest {
            creds: Some(creds.clone()),
            dir: Some(node(ino)),
            after: after.to_string(),
            limit: PAGE,
        };
        Ok(self
            .query(&req, |mut nn, req| async move { nn.read_dir(req).await })
            .await?)
    }

    /// opendir: reads the first page now, so a permission error shows at open.
    pub(crate) async fn opendir(&self, c: &Caller, ino: u64) -> Res<u64> {
        let first = self.read_dir_page(&c.creds, ino, "").await?;
        let page = Page {
            start: 0,
            entries: first.entries,
            more: first.more,
            dir: first.dir.unwrap_or_default(),
        };
        let h = DirHandle {
            ino,
            creds: c.creds.clone(),
            page: tokio::sync::Mutex::new(page),
        };
        let fh = self.next_fh();
        locked(&self.dirs).insert(fh, Arc::new(h));
        Ok(fh)
    }

    pub(crate) fn releasedir(&self, fh: u64) {
        locked(&self.dirs).remove(&fh);
    }

    /// Feeds entries from stream position `offset` to `add(next_position, entry)` until it
    /// returns true (reply buffer full) or the directory ends.
    pub(crate) async fn fill_dir<F>(&self, fh: u64, offset: u64, mut add: F) -> Res<()>
    where
        F: FnMut(u64, Entry<'_>) -> bool,
    {
        let h = locked(&self.dirs).get(&fh).cloned().ok_or(Errno::EBADF)?;
        let mut page = h.page.lock().await;
        let mut pos = offset;
        loop {
            if pos < 2 {
                let e = if pos == 0 {
                    Entry::Dot(&page.dir)
                } else {
                    Entry::DotDot(&page.dir)
                };
                if add(pos + 1, e) {
                    return Ok(());
                }
                pos += 1;
                continue;
            }
            let k = pos - 2;
            if k < page.start {
                // Seek back (rewinddir/seekdir): start over.
                let first = self.read_dir_page(&h.creds, h.ino, "").await?;
                *page = Page {
                    start: 0,
                    entries: first.entries,
                    more: first.more,
                    dir: first.dir.unwrap_or(page.dir),
                };
            }
            while k >= page.start + page.entries.len() as u64 && page.more {
                let Some(last) = page.entries.last().map(|e| e.name.clone()) else {
                    break;
                };
                let next = self.read_dir_page(&h.creds, h.ino, &last).await?;
                page.start += page.entries.len() as u64;
                page.entries = next.entries;
                page.more = next.more;
                if let Some(d) = next.dir {
                    page.dir = d;
                }
            }
            let Some(e) = k
                .checked_sub(page.start)
                .and_then(|i| page.entries.get(i as usize))
            else {
                return Ok(());
            };
            if !ringfs_proto::is_hidden_dir_entry(e) && add(pos + 1, Entry::Child(e)) {
                return Ok(());
            }
            pos += 1;
        }
    }
}
