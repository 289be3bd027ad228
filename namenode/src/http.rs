//! The namenode's HTTP status server (like HDFS's web UI on port 9870), on its own listener next to
//! the gRPC one and stopped with the namenode: `/` the status page, `/metrics` the Prometheus text,
//! `/status.json` the snapshot as JSON. GET and HEAD only; any other path is 404.

use crate::error::{NamenodeError, Result};
use crate::rpc_metrics::RpcMetrics;
use crate::service::Shared;
use crate::status::{render_html, render_metrics, StatusSnapshot};
use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Requests within this long of the last snapshot share it: a busy scraper or many open pages do
/// not each walk the namespace under the state lock.
const SNAPSHOT_TTL: Duration = Duration::from_secs(1);
/// A client that has not sent its request head within this long is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Page,
    Metrics,
    Json,
    /// A known path with a method other than GET or HEAD: 405.
    MethodNotAllowed,
    /// Any other path: 404.
    NotFound,
}

/// Routes a request by method and path (the query string is ignored).
pub fn route(method: &Method, path: &str) -> Route {
    let found = match path {
        "/" | "/index.html" => Route::Page,
        "/metrics" => Route::Metrics,
        "/status.json" => Route::Json,
        _ => return Route::NotFound,
    };
    if method == Method::GET || method == Method::HEAD {
        found
    } else {
        Route::MethodNotAllowed
    }
}

/// An answer before it becomes an HTTP response.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    fn text(status: StatusCode, body: impl Into<String>) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    fn into_response(self) -> http::Response<Full<Bytes>> {
        let status = self.status;
        let mut r = http::Response::new(Full::new(Bytes::from(self.body)));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::METHOD_NOT_ALLOWED {
            h.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        r
    }
}

/// The answers of one namenode's status server.
pub struct StatusServer {
    shared: Arc<Shared>,
    rpcs: Arc<RpcMetrics>,
    /// The gRPC address shown on the page.
    namenode: String,
    started: Instant,
    /// The last snapshot and when it was taken (see [`SNAPSHOT_TTL`]).
    cached: Mutex<Option<(Instant, Arc<StatusSnapshot>)>>,
}

impl StatusServer {
    pub fn new(
        shared: Arc<Shared>,
        rpcs: Arc<RpcMetrics>,
        namenode: String,
        started: Instant,
    ) -> Arc<StatusServer> {
        Arc::new(StatusServer {
            shared,
            rpcs,
            namenode,
            started,
            cached: Mutex::new(None),
        })
    }

    /// A snapshot at most [`SNAPSHOT_TTL`] old, taken off the async workers when a new one is needed.
    pub async fn snapshot(&self) -> Result<Arc<StatusSnapshot>> {
        let now = Instant::now();
        if let Some((at, s)) = &*self.cached.lock().unwrap_or_else(|p| p.into_inner()) {
            if now.saturating_duration_since(*at) < SNAPSHOT_TTL {
                return Ok(s.clone());
            }
        }
        let shared = self.shared.clone();
        let namenode = self.namenode.clone();
        let uptime = self.started.elapsed();
        let rpcs = self.rpcs.counts();
        let s = tokio::task::spawn_blocking(move || {
            StatusSnapshot::take(&shared, &namenode, uptime, rpcs)
        })
        .await
        .map_err(|e| {
            NamenodeError::FailedPrecondition(format!("taking a status snapshot: {e}"))
        })??;
        let s = Arc::new(s);
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, s.clone()));
        Ok(s)
    }

    /// The answer to a request (HEAD gets GET's answer; hyper leaves out the body).
    pub async fn answer(&self, method: &Method, path: &str) -> Answer {
        let r = route(method, path);
        let render = match r {
            Route::NotFound => return Answer::text(StatusCode::NOT_FOUND, "not found\n"),
            Route::MethodNotAllowed => {
                return Answer::text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n")
            }
            Route::Page | Route::Metrics | Route::Json => r,
        };
        let s = match self.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "status page: no snapshot");
                return Answer::text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
            }
        };
        let (content_type, body) = match render {
            Route::Page => ("text/html; charset=utf-8", Ok(render_html(&s))),
            Route::Metrics => (METRICS_CONTENT_TYPE, Ok(render_metrics(&s))),
            _ => ("application/json", s.to_json()),
        };
        match body {
            Ok(body) => Answer {
                status: StatusCode::OK,
                content_type,
                body,
            },
            Err(e) => Answer::text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        }
    }
}

/// Binds the status server's listener.
pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| NamenodeError::HttpListen {
            addr: addr.to_string(),
            reason: e.to_string(),
        })
}

/// Serves HTTP/1.1 on `listener` until `stop` turns true; open connections are then dropped.
pub async fn serve(
    server: Arc<StatusServer>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = if connections.len() >= MAX_CONNECTIONS {
            // Full: wait for a connection to end (or the stop) before accepting more.
            tokio::select! {
                _ = connections.join_next() => continue,
                _ = stop.wait_for(|s| *s) => break,
            }
        } else {
            tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait_for(|s| *s) => break,
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                connections.spawn(serve_connection(server.clone(), stream, peer));
            }
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing::warn!(error = %e, "status page: accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }
    }
    connections.shutdown().await;
    tracing::debug!("status page stopped");
}

async fn serve_connection(
    server: Arc<StatusServer>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
) {
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let server = server.clone();
        async move {
            let answer = server.answer(req.method(), req.uri().path()).await;
            Ok::<_, std::convert::Infallible>(answer.into_response())
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "status page: connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        assert_eq!(route(&Method::GET, "/"), Route::Page);
        assert_eq!(route(&Method::HEAD, "/"), Route::Page);
        assert_eq!(route(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::GET, "/status.json"), Route::Json);
        assert_eq!(route(&Method::GET, "/nope"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/metrics/"), Route::NotFound);
        assert_eq!(route(&Method::POST, "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::DELETE, "/nope"), Route::NotFound);
    }

    #[test]
    fn a_method_not_allowed_says_which_are() {
        let r = Answer::text(StatusCode::METHOD_NOT_ALLOWED, "x").into_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        let r = Answer::text(StatusCode::NOT_FOUND, "x").into_response();
        assert!(r.headers().get(ALLOW).is_none());
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    }
}
