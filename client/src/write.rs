//! The write path (design §4): `FileWriter` cuts a byte stream into blocks and 1 MiB packets;
//! `BlockWriter` streams one block's packets with their chunk hashes to the first datanode of the
//! pipeline (which forwards down the chain) and recovers the pipeline when a node fails.
//!
//! A block's packets stay in memory until every replica acknowledged it, so that after a failure
//! the whole block can be rewritten to the new pipeline under a new generation stamp.
//!
//! Two blocks are in flight: while the pipeline of block N writes its tail and fsyncs (and
//! recovers, if a node fails), block N+1 already streams. Blocks are allocated with
//! `AllocateBlock` (not yet in the file) and enter the file's block list through `CommitBlocks`
//! only once all their replicas acknowledged them, so the namenode never lists a block whose
//! replicas may be partial: every listed block is complete, and a writer killed at any point leaves
//! a file that lease recovery closes at its listed blocks (the unlisted in-flight blocks are freed).

use crate::client::Client;
use crate::error::ClientError;
/// The buffer types of [`FileWriter::write_bytes`] (re-exported so callers need no `bytes` dependency).
pub use bytes::{Bytes, BytesMut};
use ringfs_proto::chunk::{self, PACKET_SIZE};
use ringfs_proto::{pb, ErrorKind};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

/// How many times one block may go through pipeline recovery before the write fails.
const MAX_RECOVERIES: u32 = 5;
/// Packets queued towards the first datanode (backpressure: the client never runs further ahead).
const PACKETS_IN_FLIGHT: usize = 8;
/// A send into the pipeline that makes no progress for this long counts as a failed first node.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the pipeline may take to acknowledge a finished block (every replica fsynced): per
/// datanode, plus one more so the datanode above a hung one times out first and names it.
fn ack_timeout(pipeline: usize) -> Duration {
    ringfs_proto::PIPELINE_ANSWER_PER_HOP * (pipeline as u32 + 1)
}
/// Packet buffers a `FileWriter` keeps for reuse (one 64 MiB block's worth).
const SPARE_PACKETS: usize = 64;
/// Used when the namenode reports no block size for a file (should not happen).
const FALLBACK_BLOCK_SIZE: u64 = 64 * 1024 * 1024;

/// A file whose whole content is committed and which is still open for writing (its lease held),
/// from [`FileWriter::commit_all`]. Dropped without [`CommittedFile::close`], the file stays open
/// until the client gives its leases back (when the last clone of the `Client` goes) or they expire.
pub struct CommittedFile {
    client: Client,
    inode: u64,
}

impl CommittedFile {
    /// Closes the file (gives its lease back) and returns once that is durable at the namenode.
    pub async fn close(self) -> Result<(), ClientError> {
        self.client.release_file_lease(self.inode).await?;
        self.client.sync().await
    }
}

/// One packet of a block: its bytes and the blake3 hash of each 64 KiB chunk.
#[derive(Clone)]
struct Packet {
    data: Bytes,
    hashes: Vec<Vec<u8>>,
    /// `data` is a `FileWriter` packet buffer (reused once the block is acknowledged), not a slice
    /// of the caller's buffer (see [`FileWriter::write_bytes`]).
    own: bool,
}

impl Packet {
    fn new(data: Bytes, own: bool) -> Packet {
        let hashes = chunk::hashes_to_wire(&chunk::hash_chunks(&data));
        Packet { data, hashes, own }
    }

    fn message(&self) -> pb::WriteBlockMessage {
        pb::WriteBlockMessage {
            msg: Some(pb::write_block_message::Msg::Packet(pb::DataPacket {
                data: self.data.clone(),
                chunk_hashes: self.hashes.clone(),
            })),
        }
    }
}

