//! `make bench`: one DataPlane wave at scale on the real test cluster.
//!
//! Starts the cluster with hollow nodes, runs the operator as a process of
//! its own (`keelson run`, release build) so that its memory is its own,
//! creates Deployments in injected namespaces (200 x 10 pods by default, one
//! DataPlane per namespace), then upgrades the ControlPlane and times the
//! wave that moves every pod to the new proxy. Prints the operator's peak
//! RSS (VmHWM, over its whole life: injecting every pod, then the wave), the
//! time the upgrade and the wave took, the operator's CPU time over them,
//! and the API requests it sent per reconcile (its own
//! `keelson_api_requests_total` and `keelson_reconciles_total`).
//!
//! The scale run, 5,000 pods in 500 Deployments:
//! `BENCH_DEPLOYMENTS=500 BENCH_NODES=8 make bench-dataplane`.
//!
//! Settings: `BENCH_NAMESPACES` (10), `BENCH_DEPLOYMENTS` (200),
//! `BENCH_REPLICAS` (10), `BENCH_NODES` (4), `BENCH_BATCH_SIZE` (10),
//! `BENCH_MAX_UNAVAILABLE` (25%), `BENCH_WRAP` (a profiler to run the
//! operator under).

// The e2e tests' helpers (ControlPlane manifests, waits).
#[path = "../tests/common/mod.rs"]
mod common;

use anyhow::{Context, bail};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use keelson_crds::{ControlPlane, DataPlane};
use keelson_e2e::shared::install_keelson_crds;
use keelson_e2e::{Cluster, ClusterOptions};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OLD: &str = "edge-25.4.4";
const NEW: &str = "edge-25.10.7";
const CONTROL_PLANE: &str = "linkerd";

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn number(name: &str, default: usize) -> anyhow::Result<usize> {
    setting(name, &default.to_string())
        .parse()
        .with_context(|| format!("{name} is not a number"))
}

