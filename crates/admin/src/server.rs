//! The admin listener: plain HTTP/1.1, bounded like the data listeners (conn-guard's admission,
//! header timeout and idle timeout), four `GET` paths.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::{ActiveConfig, AdminError, Readiness};

/// What the pages show; shared by every admin connection.
pub struct AdminState {
    pub registry: Registry,
    pub readiness: Arc<dyn Readiness>,
    pub config: ActiveConfig,
}

/// A bound, not yet serving, admin listener.
pub struct AdminServer {
    listener: TcpListener,
    state: Arc<AdminState>,
    admission: Arc<conn_guard::Admission>,
}

impl AdminServer {
    pub async fn bind(
        addr: SocketAddr,
        limits: conn_guard::ConnectionLimits,
        state: AdminState,
    ) -> Result<Self, AdminError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        Ok(Self {
            listener,
            state: Arc::new(state),
            admission: conn_guard::Admission::new(limits, "admin"),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` resolves; open admin connections are then closed (scrapes are
    /// short and retried).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Self {
            listener,
            state,
            admission,
        } = self;
        let drain = conn_guard::Drain::new();
        tokio::pin!(shutdown);
        while let Some(conn_guard::Admitted {
            stream,
            peer: _,
            permit,
        }) = admission.accept(&listener, &mut shutdown).await
        {
            let conn_state = conn_guard::ConnState::new(*admission.limits());
            let state = state.clone();
            let service = conn_guard::track(
                conn_state.clone(),
                service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(&state, &req)) }
                }),
            );
            let watcher = drain.watcher();
            let limits = *admission.limits();
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.request_header_timeout)
                    .max_buf_size(16 * 1024)
                    .serve_connection(TokioIo::new(stream), service);
                conn_guard::drive(conn, conn_state, watcher, Some(permit)).await;
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(conn_guard::GOAWAY_GRACE, drain.shutdown()).await;
    }
}

type Page = Response<Full<Bytes>>;

fn page(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Page {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Page {
    page(status, "application/json", value.to_string())
}

/// The pages. Pure but for the registry's and the checks' current values.
pub(crate) fn answer(state: &AdminState, req: &Request<Incoming>) -> Page {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return page(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET is served\n",
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let mut text = String::new();
            match prometheus_client::encoding::prometheus_text::encode(&mut text, &state.registry) {
                Ok(()) => page(
                    StatusCode::OK,
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    text,
                ),
                Err(_) => page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "encoding the metrics failed\n",
                ),
            }
        }
        "/healthz" => json(StatusCode::OK, &serde_json::json!({"status": "ALIVE"})),
        "/readyz" => {
            let checks = state.readiness.checks();
            let ready = checks.iter().all(|c| c.failing.is_none());
            let detail: serde_json::Map<String, serde_json::Value> = checks
                .into_iter()
                .map(|c| {
                    let value = match c.failing {
                        None => serde_json::Value::from("ok"),
                        Some(why) => serde_json::Value::from(why),
                    };
                    (c.name.to_owned(), value)
                })
                .collect();
            let (status, word) = if ready {
                (StatusCode::OK, "READY")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "NOT_READY")
            };
            json(
                status,
                &serde_json::json!({"status": word, "checks": detail}),
            )
        }
        "/config" => json(StatusCode::OK, &state.config.get().to_json()),
        _ => page(
            StatusCode::NOT_FOUND,
            "text/plain",
            "admin paths: /metrics /healthz /readyz /config\n",
        ),
    }
}
