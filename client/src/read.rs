//! The read path (design §5): stream a block from its best replica, verify every chunk against its
//! blake3 hash, and on a dead node or a mismatch report the bad replica and continue from the next
//! replica at the same offset. Bytes that failed verification are never returned.

use crate::client::{inode_ref, Client};
use crate::error::ClientError;
use crate::local::{LocalError, LocalReplica};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use ringfs_proto::chunk::{self, CHUNK_SIZE};
use ringfs_proto::{pb, ErrorKind};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// A stalled replica (no answer or no packet for this long) is abandoned for the next one. A
/// healthy datanode sends a 1 MiB packet in milliseconds; a hung one still accepts connections.
const PACKET_TIMEOUT: Duration = Duration::from_secs(15);
/// Blocks fetched concurrently by `read_range`/`read_at` for one call.
const PARALLEL_BLOCKS: usize = 4;
/// Blocks streamed at once by `copy_to` (the one being written out and those ahead): several keep
/// the datanodes' disks and the network busy at once (2 left `get` at ~0.5x of a local read; 3-4
/// measured 20-30% faster). A block ahead whose channel is full stops reading its stream and
/// leaves up to one HTTP/2 stream window unread on its connection: the connection window
/// (`ringfs_proto::net`, 4 stream windows) must stay larger than the blocks ahead (2 windows) or
/// the block being written out could starve behind them.
const READAHEAD_BLOCKS: usize = 3;
/// Verified packets buffered per block in `copy_to` (about 1 MiB each: a whole 64 MiB block).
const READAHEAD_PACKETS: usize = 64;
/// Bytes read and verified per step of a short-circuit read (one blocking task each): as large as
/// the mount's readahead chunks, so one chunk is one buffer (no concatenation copy).
const LOCAL_READ_UNIT: u64 = 4 << 20;
/// Block tokens live 10 minutes; locations older than this are fetched again before use.
const LOCATIONS_MAX_AGE: Duration = Duration::from_secs(300);

/// A file's attributes and its blocks (sorted by offset), as `GetBlockLocations` returned them.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    what: String,
    attr: pb::Attr,
    blocks: Vec<pb::LocatedBlock>,
    fetched: Instant,
    /// An inline file's content (no blocks): bytes `[0, len)`, the rest of the size is zeros.
    inline: Bytes,
}

impl Layout {
    pub(crate) fn new(what: String, attr: pb::Attr, mut blocks: Vec<pb::LocatedBlock>) -> Layout {
        blocks.sort_by_key(|b| b.offset);
        Layout {
            what,
            attr,
            blocks,
            fetched: Instant::now(),
            inline: Bytes::new(),
        }
    }

    /// The layout of an inline file (`GetBlockLocationsResponse.inline_data`; empty = not inline).
    pub(crate) fn with_inline(mut self, data: Bytes) -> Layout {
        self.inline = data;
        self
    }