fn main() -> anyhow::Result<()> {
    keelson_e2e::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The cluster's processes die with the thread that starts them: this one.
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let namespaces = number("BENCH_NAMESPACES", 10)?;
    let deployments = number("BENCH_DEPLOYMENTS", 200)?;
    let replicas = number("BENCH_REPLICAS", 10)?;
    let nodes = number("BENCH_NODES", 4)?;
    let batch_size = number("BENCH_BATCH_SIZE", 10)?;
    let max_unavailable = setting("BENCH_MAX_UNAVAILABLE", "25%");
    let pods = deployments * replicas;

    let keelson = build_operator()?;
    let cluster = Cluster::start(ClusterOptions { nodes, dir: None }).await?;
    let client = cluster.client()?;
    install_keelson_crds(&client).await?;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "keelson",
        "labels": {"config.linkerd.io/admission-webhooks": "disabled"}}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let log = std::env::temp_dir().join(format!("keelson-bench-{}.log", std::process::id()));
    let mut operator = OperatorProcess::start(&keelson, cluster.kubeconfig(), &log)?;
    eprintln!("==> operator pid {}, log {}", operator.pid(), log.display());
    operator.webhooks_registered(&client).await?;

    let cps: Api<ControlPlane> = Api::all(client.clone());
    cps.create(
        &PostParams::default(),
        &common::control_plane(CONTROL_PLANE, "linkerd", OLD, json!({})),
    )
    .await?;
    common::wait_converged(&cps, CONTROL_PLANE, OLD).await?;

    eprintln!(
        "==> creating {deployments} Deployments x {replicas} pods in {namespaces} injected namespaces"
    );
    let admissions_before = Admissions::read(&client).await?;
    let created = Instant::now();
    let apps: Vec<String> = (0..namespaces).map(|i| format!("bench-{i}")).collect();
    for app in &apps {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": app,
            "annotations": {"linkerd.io/inject": "enabled"}}}))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let dps: Api<DataPlane> = Api::namespaced(client.clone(), app);
        let dp: DataPlane = serde_json::from_value(json!({
            "apiVersion": "keelson.dev/v1alpha1", "kind": "DataPlane",
            "metadata": {"name": "apps"},
            "spec": {"rollout": {"batchSize": batch_size, "maxUnavailable": max_unavailable,
                "interval": "0s"}},
        }))?;
        dps.create(&PostParams::default(), &dp).await?;
    }
    for i in 0..deployments {
        let app = &apps[i % namespaces];
        let name = format!("web-{i}");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": format!("example.com/{name}:1")}]},
                },
            },
        }))?;
        Api::<Deployment>::namespaced(client.clone(), app)
            .create(&PostParams::default(), &d)
            .await?;
    }
    let per_namespace =
        |i: usize| deployments / namespaces + usize::from(i < deployments % namespaces);
    up_to_date(
        &client,
        &apps,
        &per_namespace,
        OLD,
        Duration::from_secs(1800),
    )
    .await
    .context("the pods were not injected at the installed release")?;
    let ready_after = created.elapsed();
    let creation_admissions = Admissions::read(&client).await?.since(&admissions_before);

    // What one batch takes by itself: the first `batch_size` Deployments of
    // every namespace restarted at once, as a wave's batch restarts them,
    // with an annotation the DataPlanes do not read.
    eprintln!("==> timing one batch's rollout by itself (the pacing bound's unit)");
    let calibration =
        rollout_time(&client, &apps, batch_size.min(deployments / namespaces)).await?;
    let batches = (0..namespaces)
        .map(|i| per_namespace(i).div_ceil(batch_size))
        .max()
        .unwrap_or_default();
    // The bench's DataPlanes wait no interval between batches.
    let bound = calibration * u32::try_from(batches)?;

    let before = operator.memory()?;
    let (cpu_before, counts_before) = (operator.cpu_seconds()?, operator.counts()?);
    let admissions_before = Admissions::read(&client).await?;

    eprintln!("==> upgrading the ControlPlane to {NEW}");
    let upgrade = Instant::now();
    common::set_version(&cps, CONTROL_PLANE, NEW).await?;
    common::wait_converged(&cps, CONTROL_PLANE, NEW).await?;
    let wave = Instant::now();
    up_to_date(
        &client,
        &apps,
        &per_namespace,
        NEW,
        Duration::from_secs(3600),
    )
    .await?;
    let wave_took = wave.elapsed();
    let upgrade_took = upgrade.elapsed();
    let wave_admissions = Admissions::read(&client).await?.since(&admissions_before);
    let after = operator.memory()?;
    let cpu = operator.cpu_seconds()? - cpu_before;
    let counts = operator.counts()?.since(&counts_before);
    operator.stop();

    println!(
        "DataPlane wave: {pods} pods in {deployments} Deployments, {namespaces} namespaces, {nodes} hollow nodes, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("  batchSize {batch_size}, maxUnavailable {max_unavailable} per DataPlane");
    println!(
        "  pods created, injected and up to date in {:.1} s",
        ready_after.as_secs_f64()
    );
    println!(
        "  ControlPlane upgrade {OLD} -> {NEW}: {:.1} s",
        (upgrade_took - wave_took).as_secs_f64()
    );
    println!(
        "  wave (ControlPlane Ready at {NEW} -> every pod on it): {:.1} s",
        wave_took.as_secs_f64()
    );
    println!(
        "  pacing bound: {batches} batches x ({:.1} s, one batch's rollout by itself, + 0 s interval) = {:.1} s; wave / bound {:.2}",
        calibration.as_secs_f64(),
        bound.as_secs_f64(),
        wave_took.as_secs_f64() / bound.as_secs_f64().max(f64::EPSILON)
    );
    println!(
        "  API server's injection latency (apiserver_admission_webhook_admission_duration_seconds): {creation_admissions} while the pods were created; {wave_admissions} over the wave"
    );
    println!(
        "  operator RSS: {:.1} MiB before the wave ({:.1} anonymous, {:.1} file), {:.1} MiB after ({:.1} anonymous, {:.1} file); peak (VmHWM) {:.1} MiB (target: under 48 MiB)",
        mib(before.rss_kib),
        mib(before.anon_kib),
        mib(before.file_kib),
        mib(after.rss_kib),
        mib(after.anon_kib),
        mib(after.file_kib),
        mib(after.peak_kib)
    );
    println!(
        "  operator CPU over the upgrade and the wave: {cpu:.1} s ({:.0}% of one core)",
        100.0 * cpu / upgrade_took.as_secs_f64()
    );
    let requests: f64 = counts.requests.values().sum();
    let reconciles: f64 = counts.reconciles.values().sum();
    let by_verb: Vec<String> = counts
        .requests
        .iter()
        .filter(|(_, n)| **n > 0.0)
        .map(|(verb, n)| format!("{verb} {n}"))
        .collect();
    let by_controller: Vec<String> = counts
        .reconciles
        .iter()
        .map(|(controller, n)| format!("{controller} {n}"))
        .collect();
    println!(
        "  API requests over the upgrade and the wave: {requests} ({}); reconciles {reconciles} ({}); {:.2} requests per reconcile (target: at most 3); {:.2} per Deployment restarted",
        by_verb.join(", "),
        by_controller.join(", "),
        requests / reconciles.max(1.0),
        requests / deployments.max(1) as f64
    );
    Ok(())
}