/// An open `WriteBlock` call to the first datanode of a pipeline.
struct Stream {
    tx: Option<mpsc::Sender<pb::WriteBlockMessage>>,
    task: Option<JoinHandle<Result<pb::WriteBlockResponse, tonic::Status>>>,
    pipeline: Vec<String>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        // An abandoned stream is cancelled, so the datanodes drop their temporary replica.
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Stream {
    /// Closes the stream and waits for the pipeline's answer.
    async fn close(mut self) -> Result<pb::WriteBlockResponse, Failure> {
        self.tx.take();
        let first = self.pipeline.first().cloned().unwrap_or_default();
        let Some(task) = self.task.take() else {
            return Err(Failure::first_node(
                &self.pipeline,
                "stream already closed".into(),
            ));
        };
        let wait = ack_timeout(self.pipeline.len());
        match tokio::time::timeout(wait, task).await {
            Err(_) => Err(Failure::first_node(
                &self.pipeline,
                format!("{first}: no acknowledgement within {wait:?}"),
            )),
            Ok(Err(join)) => Err(Failure::first_node(
                &self.pipeline,
                format!("{first}: {join}"),
            )),
            Ok(Ok(Err(status))) => {
                // A datanode's answer names the block and the reason itself ("no space left on
                // datanode ..."); only a transport failure needs the error's source chain.
                let msg = if ringfs_proto::error_kind::is_transport(&status) {
                    crate::client::error_chain(&status)
                } else {
                    status.message().to_string()
                };
                let mut f = Failure::first_node(&self.pipeline, format!("{first}: {msg}"));
                if ErrorKind::of(&status) == ErrorKind::NoSpace {
                    f.kind = ErrorKind::NoSpace;
                }
                Err(f)
            }
            Ok(Ok(Ok(resp))) => Ok(resp),
        }
    }
}

/// Which nodes of a pipeline failed, and why.
#[derive(Debug)]
struct Failure {
    failed: Vec<String>,
    survivors: Vec<String>,
    reason: String,
    /// NoSpace when the node refused for lack of space (the caller then gets ENOSPC, not EIO).
    kind: ErrorKind,
}

impl Failure {
    /// The first node failed (transport error or error status): we cannot tell about the others,
    /// so they are kept as survivors and receive the rewrite.
    fn first_node(pipeline: &[String], reason: String) -> Failure {
        Failure {
            failed: pipeline.first().cloned().into_iter().collect(),
            survivors: pipeline.iter().skip(1).cloned().collect(),
            reason,
            kind: ErrorKind::Io,
        }
    }
}

/// Writes one block through its replica pipeline, with recovery.
pub(crate) struct BlockWriter {
    client: Client,
    inode: u64,
    /// Path or "inode N", for messages.
    what: String,
    located: pb::LocatedBlock,
    /// Every packet sent so far: rewritten in full to a new pipeline after a failure.
    packets: Vec<Packet>,
    len: u64,
    stream: Option<Stream>,
    recoveries: u32,
    /// Every address that failed while writing this block.
    pub(crate) failed: Vec<String>,
}

/// The outcome of a block finishing in the background: the writer (for its packets and failed
/// nodes) and the committed block.
type Finishing = JoinHandle<(BlockWriter, Result<pb::CommittedBlock, ClientError>)>;

impl BlockWriter {
    /// A writer for a freshly allocated block; the stream opens with the first packet (or `finish`).
    pub(crate) fn start(
        client: Client,
        inode: u64,
        what: String,
        located: pb::LocatedBlock,
    ) -> BlockWriter {
        BlockWriter {
            client,
            inode,
            what,
            located,
            packets: Vec::new(),
            len: 0,
            stream: None,
            recoveries: 0,
            failed: Vec::new(),
        }
    }

    /// Appends one packet (whole chunks, except possibly the block's last packet).
    pub(crate) async fn push(&mut self, data: Bytes) -> Result<(), ClientError> {
        self.push_packet(data, false).await
    }

