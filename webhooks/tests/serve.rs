//! The webhook server end to end over real TLS on loopback: certificates from
//! a generated CA, rustls clients that trust only that CA, hyper clients for
//! well-formed HTTP/1.1 and HTTP/2, raw bytes for misbehaving clients.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keelson_webhooks::{CertResolver, Handler, Limits, Routes, WebhookCa, serve, server_config};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use x509_parser::prelude::*;

const NAME: &str = "keelson-webhook.keelson.svc";
const HOUR: Duration = Duration::from_secs(3600);
/// How long a test waits for something that should happen well before.
const PATIENCE: Duration = Duration::from_secs(5);
const H1: &[u8] = b"http/1.1";
const H2: &[u8] = b"h2";

fn ca() -> WebhookCa {
    WebhookCa::generate("keelson-webhook-ca", 24 * HOUR, SystemTime::now()).unwrap()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// Answers with the method, path and body it received.
struct Echo;

impl Handler for Echo {
    async fn handle(&self, request: Request<Bytes>) -> Response<Bytes> {
        let (parts, body) = request.into_parts();
        let mut echoed = format!("{} {} ", parts.method, parts.uri.path()).into_bytes();
        echoed.extend_from_slice(&body);
        Response::new(echoed.into())
    }
}

struct Server {
    addr: SocketAddr,
    resolver: Arc<CertResolver>,
    ready: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves a leaf for `NAME` and 127.0.0.1 from `ca` on a free port.
    async fn start(ca: &WebhookCa, limits: Limits, handler: impl Handler) -> Self {
        let leaf = ca
            .issue(&[NAME, "127.0.0.1"], HOUR, SystemTime::now())
            .unwrap();
        let resolver = Arc::new(CertResolver::new(leaf.certified_key().unwrap()));
        let config = server_config(Arc::clone(&resolver)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = oneshot::channel();
        let routes = Routes::new(handler, Arc::clone(&ready));
        let task = tokio::spawn(serve(listener, config, routes, limits, async {
            // A dropped sender stops the server too, like a sent signal.
            let _ = stopped.await;
        }));
        Self {
            addr,
            resolver,
            ready,
            stop: Some(stop),
            task,
        }
    }

    fn shut_down(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
    }
}

fn client_config(ca_pem: &str, alpn: &[u8]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(der(ca_pem))).unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A TLS connection to `addr` for `NAME`, trusting only `ca_pem`.
async fn connect(addr: SocketAddr, ca_pem: &str, alpn: &[u8]) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(client_config(ca_pem, alpn))
        .connect(ServerName::try_from(NAME).unwrap(), tcp)
        .await
}

fn peer_certificate(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A hyper client on one connection, speaking what ALPN chose.
enum Client {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Client {
    async fn open(stream: TlsStream<TcpStream>) -> Self {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(H2);
        let io = TokioIo::new(stream);
        if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
            tokio::spawn(conn);
            Self::H2(sender)
        } else {
            let (sender, conn) = http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Self::H1(sender)
        }
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> hyper::Result<(StatusCode, Bytes)> {
        let request = Request::builder()
            .method(method)
            .uri(format!("https://{NAME}{path}"))
            .header(header::HOST, NAME)
            .body(Full::new(body.into()))
            .unwrap();
        let response = match self {
            Self::H1(sender) => sender.send_request(request).await?,
            Self::H2(sender) => sender.send_request(request).await?,
        };
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    async fn get(&mut self, path: &str) -> (StatusCode, Bytes) {
        self.send(Method::GET, path, Bytes::new()).await.unwrap()
    }
}

/// Writes `request` and reads until the server closes the connection.
async fn raw(mut stream: TlsStream<TcpStream>, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    // A server closing without TLS close_notify is still a close here.
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("the server did not close the connection");
    String::from_utf8_lossy(&response).into_owned()
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PATIENCE:?}"))
}

#[tokio::test]
async fn healthz_answers_over_http1_and_http2_to_a_client_trusting_only_the_ca() {
    let ca = ca();
    let server = Server::start(&ca, Limits::default(), Echo).await;
    for alpn in [H1, H2] {
        let stream = connect(server.addr, ca.cert_pem(), alpn).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
        let mut client = Client::open(stream).await;
        assert_eq!(client.get("/healthz").await, (StatusCode::OK, "ok".into()));
        let (status, _) = client
            .send(Method::POST, "/healthz", Bytes::new())
            .await
            .unwrap();
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
}

#[tokio::test]
async fn readyz_follows_the_readiness_flag() {
    let ca = ca();
    let server = Server::start(&ca, Limits::default(), Echo).await;
    let mut client = Client::open(connect(server.addr, ca.cert_pem(), H2).await.unwrap()).await;

    assert_eq!(
        client.get("/readyz").await,
        (StatusCode::SERVICE_UNAVAILABLE, "not ready".into())
    );
    server.ready.store(true, Ordering::Release);
    assert_eq!(client.get("/readyz").await, (StatusCode::OK, "ok".into()));
    server.ready.store(false, Ordering::Release);
    assert_eq!(
        client.get("/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn other_requests_reach_the_handler_with_their_body() {
    let ca = ca();
    let server = Server::start(&ca, Limits::default(), Echo).await;
    for alpn in [H1, H2] {
        let mut client =
            Client::open(connect(server.addr, ca.cert_pem(), alpn).await.unwrap()).await;
        let (status, body) = client
            .send(Method::POST, "/validate", r#"{"kind":"AdmissionReview"}"#)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r#"POST /validate {"kind":"AdmissionReview"}"#);
    }
}

#[tokio::test]
async fn a_closure_is_a_handler() {
    let ca = ca();
    let handler = |request: Request<Bytes>| async move {
        let mut response = Response::new(Bytes::from(request.uri().path().to_owned()));
        *response.status_mut() = StatusCode::ACCEPTED;
        response
    };
    let server = Server::start(&ca, Limits::default(), handler).await;
    let mut client = Client::open(connect(server.addr, ca.cert_pem(), H1).await.unwrap()).await;
    assert_eq!(
        client.get("/mutate").await,
        (StatusCode::ACCEPTED, "/mutate".into())
    );
}

#[tokio::test]
async fn new_connections_get_a_replaced_certificate_while_old_ones_keep_serving() {
    let ca = ca();
    let server = Server::start(&ca, Limits::default(), Echo).await;
    let before = connect(server.addr, ca.cert_pem(), H1).await.unwrap();
    let first = peer_certificate(&before);
    let mut old_client = Client::open(before).await;

    // Same name, same CA, a later expiry and a fresh key.
    let next = ca
        .issue(&[NAME, "127.0.0.1"], 2 * HOUR, SystemTime::now())
        .unwrap();
    server.resolver.replace(next.certified_key().unwrap());

    let after = connect(server.addr, ca.cert_pem(), H1).await.unwrap();
    let second = peer_certificate(&after);
    assert_eq!(second, der(&next.cert_pem));
    assert_ne!(second, first);
    let (_, first_cert) = X509Certificate::from_der(&first).unwrap();
    let (_, second_cert) = X509Certificate::from_der(&second).unwrap();
    assert_ne!(first_cert.raw_serial(), second_cert.raw_serial());
    assert!(second_cert.validity().not_after > first_cert.validity().not_after);

    // Both the new connection and the one opened before the swap serve.
    let mut new_client = Client::open(after).await;
    assert_eq!(new_client.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(old_client.get("/healthz").await.0, StatusCode::OK);
    assert!(!server.task.is_finished());
}

#[tokio::test]
async fn a_client_not_trusting_the_ca_fails_the_handshake() {
    let ca = ca();
    let server = Server::start(&ca, Limits::default(), Echo).await;
    let stranger = WebhookCa::generate("someone-else", HOUR, SystemTime::now()).unwrap();

    let error = connect(server.addr, stranger.cert_pem(), H1)
        .await
        .expect_err("a client trusting another CA completed the handshake");
    let tls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a TLS error: {error}"));
    assert_eq!(
        *tls_error,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );

    // The failed handshake ended that connection, not the server.
    let mut client = Client::open(connect(server.addr, ca.cert_pem(), H1).await.unwrap()).await;
    assert_eq!(client.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn request_bodies_over_the_limit_get_413() {
    const LIMIT: usize = 64 * 1024;
    let ca = ca();
    let limits = Limits {
        max_body_bytes: LIMIT,
        ..Limits::default()
    };
    let server = Server::start(&ca, limits, Echo).await;

    // Refused on the declared length, before any of the body is sent.
    let stream = connect(server.addr, ca.cert_pem(), H1).await.unwrap();
    let response = raw(
        stream,
        format!(
            "POST /validate HTTP/1.1\r\nHost: {NAME}\r\nContent-Length: {}\r\n\r\n",
            16 * LIMIT
        )
        .as_bytes(),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 413 "), "{response}");
    assert!(response.contains("exceeds 65536 bytes"), "{response}");

    // Cut at the limit when the length is not declared.
    let chunk = "x".repeat(40 * 1024);
    let chunked = format!(
        "POST /validate HTTP/1.1\r\nHost: {NAME}\r\nTransfer-Encoding: chunked\r\n\r\n\
         {len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    let stream = connect(server.addr, ca.cert_pem(), H1).await.unwrap();
    let response = raw(stream, chunked.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413 "), "{response}");

    // The same over HTTP/2; a body of exactly the limit still passes.
    let mut client = Client::open(connect(server.addr, ca.cert_pem(), H2).await.unwrap()).await;
    let (status, _) = client
        .send(Method::POST, "/validate", vec![b'x'; LIMIT + 1])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = client
        .send(Method::POST, "/validate", vec![b'x'; LIMIT])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), "POST /validate ".len() + LIMIT);
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_after_the_handshake_timeout() {
    let ca = ca();
    let limits = Limits {
        tls_handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = Server::start(&ca, limits, Echo).await;

    let started = Instant::now();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0; 16];
    let read = within("closing a silent connection", tcp.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn stalled_request_headers_are_cut_after_the_header_read_timeout() {
    let ca = ca();
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = Server::start(&ca, limits, Echo).await;

    // HTTP/1.1: a request line and one header, then nothing.
    let started = Instant::now();
    let stream = connect(server.addr, ca.cert_pem(), H1).await.unwrap();
    let response = raw(
        stream,
        format!("GET /healthz HTTP/1.1\r\nHost: {NAME}\r\n").as_bytes(),
    )
    .await;
    assert!(!response.contains("200 OK"), "{response}");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // HTTP/2: a finished TLS handshake, then not even the preface.
    let started = Instant::now();
    let stream = connect(server.addr, ca.cert_pem(), H2).await.unwrap();
    raw(stream, b"").await;
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// A handler for `/slow` that reports entering and answers once released.
fn held(entered: Arc<Notify>, release: Arc<Notify>) -> impl Handler {
    move |_request: Request<Bytes>| {
        let (entered, release) = (Arc::clone(&entered), Arc::clone(&release));
        async move {
            entered.notify_one();
            release.notified().await;
            Response::new(Bytes::from_static(b"done"))
        }
    }
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drains_requests_in_flight() {
    let ca = ca();
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let mut server = Server::start(
        &ca,
        Limits::default(),
        held(Arc::clone(&entered), Arc::clone(&release)),
    )
    .await;
    let mut client = Client::open(connect(server.addr, ca.cert_pem(), H2).await.unwrap()).await;
    let in_flight = tokio::spawn(async move { client.send(Method::POST, "/slow", "").await });
    within("the request reaching the handler", entered.notified()).await;

    server.shut_down();
    within("the listener closing", async {
        while TcpStream::connect(server.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Still draining: the request in flight holds the server open.
    assert!(!server.task.is_finished());

    release.notify_one();
    let answered = within("the request in flight", in_flight).await.unwrap();
    assert_eq!(answered.unwrap(), (StatusCode::OK, "done".into()));
    within("the server stopping", server.task).await.unwrap();
}

#[tokio::test]
async fn the_drain_gives_up_after_the_drain_timeout() {
    let ca = ca();
    let limits = Limits {
        drain_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    // Never released: the handler outlives any drain.
    let entered = Arc::new(Notify::new());
    let mut server = Server::start(
        &ca,
        limits,
        held(Arc::clone(&entered), Arc::new(Notify::new())),
    )
    .await;
    let mut client = Client::open(connect(server.addr, ca.cert_pem(), H1).await.unwrap()).await;
    let in_flight = tokio::spawn(async move { client.send(Method::POST, "/slow", "").await });
    within("the request reaching the handler", entered.notified()).await;

    let stopping = Instant::now();
    server.shut_down();
    within("the server stopping", server.task).await.unwrap();
    assert!(stopping.elapsed() >= Duration::from_millis(250));
    let cut = within("the cut request", in_flight).await.unwrap();
    assert!(cut.is_err(), "{cut:?}");
}

#[tokio::test]
async fn bodies_of_too_many_values_get_413_and_strings_are_not_counted() {
    let ca = ca();
    let limits = Limits {
        max_json_values: 100,
        ..Limits::default()
    };
    let server = Server::start(&ca, limits, Echo).await;
    let mut client = Client::open(connect(server.addr, ca.cert_pem(), H1).await.unwrap()).await;
    // 60 empty objects and their commas: a few hundred bytes that decode
    // to far more.
    let many = format!("[{}]", vec!["{}"; 60].join(","));
    let (status, body) = client.send(Method::POST, "/validate", many).await.unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("about 120 JSON values, more than 100"),
        "{body}"
    );
    // Braces and commas inside strings (escaped quotes included) are text,
    // not values.
    let text = format!(r#"{{"a":"{}\"[{{,"}}"#, "{[,".repeat(500));
    let mut client = Client::open(connect(server.addr, ca.cert_pem(), H1).await.unwrap()).await;
    let (status, _) = client.send(Method::POST, "/validate", text).await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn requests_wait_for_room_to_decode_and_are_turned_away_when_none_comes() {
    let ca = ca();
    let limits = Limits {
        max_decode_bytes_in_flight: 64 * 1024,
        body_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    // The first request's handler holds its room until released.
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let handler = {
        let (release, entered) = (Arc::clone(&release), Arc::clone(&entered));
        move |request: Request<Bytes>| {
            let (release, entered) = (Arc::clone(&release), Arc::clone(&entered));
            async move {
                if request.body().len() > 1024 {
                    entered.notify_one();
                    release.notified().await;
                }
                Response::new(Bytes::from_static(b"done"))
            }
        }
    };
    let server = Server::start(&ca, limits, handler).await;
    let big = {
        let addr = server.addr;
        let pem = ca.cert_pem().to_owned();
        tokio::spawn(async move {
            let mut client = Client::open(connect(addr, &pem, H1).await.unwrap()).await;
            // 16 KiB estimated at 64 KiB: the whole budget.
            client
                .send(Method::POST, "/validate", vec![b'x'; 16 * 1024])
                .await
                .unwrap()
        })
    };
    within("the first request to be handled", entered.notified()).await;
    let mut client = Client::open(connect(server.addr, ca.cert_pem(), H1).await.unwrap()).await;
    let (status, body) = client.send(Method::POST, "/validate", "{}").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:?}");
    release.notify_one();
    let (status, _) = within("the first request's answer", big).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let mut client = Client::open(connect(server.addr, ca.cert_pem(), H1).await.unwrap()).await;
    let (status, body) = client.send(Method::POST, "/validate", "{}").await.unwrap();
    assert_eq!(
        (status, body),
        (StatusCode::OK, Bytes::from_static(b"done"))
    );
}
