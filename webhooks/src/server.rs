//! The HTTPS server admission webhooks run in: TLS with bounded handshakes,
//! HTTP/1.1 and HTTP/2 chosen by ALPN, bounded request reads, health and
//! readiness probes, and a bounded drain on shutdown.
//!
//! Requests other than the probes go to a [`Handler`] with their body already
//! read (admission reviews are small JSON documents that must be parsed whole),
//! so handlers deal in `Request<Bytes>` and `Response<Bytes>` and never see
//! connections, TLS or limits.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use rustls::ServerConfig;
use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, pending};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinError, JoinSet};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

/// Answers requests the server does not answer itself.
///
/// Closures `Fn(Request<Bytes>) -> impl Future<Output = Response<Bytes>>`
/// are handlers, so a route can be a closure in tests and a type with state
/// (clients, caches) in production.
pub trait Handler: Send + Sync + 'static {
    /// The response to `request`, whose body has been read within the
    /// server's [`Limits`].
    fn handle(&self, request: Request<Bytes>) -> impl Future<Output = Response<Bytes>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Bytes>> + Send,
{
    fn handle(&self, request: Request<Bytes>) -> impl Future<Output = Response<Bytes>> + Send {
        self(request)
    }
}

/// What the server answers: `GET /healthz` (200 while the process serves),
/// `GET /readyz` (200 while `ready` is true, else 503), and everything else
/// through `handler`.
pub struct Routes<H> {
    handler: H,
    ready: Arc<AtomicBool>,
}

impl<H: Handler> Routes<H> {
    /// Routes to `handler`, reporting ready while `ready` holds true. The
    /// owner of `ready` sets it once the handler can give real answers
    /// (caches synced) and clears it on the first shutdown signal, so the
    /// Service stops routing here before the server stops accepting.
    pub fn new(handler: H, ready: Arc<AtomicBool>) -> Self {
        Self { handler, ready }
    }
}

/// Bounds on what one client can hold or send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time from accepting a TCP connection to a finished TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time to receive a request's headers. HTTP/1.1 applies it to every
    /// request, idle keep-alive time included. HTTP/2 applies it to the
    /// first request and, through keep-alive pings, to a peer that stops
    /// answering (a client stalled inside a header block cannot answer).
    pub header_read_timeout: Duration,
    /// Time to receive a request's body once its headers are in.
    pub body_read_timeout: Duration,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Request bodies held at once, in bytes (a body is counted from before
    /// it is read, by its declared length, or at the largest accepted when
    /// it declares none). Further requests wait for room.
    pub max_body_bytes_in_flight: usize,
    /// JSON values a body may hold (counted as the objects, arrays and
    /// commas outside strings); more gets 413. Decoding turns each into a
    /// typed value of up to a few KiB (a Kubernetes `Volume` is 3 KiB), so
    /// a small body of many tiny values would otherwise cost a hundred times
    /// its size.
    pub max_json_values: usize,
    /// What the handlers may be decoding at once, estimated per request
    /// from its length and its JSON values. Further requests wait for
    /// room; the wait for either budget is bounded by `body_read_timeout`
    /// (then 503).
    pub max_decode_bytes_in_flight: usize,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// After shutdown, how long in-flight connections may take to finish
    /// before they are cut.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            // The API server caps an object at 3 MiB in etcd; an
            // AdmissionReview carries the object and its old version.
            max_body_bytes: 8 * 1024 * 1024,
            // With the decode budget and the operator's own ~60 MiB, under
            // the 256 MiB limit its install gives it.
            max_body_bytes_in_flight: 16 * 1024 * 1024,
            // A pod with a hundred containers of twenty variables each has
            // about eight thousand.
            max_json_values: 20_000,
            max_decode_bytes_in_flight: 96 * 1024 * 1024,
            // A handful of API servers keep a few connections each; the cap
            // only matters against a misbehaving client.
            max_connections: 512,
            // Longer than the 5 s timeoutSeconds Keelson's webhooks declare,
            // so every call the API server still waits for can finish, and
            // well inside the default 30 s termination grace period.
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Pause after a failed accept: failures such as running out of file
/// descriptors persist for a while, and retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves HTTPS on `listener` with `tls` until `shutdown` completes, then
/// stops accepting (the listener is closed, so new connections are refused),
/// lets in-flight requests finish for at most `limits.drain_timeout`, and
/// returns.
///
/// Client errors (failed handshakes, timeouts, malformed requests) end their
/// connection and are logged at debug level; nothing a client does ends the
/// server.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    routes: Routes<H>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let app = Arc::new(App {
        routes,
        bodies: Semaphore::new(kib(limits.max_body_bytes_in_flight, usize::MAX) as usize),
        decoding: Semaphore::new(kib(limits.max_decode_bytes_in_flight, usize::MAX) as usize),
        limits,
    });
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                report(finished);
            }
            accepted = listener.accept(), if connections.len() < limits.max_connections => {
                match accepted {
                    Ok((tcp, peer)) => {
                        connections.spawn(connection(
                            tcp,
                            peer,
                            acceptor.clone(),
                            Arc::clone(&app),
                            stopped.clone(),
                        ));
                    }
                    Err(error) => {
                        warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        }
    }

    drop(listener);
    stop.send_replace(true);
    info!(
        connections = connections.len(),
        "stopped accepting; draining connections"
    );
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while let Some(finished) = connections.join_next().await {
            report(finished);
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = connections.len(),
            timeout = ?limits.drain_timeout,
            "connections still open after the drain timeout; closing them"
        );
        connections.shutdown().await;
    }
    info!("webhook server stopped");
}

