//! Counters of the gRPC calls the namenode answered, by service, method and outcome: a tower layer
//! on the gRPC server, read by `/metrics` and the status page. Per call it costs one map lookup by
//! the request path under a short lock and one atomic increment; a path is allocated once, the first
//! time it is seen.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Most request paths counted one by one. Past it (only a client that invents paths gets there:
/// the services have a few dozen methods) calls are counted under [`OTHER`].
const MAX_PATHS: usize = 256;
/// The method name of calls past [`MAX_PATHS`].
pub const OTHER: &str = "other";

/// Calls of one path.
#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn count(&self, failed: bool) {
        let c = if failed { &self.failed } else { &self.ok };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The counters of every path seen, shared by the gRPC layer (writes) and the status server (reads).
#[derive(Debug, Default)]
pub struct RpcMetrics {
    /// Counters by request path ("/ringfs.Namenode/Create"); locked only to look one up or add one.
    by_path: Mutex<HashMap<String, Arc<Counters>>>,
    /// Calls past [`MAX_PATHS`].
    other: Arc<Counters>,
}

/// Calls of one method so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcCount {
    /// Full gRPC service name ("ringfs.Namenode").
    pub service: String,
    /// Method ("Create").
    pub method: String,
    /// Calls answered with gRPC status OK.
    pub ok: u64,
    /// Calls answered with any other status (or that failed in transport).
    pub failed: u64,
}

impl RpcMetrics {
    pub fn new() -> Arc<RpcMetrics> {
        Arc::new(RpcMetrics::default())
    }

    /// The tower layer that counts every call of the server it wraps into `self`.
    pub fn layer(self: &Arc<Self>) -> RpcMetricsLayer {
        RpcMetricsLayer {
            metrics: self.clone(),
        }
    }

    fn counters(&self, path: &str) -> Arc<Counters> {
        let mut map = self.by_path.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(path) {
            return c.clone();
        }
        if map.len() >= MAX_PATHS {
            return self.other.clone();
        }
        let c = Arc::new(Counters::default());
        map.insert(path.to_string(), c.clone());
        c
    }

    /// Counts one call of `path` (the layer does this for every answered call).
    pub fn record(&self, path: &str, failed: bool) {
        self.counters(path).count(failed);
    }

    /// Every method seen, sorted by service and method.
    pub fn counts(&self) -> Vec<RpcCount> {
        let map = self.by_path.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<RpcCount> = map
            .iter()
            .map(|(path, c)| {
                let (service, method) = split_path(path);
                RpcCount {
                    service: service.to_string(),
                    method: method.to_string(),
                    ok: c.ok.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                }
            })
            .collect();
        drop(map);
        let (ok, failed) = (
            self.other.ok.load(Ordering::Relaxed),
            self.other.failed.load(Ordering::Relaxed),
        );
        if ok + failed > 0 {
            out.push(RpcCount {
                service: String::new(),
                method: OTHER.to_string(),
                ok,
                failed,
            });
        }
        out.sort_by(|a, b| (&a.service, &a.method).cmp(&(&b.service, &b.method)));
        out
    }
}

/// "/ringfs.Namenode/Create" → ("ringfs.Namenode", "Create"); a path of another shape is all method.
fn split_path(path: &str) -> (&str, &str) {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .unwrap_or(("", path))
}

/// Whether a gRPC response failed: tonic answers a unary call's error as a trailers-only response,
/// so its `grpc-status` is in the headers; a success carries it in the trailers (the namenode's
/// services have no streaming responses whose error could come only there).
fn failed<B>(response: &http::Response<B>) -> bool {
    response
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() != b"0")
}

/// Wraps a gRPC server's routes in [`RpcMetricsService`].
#[derive(Clone, Debug)]
pub struct RpcMetricsLayer {
    metrics: Arc<RpcMetrics>,
}

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Counts each call it passes on, once answered.
#[derive(Clone, Debug)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for RpcMetricsService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let counters = self.metrics.counters(req.uri().path());
        Counted {
            inner: self.inner.call(req),
            counters: Some(counters),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future; counts the call when it resolves (a call dropped unanswered,
    /// because the client went away, is not counted).
    pub struct Counted<F> {
        #[pin]
        inner: F,
        counters: Option<Arc<Counters>>,
    }
}

impl<F, R, E> Future for Counted<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some(c) = this.counters.take() {
            c.count(match &out {
                Ok(response) => failed(response),
                Err(_) => true,
            });
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_layer::Layer;
    use tower_service::Service;

    /// A service answering like tonic: OK with no grpc-status in the headers, an error as
    /// trailers-only with grpc-status 5 (NOT_FOUND).
    #[derive(Clone)]
    struct Fake;

    impl Service<http::Request<()>> for Fake {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<http::Response<()>, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<()>) -> Self::Future {
            let mut r = http::Response::new(());
            if req.uri().path().ends_with("/Missing") {
                r.headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static("5"));
            }
            std::future::ready(Ok(r))
        }
    }

    fn call(s: &mut RpcMetricsService<Fake>, path: &str) {
        let req = http::Request::builder().uri(path).body(()).unwrap();
        let fut = s.call(req);
        futures::executor::block_on(fut).unwrap();
    }

    #[test]
    fn calls_are_counted_by_method_and_outcome() {
        let m = RpcMetrics::new();
        let mut s = m.layer().layer(Fake);
        for _ in 0..3 {
            call(&mut s, "/ringfs.Namenode/Create");
        }
        call(&mut s, "/ringfs.Namenode/Missing");
        call(&mut s, "/ringfs.DatanodeProtocol/Heartbeat");
        assert_eq!(
            m.counts(),
            vec![
                RpcCount {
                    service: "ringfs.DatanodeProtocol".into(),
                    method: "Heartbeat".into(),
                    ok: 1,
                    failed: 0
                },
                RpcCount {
                    service: "ringfs.Namenode".into(),
                    method: "Create".into(),
                    ok: 3,
                    failed: 0
                },
                RpcCount {
                    service: "ringfs.Namenode".into(),
                    method: "Missing".into(),
                    ok: 0,
                    failed: 1
                },
            ]
        );
    }

    #[test]
    fn invented_paths_stop_at_the_limit() {
        let m = RpcMetrics::new();
        for i in 0..MAX_PATHS + 10 {
            m.record(&format!("/x/m{i}"), true);
        }
        let counts = m.counts();
        assert_eq!(counts.len(), MAX_PATHS + 1);
        let other = counts.iter().find(|c| c.method == OTHER).unwrap();
        assert_eq!((other.ok, other.failed), (0, 10));
    }
}
