use super::*;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

const ME: &str = "keelson-a";

fn spec(holder: Option<&str>, seconds: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: holder.map(str::to_owned),
        lease_duration_seconds: Some(seconds),
        lease_transitions: Some(3),
        acquire_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
        renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
        ..LeaseSpec::default()
    }
}

#[test]
fn decisions_follow_client_go() {
    let secs = Duration::from_secs;
    assert_eq!(decide(None, secs(0), ME), Decision::Acquire);
    assert_eq!(
        decide(Some(&spec(None, 15)), secs(0), ME),
        Decision::Acquire
    );
    assert_eq!(
        decide(Some(&spec(Some(""), 15)), secs(0), ME),
        Decision::Acquire,
        "a released lease is free"
    );
    assert_eq!(
        decide(Some(&spec(Some(ME), 15)), secs(600), ME),
        Decision::Renew
    );
    let other = spec(Some("keelson-b"), 15);
    assert_eq!(
        decide(Some(&other), secs(14), ME),
        Decision::Follow {
            holder: "keelson-b".into()
        }
    );
    assert_eq!(
        decide(Some(&other), secs(15), ME),
        Decision::Acquire,
        "unchanged for its whole duration: expired"
    );
    let no_duration = LeaseSpec {
        lease_duration_seconds: None,
        ..other.clone()
    };
    assert_eq!(decide(Some(&no_duration), secs(0), ME), Decision::Acquire);
}

#[test]
fn records_keep_client_go_bookkeeping() {
    let now = Timestamp::from_second(1_000_000).unwrap();
    let fresh = claimed(None, ME, Duration::from_millis(1500), now);
    assert_eq!(fresh.holder_identity.as_deref(), Some(ME));
    assert_eq!(fresh.lease_duration_seconds, Some(2), "rounded up");
    assert_eq!(fresh.lease_transitions, Some(0));
    assert_eq!(fresh.acquire_time, Some(MicroTime(now)));

    let later = Timestamp::from_second(1_000_010).unwrap();
    let renewed = claimed(Some(&fresh), ME, Duration::from_secs(15), later);
    assert_eq!(
        renewed.acquire_time,
        Some(MicroTime(now)),
        "kept on renewal"
    );
    assert_eq!(renewed.renew_time, Some(MicroTime(later)));
    assert_eq!(renewed.lease_transitions, Some(0));

    let taken = claimed(Some(&renewed), "keelson-b", Duration::from_secs(15), later);
    assert_eq!(taken.holder_identity.as_deref(), Some("keelson-b"));
    assert_eq!(taken.acquire_time, Some(MicroTime(later)));
    assert_eq!(taken.lease_transitions, Some(1));

    let given_back = released(&taken, later);
    assert_eq!(given_back.holder_identity, None);
    assert_eq!(given_back.lease_transitions, Some(1));
    assert_eq!(
        decide(Some(&given_back), Duration::ZERO, ME),
        Decision::Acquire
    );
}

#[test]
fn settings_must_let_the_holder_step_down_first() {
    let ok = Config::new("keelson", ME);
    assert!(ok.validate().is_ok());
    let late = Config {
        renew_deadline: ok.lease_duration,
        ..ok.clone()
    };
    assert!(late.validate().is_err());
    let no_retry = Config {
        retry_period: ok.renew_deadline,
        ..ok.clone()
    };
    assert!(no_retry.validate().is_err());
    assert!(Config::new("keelson", "").validate().is_err());
}

