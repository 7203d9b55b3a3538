//! `DB_BACKUP_HTTP_ADDR`: a small read-only HTTP listener (hyper) serving `/metrics`
//! (Prometheus), `/healthz` (probes) and `/`, the status page. It shows no secret, no container
//! environment, and accepts nothing but GET and HEAD. Put it behind a reverse proxy with
//! authentication before exposing it beyond the host (README).

pub mod chart;
pub mod escape;
pub mod page;
pub mod view;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::health::Health;
use crate::metrics::Metrics;
pub use view::{DrillPoint, ServiceView, StatusView};

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 32;
/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the pages are made from; the daemon implements it over its state.
pub trait Source: Send + Sync + 'static {
    fn status(&self) -> StatusView;
    fn health(&self) -> Health;
}

/// `DB_BACKUP_HTTP_ADDR`: `host:port`, e.g. `0.0.0.0:9587`, `127.0.0.1:9587`, `[::]:9587`.
pub fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    value.trim().parse().map_err(|_| {
        format!(
            "DB_BACKUP_HTTP_ADDR: '{}' is not an address and port; expected e.g. 0.0.0.0:9587 or 127.0.0.1:9587",
            value.trim()
        )
    })
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| format!("DB_BACKUP_HTTP_ADDR: cannot listen on {addr}: {e}"))
}

/// Serves until `stop` completes; connections already open finish on their own.
pub async fn serve(listener: TcpListener, source: Arc<dyn Source>, metrics: Metrics, stop: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            _ = &mut stop => return,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("http listener: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let source = Arc::clone(&source);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = respond(&req, source.as_ref(), &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
            drop(permit);
        });
    }
}

/// The whole router: three read-only pages.
pub fn respond<B>(req: &Request<B>, source: &dyn Source, metrics: &Metrics) -> Response<Full<Bytes>> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r =
            reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "read-only: GET or HEAD\n".into());
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut response = match req.uri().path() {
        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", page::render(&source.status())),
        "/metrics" => {
            let accept = req.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok());
            let (body, content_type) = metrics.encode(accept);
            reply(StatusCode::OK, content_type, body)
        }
        "/healthz" => match source.health() {
            Health::Healthy(m) => reply(StatusCode::OK, "text/plain; charset=utf-8", format!("ok: {m}\n")),
            Health::Unhealthy(m) => {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", format!("unhealthy: {m}\n"))
            }
        },
        _ => {
            reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found: try /, /metrics or /healthz\n".into())
        }
    };
    if head {
        *response.body_mut() = Full::new(Bytes::new());
    }
    response
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The page needs nothing but its own inline style: forbid everything else.
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use http_body_util::BodyExt;

    struct Fixed(Health);

    impl Source for Fixed {
        fn status(&self) -> StatusView {
            StatusView {
                host: "h".into(),
                generated_at: Utc::now(),
                engine_connected: true,
                services: vec![ServiceView { service: "db".into(), ..Default::default() }],
                problems: vec![],
            }
        }
        fn health(&self) -> Health {
            self.0.clone()
        }
    }

    async fn get(method: Method, path: &str, health: Health) -> (StatusCode, String, hyper::HeaderMap) {
        let req = Request::builder().method(method).uri(path).body(()).unwrap();
        let r = respond(&req, &Fixed(health), &Metrics::new());
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap(), headers)
    }

    #[tokio::test]
    async fn routes_and_read_only() {
        let ok = || Health::Healthy("fine".into());
        let (s, body, h) = get(Method::GET, "/", ok()).await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("id=\"service-db\""));
        assert!(h["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
        let (s, body, _) = get(Method::GET, "/metrics", ok()).await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("db_backup_notifications_failed_total 0"));
        assert_eq!(get(Method::GET, "/healthz", ok()).await.0, StatusCode::OK);
        let (s, body, _) = get(Method::GET, "/healthz", Health::Unhealthy("stuck".into())).await;
        assert_eq!((s, body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "unhealthy: stuck\n"));
        let (s, _, h) = get(Method::POST, "/", ok()).await;
        assert_eq!((s, h[ALLOW].to_str().unwrap()), (StatusCode::METHOD_NOT_ALLOWED, "GET, HEAD"));
        assert_eq!(get(Method::GET, "/.db-backup-status.json", ok()).await.0, StatusCode::NOT_FOUND);
        let (s, body, _) = get(Method::HEAD, "/", ok()).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, ""));
    }

    #[test]
    fn addresses_are_checked() {
        assert_eq!(parse_addr("0.0.0.0:9587").unwrap().port(), 9587);
        assert!(parse_addr("[::]:9587").is_ok());
        let err = parse_addr("localhost").unwrap_err();
        assert!(err.contains("DB_BACKUP_HTTP_ADDR") && err.contains("'localhost'"), "{err}");
    }
}