    /// [`push`](Self::push), marking whether `data` is a reusable `FileWriter` packet buffer.
    async fn push_packet(&mut self, data: Bytes, own: bool) -> Result<(), ClientError> {
        self.len += data.len() as u64;
        let packet = Packet::new(data, own);
        let msg = packet.message();
        self.packets.push(packet);
        match &self.stream {
            None => self.establish().await,
            Some(s) => {
                let Some(tx) = &s.tx else {
                    return self.establish().await;
                };
                match tokio::time::timeout(SEND_TIMEOUT, tx.send(msg)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => {
                        // The call ended early: its result says why.
                        let s = self.stream.take().expect("stream checked above");
                        let failure = match s.close().await {
                            Ok(resp) => self.check(&resp, &[]).err().unwrap_or_else(|| Failure {
                                failed: Vec::new(),
                                survivors: Vec::new(),
                                reason: "pipeline answered before the block was complete".into(),
                                kind: ErrorKind::Io,
                            }),
                            Err(f) => f,
                        };
                        self.recover(failure).await
                    }
                    Err(_) => {
                        let s = self.stream.take().expect("stream checked above");
                        let f = Failure::first_node(
                            &s.pipeline,
                            format!(
                                "{}: pipeline stalled for {SEND_TIMEOUT:?}",
                                s.pipeline.first().map(String::as_str).unwrap_or("?")
                            ),
                        );
                        drop(s);
                        self.recover(f).await
                    }
                }
            }
        }
    }

    /// Closes the block: waits until every replica of the pipeline stored it (recovering as needed)
    /// and returns it as committed.
    pub(crate) async fn finish(&mut self) -> Result<pb::CommittedBlock, ClientError> {
        if self.stream.is_none() {
            self.establish().await?;
        }
        loop {
            let Some(s) = self.stream.take() else {
                return Err(ClientError::Protocol("write stream vanished".into()));
            };
            let pipeline = s.pipeline.clone();
            let waited = std::time::Instant::now();
            let failure = match s.close().await {
                Ok(resp) => match self.check(&resp, &pipeline) {
                    Ok(()) => {
                        tracing::debug!(
                            block = self.located.id,
                            len = self.len,
                            ack_wait_ms = waited.elapsed().as_millis() as u64,
                            "{}: block stored on {} datanodes",
                            self.what,
                            pipeline.len()
                        );
                        // Nodes of the pipeline that finally stored the block are fine after all
                        // (a failed hop reports everything downstream of it as failed).
                        self.failed.retain(|a| !pipeline.contains(a));
                        return Ok(pb::CommittedBlock {
                            id: self.located.id,
                            generation: self.located.generation,
                            len: self.len,
                        });
                    }
                    Err(f) => f,
                },
                Err(f) => f,
            };
            self.recover(failure).await?;
        }
    }

    /// Checks a pipeline answer: every node stored the whole block.
    fn check(&self, resp: &pb::WriteBlockResponse, pipeline: &[String]) -> Result<(), Failure> {
        let mut not_stored: Vec<String> = resp.failed.clone();
        for a in pipeline {
            if !resp.stored.contains(a) && !not_stored.contains(a) {
                not_stored.push(a.clone());
            }
        }
        // A hop that fails reports itself and every node after it: only the first of them in
        // pipeline order is known to be bad; the later ones never got the data and stay usable
        // (excluding them too could leave fewer than R nodes for the recovered pipeline).
        if let Some(culprit) = pipeline.iter().find(|a| not_stored.contains(a)) {
            let why = if resp.failure.is_empty() {
                String::new()
            } else {
                format!(" ({})", resp.failure)
            };
            return Err(Failure {
                reason: format!("replica not stored on {}{why}", not_stored.join(", ")),
                failed: vec![culprit.clone()],
                survivors: pipeline.iter().filter(|a| *a != culprit).cloned().collect(),
                kind: ErrorKind::Io,
            });
        }
        if resp.len != self.len {
            return Err(Failure::first_node(
                pipeline,
                format!("pipeline stored {} bytes, {} were sent", resp.len, self.len),
            ));
        }
        Ok(())
    }

    /// Opens a stream to the current pipeline and replays every packet; recovers on failure.
    async fn establish(&mut self) -> Result<(), ClientError> {
        match self.open_and_replay().await {
            Ok(s) => {
                self.stream = Some(s);
                Ok(())
            }
            Err(f) => self.recover(f).await,
        }
    }