/// Counters read off the operator's `/metrics`, summed by one label.
#[derive(Default)]
struct Counts {
    /// `keelson_api_requests_total` by verb and resource ("patch deployments").
    requests: std::collections::BTreeMap<String, f64>,
    /// `keelson_reconciles_total` by controller.
    reconciles: std::collections::BTreeMap<String, f64>,
}

impl Counts {
    fn parse(text: &str) -> Self {
        let mut counts = Self::default();
        for (series, value) in samples(text) {
            let label = |name| label(series, name);
            let into = if series.starts_with("keelson_api_requests_total{") {
                let what = label("verb").zip(label("resource"));
                what.map(|(verb, resource)| (&mut counts.requests, format!("{verb} {resource}")))
            } else if series.starts_with("keelson_reconciles_total{") {
                label("controller").map(|l| (&mut counts.reconciles, l.to_owned()))
            } else {
                None
            };
            if let Some((map, key)) = into {
                *map.entry(key).or_default() += value;
            }
        }
        counts
    }

    fn since(mut self, before: &Self) -> Self {
        for (map, old) in [
            (&mut self.requests, &before.requests),
            (&mut self.reconciles, &before.reconciles),
        ] {
            for (key, n) in map.iter_mut() {
                *n -= old.get(key).copied().unwrap_or_default();
            }
        }
        self
    }
}

/// The samples of a Prometheus text exposition: each series (name and
/// labels) with its value.
fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines().filter_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        Some((series, value.parse().ok()?))
    })
}

/// The value of label `name` in a series (`metric{a="x",b="y"}`).
fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let (_, mut rest) = series.split_once('{')?;
    loop {
        let (key, after) = rest.split_once("=\"")?;
        // The series read here escape no quotes in their values.
        let end = after.find('"')?;
        if key == name {
            return Some(&after[..end]);
        }
        rest = after[end + 1..].strip_prefix(',')?;
    }
}

/// The API server's histogram of the injector's latency as it measured it
/// (`apiserver_admission_webhook_admission_duration_seconds`, mutating
/// webhooks named for the proxy injector), by bucket bound.
#[derive(Default)]
struct Admissions {
    /// Cumulative counts by upper bound, in seconds.
    buckets: std::collections::BTreeMap<u64, f64>,
}

impl Admissions {
    const SERIES: &str = "apiserver_admission_webhook_admission_duration_seconds_bucket{";

