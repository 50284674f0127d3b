//! Where the proxies' metrics come from. In a cluster: each pod's proxy
//! admin port, `http://<podIP>:4191/metrics`. The source is a trait so that
//! tests can stand in for proxies; nothing a user writes on a pod chooses
//! the address (that would let anyone who can label a pod make the
//! operator fetch arbitrary URLs).

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The proxy's admin port (`proxy.ports.admin` in Linkerd's values).
pub const ADMIN_PORT: u16 = 4191;
/// A proxy answers in milliseconds; a stuck one must not hold the round.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Far above a proxy's usual few hundred KiB of metrics.
const MAX_BODY: usize = 8 << 20;

/// The pod whose proxy is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodTarget {
    pub namespace: String,
    pub name: String,
    pub ip: IpAddr,
}

/// Why a proxy's metrics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("pod {pod}: {what}")]
    Failed { pod: String, what: String },
    #[error("pod {pod}: no answer within {}s", TIMEOUT.as_secs())]
    Timeout { pod: String },
}

/// Reads the Prometheus text a pod's proxy serves.
pub trait ProxyMetrics: Send + Sync {
    fn scrape<'a>(&'a self, pod: &'a PodTarget) -> BoxFuture<'a, Result<String, ScrapeError>>;
}

/// The production source: the pod IP's admin port, plain HTTP/1.1 (Linkerd
/// serves the admin port without TLS inside the pod network).
#[derive(Clone, Copy, Debug, Default)]
pub struct PodAdminPort;

impl ProxyMetrics for PodAdminPort {
    fn scrape<'a>(&'a self, pod: &'a PodTarget) -> BoxFuture<'a, Result<String, ScrapeError>> {
        Box::pin(async move {
            let addr = SocketAddr::new(pod.ip, ADMIN_PORT);
            match tokio::time::timeout(TIMEOUT, get_metrics(addr)).await {
                Ok(Ok(text)) => Ok(text),
                Ok(Err(what)) => Err(ScrapeError::Failed {
                    pod: pod.name.clone(),
                    what,
                }),
                Err(_) => Err(ScrapeError::Timeout {
                    pod: pod.name.clone(),
                }),
            }
        })
    }
}

/// `GET /metrics` from `addr`. Also used by tests' sources, so that they
/// read their stand-in proxies over real HTTP.
pub async fn get_metrics(addr: SocketAddr) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    let conn = tokio::spawn(conn);
    let request = http::Request::get("/metrics")
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = send
        .send_request(request)
        .await
        .map_err(|e| format!("GET http://{addr}/metrics: {e}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading http://{addr}/metrics: {e}"))?
        .to_bytes();
    conn.abort();
    if !status.is_success() {
        return Err(format!("GET http://{addr}/metrics: {status}"));
    }
    String::from_utf8(body.to_vec()).map_err(|_| format!("http://{addr}/metrics is not UTF-8"))
}