    /// Pipeline recovery: a new generation stamp and replacement nodes from the namenode, then the
    /// whole buffered block again. Gives up after `MAX_RECOVERIES`.
    async fn recover(&mut self, mut failure: Failure) -> Result<(), ClientError> {
        loop {
            self.recoveries += 1;
            tracing::warn!(block = self.located.id, generation = self.located.generation, failed = ?failure.failed,
                reason = %failure.reason, attempt = self.recoveries, "{}: write pipeline recovery", self.what);
            if self.recoveries > MAX_RECOVERIES {
                return Err(ClientError::PipelineFailed {
                    block: self.located.id,
                    what: self.what.clone(),
                    reason: failure.reason,
                    kind: failure.kind,
                });
            }
            for a in &failure.failed {
                self.client.shared.suspects.failed(a);
                if !self.failed.contains(a) {
                    self.failed.push(a.clone());
                }
            }
            // The broken hop first, then every node that failed earlier for this block (and is
            // not serving in the pipeline now): told only the latest one, the namenode offered
            // the previous dead node again, and recovery swapped two dead nodes until it ran out
            // of attempts. The nodes after the first stay a last resort.
            let earlier = self
                .failed
                .iter()
                .filter(|a| !failure.failed.contains(a) && !failure.survivors.contains(a));
            let failed = failure.failed.iter().chain(earlier).cloned().collect();
            let req = pb::UpdatePipelineRequest {
                inode: self.inode,
                client_id: self.client.client_id().to_string(),
                block_id: self.located.id,
                generation: self.located.generation,
                failed,
                survivors: failure.survivors.clone(),
                min_replicas: self.client.config().min_replicas,
            };
            // Sent again after a failure in transport: the namenode answers the same request
            // as it answered the first time (or, after a restart, takes the block up again).
            let recovery =
                self.client
                    .again_in_transport(&req, |mut nn, req| async move {
                        nn.update_pipeline(req).await
                    });
            let located = match recovery.await {
                Ok(r) => r.into_inner(),
                Err(st) => {
                    let e = self.client.nn_err(st);
                    let kind = match e.kind() {
                        ErrorKind::NoSpace => ErrorKind::NoSpace,
                        _ => failure.kind,
                    };
                    return Err(ClientError::PipelineFailed {
                        block: self.located.id,
                        what: self.what.clone(),
                        reason: format!("{}; pipeline recovery refused: {e}", failure.reason),
                        kind,
                    });
                }
            };
            if located.locations.is_empty() {
                return Err(ClientError::PipelineFailed {
                    block: self.located.id,
                    what: self.what.clone(),
                    reason: format!("{}; no datanode left for the pipeline", failure.reason),
                    kind: failure.kind,
                });
            }
            self.located = located;
            match self.open_and_replay().await {
                Ok(s) => {
                    self.stream = Some(s);
                    return Ok(());
                }
                Err(f) => failure = f,
            }
        }
    }