    async fn read(client: &Client) -> anyhow::Result<Self> {
        let text = client
            .request_text(http::Request::get("/metrics").body(Vec::new())?)
            .await
            .context("reading the API server's metrics")?;
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        let mut buckets = std::collections::BTreeMap::new();
        for (series, n) in samples(text).filter(|(s, _)| s.starts_with(Self::SERIES)) {
            let injector = label(series, "name").is_some_and(|n| n.contains("proxy-injector"));
            if !injector || label(series, "type") != Some("admit") {
                continue;
            }
            let bound = match label(series, "le") {
                Some("+Inf") => u64::MAX,
                Some(le) => match le.parse::<f64>() {
                    // Microseconds, so bounds order as numbers.
                    Ok(seconds) => (seconds * 1e6).round() as u64,
                    Err(_) => continue,
                },
                None => continue,
            };
            *buckets.entry(bound).or_default() += n;
        }
        Self { buckets }
    }

    fn since(mut self, before: &Self) -> Self {
        for (bound, n) in self.buckets.iter_mut() {
            *n -= before.buckets.get(bound).copied().unwrap_or_default();
        }
        self
    }

    fn count(&self) -> f64 {
        self.buckets.get(&u64::MAX).copied().unwrap_or_default()
    }

    /// The `q` quantile as Prometheus's `histogram_quantile` estimates it
    /// (linear within its bucket), and the bucket's bounds, in ms.
    fn quantile(&self, q: f64) -> Option<(f64, f64, f64)> {
        let rank = q * self.count();
        let mut lower = (0u64, 0.0);
        for (&bound, &n) in &self.buckets {
            if n >= rank && n > 0.0 {
                let ms = |us: u64| us as f64 / 1e3;
                if bound == u64::MAX {
                    return Some((ms(lower.0), ms(lower.0), f64::INFINITY));
                }
                let within = (rank - lower.1) / (n - lower.1).max(f64::EPSILON);
                let estimate = ms(lower.0) + within * (ms(bound) - ms(lower.0));
                return Some((estimate, ms(lower.0), ms(bound)));
            }
            lower = (bound, n);
        }
        None
    }
}

impl std::fmt::Display for Admissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} reviews", self.count())?;
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            if let Some((estimate, low, high)) = self.quantile(q) {
                write!(f, ", {name} ~{estimate:.1} ms (bucket {low}..{high} ms)")?;
            }
        }
        Ok(())
    }
}