    /// The byte ranges that hold data (stored blocks, inline content), in order and clamped to
    /// the size; the rest of the file is holes.
    fn data_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let size = self.attr.size;
        let inline = (!self.inline.is_empty()).then_some((0, self.inline.len() as u64));
        let blocks = self
            .blocks
            .iter()
            .filter(|b| b.id != 0 && b.len > 0)
            .map(|b| (b.offset, b.offset + b.len));
        inline
            .into_iter()
            .chain(blocks)
            .map(move |(s, e)| (s.min(size), e.min(size)))
            .filter(|(s, e)| s < e)
    }

    /// lseek(SEEK_DATA): the first offset at or past `offset` inside data; `None` when there is
    /// none before the end of the file (ENXIO).
    fn seek_data(&self, offset: u64) -> Option<u64> {
        self.data_ranges()
            .find(|&(_, e)| e > offset)
            .map(|(s, _)| s.max(offset))
    }

    /// lseek(SEEK_HOLE): the first offset at or past `offset` inside a hole, the end of the file
    /// counting as one; `None` at or past the end (ENXIO).
    fn seek_hole(&self, offset: u64) -> Option<u64> {
        if offset >= self.attr.size {
            return None;
        }
        let mut pos = offset;
        for (s, e) in self.data_ranges() {
            if e <= pos {
                continue;
            }
            if s > pos {
                break;
            }
            pos = e;
        }
        Some(pos)
    }

    /// The pieces `[offset, offset+len)` (clamped to the file size) is made of, in order.
    fn plan(&self, offset: u64, len: u64) -> Vec<Segment> {
        let size = self.attr.size;
        let end = offset.saturating_add(len).min(size);
        let mut out = Vec::new();
        if !self.inline.is_empty() {
            let data_end = (self.inline.len() as u64).min(end);
            if offset < data_end {
                out.push(Segment::Data(
                    self.inline.slice(offset as usize..data_end as usize),
                ));
            }
            if offset.max(data_end) < end {
                out.push(Segment::Zeros(end - offset.max(data_end)));
            }
            return out;
        }
        let mut pos = offset;
        for b in &self.blocks {
            if pos >= end {
                break;
            }
            let (b_start, b_end) = (b.offset, b.offset + b.len);
            if b_end <= pos || b.len == 0 {
                continue;
            }
            if b_start >= end {
                break;
            }
            if b_start > pos {
                out.push(Segment::Zeros(b_start - pos));
                pos = b_start;
            }
            let (s, e) = (pos - b_start, end.min(b_end) - b_start);
            if b.id == 0 {
                out.push(Segment::Zeros(e - s));
            } else {
                out.push(Segment::Block {
                    block: b.clone(),
                    start: s,
                    end: e,
                });
            }
            pos = b_start + e;
        }
        if pos < end {
            out.push(Segment::Zeros(end - pos));
        }
        out
    }
}

/// A piece of a read: zeros (a hole, or size beyond the blocks) or a range of one block.
#[derive(Debug)]
enum Segment {
    Zeros(u64),
    /// Bytes at hand (an inline file's content).
    Data(Bytes),
    Block {
        block: pb::LocatedBlock,
        start: u64,
        end: u64,
    },
}

/// Where verified bytes go.
trait Sink: Send {
    /// Takes the next verified bytes; false = the consumer is gone (stop reading).
    fn put(&mut self, data: Bytes) -> impl Future<Output = bool> + Send;
}

impl Sink for Vec<Bytes> {
    fn put(&mut self, data: Bytes) -> impl Future<Output = bool> + Send {
        self.push(data);
        std::future::ready(true)
    }
}

struct ChannelSink(mpsc::Sender<Result<Bytes, ClientError>>);

impl Sink for ChannelSink {
    async fn put(&mut self, data: Bytes) -> bool {
        self.0.send(Ok(data)).await.is_ok()
    }
}

/// A block being streamed ahead by `copy_to`: its verified bytes and the task producing them.
type Readahead = (mpsc::Receiver<Result<Bytes, ClientError>>, AbortOnDrop);

/// Why one replica could not deliver.
enum ReplicaError {
    Mismatch { chunk: u64 },
    Other(String),
}