    /// Starts `WriteBlock` on the first node of the current pipeline and sends the header and every
    /// buffered packet.
    async fn open_and_replay(&mut self) -> Result<Stream, Failure> {
        let pipeline: Vec<String> = self
            .located
            .locations
            .iter()
            .map(|l| l.address.clone())
            .collect();
        let Some(first) = pipeline.first().cloned() else {
            return Err(Failure {
                failed: Vec::new(),
                survivors: Vec::new(),
                reason: "empty pipeline".into(),
                kind: ErrorKind::Io,
            });
        };
        let mut dn = match self.client.shared.datanode(&first) {
            Ok(dn) => dn,
            Err(e) => return Err(Failure::first_node(&pipeline, e.to_string())),
        };
        let (tx, rx) = mpsc::channel(PACKETS_IN_FLIGHT);
        let header = pb::WriteBlockHeader {
            block_id: self.located.id,
            generation: self.located.generation,
            downstream: self.located.locations.iter().skip(1).cloned().collect(),
            access_token: self.located.access_token.clone(),
            client: self.client.client_id().to_string(),
            datanode_id: self
                .located
                .locations
                .first()
                .map(|l| l.id.clone())
                .unwrap_or_default(),
        };
        let task = tokio::spawn(async move {
            dn.write_block(ReceiverStream::new(rx))
                .await
                .map(|r| r.into_inner())
        });
        let stream = Stream {
            tx: Some(tx),
            task: Some(task),
            pipeline,
        };
        let tx = stream.tx.clone().expect("just set");
        let header = pb::WriteBlockMessage {
            msg: Some(pb::write_block_message::Msg::Header(header)),
        };
        let mut ok = tx.send(header).await.is_ok();
        for p in &self.packets {
            if !ok {
                break;
            }
            ok = matches!(
                tokio::time::timeout(SEND_TIMEOUT, tx.send(p.message())).await,
                Ok(Ok(()))
            );
        }
        drop(tx);
        if ok {
            return Ok(stream);
        }
        let pipeline = stream.pipeline.clone();
        match stream.close().await {
            Err(f) => Err(f),
            Ok(resp) => Err(self.check(&resp, &pipeline).err().unwrap_or_else(|| {
                Failure::first_node(
                    &pipeline,
                    "pipeline answered before the block was complete".into(),
                )
            })),
        }
    }
}

/// Writes a new file sequentially: blocks of the file's block size, each through a replica
/// pipeline, two blocks in flight; `finish` commits the block list and closes the file (releasing
/// the lease).
///
/// Memory: the packets of both blocks in flight (kept to rewrite a block after a pipeline failure)
/// plus up to `SPARE_PACKETS` reusable packet buffers; with 64 MiB blocks, at most about 192 MiB.
///
/// A writer dropped without `finish`/`abort` cancels its blocks in flight and leaves the file under
/// construction (with the blocks acknowledged so far) until the lease expires.
pub struct FileWriter {
    client: Client,
    path: String,
    attr: pb::Attr,
    block_size: u64,
    /// Blocks every replica acknowledged, in file order.
    blocks: Vec<pb::CommittedBlock>,
    size: u64,
    /// The packet being filled.
    packet: BytesMut,
    /// Bytes of the current block, including `packet`.
    block_len: u64,
    current: Option<BlockWriter>,
    /// The previous block: its stream is closed and a task waits for the pipeline's acknowledgement
    /// (recovering the pipeline if needed).
    finishing: Option<Finishing>,
    /// Packet buffers of acknowledged blocks, for reuse (fresh memory costs a page fault per 4 KiB).
    spare: Vec<BytesMut>,
    /// Datanodes that failed during this write: the namenode avoids them for the next blocks.
    excluded: Vec<String>,
    /// Set after an error: the writer refuses further writes.
    broken: bool,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("path", &self.path)
            .field("inode", &self.attr.inode)
            .field("written", &self.size)
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // Like the current block's stream, the finishing block's is cancelled.
        if let Some(t) = self.finishing.take() {
            t.abort();
        }
    }
}

impl FileWriter {
    pub(crate) fn new(
        client: Client,
        path: String,
        attr: pb::Attr,
    ) -> Result<FileWriter, ClientError> {
        let block_size = if attr.block_size == 0 {
            FALLBACK_BLOCK_SIZE
        } else {
            attr.block_size
        };
        Ok(FileWriter {
            client,
            path,
            attr,
            block_size,
            blocks: Vec::new(),
            size: 0,
            packet: BytesMut::with_capacity(PACKET_SIZE),
            block_len: 0,
            current: None,
            finishing: None,
            spare: Vec::new(),
            excluded: Vec::new(),
            broken: false,
        })
    }

    /// The file's inode id.
    pub fn inode(&self) -> u64 {
        self.attr.inode
    }

    /// The file's attributes as the namenode returned them at create.
    pub fn attr(&self) -> &pb::Attr {
        &self.attr
    }

    /// The path the file was created at.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// A writer that failed once stays failed: what it wrote after the failure point is unknown.
    fn check_usable(&self) -> Result<(), ClientError> {
        if self.broken {
            return Err(ClientError::Protocol(format!(
                "{}: writer failed earlier",
                self.path
            )));
        }
        Ok(())
    }

