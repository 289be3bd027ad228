//! The DataTransfer service: pipelined block writes, verified block reads, replica recovery.
//!
//! Write pipeline (one WriteBlock call per hop): each packet is verified against its chunk hashes,
//! forwarded to the next datanode through a bounded channel (the hop does not wait for downstream
//! per packet) and handed to a blocking disk task through another bounded channel, so a block is
//! never held in memory. Packets are `Bytes` slices of the receive buffer: forwarding and storing
//! share them, nothing is copied per hop. At the end of the stream: fsync + rename locally, a
//! synchronous BlockReceived to the namenode, then the downstream answer, then the reply.
//!
//! Completion and aborts: a replica is finalized only when the request stream ends cleanly (and
//! matches the writer's `WriteBlockEnd`, when sent). A cancelled or broken stream leaves the tmp
//! replica for lease recovery. tonic hands a server a *cancelled* request stream as a clean end,
//! so [`CancelAware`] wraps the service to keep a cancel an error. [`Downstream`] ends its stream
//! (with `WriteBlockEnd`) only in [`Downstream::finish`]; dropping it cancels the call.

use crate::block_store::{Finalized, ReadPath, ReplicaWriter, READ_UNIT};
use crate::error::DatanodeError;
use crate::framing::MessageCuts;
use crate::Node;
use bytes::Bytes;
use futures::Stream;
use ringfs_proto::chunk::{Hash, CHUNKS_PER_PACKET, CHUNK_SIZE};
use ringfs_proto::pb::data_transfer_server::DataTransfer;
use ringfs_proto::pb::write_block_message::Msg;
use ringfs_proto::pb::{
    ReadBlockPacket, ReadBlockRequest, RecoverReplicaRequest, RecoverReplicaResponse,
    WriteBlockEnd, WriteBlockHeader, WriteBlockMessage, WriteBlockResponse,
};
use ringfs_proto::token::AccessMode;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http;
use tonic::{Request, Response, Status, Streaming};

type Result<T> = std::result::Result<T, DatanodeError>;

/// Wraps a gRPC service so that a request stream cancelled by the client (HTTP/2 RST_STREAM
/// CANCEL) reaches the handler as an error. tonic's decoder turns a `Cancelled` request body
/// error into a clean end of stream, which would make an abandoned WriteBlock look complete.
#[derive(Clone)]
pub struct CancelAware<S>(pub S);

impl<S> tonic::codegen::Service<http::Request<tonic::body::Body>> for CancelAware<S>
where
    S: tonic::codegen::Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        self.0.call(req.map(|b| {
            tonic::body::Body::new(CancelIsError {
                inner: b,
                cuts: MessageCuts::default(),
                pending: VecDeque::new(),
            })
        }))
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for CancelAware<S> {
    const NAME: &'static str = S::NAME;
}

/// A request body whose `Cancelled` errors become `Aborted`, which tonic passes on as errors.
/// Data frames are also cut after gRPC message headers (see [`crate::framing`]), which saves a
/// copy of every received packet.
struct CancelIsError {
    inner: tonic::body::Body,
    cuts: MessageCuts,
    /// Pieces of the last data frame not handed out yet.
    pending: VecDeque<Bytes>,
}

impl http_body::Body for CancelIsError {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<bytes::Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some(piece) = this.pending.pop_front() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(piece))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            std::task::Poll::Ready(Some(Err(s))) if s.code() == tonic::Code::Cancelled => {
                std::task::Poll::Ready(Some(Err(Status::aborted(format!(
                    "request stream cancelled by the sender: {}",
                    s.message()
                )))))
            }
            std::task::Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    this.pending.extend(this.cuts.cut(data));
                    let first = this.pending.pop_front().unwrap_or_default();
                    std::task::Poll::Ready(Some(Ok(http_body::Frame::data(first))))
                }
                Err(frame) => std::task::Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let pending: u64 = self.pending.iter().map(|p| p.len() as u64).sum();
        let inner = self.inner.size_hint();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(inner.lower() + pending);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + pending);
        }
        hint
    }
}

/// Packets in flight per pipeline stage (to disk, to downstream): bounds memory per write to a
/// few MiB while letting network and disk overlap.
const QUEUE: usize = 4;
/// Disk reads (of `READ_UNIT`) done ahead of verification by a ReadBlock.
const READS_AHEAD: usize = 2;

/// The tonic adapter: decode, call the node, encode.
pub struct TransferService {
    node: Arc<Node>,
}

impl TransferService {
    pub fn new(node: Arc<Node>) -> TransferService {
        TransferService { node }
    }
}