/// Streams `[start, end)` of `block` into `sink`, replica after replica, verified.
async fn read_block<S: Sink>(
    client: &Client,
    what: &str,
    block: &pb::LocatedBlock,
    start: u64,
    end: u64,
    sink: &mut S,
) -> Result<(), ClientError> {
    if start >= end {
        return Ok(());
    }
    if block.locations.is_empty() {
        return Err(ClientError::NoLiveReplica {
            block: block.id,
            what: what.to_string(),
            // Not "no replica is known", which read as data loss: the usual cause is that the
            // datanodes holding it are down (or have not reported to a restarted namenode).
            reason: "no live datanode holds one: are its datanodes down? `ringfs fsck` lists \
                     missing blocks"
                .to_string(),
        });
    }
    let mut pos = start;
    let mut reasons = Vec::new();
    let suspects = &client.shared.suspects;
    for loc in suspects.order(&block.locations, |l| l.address.as_str()) {
        match read_replica(client, block, &loc.address, &mut pos, end, sink).await {
            Ok(()) => {
                suspects.answered(&loc.address);
                return Ok(());
            }
            Err(ReplicaError::Mismatch { chunk }) => {
                tracing::warn!(block = block.id, datanode = %loc.address, chunk, "{what}: checksum mismatch; reporting the replica");
                reasons.push(format!(
                    "{}: checksum mismatch in chunk {chunk}",
                    loc.address
                ));
                let req = pb::ReportBadReplicaRequest {
                    block_id: block.id,
                    generation: block.generation,
                    datanode: loc.address.clone(),
                    reason: format!("client checksum mismatch in chunk {chunk}"),
                };
                if let Err(e) = client.namenode().report_bad_replica(req).await {
                    tracing::warn!(block = block.id, error = %e, "reporting a bad replica failed");
                }
            }
            Err(ReplicaError::Other(reason)) => {
                suspects.failed(&loc.address);
                tracing::info!(block = block.id, datanode = %loc.address, %reason, "{what}: replica failed; trying the next");
                reasons.push(format!("{}: {reason}", loc.address));
            }
        }
    }
    Err(ClientError::NoLiveReplica {
        block: block.id,
        what: what.to_string(),
        reason: reasons.join("; "),
    })
}

/// Streams from one replica, advancing `pos` past every verified byte handed to `sink`.
async fn read_replica<S: Sink>(
    client: &Client,
    block: &pb::LocatedBlock,
    addr: &str,
    pos: &mut u64,
    end: u64,
    sink: &mut S,
) -> Result<(), ReplicaError> {
    let local = client
        .shared
        .local
        .open(addr, block)
        .await
        .map_err(ReplicaError::Other)?;
    if let Some(replica) = local {
        match read_local(&replica, pos, end, sink).await {
            Ok(()) => return Ok(()),
            Err(LocalError::Mismatch { chunk }) => {
                client.shared.local.forget(addr, block);
                return Err(ReplicaError::Mismatch { chunk });
            }
            // The rest comes over gRPC from the same datanode, which knows best what is wrong.
            Err(LocalError::Other(reason)) => {
                client.shared.local.forget(addr, block);
                tracing::info!(block = block.id, datanode = addr, %reason, "local read failed; reading over the network");
            }
        }
    }
    let mut dn = client
        .shared
        .datanode(addr)
        .map_err(|e| ReplicaError::Other(e.to_string()))?;
    let req = pb::ReadBlockRequest {
        block_id: block.id,
        generation: block.generation,
        offset: *pos,
        len: end - *pos,
        access_token: block.access_token.clone(),
        // Every chunk is verified below, against the hashes the datanode stored at write time.
        client_verifies: true,
    };
    let call = tokio::time::timeout(PACKET_TIMEOUT, dn.read_block(req));
    let mut stream = match call.await {
        Err(_) => return Err(ReplicaError::Other("no answer".into())),
        Ok(Err(st)) => return Err(ReplicaError::Other(crate::client::error_chain(&st))),
        Ok(Ok(r)) => r.into_inner(),
    };
    let mut expect = *pos - *pos % CHUNK_SIZE as u64;
    loop {
        let pkt = match tokio::time::timeout(PACKET_TIMEOUT, stream.message()).await {
            Err(_) => return Err(ReplicaError::Other(format!("stalled at offset {expect}"))),
            Ok(Err(st)) => return Err(ReplicaError::Other(crate::client::error_chain(&st))),
            Ok(Ok(None)) => {
                return Err(ReplicaError::Other(format!(
                    "replica ended at offset {expect}, expected {end}"
                )));
            }
            Ok(Ok(Some(p))) => p,
        };
        if pkt.offset != expect {
            return Err(ReplicaError::Other(format!(
                "packet at offset {}, expected {expect}",
                pkt.offset
            )));
        }
        if let Err(i) = chunk::verify_chunks(&pkt.data, &pkt.chunk_hashes) {
            return Err(ReplicaError::Mismatch {
                chunk: pkt.offset / CHUNK_SIZE as u64 + i as u64,
            });
        }
        let pkt_end = pkt.offset + pkt.data.len() as u64;
        expect = pkt_end;
        if pkt_end <= *pos {
            continue;
        }
        let s = (*pos - pkt.offset) as usize;
        let e = (end.min(pkt_end) - pkt.offset) as usize;
        let data = pkt.data.slice(s..e);
        *pos += (e - s) as u64;
        if !sink.put(data).await || *pos >= end {
            return Ok(());
        }
    }
}

