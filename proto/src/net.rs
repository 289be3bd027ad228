//! Connecting and serving: one place for timeouts, HTTP/2 windows and message-size limits.
//! Loopback gRPC streams at ~2 GB/s with 1 MiB messages once windows are raised; the default 4 MiB
//! decode limit is too small for our packets, so every client and server here raises it.

use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Largest message any ringfs service accepts (a packet is 1 MiB + hashes; block reports can be large).
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;
/// HTTP/2 stream window. Connections get 4 of them: a reader with several streams on one
/// connection (`copy_to` reads 3 blocks at once) must not let streams it does not read yet fill
/// the connection window, or the stream it waits for starves.
const WINDOW: u32 = 8 * 1024 * 1024;
/// Largest HTTP/2 frame a client accepts: fewer frames per 1 MiB read packet, less work per byte.
const FRAME: u32 = 256 * 1024;

/// Opens a lazy channel to `addr` ("host:port" or "http://host:port"); over TLS when this
/// process has TLS settings ([`crate::tls`]).
pub fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    let hostport = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr);
    let tls = crate::tls::client();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{hostport}"))?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW * 4)
        .max_frame_size(FRAME))
}

/// A channel that connects on first use (cheap to create, reconnects after failures).
pub fn connect_lazy(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(endpoint(addr)?.connect_lazy())
}

/// A channel connected now (fails fast if nobody listens).
pub async fn connect(addr: &str) -> Result<Channel, tonic::transport::Error> {
    endpoint(addr)?.connect().await
}

/// A `NamenodeClient` with our limits.
pub fn namenode_client(ch: Channel) -> crate::pb::namenode_client::NamenodeClient<Channel> {
    crate::pb::namenode_client::NamenodeClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// A `DatanodeProtocolClient` with our limits.
pub fn datanode_protocol_client(
    ch: Channel,
) -> crate::pb::datanode_protocol_client::DatanodeProtocolClient<Channel> {
    crate::pb::datanode_protocol_client::DatanodeProtocolClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// A `DataTransferClient` with our limits.
pub fn data_transfer_client(
    ch: Channel,
) -> crate::pb::data_transfer_client::DataTransferClient<Channel> {
    crate::pb::data_transfer_client::DataTransferClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// A server builder with our HTTP/2 settings (and TLS when this process has TLS settings); add
/// services and serve.
pub fn server() -> Result<tonic::transport::Server, tonic::transport::Error> {
    let builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW * 4)
        .max_frame_size(Some(1024 * 1024 - 1))
        .http2_keepalive_interval(Some(Duration::from_secs(10)));
    match crate::tls::server() {
        Some(tls) => builder.tls_config(tls),
        None => Ok(builder),
    }
}

/// The incoming connection stream of a bound listener, with `TCP_NODELAY` on every accepted
/// socket: tonic ignores the builder's `tcp_nodelay` when serving from a custom incoming stream,
/// and without it small responses wait ~40 ms for delayed ACKs.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