/// Restarts the first `count` Deployments of each namespace at once and
/// waits until every one has rolled out: what a batch of a wave takes
/// without the operator in between.
async fn rollout_time(client: &Client, apps: &[String], count: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let token = format!("{}", std::process::id());
    let patch = kube::api::Patch::Merge(json!({"spec": {"template": {"metadata": {
        "annotations": {"bench.keelson.dev/calibration": token}}}}}));
    let mut restarted = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let api = Api::<Deployment>::namespaced(client.clone(), app);
        let names = (0..count).map(|j| format!("web-{}", i + j * apps.len()));
        for name in names {
            api.patch(&name, &kube::api::PatchParams::default(), &patch)
                .await?;
            restarted.push((api.clone(), name));
        }
    }
    for (api, name) in &restarted {
        loop {
            let d = api.get(name).await?;
            let (spec, status) = (d.spec.unwrap_or_default(), d.status.unwrap_or_default());
            let want = spec.replicas.unwrap_or(1);
            let done = status.observed_generation >= d.metadata.generation
                && status.updated_replicas == Some(want)
                && status.available_replicas == Some(want)
                && status.replicas == Some(want);
            if done {
                break;
            }
            if start.elapsed() > Duration::from_secs(600) {
                bail!("Deployment {name} did not roll out within 600 s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(start.elapsed())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Waits until every DataPlane reports all its workloads up to date at
/// `version`, printing progress every 30 s.
async fn up_to_date(
    client: &Client,
    apps: &[String],
    expected: &dyn Fn(usize) -> usize,
    version: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut reported = Instant::now();
    loop {
        let mut done = 0;
        let mut workloads = 0;
        for (i, app) in apps.iter().enumerate() {
            let dp = Api::<DataPlane>::namespaced(client.clone(), app)
                .get("apps")
                .await?;
            let s = dp.status.unwrap_or_default();
            let want = i32::try_from(expected(i))?;
            workloads += want;
            if s.target_proxy_version.as_deref() == Some(version) && s.workloads == want {
                done += s.up_to_date;
            }
        }
        if done == workloads {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!(
                "after {}s, {done} of {workloads} workloads up to date at {version}",
                limit.as_secs()
            );
        }
        if reported.elapsed() > Duration::from_secs(30) {
            let pods = Api::<k8s_openapi::api::core::v1::Pod>::all(client.clone())
                .list_metadata(&ListParams::default())
                .await?
                .items
                .len();
            eprintln!(
                "    {:>5.0} s: {done} of {workloads} workloads up to date at {version} ({pods} pods)",
                start.elapsed().as_secs_f64()
            );
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Builds the `keelson` binary (release) and returns its path.
fn build_operator() -> anyhow::Result<PathBuf> {
    eprintln!("==> building keelson (release)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "keelson-operator",
            "--bin",
            "keelson",
        ])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !output.status.success() {
        bail!("cargo build failed: {}", output.status);
    }
    String::from_utf8(output.stdout)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "keelson")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo build named no keelson executable")
}

/// `keelson run` as a child process, killed with this one.
struct OperatorProcess {
    child: Child,
    webhook_url: String,
    admin: std::net::SocketAddr,
}

struct Memory {
    rss_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    peak_kib: u64,
}

impl OperatorProcess {
    fn start(keelson: &Path, kubeconfig: &Path, log: &Path) -> anyhow::Result<Self> {
        let port = |_| -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (webhooks, admin) = (port(0)?, port(1)?);
        let webhook_url = format!("https://127.0.0.1:{webhooks}");
        let out = std::fs::File::create(log)?;
        // `BENCH_WRAP`: a command to run the operator under (a profiler:
        // `heaptrack -o /tmp/keelson`); its memory figures are then the
        // wrapper's.
        let wrap = setting("BENCH_WRAP", "");
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .args(wrap.split_whitespace())
            .arg(keelson)
            .args([
                "run",
                "--namespace",
                "keelson",
                "--webhook-url",
                &webhook_url,
            ])
            .arg("--webhook-listen")
            .arg(format!("127.0.0.1:{webhooks}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin}"))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube_runtime=warn")
            .stdin(Stdio::null())
            .stderr(out.try_clone()?)
            .stdout(out)
            .spawn()
            .context("starting keelson run")?;
        Ok(Self {
            child,
            webhook_url,
            admin: ([127, 0, 0, 1], admin).into(),
        })
    }

    /// setpriv execs the operator, so the child is the operator itself.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User and system CPU time the operator has used, in seconds.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        keelson_e2e::cpu_seconds(&self.pid().to_string())
    }

    /// The operator's request and reconcile counters, from its admin server.
    fn counts(&self) -> anyhow::Result<Counts> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.admin)?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: keelson\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(Counts::parse(&text))
    }

    fn memory(&mut self) -> anyhow::Result<Memory> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the operator exited: {status}");
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in /proc/{}/status", self.pid()))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            anon_kib: field("RssAnon:")?,
            file_kib: field("RssFile:")?,
            peak_kib: field("VmHWM:")?,
        })
    }

    /// Waits until the validating webhook points at this operator.
    async fn webhooks_registered(&mut self, client: &Client) -> anyhow::Result<()> {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let url = format!("{}/validate", self.webhook_url);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if let Some(status) = self.child.try_wait()? {
                bail!("the operator exited: {status}");
            }
            let registered = api
                .get_opt(keelson_operator::admission::configurations::VALIDATOR)
                .await?
                .and_then(|v| v.webhooks)
                .is_some_and(|w| w[0].client_config.url.as_deref() == Some(url.as_str()));
            if registered {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("the operator's webhooks were not registered at {url}")
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