/// The part of an API server that serves one namespace's Leases, with
/// resourceVersion preconditions.
#[derive(Default)]
struct FakeApi {
    lease: Option<Value>,
    version: u64,
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/keelson/leases";

impl FakeApi {
    fn handle(&mut self, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
        let named = format!("{LEASES}/keelson");
        let conflict = (StatusCode::CONFLICT, status(409, "Conflict"));
        match (method, path) {
            (&Method::GET, p) if p == named => match &self.lease {
                Some(lease) => (StatusCode::OK, lease.clone()),
                None => (StatusCode::NOT_FOUND, status(404, "NotFound")),
            },
            (&Method::POST, LEASES) => {
                if self.lease.is_some() {
                    return conflict;
                }
                (StatusCode::CREATED, self.store(body))
            }
            (&Method::PUT, p) if p == named => {
                let sent: Value = serde_json::from_slice(body).unwrap();
                let current = self
                    .lease
                    .as_ref()
                    .map(|l| &l["metadata"]["resourceVersion"]);
                if current != Some(&sent["metadata"]["resourceVersion"]) {
                    return conflict;
                }
                (StatusCode::OK, self.store(body))
            }
            _ => panic!("unexpected request {method} {path}"),
        }
    }

    fn store(&mut self, body: &[u8]) -> Value {
        let mut lease: Value = serde_json::from_slice(body).unwrap();
        self.version += 1;
        lease["metadata"]["resourceVersion"] = self.version.to_string().into();
        self.lease = Some(lease.clone());
        lease
    }