#[tonic::async_trait]
impl DataTransfer for TransferService {
    async fn write_block(
        &self,
        request: Request<Streaming<WriteBlockMessage>>,
    ) -> std::result::Result<Response<WriteBlockResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream.message().await.map_err(|s| {
            DatanodeError::InvalidRequest(format!("WriteBlock stream: {}", s.message()))
        })?;
        let header = match first {
            Some(WriteBlockMessage {
                msg: Some(Msg::Header(h)),
            }) => h,
            _ => {
                return Err(DatanodeError::InvalidRequest(
                    "WriteBlock must start with a header".into(),
                )
                .into())
            }
        };
        let _active = self.node.transfer_started();
        let (block, generation) = (header.block_id, header.generation);
        match receive_block(&self.node, header, stream).await {
            Ok(r) => Ok(Response::new(r)),
            Err(e) => {
                // Refused for lack of space: the writer goes on without this node, so the partial
                // replica in tmp/ would only take room (and not count against --capacity) until
                // the day-old sweep.
                if e.is_no_space() {
                    let store = self.node.store.clone();
                    if let Err(d) = blocking(move || store.delete(block, generation)).await {
                        tracing::debug!(block, error = %d, "removing a partial replica failed");
                    }
                }
                Err(e.into())
            }
        }
    }

    type ReadBlockStream =
        Pin<Box<dyn Stream<Item = std::result::Result<ReadBlockPacket, Status>> + Send>>;

    async fn read_block(
        &self,
        request: Request<ReadBlockRequest>,
    ) -> std::result::Result<Response<Self::ReadBlockStream>, Status> {
        let rx = send_block(&self.node, request.into_inner()).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn recover_replica(
        &self,
        request: Request<RecoverReplicaRequest>,
    ) -> std::result::Result<Response<RecoverReplicaResponse>, Status> {
        Ok(Response::new(
            recover_replica(&self.node, request.into_inner()).await?,
        ))
    }
}