/// Streams `[*pos, end)` of a replica opened on this host (short-circuit read), verified, advancing
/// `pos` past every byte handed to `sink`.
async fn read_local<S: Sink>(
    replica: &Arc<LocalReplica>,
    pos: &mut u64,
    end: u64,
    sink: &mut S,
) -> Result<(), LocalError> {
    if end > replica.len() {
        return Err(LocalError::Other(format!(
            "the replica here has {} bytes, the block {end}",
            replica.len()
        )));
    }
    while *pos < end {
        let start = *pos - *pos % CHUNK_SIZE as u64;
        let stop = (start + LOCAL_READ_UNIT)
            .min(end.next_multiple_of(CHUNK_SIZE as u64))
            .min(replica.len());
        let r = replica.clone();
        let data = tokio::task::spawn_blocking(move || r.read_verified(start, stop))
            .await
            .map_err(|e| LocalError::Other(format!("local read task: {e}")))??;
        let (s, e) = ((*pos - start) as usize, (end.min(stop) - start) as usize);
        *pos += (e - s) as u64;
        if !sink.put(data.slice(s..e)).await {
            return Ok(());
        }
    }
    Ok(())
}

/// Zeros, without allocating per call.
fn zeros(n: u64) -> Bytes {
    static ZEROS: [u8; 1 << 20] = [0; 1 << 20];
    if n <= ZEROS.len() as u64 {
        Bytes::from_static(&ZEROS[..n as usize])
    } else {
        Bytes::from(vec![0u8; n as usize])
    }
}

/// Reads `[offset, offset+len)` of a file laid out as `layout` into one buffer.
pub(crate) async fn read_layout(
    client: &Client,
    layout: &Layout,
    offset: u64,
    len: u64,
) -> Result<Bytes, ClientError> {
    let segments = layout.plan(offset, len);
    let parts: Vec<Vec<Bytes>> = futures::stream::iter(segments)
        .map(|seg| async move {
            match seg {
                Segment::Zeros(n) => Ok(vec![zeros(n)]),
                Segment::Data(b) => Ok(vec![b]),
                Segment::Block { block, start, end } => {
                    let mut out = Vec::new();
                    read_block(client, &layout.what, &block, start, end, &mut out).await?;
                    Ok::<_, ClientError>(out)
                }
            }
        })
        .buffered(PARALLEL_BLOCKS)
        .try_collect()
        .await?;
    let mut parts: Vec<Bytes> = parts.into_iter().flatten().collect();
    if parts.len() == 1 {
        return Ok(parts.pop().unwrap_or_default());
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut buf = BytesMut::with_capacity(total);
    for p in parts {
        buf.extend_from_slice(&p);
    }
    Ok(buf.freeze())
}

/// An open file for reading: its attributes and block locations as of `open` (refreshed when the
/// locations are old or every replica of a block failed).
pub struct FileReader {
    client: Client,
    attr: pb::Attr,
    layout: Mutex<Arc<Layout>>,
}

/// Aborts a spawned task when dropped (a `copy_to` that fails or is cancelled stops its readahead).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("inode", &self.attr.inode)
            .field("size", &self.attr.size)
            .finish()
    }
}