    fn spec(&self) -> LeaseSpec {
        serde_json::from_value(self.lease.as_ref().unwrap()["spec"].clone()).unwrap()
    }
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

/// A client of `api` that answers 503 while `down` is set, as an API
/// server this replica cannot reach, and takes `read_delay` to answer reads.
fn client(api: &Arc<Mutex<FakeApi>>, down: &Arc<AtomicBool>, read_delay: Duration) -> Client {
    let (api, down) = (Arc::clone(api), Arc::clone(down));
    let service = tower::service_fn(move |req: Request<kube::client::Body>| {
        let (api, down) = (Arc::clone(&api), Arc::clone(&down));
        async move {
            let (parts, body) = req.into_parts();
            if parts.method == Method::GET {
                tokio::time::sleep(read_delay).await;
            }
            let body = body.collect().await.unwrap().to_bytes();
            let (code, value) = if down.load(Ordering::SeqCst) {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    status(503, "ServiceUnavailable"),
                )
            } else {
                api.lock()
                    .unwrap()
                    .handle(&parts.method, parts.uri.path(), &body)
            };
            let body = Full::new(Bytes::from(serde_json::to_vec(&value).unwrap()));
            Ok::<_, std::convert::Infallible>(Response::builder().status(code).body(body).unwrap())
        }
    });
    Client::new(service, "default")
}

fn config(identity: &str) -> Config {
    Config::new("keelson", identity)
}

/// Every change of every elector's leadership, in order, with the (paused)
/// clock's time.
type Log = Arc<Mutex<Vec<(Instant, &'static str, bool)>>>;

fn record(log: &Log, name: &'static str, mut leadership: Leadership) {
    let log = Arc::clone(log);
    tokio::spawn(async move {
        while leadership.0.changed().await.is_ok() {
            let leading = leadership.is_leading();
            log.lock().unwrap().push((Instant::now(), name, leading));
        }
    });
}

async fn wait_until(what: &str, test: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(600), async {
        while !test() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

struct Replica {
    leadership: Leadership,
    metrics: Arc<Metrics>,
    down: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Replica {
    /// Stops the elector gracefully and waits until it has finished.
    async fn shut_down(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        (&mut self.task).await.unwrap();
    }
}

fn replica(api: &Arc<Mutex<FakeApi>>, name: &'static str, log: &Log) -> Replica {
    slow_replica(api, name, log, Duration::ZERO)
}

fn slow_replica(
    api: &Arc<Mutex<FakeApi>>,
    name: &'static str,
    log: &Log,
    read_delay: Duration,
) -> Replica {
    let down = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(Metrics::default());
    let client = client(api, &down, read_delay);
    let (elector, leadership) = elector(client, config(name), Arc::clone(&metrics));
    record(log, name, leadership.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(elector.run(async {
        let _ = stopped.await;
    }));
    Replica {
        leadership,
        metrics,
        down,
        stop: Some(stop),
        task,
    }
}

#[tokio::test(start_paused = true)]
async fn one_replica_leads_and_hands_over_on_release() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let log = Log::default();
    let mut a = replica(&api, "a", &log);
    wait_until("a leads", || a.leadership.is_leading()).await;
    assert_eq!(a.metrics.leader.get(), 1);
    let mut b = replica(&api, "b", &log);
    // b keeps trying for longer than a lease; a keeps renewing.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!b.leadership.is_leading());
    assert_eq!(b.metrics.leader.get(), 0);
    assert_eq!(
        api.lock().unwrap().spec().holder_identity.as_deref(),
        Some("a")
    );

    // A graceful stop hands the lease back; b takes it without waiting
    // for it to expire.
    let stopped_at = Instant::now();
    a.shut_down().await;
    assert_eq!(a.metrics.leader.get(), 0);
    b.leadership.acquired().await;
    assert!(
        Instant::now() - stopped_at < Duration::from_secs(15),
        "b waited for the lease to expire"
    );
    let spec = api.lock().unwrap().spec();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    b.shut_down().await;
    assert_eq!(api.lock().unwrap().spec().holder_identity, None);
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_steps_down_before_another_takes_over() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let log = Log::default();
    let a = replica(&api, "a", &log);
    wait_until("a leads", || a.leadership.is_leading()).await;
    let mut b = replica(&api, "b", &log);
    tokio::time::sleep(Duration::from_secs(5)).await;

    // a loses the API server; b still reaches it.
    a.down.store(true, Ordering::SeqCst);
    b.leadership.acquired().await;
    assert_eq!(
        api.lock().unwrap().spec().holder_identity.as_deref(),
        Some("b")
    );
    let log = log.lock().unwrap().clone();
    let a_down = log
        .iter()
        .find(|(_, who, leading)| *who == "a" && !leading)
        .expect("a stepped down");
    let b_up = log
        .iter()
        .find(|(_, who, leading)| *who == "b" && *leading)
        .expect("b leads");
    assert!(a_down.0 < b_up.0, "a still led when b took over: {log:?}");

    // a reaches the API server again and follows.
    a.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!a.leadership.is_leading());
    assert!(b.leadership.is_leading());
}

#[tokio::test(start_paused = true)]
async fn a_crashed_leaders_lease_is_taken_once_expired() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let log = Log::default();
    let a = replica(&api, "a", &log);
    wait_until("a leads", || a.leadership.is_leading()).await;
    let mut b = replica(&api, "b", &log);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // A crash: no release.
    a.task.abort();
    let crashed_at = Instant::now();
    b.leadership.acquired().await;
    assert!(
        Instant::now() - crashed_at >= Duration::from_secs(10),
        "b took a lease that had not expired"
    );
    assert_eq!(api.lock().unwrap().spec().lease_transitions, Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_release_after_an_unseen_write_still_hands_the_lease_back() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let log = Log::default();
    let mut a = replica(&api, "a", &log);
    wait_until("a leads", || a.leadership.is_leading()).await;
    // The stored record moves on behind a's back (as when a renewal lands
    // but its answer is lost): a's resourceVersion is stale.
    {
        let mut api = api.lock().unwrap();
        let lease = api.lease.clone().unwrap();
        api.store(&serde_json::to_vec(&lease).unwrap());
    }
    a.shut_down().await;
    assert_eq!(api.lock().unwrap().spec().holder_identity, None);
}

#[tokio::test(start_paused = true)]
async fn a_slow_read_before_acquiring_does_not_eat_the_renew_deadline() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let log = Log::default();
    // Reads take almost the renew deadline (10 s); writes are quick.
    let a = slow_replica(&api, "a", &log, Duration::from_secs(9));
    wait_until("a leads", || a.leadership.is_leading()).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log.iter()
            .map(|(_, _, leading)| *leading)
            .collect::<Vec<_>>(),
        [true],
        "a stepped down although every renewal succeeded: {log:?}"
    );
}