fn join_error(e: tokio::task::JoinError) -> DatanodeError {
    DatanodeError::Io {
        op: "blocking task",
        path: Default::default(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(join_error)?
}

// ---------------------------------------------------------------------- write

/// Receives one replica from `stream`, storing it here and forwarding it down the pipeline.
async fn receive_block(
    node: &Arc<Node>,
    header: WriteBlockHeader,
    mut stream: Streaming<WriteBlockMessage>,
) -> Result<WriteBlockResponse> {
    let (block, generation) = (header.block_id, header.generation);
    if block == 0 {
        return Err(DatanodeError::InvalidRequest(
            "block id 0 is not valid".into(),
        ));
    }
    node.secret
        .check_block_token(&header.access_token, block, generation, AccessMode::Write)
        .map_err(|source| DatanodeError::Token { block, source })?;
    let own = node.store.id();
    if !header.datanode_id.is_empty() && header.datanode_id != own {
        // The writer meant another node that had this address (a datanode of a cluster with
        // the same secret started on a port a dead one left): a replica here would be lost.
        return Err(DatanodeError::InvalidRequest(format!(
            "{}: this is datanode {own}, not {}",
            node.address, header.datanode_id
        )));
    }
    tracing::debug!(block, generation, client = %header.client, downstream = header.downstream.len(), "receiving block");

    let store = node.store.clone();
    let writer = blocking(move || store.create(block, generation)).await?;
    let mut downstream = header.downstream.split_first().map(|(next, rest)| {
        Downstream::open(
            &next.address,
            WriteBlockHeader {
                block_id: block,
                generation,
                downstream: rest.to_vec(),
                access_token: header.access_token.clone(),
                client: header.client.clone(),
                datanode_id: next.id.clone(),
            },
        )
    });

    // Each verified packet goes to the downstream node and to the disk thread: two bounded queues,
    // so network and disk overlap and a slow one holds the writer back; both share the bytes.
    let (disk_tx, disk_rx) = mpsc::channel(QUEUE);
    let disk = tokio::task::spawn_blocking(move || write_packets(writer, disk_rx));

    let mut chunks = 0u64;
    let mut received = 0u64;
    let mut short_chunk = false;
    let mut end: Option<u64> = None;
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(status) => {
                // The writer went away mid-block: keep the tmp replica (lease recovery may finalize
                // it) and cancel the downstream stream (dropping `downstream` does that).
                tracing::info!(block, generation, error = %status.message(), "write stream broken; tmp replica kept");
                return Err(DatanodeError::InvalidRequest(format!(
                    "block {block}: write stream broken: {}",
                    status.message()
                )));
            }
        };
        let packet = match msg.msg {
            Some(Msg::Packet(p)) if end.is_none() => p,
            Some(Msg::End(e)) if end.is_none() => {
                end = Some(e.len);
                continue;
            }
            Some(Msg::Header(_)) => {
                return Err(DatanodeError::InvalidRequest(format!(
                    "block {block}: a second header in WriteBlock"
                )))
            }
            _ => {
                return Err(DatanodeError::InvalidRequest(format!(
                    "block {block}: a message after WriteBlockEnd"
                )))
            }
        };
        if packet.data.is_empty() {
            continue;
        }
        if short_chunk {
            return Err(DatanodeError::InvalidRequest(format!(
                "block {block}: data after a short chunk at chunk {chunks}"
            )));
        }
        ringfs_proto::chunk::verify_chunks(&packet.data, &packet.chunk_hashes).map_err(|i| {
            DatanodeError::ChecksumMismatch {
                block,
                generation,
                chunk: chunks + i as u64,
            }
        })?;
        let hashes = to_hashes(&packet.chunk_hashes);
        chunks += hashes.len() as u64;
        received += packet.data.len() as u64;
        short_chunk = packet.data.len() % CHUNK_SIZE != 0;
        let data = packet.data.clone();
        if let Some(ds) = downstream.as_mut() {
            // A failed downstream drops the packet; `finish` reports why.
            ds.send(WriteBlockMessage {
                msg: Some(Msg::Packet(packet)),
            })
            .await;
        }
        if disk_tx.send((data, hashes)).await.is_err() {
            break; // the disk task failed: its error is collected below
        }
    }
    match end {
        Some(len) if len == received => {}
        Some(len) => {
            return Err(DatanodeError::InvalidRequest(format!(
                "block {block}: writer ended the block at {len} bytes but sent {received}"
            )))
        }
        None => {}
    }
    drop(disk_tx);
    // Finalizing and telling the namenode run in their own task: hyper drops this handler when the
    // writer's connection goes (a killed client), and a replica finalized but never reported would
    // stay unknown to the namenode (not deleted with its file) until the next full block report.
    let reporter = node.clone();
    let Finalized { info, hash } = tokio::spawn(async move {
        let writer = disk.await.map_err(join_error)??;
        let finalized = blocking(move || writer.finish()).await?;
        reporter.namenode.block_received(finalized.info).await;
        Ok::<_, DatanodeError>(finalized)
    })
    .await
    .map_err(join_error)??;

    let mut stored = vec![node.address.clone()];
    let mut failed = Vec::new();
    let mut failure = String::new();
    if let Some(ds) = downstream {
        match ds.finish(info.len).await {
            Ok(resp) => {
                stored.extend(resp.stored);
                failed.extend(resp.failed);
                failure = resp.failure;
            }
            Err(status) => {
                // The reason travels back to the writer: "no space left" or "checksum mismatch"
                // tells a user more than "replica not stored".
                failure = format!("{}: {}", header.downstream[0].address, status.message());
                // We cannot tell which later hops stored the replica: report every downstream node
                // as failed (stored ∪ failed is always the whole pipeline from this node).
                tracing::warn!(block, generation, downstream = %header.downstream[0].address, error = %status.message(),
                    "downstream datanode failed; replica kept here");
                failed.extend(header.downstream.iter().map(|d| d.address.clone()));
            }
        }
    }
    tracing::debug!(
        block,
        generation,
        len = info.len,
        ?stored,
        ?failed,
        "block received"
    );
    Ok(WriteBlockResponse {
        len: info.len,
        hash: hash.to_vec(),
        failed,
        stored,
        failure,
    })
}

/// The disk side of a write: appends each packet; when the channel closes, hands the writer back
/// for finishing.
fn write_packets(
    mut writer: ReplicaWriter,
    mut rx: mpsc::Receiver<(Bytes, Vec<Hash>)>,
) -> Result<ReplicaWriter> {
    while let Some((data, hashes)) = rx.blocking_recv() {
        writer.write_packet(&data, &hashes)?;
    }
    Ok(writer)
}

/// Wire hashes (already verified to equal 32-byte blake3 hashes) as arrays.
fn to_hashes(wire: &[Vec<u8>]) -> Vec<Hash> {
    wire.iter()
        .map(|h| {
            let mut a = [0u8; 32];
            a.copy_from_slice(&h[..32.min(h.len())]);
            a
        })
        .collect()
}

