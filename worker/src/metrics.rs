//! The worker's metrics endpoint (`ADE_WORKER_METRICS_ADDR`).
//!
//! A tiny HTTP/1.1 server: any `GET` answers the worker's registry as
//! OpenMetrics text, with the slot gauges read at scrape time. It binds in
//! [`crate::Worker::build`] (so tests know its address) and stops with the
//! worker's shutdown token.

use crate::slots::Slots;
use ade_common::metrics::{CONTENT_TYPE, Metrics, encode};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What a scrape reads.
#[derive(Clone)]
pub struct Exporter {
    /// The worker's registry.
    pub registry: Arc<Registry>,
    /// Its families (the slot gauges are set at scrape time).
    pub metrics: Metrics,
    /// The run slots.
    pub slots: Slots,
}

impl Exporter {
    /// The registry as text, slots as of now.
    pub fn render(&self) -> String {
        self.metrics.slots_busy.set(i64::from(self.slots.busy()));
        self.metrics.slots_free.set(i64::from(self.slots.free()));
        encode(&self.registry)
    }

    fn answer(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let (status, body) = if req.method() == Method::GET {
            (StatusCode::OK, self.render())
        } else {
            (StatusCode::METHOD_NOT_ALLOWED, String::new())
        };
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        res.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(CONTENT_TYPE),
        );
        res
    }
}

/// Serves scrapes on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, exporter: Exporter, shutdown: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let Some(stream) = ade_common::net::accept(&listener, &shutdown).await else {
            break;
        };
        let exporter = exporter.clone();
        let service = hyper::service::service_fn(move |req| {
            let res = exporter.answer(&req);
            async move { Ok::<_, Infallible>(res) }
        });
        let io = hyper_util::rt::TokioIo::new(stream);
        let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
}
