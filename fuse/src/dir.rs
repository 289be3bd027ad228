//! Directory handles: `readdir`/`readdirplus` page through `ReadDir` (name cursor `after`), one
//! page in memory per open directory, so a directory of any size lists in bounded memory.
//!
//! Stream positions: 0 = ".", 1 = "..", 2 + k = the k-th entry in name order. The offset the
//! kernel gets with each entry is the position of the next one. A seek (seekdir) to a position
//! whose previous entry this handle returned lately resumes after that entry's name; else at the
//! page it lies in, by that page's name cursor. So names added or removed before it meanwhile do
//! not move it (counting from the start skipped or repeated unchanged entries).

use crate::creds::Caller;
use crate::error::Res;
use crate::ops::{locked, node, Inner};
use fuser::Errno;
use ringfs_proto::pb;
use std::sync::Arc;

/// Entries fetched per `ReadDir` call.
const PAGE: u32 = 1000;
/// Page starts remembered per handle for seeks back (a few KiB; further back starts over).
const MARKS: usize = 1024;
/// Names of the entries a handle returned last, by position, for exact seeks (a few hundred KiB).
const NAMES: usize = 8192;

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
    /// (start, name cursor) of the pages read so far, in stream order (the first is (0, "")).
    marks: std::collections::VecDeque<(u64, String)>,
    /// The name at each position returned lately (at most `NAMES`).
    names: std::collections::BTreeMap<u64, String>,
}

impl Page {
    /// The remembered page start at or before entry `k`.
    fn mark_before(&self, k: u64) -> (u64, String) {
        self.marks
            .iter()
            .rev()
            .find(|(start, _)| *start <= k)
            .cloned()
            .unwrap_or_default()
    }

    /// Takes `r` as the page of entries from position `start`.
    fn load(&mut self, start: u64, r: pb::ReadDirResponse) {
        self.start = start;
        self.entries = r.entries;
        self.more = r.more;
        if let Some(d) = r.dir {
            self.dir = d;
        }
    }

    fn returned(&mut self, k: u64, name: &str) {
        if self.names.get(&k).is_some_and(|n| n == name) {
            return;
        }
        self.names.insert(k, name.to_string());
        if self.names.len() > NAMES {
            self.names.pop_first();
        }
    }

    fn remember(&mut self, start: u64, after: &str) {
        if self.marks.back().is_some_and(|(s, _)| *s >= start) {
            return;
        }
        if self.marks.len() == MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back((start, after.to_string()));
    }
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
            marks: [(0, String::new())].into(),
            names: Default::default(),
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
            let in_page = k >= page.start && k < page.start + page.entries.len() as u64;
            let before = k.checked_sub(1).and_then(|p| page.names.get(&p).cloned());
            if let (false, Some(after)) = (in_page, before) {
                // A seek to just after an entry returned lately: on from its name.
                page.load(k, self.read_dir_page(&h.creds, h.ino, &after).await?);
            } else if k < page.start {
                // Seek back (rewinddir/seekdir): read again from the page it lies in.
                let (start, after) = page.mark_before(k);
                page.load(start, self.read_dir_page(&h.creds, h.ino, &after).await?);
            }
            while k >= page.start + page.entries.len() as u64 && page.more {
                let Some(last) = page.entries.last().map(|e| e.name.clone()) else {
                    break;
                };
                let next = self.read_dir_page(&h.creds, h.ino, &last).await?;
                let start = page.start + page.entries.len() as u64;
                page.remember(start, &last);
                page.load(start, next);
            }
            let Some(e) = k
                .checked_sub(page.start)
                .and_then(|i| page.entries.get(i as usize))
            else {
                return Ok(());
            };
            let (hidden, name) = (ringfs_proto::is_hidden_dir_entry(e), e.name.clone());
            if !hidden && add(pos + 1, Entry::Child(e)) {
                return Ok(());
            }
            page.returned(k, &name);
            pos += 1;
        }
    }
}