/// Logs a connection task that panicked (a handler bug); its client saw the
/// connection close, and the server goes on.
fn report(finished: Result<(), JoinError>) {
    if let Err(failure) = finished
        && failure.is_panic()
    {
        error!("a webhook connection task panicked");
    }
}

struct App<H> {
    routes: Routes<H>,
    limits: Limits,
    /// [`Limits::max_body_bytes_in_flight`], in KiB.
    bodies: Semaphore,
    /// [`Limits::max_decode_bytes_in_flight`], in KiB.
    decoding: Semaphore,
}

/// Memory decoding a body of `len` bytes holding `values` JSON values may
/// take, by a bound that holds for Kubernetes types: a few copies of its
/// text (strings are copied out, a raw copy is kept), and at most 4 KiB for
/// each value.
fn decode_estimate(len: usize, values: usize) -> usize {
    4 * len + 4096 * values
}

/// About the number of values in a JSON text: the objects and arrays, and
/// the commas between elements and members, outside strings.
fn json_values(body: &[u8]) -> usize {
    let (mut count, mut in_string, mut escaped) = (0, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' | b',' => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// Whole KiB covering `bytes`, capped at what `budget` holds (a request
/// larger than the budget waits for all of it, so it runs alone).
fn kib(bytes: usize, budget: usize) -> u32 {
    let cap = budget.div_ceil(1024).max(1);
    u32::try_from(bytes.div_ceil(1024).clamp(1, cap)).unwrap_or(u32::MAX)
}

/// Serves one accepted TCP connection until it ends or the server stops.
async fn connection<H: Handler>(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Arc<App<H>>,
    mut stopped: watch::Receiver<bool>,
) {
    let limits = app.limits;
    // Requests and responses are single small writes; waiting for Nagle's
    // algorithm would only add latency to admission calls.
    if let Err(error) = tcp.set_nodelay(true) {
        debug!(%peer, %error, "setting TCP_NODELAY failed");
    }
    let tls = tokio::select! {
        handshake = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp)) => {
            match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
        // A connection still shaking hands has no request to drain.
        () = server_stopped(&mut stopped) => return,
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);

    let started = Arc::new(AtomicBool::new(false));
    let service = {
        let started = Arc::clone(&started);
        service_fn(move |request| {
            started.store(true, Ordering::Relaxed);
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(app.respond(request).await) }
        })
    };

    // The protocol follows ALPN rather than sniffing the first bytes, as
    // hyper-util's auto builder does: its sniffing waits without a timeout.
    if h2 {
        let conn = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.header_read_timeout)
            .keep_alive_timeout(limits.header_read_timeout)
            .serve_connection(io, service);
        // hyper has no header-read timeout for HTTP/2: a client that
        // finishes TLS and then sends nothing would hold the connection
        // forever, so the first request must start in time.
        drive(
            conn,
            &started,
            Some(limits.header_read_timeout),
            stopped,
            peer,
        )
        .await;
    } else {
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(io, service);
        drive(conn, &started, None, stopped, peer).await;
    }
}

/// Completes once the server stops accepting (or is gone).
async fn server_stopped(stopped: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped at once: held across an await
    // it would make the connection task unsendable.
    let _ = stopped.wait_for(|&stop| stop).await;
}