/// A downstream datanode that takes no packet for this long is taken as failed: a hung node (a
/// stopped process, a host gone without a reset) keeps its sockets open, so only a timeout shows
/// it. The replica is kept here and the hops below reported failed, so the writer recovers its
/// pipeline around them. The writer's own send timeout is longer (client/src/write.rs): the hop
/// just above a hung node is the one that notices it and names it.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) enum Forward {
    Msg(WriteBlockMessage),
    End,
}

/// An outgoing WriteBlock call to the next datanode of a pipeline. Packets go through a bounded
/// channel; the call ends cleanly only through [`finish`](Self::finish); dropping it cancels the call.
pub(crate) struct Downstream {
    tx: Option<mpsc::Sender<Forward>>,
    task: Option<JoinHandle<std::result::Result<WriteBlockResponse, Status>>>,
    /// Datanodes from the next one to the end of the pipeline.
    hops: u32,
    /// Set when the next datanode took no packet within [`FORWARD_TIMEOUT`].
    hung: bool,
}

impl Downstream {
    /// Starts the call to `addr` and queues `header` as its first message.
    pub fn open(addr: &str, header: WriteBlockHeader) -> Downstream {
        let hops = 1 + header.downstream.len() as u32;
        let (tx, rx) = mpsc::channel::<Forward>(QUEUE);
        let addr = addr.to_string();
        let task = tokio::spawn(async move {
            let channel = ringfs_proto::net::connect_lazy(&addr)
                .map_err(|e| Status::unavailable(format!("datanode {addr}: {e}")))?;
            let first = futures::stream::once(async move {
                WriteBlockMessage {
                    msg: Some(Msg::Header(header)),
                }
            });
            let rest = futures::stream::unfold(rx, |mut rx| async move {
                match rx.recv().await {
                    Some(Forward::Msg(m)) => Some((m, rx)),
                    Some(Forward::End) => None,
                    // The sender went away without `End`: never end the stream cleanly; the call
                    // is being cancelled.
                    None => futures::future::pending().await,
                }
            });
            let mut client = ringfs_proto::net::data_transfer_client(channel);
            client
                .write_block(futures::StreamExt::chain(first, rest))
                .await
                .map(Response::into_inner)
        });
        Downstream {
            tx: Some(tx),
            task: Some(task),
            hops,
            hung: false,
        }
    }

    /// Queues a message; after the call failed or hung, messages are dropped (the failure is
    /// reported by [`finish`](Self::finish)). Returns whether the downstream is still alive.
    pub async fn send(&mut self, msg: WriteBlockMessage) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tokio::time::timeout(FORWARD_TIMEOUT, tx.send(Forward::Msg(msg))).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                self.tx = None;
                false
            }
            Err(_) => {
                self.tx = None;
                self.hung = true;
                if let Some(task) = self.task.take() {
                    task.abort();
                }
                false
            }
        }
    }

    /// Marks the block complete at `len` bytes, ends the stream and waits for the downstream answer
    /// (at most `PIPELINE_ANSWER_PER_HOP` per datanode below).
    pub async fn finish(mut self, len: u64) -> std::result::Result<WriteBlockResponse, Status> {
        if self.hung {
            return Err(Status::deadline_exceeded(format!(
                "took no data for {FORWARD_TIMEOUT:?} (hung?)"
            )));
        }
        let wait = ringfs_proto::PIPELINE_ANSWER_PER_HOP * self.hops;
        let tx = self.tx.take();
        let Some(mut task) = self.task.take() else {
            return Err(Status::internal("downstream already finished"));
        };
        let answer = async {
            if let Some(tx) = tx {
                let end = WriteBlockMessage {
                    msg: Some(Msg::End(WriteBlockEnd { len })),
                };
                if tx.send(Forward::Msg(end)).await.is_ok() {
                    let _ = tx.send(Forward::End).await;
                }
            }
            (&mut task).await
        };
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(Status::internal(format!("downstream task: {e}"))),
            Err(_) => {
                task.abort();
                Err(Status::deadline_exceeded(format!(
                    "no answer within {wait:?} of the last packet (hung?)"
                )))
            }
        }
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------- read

