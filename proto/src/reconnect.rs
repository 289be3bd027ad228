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
use std::sync::{Arc, Mutex};
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
    Ok(endpoint.connect_with_connector_lazy(WaitingConnector {
        wait,
        down_since: Arc::new(Mutex::new(None)),
    }))
}

/// `tower::Service<Uri>` that opens a TCP connection (with `TCP_NODELAY`), retrying refused or
/// failed attempts with exponential backoff until `wait` has passed since the server was first
/// found down. Calls made while it is down queue behind one connection attempt at a time: a
/// fresh `wait` per attempt made the k-th of them fail only after k x `wait`. Once the server
/// has been down for `wait`, each attempt is a single try until it answers again.
#[derive(Clone, Debug)]
struct WaitingConnector {
    wait: Duration,
    /// When the server was found down, and when an attempt last failed (an outage whose last
    /// failure is older than `wait` is over as far as new calls go: they wait again).
    down_since: Arc<Mutex<Option<(Instant, Instant)>>>,
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
        let down_since = self.down_since.clone();
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
            let started = Instant::now();
            let down = lock(&down_since)
                .filter(|(_, last)| started.saturating_duration_since(*last) < wait)
                .map(|(since, _)| since);
            let deadline = down.unwrap_or(started) + wait;
            let failed = || {
                let now = Instant::now();
                let mut d = lock(&down_since);
                *d = Some((down.unwrap_or(started), now));
            };
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
                        if lock(&down_since).take().is_some() {
                            tracing::info!(%host, port, "server reachable again");
                        }
                        stream.set_nodelay(true)?;
                        return Ok(TokioIo::new(stream));
                    }
                    Err(e) if Instant::now() + backoff < deadline => {
                        failed();
                        if backoff == FIRST_BACKOFF && down.is_none() {
                            tracing::warn!(%host, port, error = %e, ?wait, "server not reachable; waiting for it");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    Err(e) => {
                        failed();
                        if down.is_none() || backoff > FIRST_BACKOFF {
                            tracing::warn!(%host, port, error = %e, ?wait, "server not reachable; giving up");
                        } else {
                            tracing::debug!(%host, port, error = %e, "server still not reachable");
                        }
                        return Err(e);
                    }
                }
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
            down_since: Arc::new(Mutex::new(None)),
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
    async fn calls_queued_while_the_server_is_down_each_fail_within_the_wait() {
        // Twenty calls at once to a server that stays down: each fails after about the wait (a
        // queue of connection attempts made the k-th wait k times as long).
        let wait = Duration::from_millis(300);
        let ch = connect_lazy_waiting(&free_addr().to_string(), wait).unwrap();
        let t = Instant::now();
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let mut c = crate::net::namenode_client(ch.clone());
                tokio::spawn(async move { c.statfs(crate::pb::StatfsRequest {}).await })
            })
            .collect();
        for c in calls {
            assert!(c.await.unwrap().is_err(), "a call succeeded with no server");
        }
        let bound = wait + Duration::from_secs(1);
        assert!(
            t.elapsed() < bound,
            "took {:?}, more than {bound:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn connecting_fails_once_the_wait_is_over() {
        let uri: Uri = format!("http://{}", free_addr()).parse().unwrap();
        let mut connector = WaitingConnector {
            wait: Duration::from_millis(300),
            down_since: Arc::new(Mutex::new(None)),
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