impl FileReader {
    pub(crate) fn new(client: Client, layout: Layout) -> FileReader {
        FileReader {
            client,
            attr: layout.attr,
            layout: Mutex::new(Arc::new(layout)),
        }
    }

    /// The file's attributes at open.
    pub fn attr(&self) -> &pb::Attr {
        &self.attr
    }

    /// lseek(SEEK_DATA) in the file as of `open`: the first offset at or past `offset` that is
    /// not in a hole (holes are whole blocks never written, and the tail past the stored bytes);
    /// `None` when no data follows (ENXIO).
    pub fn seek_data(&self, offset: u64) -> Option<u64> {
        self.current().seek_data(offset)
    }

    /// lseek(SEEK_HOLE): the first offset at or past `offset` in a hole, or the end of the file;
    /// `None` at or past the end (ENXIO).
    pub fn seek_hole(&self, offset: u64) -> Option<u64> {
        self.current().seek_hole(offset)
    }

    fn current(&self) -> Arc<Layout> {
        self.layout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fetches the block locations again (fresh replicas and access tokens). The file's size as of
    /// `open` is kept, so a reader sees one consistent length.
    async fn refresh(&self) -> Result<Arc<Layout>, ClientError> {
        let old = self.current();
        let mut fresh = self.client.layout(inode_ref(self.attr.inode), 0, 0).await?;
        fresh.what = old.what.clone();
        fresh.attr.size = self.attr.size;
        let fresh = Arc::new(fresh);
        *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    async fn fresh_layout(&self) -> Result<Arc<Layout>, ClientError> {
        let cur = self.current();
        if cur.fetched.elapsed() > LOCATIONS_MAX_AGE {
            return self.refresh().await;
        }
        Ok(cur)
    }

    /// Reads `[offset, offset+len)`: short only at end of file, holes read as zeros.
    pub async fn read_at(&self, offset: u64, len: u64) -> Result<Bytes, ClientError> {
        if len == 0 || offset >= self.attr.size {
            return Ok(Bytes::new());
        }
        let layout = self.fresh_layout().await?;
        let r = match read_layout(&self.client, &layout, offset, len).await {
            Err(ClientError::NoLiveReplica { .. })
                if layout.fetched.elapsed() > Duration::from_millis(200) =>
            {
                let layout = self.refresh().await?;
                read_layout(&self.client, &layout, offset, len).await
            }
            r => r,
        };
        match r {
            Err(e) => Err(self.explain(e).await),
            ok => ok,
        }
    }

    /// A block no datanode holds any more was usually freed because another client deleted,
    /// replaced or truncated the file while it was read: say so, rather than suggest lost data.
    /// Other errors, and a block the file still has, come out as they are.
    async fn explain(&self, e: ClientError) -> ClientError {
        let ClientError::NoLiveReplica { block, what, .. } = &e else {
            return e;
        };
        let how = match self.client.layout(inode_ref(self.attr.inode), 0, 0).await {
            Err(ClientError::Status {
                kind: ErrorKind::NotFound | ErrorKind::Stale,
                ..
            }) => "deleted or replaced",
            Ok(now) if !now.blocks.iter().any(|b| b.id == *block) => "truncated or rewritten",
            _ => return e,
        };
        ClientError::ChangedWhileRead {
            what: what.clone(),
            block: *block,
            how,
        }
    }

    /// Writes the whole file to `w` sequentially, streaming the next blocks while the current one
    /// is written out; returns the number of bytes written.
    pub async fn copy_to<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> Result<u64, ClientError> {
        self.stream_out(&mut WriteOut(w)).await
    }

    /// Like [`copy_to`](Self::copy_to), but hands the verified bytes themselves to `out`, in
    /// order: a consumer writing them from its own thread (`get`, `cat`) saves the copy into an
    /// async writer's buffer. Fails with a broken-pipe I/O error when the receiver goes away.
    pub async fn send_to(&mut self, out: &mpsc::Sender<Bytes>) -> Result<u64, ClientError> {
        self.stream_out(&mut SendOut(out)).await
    }

    /// The body of `copy_to` and `send_to`.
    async fn stream_out<O: Output>(&mut self, w: &mut O) -> Result<u64, ClientError> {
        let layout = self.fresh_layout().await?;
        let mut segments: VecDeque<Segment> = layout.plan(0, self.attr.size).into();
        // Spawned block readers, in segment order; `None` for zero segments.
        let mut ahead: VecDeque<(Segment, Option<Readahead>)> = VecDeque::new();
        let mut written = 0u64;
        loop {
            while ahead.iter().filter(|(_, r)| r.is_some()).count() < READAHEAD_BLOCKS
                || ahead.is_empty()
            {
                let Some(seg) = segments.pop_front() else {
                    break;
                };
                let reader = match &seg {
                    Segment::Zeros(_) | Segment::Data(_) => None,
                    Segment::Block { block, start, end } => {
                        let (tx, rx) = mpsc::channel(READAHEAD_PACKETS);
                        let (client, what, block, start, end) = (
                            self.client.clone(),
                            layout.what.clone(),
                            block.clone(),
                            *start,
                            *end,
                        );
                        let task = tokio::spawn(async move {
                            let mut sink = ChannelSink(tx);
                            if let Err(e) =
                                read_block(&client, &what, &block, start, end, &mut sink).await
                            {
                                let _ = sink.0.send(Err(e)).await;
                            }
                        });
                        Some((rx, AbortOnDrop(task)))
                    }
                };
                ahead.push_back((seg, reader));
            }
            let Some((seg, reader)) = ahead.pop_front() else {
                break;
            };
            match (seg, reader) {
                (Segment::Zeros(mut n), _) => {
                    while n > 0 {
                        let z = zeros(n.min(1 << 20));
                        let len = z.len() as u64;
                        w.put(z).await?;
                        n -= len;
                        written += len;
                    }
                }
                (Segment::Data(b), _) => {
                    written += b.len() as u64;
                    w.put(b).await?;
                }
                (Segment::Block { block, start, end }, Some((mut rx, _task))) => {
                    let mut got = 0u64;
                    while let Some(item) = rx.recv().await {
                        let data = match item {
                            Ok(data) => data,
                            Err(e) => return Err(self.explain(e).await),
                        };
                        got += data.len() as u64;
                        w.put(data).await?;
                    }
                    if got != end - start {
                        return Err(ClientError::Protocol(format!(
                            "{}: block {}: reader stopped after {got} of {} bytes",
                            layout.what,
                            block.id,
                            end - start
                        )));
                    }
                    written += got;
                }
                (Segment::Block { .. }, None) => unreachable!("block segments always get a reader"),
            }
        }
        w.flush().await?;
        Ok(written)
    }
}

/// Where `stream_out` puts the file's bytes.
trait Output {
    async fn put(&mut self, data: Bytes) -> std::io::Result<()>;
    async fn flush(&mut self) -> std::io::Result<()>;
}

/// An `AsyncWrite` as an [`Output`] (`copy_to`).
struct WriteOut<'a, W>(&'a mut W);

impl<W: AsyncWrite + Unpin> Output for WriteOut<'_, W> {
    async fn put(&mut self, data: Bytes) -> std::io::Result<()> {
        self.0.write_all(&data).await
    }
    async fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().await
    }
}

