//! A channel that rides out a server restart: when its connection is gone, the next call waits
//! (up to a bound) for the server to accept connections again instead of failing at once.
//!
//! Why at the connection layer: a call that is waiting for a TCP connection has not been sent, so
//! waiting and then sending it is safe for every RPC, idempotent or not. Calls already on the wire
//! when the server dies still fail (their outcome is unknown); only new calls wait. This is what
//! lets a FUSE mount or a long `put` survive `kill -9` + restart of the namenode (NFS "hard"
//! mounts and HDFS clients behave the same way), while the very first connection of a client still
//! fails fast (see `ringfs_client::Client::connect`), so a typo in an address is reported at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Uri};

/// How long one connection attempt may take (an unreachable host, not a refused port).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// First pause between attempts; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A lazy channel to `addr` (same settings as [`crate::net::endpoint`]) whose connection attempts
/// are retried for up to `wait` before a call fails. `wait` zero: one attempt, like a plain channel.
pub fn connect_lazy_waiting(
    addr: &str,
    wait: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint = crate::net::endpoint(addr)?
        // The connector below bounds every attempt; the overall bound is `wait`.
        .connect_timeout(wait + ATTEMPT_TIMEOUT + Duration::from_secs(1));
    Ok(endpoint.connect_with_connector_lazy(WaitingConnector { wait }))
}

/// `tower::Service<Uri>` that opens a TCP connection (with `TCP_NODELAY`), retrying refused or
/// failed attempts with exponential backoff until `wait` has passed.
#[derive(Clone, Copy, Debug)]
struct WaitingConnector {
    wait: Duration,
}

impl tower_service::Service<Uri> for WaitingConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let wait = self.wait;
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: no host"))
                })?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(80);
            let deadline = Instant::now() + wait;
            let mut backoff = FIRST_BACKOFF;
            loop {
                let attempt = tokio::time::timeout(
                    ATTEMPT_TIMEOUT,
                    TcpStream::connect((host.as_str(), port)),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                });
                match attempt {
                    Ok(stream) => {
                        if backoff > FIRST_BACKOFF {
                            tracing::info!(%host, port, "server reachable again");
                        }
                        stream.set_nodelay(true)?;
                        return Ok(TokioIo::new(stream));
                    }
                    Err(e) if Instant::now() + backoff < deadline => {
                        if backoff == FIRST_BACKOFF {
                            tracing::warn!(%host, port, error = %e, ?wait, "server not reachable; waiting for it");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    Err(e) => {
                        tracing::warn!(%host, port, error = %e, ?wait, "server not reachable; giving up");
                        return Err(e);
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    fn free_addr() -> std::net::SocketAddr {
        // Bind, note the port, close it: nothing listens there until the test binds it again.
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[tokio::test]
    async fn a_connection_attempted_while_the_server_is_down_waits_for_it_to_come_back() {
        let addr = free_addr();
        let uri: Uri = format!("http://{addr}").parse().unwrap();
        let mut connector = WaitingConnector {
            wait: Duration::from_secs(20),
        };
        let connecting = tokio::spawn(connector.call(uri));
        // The first attempts are refused: the connection must still be pending, not failed.
        let t = Instant::now();
        while t.elapsed() < FIRST_BACKOFF * 3 {
            assert!(
                !connecting.is_finished(),
                "connecting finished while no server listened"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let io = tokio::time::timeout(Duration::from_secs(15), connecting)
            .await
            .expect("still connecting after the server came back")
            .unwrap()
            .expect("connecting failed although the server came back");
        let (accepted, _) = listener.accept().await.unwrap();
        assert_eq!(
            accepted.peer_addr().unwrap(),
            io.inner().local_addr().unwrap()
        );
        assert!(io.inner().nodelay().unwrap());
    }

    #[tokio::test]
    async fn connecting_fails_once_the_wait_is_over() {
        let uri: Uri = format!("http://{}", free_addr()).parse().unwrap();
        let mut connector = WaitingConnector {
            wait: Duration::from_millis(300),
        };
        let t = Instant::now();
        let r = connector.call(uri).await;
        assert!(r.is_err(), "connected to a closed port");
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "gave up after {:?}, long before the wait",
            t.elapsed()
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "waited far past the bound"
        );
    }
}