/// Runs `conn` to its end. `started` turns true when the connection's first
/// request arrives; without one within `first_request_timeout` (if given) the
/// connection is dropped. When the server stops, a connection that has
/// served requests is shut down gracefully: requests in flight are answered
/// (the server bounds how long that may take), and no new ones are read.
async fn drive<C>(
    conn: C,
    started: &AtomicBool,
    first_request_timeout: Option<Duration>,
    mut stopped: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    C: GracefulConnection,
    C::Error: fmt::Display,
{
    let mut conn = pin!(conn);
    let silent = async {
        match first_request_timeout {
            Some(timeout) => {
                tokio::time::sleep(timeout).await;
                if started.load(Ordering::Relaxed) {
                    pending().await
                }
            }
            None => pending().await,
        }
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = silent => {
            debug!(%peer, "no request within the header read timeout");
            return;
        }
        () = server_stopped(&mut stopped) => {
            // With no request yet there is nothing to drain, and a graceful
            // shutdown would wait for an HTTP/2 client's preface that may
            // never come.
            if !started.load(Ordering::Relaxed) {
                return;
            }
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        debug!(%peer, %error, "connection ended with an error");
    }
}

impl<H: Handler> App<H> {
    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match request.uri().path() {
            "/healthz" => probe(request.method(), true),
            "/readyz" => probe(request.method(), self.routes.ready.load(Ordering::Acquire)),
            _ => {
                let (parts, body) = request.into_parts();
                match self.read_and_handle(&parts, body).await {
                    Ok(response) => response,
                    Err(refusal) => {
                        debug!(path = parts.uri.path(), %refusal, "refusing a request");
                        let mut response = refusal.response();
                        // An HTTP/1 client may still be sending the body we
                        // refused; closing spares reading it just to find
                        // where the next request starts. (HTTP/2 resets
                        // just the stream, and forbids this header.)
                        if parts.version < Version::HTTP_2 {
                            response.headers_mut().insert(
                                header::CONNECTION,
                                header::HeaderValue::from_static("close"),
                            );
                        }
                        response
                    }
                }
            }
        }
    }
}

impl<H: Handler> App<H> {
    /// Reads the body and hands it to the handler, each step within its
    /// memory budget.
    async fn read_and_handle(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<Response<Full<Bytes>>, BodyError> {
        let limits = &self.limits;
        let declared = usize::try_from(body.size_hint().exact().unwrap_or(u64::MAX))
            .unwrap_or(usize::MAX)
            .min(limits.max_body_bytes);
        let wait = limits.body_read_timeout;
        let _body_room = room(
            &self.bodies,
            kib(declared, limits.max_body_bytes_in_flight),
            wait,
        )
        .await?;
        let body = read_body(body, limits.max_body_bytes, wait).await?;
        let values = json_values(&body);
        if values > limits.max_json_values {
            return Err(BodyError::TooManyValues {
                found: values,
                limit: limits.max_json_values,
            });
        }
        let estimate = decode_estimate(body.len(), values);
        let _decode_room = room(
            &self.decoding,
            kib(estimate, limits.max_decode_bytes_in_flight),
            wait,
        )
        .await?;
        let request = Request::from_parts(parts.clone(), body);
        Ok(self.routes.handler.handle(request).await.map(Full::new))
    }
}

/// `permits` of `budget`, waiting at most `wait`.
async fn room(
    budget: &Semaphore,
    permits: u32,
    wait: Duration,
) -> Result<tokio::sync::SemaphorePermit<'_>, BodyError> {
    match tokio::time::timeout(wait, budget.acquire_many(permits)).await {
        Ok(Ok(permit)) => Ok(permit),
        // The semaphore is never closed; a timeout is the server being busy.
        _ => Err(BodyError::Busy(wait)),
    }
}

/// A probe's answer: `GET` only, 200 "ok" when `ok`, else 503.
fn probe(method: &Method, ok: bool) -> Response<Full<Bytes>> {
    if method != Method::GET {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return response;
    }
    if ok {
        text(StatusCode::OK, "ok")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Why a request body was not handed to the handler.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("the request body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body did not arrive within {0:?}")]
    TimedOut(Duration),
    #[error("reading the request body: {0}")]
    Read(#[source] Box<dyn StdError + Send + Sync>),
    #[error("the request body holds about {found} JSON values, more than {limit}")]
    TooManyValues { found: usize, limit: usize },
    #[error("no room for the request within {0:?}: too many requests in flight")]
    Busy(Duration),
}

impl BodyError {
    fn response(&self) -> Response<Full<Bytes>> {
        let status = match self {
            Self::TooLarge { .. } | Self::TooManyValues { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Read(_) => StatusCode::BAD_REQUEST,
        };
        text(status, self.to_string())
    }
}

/// Reads a whole body of at most `limit` bytes within `timeout`.
async fn read_body<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    // A declared Content-Length over the limit is refused before a byte of
    // the body is read; bodies of undeclared length are cut at the limit.
    if body.size_hint().lower() > u64::try_from(limit).unwrap_or(u64::MAX) {
        return Err(BodyError::TooLarge { limit });
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| BodyError::TimedOut(timeout))?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(error) => Err(BodyError::Read(error)),
    }
}