/// Starts streaming a verified replica range; packets (or the one error) arrive on the receiver.
async fn send_block(
    node: &Arc<Node>,
    req: ReadBlockRequest,
) -> Result<mpsc::Receiver<std::result::Result<ReadBlockPacket, Status>>> {
    let (block, generation) = (req.block_id, req.generation);
    node.secret
        .check_block_token(&req.access_token, block, generation, AccessMode::Read)
        .map_err(|source| DatanodeError::Token { block, source })?;
    let store = node.store.clone();
    let reader = blocking(move || store.open_reader(block, generation, ReadPath::PageCache))
        .await
        .inspect_err(|e| node.report_if_lost(e, block, generation))?;
    let len = reader.info().len;
    if req.offset > len {
        return Err(DatanodeError::InvalidRequest(format!(
            "block {block}: offset {} is past the replica length {len}",
            req.offset
        )));
    }
    let end = if req.len == 0 {
        len
    } else {
        req.offset.saturating_add(req.len).min(len)
    };
    let first = req.offset / CHUNK_SIZE as u64;
    // Nothing to send when the range is empty (e.g. offset == len inside a short last chunk).
    let last = if end <= req.offset {
        first
    } else {
        end.div_ceil(CHUNK_SIZE as u64)
    };

    let (tx, rx) = mpsc::channel(QUEUE);
    let node = node.clone();
    let runtime = tokio::runtime::Handle::current();
    let active = node.transfer_started();
    // Two blocking stages: large disk reads (READ_UNIT) run ahead of the verification, which sends
    // 1 MiB packets sharing the read buffer; the disk never waits for hashing or the network.
    let reader = Arc::new(reader);
    let unit = (READ_UNIT / CHUNK_SIZE) as u64;
    let (raw_tx, raw_rx) = std::sync::mpsc::sync_channel(READS_AHEAD);
    let disk = reader.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = first;
        while c < last {
            let n = (last - c).min(unit);
            disk.prefetch(c + n, last);
            let r = disk.read_raw(c, n as usize);
            let failed = r.is_err();
            if raw_tx.send(r).is_err() || failed {
                return; // the sender stopped, or the error is on its way
            }
            c += n;
        }
    });
    // A reader that verifies every chunk itself gets the stored hashes instead of a second hashing
    // here (the client's check against them is end to end: it also catches a bad replica, which
    // the client then reports). Replication and the scrubber always verify here.
    let client_verifies = req.client_verifies;
    tokio::task::spawn_blocking(move || {
        let _active = active;
        let mut c = first;
        for raw in raw_rx {
            let checked = raw.and_then(|r| {
                if client_verifies {
                    Ok(reader.unverified(r))
                } else {
                    reader.verify(r)
                }
            });
            match checked {
                Ok((data, hashes)) => {
                    for (i, h) in hashes.chunks(CHUNKS_PER_PACKET).enumerate() {
                        let from = i * CHUNKS_PER_PACKET * CHUNK_SIZE;
                        let to = (from + h.len() * CHUNK_SIZE).min(data.len());
                        let packet = ReadBlockPacket {
                            offset: (c + (i * CHUNKS_PER_PACKET) as u64) * CHUNK_SIZE as u64,
                            data: data.slice(from..to),
                            chunk_hashes: ringfs_proto::chunk::hashes_to_wire(h),
                        };
                        if tx.blocking_send(Ok(packet)).is_err() {
                            return; // the reader went away
                        }
                    }
                    c += hashes.len() as u64;
                }
                Err(e) => {
                    if let DatanodeError::ChecksumMismatch { .. } = e {
                        tracing::warn!(block, generation, error = %e, "corrupt replica found by a read");
                        node.replica_is_corrupt(&runtime, block, generation, e.to_string());
                    }
                    let _ = tx.blocking_send(Err(e.into()));
                    return;
                }
            }
        }
    });
    Ok(rx)
}

// ---------------------------------------------------------------------- recovery

async fn recover_replica(
    node: &Arc<Node>,
    req: RecoverReplicaRequest,
) -> Result<RecoverReplicaResponse> {
    let (block, generation) = (req.block_id, req.generation);
    node.secret
        .check_block_token(&req.access_token, block, generation, AccessMode::Write)
        .map_err(|source| DatanodeError::Token { block, source })?;
    let Some(len) = req.finalize_len else {
        let store = node.store.clone();
        let len = blocking(move || store.verified_len(block, generation)).await?;
        return Ok(RecoverReplicaResponse {
            len,
            finalized: false,
        });
    };
    let new_generation = req.new_generation;
    // A retry after a lost answer: the replica is already finalized at the new generation.
    if let Some(r) = node.store.get(block) {
        if r.generation == new_generation && r.len == len {
            return Ok(RecoverReplicaResponse {
                len,
                finalized: true,
            });
        }
    }
    let store = node.store.clone();
    let fin =
        blocking(move || store.finalize_recovered(block, generation, new_generation, len)).await?;
    tracing::info!(block, generation, new_generation, len, "replica recovered");
    node.namenode.block_received(fin.info).await;
    Ok(RecoverReplicaResponse {
        len: fin.info.len,
        finalized: true,
    })
}