/// A channel of `Bytes` as an [`Output`] (`send_to`).
struct SendOut<'a>(&'a mpsc::Sender<Bytes>);

impl Output for SendOut<'_> {
    async fn put(&mut self, data: Bytes) -> std::io::Result<()> {
        self.0.send(data).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the output was closed")
        })
    }
    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(id: u64, offset: u64, len: u64) -> pb::LocatedBlock {
        pb::LocatedBlock {
            id,
            generation: 1,
            offset,
            len,
            ..Default::default()
        }
    }

    fn attr(size: u64) -> pb::Attr {
        pb::Attr {
            inode: 2,
            size,
            ..Default::default()
        }
    }

    #[test]
    fn seek_data_and_hole_skip_holes_and_the_unstored_tail() {
        // 0..10 data, 10..20 hole (id 0), 20..25 data, 25..40 unstored tail.
        let l = Layout::new(
            "f".into(),
            attr(40),
            vec![block(7, 0, 10), block(0, 10, 10), block(8, 20, 5)],
        );
        assert_eq!(l.seek_data(0), Some(0));
        assert_eq!(l.seek_data(9), Some(9));
        assert_eq!(l.seek_data(10), Some(20));
        assert_eq!(l.seek_data(24), Some(24));
        assert_eq!(l.seek_data(25), None);
        assert_eq!(l.seek_hole(0), Some(10));
        assert_eq!(l.seek_hole(15), Some(15));
        assert_eq!(l.seek_hole(20), Some(25));
        assert_eq!(l.seek_hole(39), Some(39));
        assert_eq!(l.seek_hole(40), None);
        // Adjacent blocks are one data range; a file with no holes ends in the implicit one.
        let l = Layout::new(
            "f".into(),
            attr(20),
            vec![block(1, 0, 10), block(2, 10, 10)],
        );
        assert_eq!(l.seek_hole(3), Some(20));
        assert_eq!(l.seek_data(19), Some(19));
        // Inline content.
        let l =
            Layout::new("f".into(), attr(100), Vec::new()).with_inline(Bytes::from_static(b"abc"));
        assert_eq!(l.seek_data(0), Some(0));
        assert_eq!(l.seek_hole(0), Some(3));
        assert_eq!(l.seek_data(3), None);
        // Empty file.
        let l = Layout::new("f".into(), attr(0), Vec::new());
        assert_eq!(l.seek_data(0), None);
        assert_eq!(l.seek_hole(0), None);
    }

    fn shape(segs: &[Segment]) -> Vec<(u64, u64, u64)> {
        segs.iter()
            .map(|s| match s {
                Segment::Zeros(n) => (0, 0, *n),
                Segment::Data(b) => (u64::MAX, 0, b.len() as u64),
                Segment::Block { block, start, end } => (block.id, *start, *end),
            })
            .collect()
    }

    #[test]
    fn plan_covers_blocks_holes_and_tail_zeros() {
        let l = Layout::new(
            "/f".into(),
            attr(350),
            vec![block(7, 100, 100), block(5, 0, 100), block(0, 200, 100)],
        );
        assert_eq!(
            shape(&l.plan(0, 1000)),
            vec![(5, 0, 100), (7, 0, 100), (0, 0, 100), (0, 0, 50)]
        );
        assert_eq!(shape(&l.plan(150, 10)), vec![(7, 50, 60)]);
        assert_eq!(shape(&l.plan(90, 20)), vec![(5, 90, 100), (7, 0, 10)]);
        assert_eq!(shape(&l.plan(320, 100)), vec![(0, 0, 30)]);
        assert!(l.plan(350, 10).is_empty());
        let gap = Layout::new("/g".into(), attr(300), vec![block(9, 200, 100)]);
        assert_eq!(shape(&gap.plan(0, 300)), vec![(0, 0, 200), (9, 0, 100)]);
    }

    #[test]
    fn plan_of_an_inline_file_is_its_data_then_zeros() {
        let l =
            Layout::new("/i".into(), attr(100), Vec::new()).with_inline(Bytes::from(vec![7u8; 60]));
        assert_eq!(shape(&l.plan(0, 1000)), vec![(u64::MAX, 0, 60), (0, 0, 40)]);
        assert_eq!(shape(&l.plan(10, 20)), vec![(u64::MAX, 0, 20)]);
        assert_eq!(shape(&l.plan(50, 20)), vec![(u64::MAX, 0, 10), (0, 0, 10)]);
        assert_eq!(shape(&l.plan(70, 100)), vec![(0, 0, 30)]);
        assert!(l.plan(100, 10).is_empty());
    }
}