    /// Appends `data`. Returns once the bytes are queued towards the pipeline (backpressured); at
    /// most two blocks are unacknowledged at any time.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), ClientError> {
        self.check_usable()?;
        while !data.is_empty() {
            let block_room = (self.block_size - self.block_len) as usize;
            let packet_room = PACKET_SIZE - self.packet.len();
            let n = data.len().min(block_room).min(packet_room);
            self.packet.extend_from_slice(&data[..n]);
            data = &data[n..];
            self.block_len += n as u64;
            self.size += n as u64;
            let r = if self.packet.len() == PACKET_SIZE || self.block_len == self.block_size {
                match self.flush_packet().await {
                    Ok(()) if self.block_len == self.block_size => self.finish_block().await,
                    r => r,
                }
            } else {
                Ok(())
            };
            if r.is_err() {
                self.broken = true;
                return r;
            }
        }
        Ok(())
    }

    /// Appends `data` like [`write`](Self::write), without copying whole packets: while no
    /// partial packet is pending, each full packet (or a block's end) of `data` is sent as a slice
    /// of it. The slices are held until their block is acknowledged, so a caller that wants to
    /// reuse the buffer waits until it is unique again (`Bytes::try_into_mut`).
    pub async fn write_bytes(&mut self, mut data: Bytes) -> Result<(), ClientError> {
        self.check_usable()?;
        while !data.is_empty() {
            let block_room = (self.block_size - self.block_len) as usize;
            let n = data.len().min(block_room).min(PACKET_SIZE);
            if !self.packet.is_empty() || (n < PACKET_SIZE && n < block_room) {
                // A partial packet: fill it by copying, like `write`.
                return self.write(&data).await;
            }
            let packet = data.split_to(n);
            self.block_len += n as u64;
            self.size += n as u64;
            let r = match self.send_packet(packet, false).await {
                Ok(()) if self.block_len == self.block_size => self.finish_block().await,
                r => r,
            };
            if r.is_err() {
                self.broken = true;
                return r;
            }
        }
        Ok(())
    }

    /// Sends the packet being filled into the current block (starting the block if needed).
    async fn flush_packet(&mut self) -> Result<(), ClientError> {
        if self.packet.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.packet).freeze();
        let r = self.send_packet(data, true).await;
        // After sending: settling the previous block may have returned buffers to `spare`.
        self.packet = self
            .spare
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(PACKET_SIZE));
        r
    }

    /// Sends one packet into the current block (starting the block if needed); `own` = the bytes
    /// are a packet buffer of this writer, reusable once the block is acknowledged.
    async fn send_packet(&mut self, data: Bytes, own: bool) -> Result<(), ClientError> {
        // List the previous block as soon as it is acknowledged (the namenode then knows the file's
        // progress, and failed nodes are excluded from the next blocks sooner).
        if self.finishing.as_ref().is_some_and(|t| t.is_finished()) {
            self.settle(true).await?;
        }
        if self.current.is_none() {
            let req = pb::AllocateBlockRequest {
                inode: self.attr.inode,
                client_id: self.client.client_id().to_string(),
                excluded: {
                    let mut ex = self.client.shared.suspects.recent();
                    ex.retain(|a| !self.excluded.contains(a));
                    ex.extend(self.excluded.iter().cloned());
                    ex
                },
                min_replicas: self.client.config().min_replicas,
            };
            // Sent again after a failure in transport, as in `Client::write_new_block`.
            let located = self
                .client
                .again_in_transport(
                    &req,
                    |mut nn, req| async move { nn.allocate_block(req).await },
                )
                .await
                .map_err(|s| self.client.nn_err(s))?
                .into_inner();
            self.current = Some(BlockWriter::start(
                self.client.clone(),
                self.attr.inode,
                self.path.clone(),
                located,
            ));
        }
        match self.current.as_mut() {
            Some(cur) => cur.push_packet(data, own).await,
            None => Err(ClientError::Protocol("no block in progress".into())),
        }
    }

    /// Ends the current block: waits for the previous one (at most two blocks in flight), then
    /// leaves the current one finishing in the background.
    async fn finish_block(&mut self) -> Result<(), ClientError> {
        if let Some(cur) = self.current.take() {
            self.settle(true).await?;
            self.finishing = Some(tokio::spawn(async move {
                let mut cur = cur;
                let r = cur.finish().await;
                (cur, r)
            }));
        }
        self.block_len = 0;
        Ok(())
    }

    /// Waits for the finishing block (if any) to be acknowledged by every replica and records it;
    /// with `list`, also puts it into the file's block list at the namenode.
    async fn settle(&mut self, list: bool) -> Result<(), ClientError> {
        let Some(task) = self.finishing.take() else {
            return Ok(());
        };
        let (mut done, result) = task
            .await
            .map_err(|e| ClientError::Protocol(format!("{}: block writer task: {e}", self.path)))?;
        let block = result?;
        let pipeline: Vec<&str> = done
            .located
            .locations
            .iter()
            .map(|l| l.address.as_str())
            .collect();
        self.excluded.retain(|a| !pipeline.contains(&a.as_str()));
        for a in std::mem::take(&mut done.failed) {
            if !self.excluded.contains(&a) {
                self.excluded.push(a);
            }
        }
        // Nobody else holds the packets now (the streams are closed): reuse their buffers.
        for p in done.packets.drain(..).filter(|p| p.own) {
            if let Ok(mut b) = p.data.try_into_mut() {
                if b.capacity() >= PACKET_SIZE && self.spare.len() < SPARE_PACKETS {
                    b.clear();
                    self.spare.push(b);
                }
            }
        }
        self.blocks.push(block);
        if list {
            let size = self.blocks.iter().map(|b| b.len).sum();
            self.client
                .commit_blocks(self.attr.inode, self.blocks.clone(), size, false)
                .await?;
        }
        Ok(())
    }

    /// Flushes the last packet and block, commits the block list and closes the file; returns
    /// once the commit is durable at the namenode ([`Client::sync`]).
    pub async fn finish(self) -> Result<pb::Attr, ClientError> {
        let client = self.client.clone();
        let attr = self.finish_unsynced().await?;
        client.sync().await?;
        Ok(attr)
    }

    /// Flushes the last packet and block and commits the block list like [`FileWriter::finish`],
    /// but keeps the file open for writing (lease held): the caller can rename it into place before
    /// [`CommittedFile::close`], so that a writer killed in between leaves the complete file under
    /// its final name (lease recovery closes it there), never a complete file under a temporary one.
    pub async fn commit_all(self) -> Result<CommittedFile, ClientError> {
        let client = self.client.clone();
        let inode = self.attr.inode;
        self.commit_final(false).await?;
        Ok(CommittedFile { client, inode })
    }

    async fn finish_unsynced(self) -> Result<pb::Attr, ClientError> {
        self.commit_final(true).await
    }

    /// The final commit of everything written; `close` releases the lease.
    async fn commit_final(mut self, close: bool) -> Result<pb::Attr, ClientError> {
        self.check_usable()?;
        // A small file whose whole content is still in the packet buffer: stored inline in the
        // namenode's metadata (one journaled commit, no datanode), unless its budget is used up.
        if self.current.is_none()
            && self.finishing.is_none()
            && self.blocks.is_empty()
            && !self.packet.is_empty()
            && self.size == self.packet.len() as u64
            && self.size <= self.client.inline_limit().min(self.block_size)
        {
            let data = self.packet.to_vec();
            let inode = self.attr.inode;
            if let Some(attr) = self
                .client
                .commit_inline(inode, data, self.size, close, None)
                .await?
            {
                return Ok(attr);
            }
        }
        self.flush_packet().await?;
        self.finish_block().await?;
        self.settle(false).await?;
        let blocks = std::mem::take(&mut self.blocks);
        self.client
            .commit_blocks(self.attr.inode, blocks, self.size, close)
            .await
    }

    /// Stops writing: cancels the blocks in flight and closes the file with the blocks already
    /// acknowledged (best effort, so the lease is released). The caller decides whether to remove it.
    pub async fn abort(mut self) {
        self.current.take();
        if let Some(t) = self.finishing.take() {
            t.abort();
        }
        let size = self.blocks.iter().map(|b| b.len).sum();
        let blocks = std::mem::take(&mut self.blocks);
        if let Err(e) = self
            .client
            .commit_blocks(self.attr.inode, blocks, size, true)
            .await
        {
            tracing::debug!(path = %self.path, error = %e, "closing an aborted file failed");
        }
    }
}
