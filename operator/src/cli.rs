//! Command-line interface of the `keelson` binary.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures::FutureExt;
use keelson_operator::leader::lease;
use keelson_operator::{admission, catalog, check, render};
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;

/// Keelson runs the whole life of a Linkerd service mesh: install, upgrade,
/// identity, injection and policy.
#[derive(Parser, Debug)]
#[command(name = "keelson", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator: serve the admission webhooks and, while this
    /// replica holds the leader Lease, reconcile ControlPlanes in the cluster
    /// of the current kubeconfig (or the in-cluster service account), until
    /// SIGINT/SIGTERM. The first signal drains, a second one aborts.
    Run {
        /// Log format: `plain` or `json`.
        #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
        log_format: String,
        #[command(flatten)]
        webhooks: WebhookArgs,
        #[command(flatten)]
        election: ElectionArgs,
    },
    /// Print the CustomResourceDefinitions of Keelson's API (keelson.dev) as YAML.
    Crds,
    /// Print the objects Keelson would apply for a ControlPlane, without a
    /// cluster (for review in GitOps pull requests). Certificates and keys,
    /// generated in the cluster, show as placeholders.
    Render {
        /// ControlPlane manifest (YAML); `-` reads standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Kubernetes version of the target cluster (MAJOR.MINOR); defaults to
        /// the release's floor.
        #[arg(long)]
        kubernetes_version: Option<String>,
    },
    /// Inject Linkerd's proxy into the pod templates of manifests (Pods,
    /// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs,
    /// Lists of them) as the webhook injects their pods, and print them;
    /// other objects pass through. For the cluster's ControlPlane (its
    /// running release and trust bundle), or offline for a ControlPlane
    /// manifest and a trust bundle. A report goes to standard error.
    Inject {
        /// Manifests (YAML, several documents); `-` reads standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Offline: the ControlPlane manifest to inject for (its
        /// `spec.version`), with `--trust-anchors`.
        #[arg(long, requires = "trust_anchors", conflicts_with = "control_plane")]
        control_plane_file: Option<PathBuf>,
        /// Offline: the trust bundle (PEM) proxies are given.
        #[arg(long, requires = "control_plane_file")]
        trust_anchors: Option<PathBuf>,
        /// The cluster's ControlPlane to inject for (default: the only one).
        #[arg(long)]
        control_plane: Option<String>,
        /// Offline: Kubernetes version of the target cluster (MAJOR.MINOR);
        /// defaults to the release's floor.
        #[arg(long)]
        kubernetes_version: Option<String>,
    },
    /// List the Linkerd releases in Keelson's catalog.
    Versions,
    /// Check the health of the mesh in the cluster of the current kubeconfig:
    /// ControlPlanes and their Deployments, certificate expiry, proxy
    /// versions against the control plane's, Keelson's leader and webhooks.
    /// Exits non-zero when a check fails.
    Check {
        /// Warn about certificates that expire within this many days. Keelson
        /// renews a managed issuer (30-day default lifetime, renewed at 70 %)
        /// 9 days before it expires, so by default a warning means renewal
        /// is not happening.
        #[arg(long, default_value_t = 7)]
        warn_within_days: u64,
        /// Keelson's namespace (its leader Lease and webhook CA live there).
        #[arg(long, env = "POD_NAMESPACE", default_value = "keelson")]
        namespace: String,
    },
    /// Print the manifests that install Keelson itself (namespace `keelson`).
    Manifests,
    /// Print the ControlPlane that reproduces a running Linkerd, read from
    /// its `linkerd-config` in the cluster of the current kubeconfig, or
    /// from a Helm values file, with each chart value it does not reproduce
    /// named in comments. Commit it to Git and review it before applying.
    Adopt {
        /// Namespace of the running control plane.
        #[arg(long, default_value = "linkerd")]
        namespace: String,
        /// Name of the ControlPlane to print.
        #[arg(long, default_value = "linkerd")]
        name: String,
        /// Read this Helm values file instead of the cluster (`-` reads
        /// standard input).
        #[arg(short = 'f', long = "values")]
        values: Option<PathBuf>,
        /// Linkerd release, where the values do not name one (a values
        /// file usually does not).
        #[arg(long)]
        version: Option<String>,
    },
    /// Linkerd authorization policy as Keelson sees it.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Per Server: its mode, the authorizations that apply and the
    /// would-be denials seen in audit; then broken references. Read from
    /// the reports the operator keeps (ConfigMaps `keelson-policy-report`).
    Report {
        /// Only this namespace (default: all).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
}

/// Where the admission webhooks are served and how the API server reaches them.
#[derive(clap::Args, Debug)]
struct WebhookArgs {
    /// Address the webhook server listens on.
    #[arg(long, default_value = "0.0.0.0:9443")]
    webhook_listen: std::net::SocketAddr,
    /// Keelson's own namespace: holds the webhook CA Secret and is never injected.
    #[arg(long, env = "POD_NAMESPACE", default_value = "keelson")]
    namespace: String,
    /// Service (in Keelson's namespace, port 443) in front of the operator's pods.
    #[arg(long, default_value = "keelson-webhook")]
    webhook_service: String,
    /// Base URL the API server calls instead of the Service, for an operator
    /// running outside the cluster (`https://127.0.0.1:9443`); its host goes
    /// into the serving certificate.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Address of the admin server (`/metrics`, `/live`; plain HTTP).
    #[arg(long, default_value = "0.0.0.0:9990")]
    admin_listen: std::net::SocketAddr,
    /// Namespaces Keelson's install granted it for control planes
    /// (repeated or comma-separated; set but empty: none); a ControlPlane
    /// naming another is refused. Unset: any namespace, for an operator
    /// run with a cluster admin's credentials (development).
    #[arg(
        long = "control-plane-namespace",
        env = keelson_operator::install::CONTROL_PLANE_NAMESPACES_ENV,
        value_delimiter = ','
    )]
    control_plane_namespaces: Option<Vec<String>>,
}

/// Leader election among the operator's replicas (Lease `keelson` in
/// Keelson's namespace, holder: `POD_NAME`, else host name and a random suffix).
#[derive(clap::Args, Debug)]
struct ElectionArgs {
    /// Seconds a leader's record stays valid without a renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration_secs: u64,
    /// Seconds the leader keeps leading without a successful renewal.
    #[arg(long, default_value_t = 10)]
    lease_renew_deadline_secs: u64,
    /// Seconds between attempts to acquire or renew the lease.
    #[arg(long, default_value_t = 2)]
    lease_retry_period_secs: u64,
}

impl ElectionArgs {
    fn config(self, namespace: &str) -> lease::Config {
        let secs = std::time::Duration::from_secs;
        lease::Config {
            lease_duration: secs(self.lease_duration_secs),
            renew_deadline: secs(self.lease_renew_deadline_secs),
            retry_period: secs(self.lease_retry_period_secs),
            ..lease::Config::new(namespace, lease::default_identity())
        }
    }
}

impl WebhookArgs {
    fn config(
        self,
    ) -> (
        std::net::SocketAddr,
        std::net::SocketAddr,
        admission::Config,
    ) {
        let endpoint = match self.webhook_url {
            Some(url) => admission::configurations::Endpoint::Url(url),
            None => admission::configurations::Endpoint::Service {
                namespace: self.namespace.clone(),
                name: self.webhook_service,
                port: 443,
            },
        };
        let config = admission::Config {
            namespace: self.namespace,
            endpoint,
            control_plane_namespaces: self
                .control_plane_namespaces
                .map(|list| list.into_iter().filter(|ns| !ns.is_empty()).collect()),
        };
        (self.webhook_listen, self.admin_listen, config)
    }
}

impl Cli {
    pub fn parse_args() -> Self {
        Self::parse()
    }

    pub fn run(self) -> anyhow::Result<()> {
        // Locked per command: `run` logs to stdout from worker threads.
        let out = || std::io::stdout().lock();
        match self.command {
            Command::Run {
                log_format,
                webhooks,
                election,
            } => {
                let election = election.config(&webhooks.namespace);
                let (listen, admin, config) = webhooks.config();
                run(&log_format, listen, admin, config, election)?
            }
            Command::Crds => out().write_all(keelson_crds::crds_yaml().as_bytes())?,
            Command::Render {
                file,
                kubernetes_version,
            } => {
                let text = if file.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())?
                } else {
                    std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?
                };
                let cp: keelson_crds::ControlPlane = yaml_serde::from_str(&text)
                    .with_context(|| format!("{} is not a valid ControlPlane", file.display()))?;
                let kube = kubernetes_version
                    .map(|v| catalog::KubeVersion::try_from(v).map_err(anyhow::Error::msg))
                    .transpose()
                    .context("--kubernetes-version")?;
                let (objects, omitted) = render::offline::render_counting(&cp, kube)
                    .with_context(|| format!("rendering {}", file.display()))?;
                out().write_all(render::offline::to_yaml(&objects).as_bytes())?;
                // On standard error, so the output stays what is applied.
                if omitted > 0 {
                    eprintln!(
                        "keelson: {omitted} validation facts of the CRDs are left out for this Kubernetes version \
                         (CEL rules before 1.25, empty defaults before 1.22): its API server cannot take them, \
                         and stores the objects they would refuse"
                    );
                }
            }
            Command::Inject {
                file,
                control_plane_file,
                trust_anchors,
                control_plane,
                kubernetes_version,
            } => {
                let text = read_input(&file)?;
                let source = match (control_plane_file, trust_anchors) {
                    (Some(cp), Some(anchors)) => {
                        let cp: keelson_crds::ControlPlane =
                            yaml_serde::from_str(&read_input(&cp)?).with_context(|| {
                                format!("{} is not a valid ControlPlane", cp.display())
                            })?;
                        let kubernetes = kubernetes_version
                            .map(|v| catalog::KubeVersion::try_from(v).map_err(anyhow::Error::msg))
                            .transpose()
                            .context("--kubernetes-version")?;
                        let anchors = std::fs::read_to_string(&anchors)
                            .with_context(|| format!("reading {}", anchors.display()))?;
                        keelson_operator::inject::manifests::Source::new(
                            cp, anchors, None, kubernetes,
                        )?
                    }
                    _ => injection_from_cluster(control_plane.as_deref())?,
                };
                let offline = source.offline();
                let (yaml, outcomes) =
                    keelson_operator::inject::manifests::inject_manifests(&text, &offline)?;
                out().write_all(yaml.as_bytes())?;
                for outcome in outcomes {
                    use keelson_operator::inject::manifests::Outcome;
                    match outcome {
                        Outcome::Injected { workload } => eprintln!("{workload} injected"),
                        Outcome::Skipped { workload, reason } => {
                            eprintln!("{workload} skipped: {reason}");
                        }
                        Outcome::NotAWorkload { .. } => {}
                    }
                }
            }
            Command::Manifests => {
                out().write_all(keelson_operator::install::plain_yaml().as_bytes())?;
            }
            Command::Check {
                warn_within_days,
                namespace,
            } => {
                let options = check::cluster::Options {
                    namespace,
                    warn_within: std::time::Duration::from_secs(warn_within_days * 86_400),
                    timeout: std::time::Duration::from_secs(5),
                };
                let report = check(&options)?;
                out().write_all(report.render().as_bytes())?;
                if report.failed() {
                    std::process::exit(1);
                }
            }
            Command::Adopt {
                namespace,
                name,
                values,
                version,
            } => {
                let values = match values {
                    Some(file) => {
                        let text = if file.as_os_str() == "-" {
                            std::io::read_to_string(std::io::stdin())?
                        } else {
                            std::fs::read_to_string(&file)
                                .with_context(|| format!("reading {}", file.display()))?
                        };
                        yaml_serde::from_str(&text)
                            .with_context(|| format!("{} is not YAML", file.display()))?
                    }
                    None => running_values(&namespace)?,
                };
                let adopted = keelson_operator::adopt::from_values(
                    &values,
                    &name,
                    &namespace,
                    version.as_deref(),
                )?;
                out().write_all(keelson_operator::adopt::manifest(&adopted).as_bytes())?;
            }
            Command::Policy {
                command: PolicyCommand::Report { namespace },
            } => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                tokio::runtime::Runtime::new()?.block_on(async {
                    let client = kube::Client::try_default()
                        .await
                        .context("connecting to Kubernetes")?;
                    keelson_operator::policy::print_reports(
                        client,
                        namespace.as_deref(),
                        &mut out(),
                    )
                    .await
                    .map_err(anyhow::Error::from)
                })?;
            }
            Command::Versions => {
                let mut out = out();
                for r in catalog::releases() {
                    writeln!(
                        out,
                        "{}\tstable 2.{}\tKubernetes >= {}",
                        r.version, r.stable_minor, r.kubernetes_floor
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// A file's text; `-` reads standard input.
fn read_input(file: &std::path::Path) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        Ok(std::io::read_to_string(std::io::stdin())?)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

/// The cluster's ControlPlane to inject for (`name`, or the only one).
fn injection_from_cluster(
    name: Option<&str>,
) -> anyhow::Result<keelson_operator::inject::manifests::Source> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = kube::Client::try_default().await.context(
            "connecting to Kubernetes (or give --control-plane-file and --trust-anchors)",
        )?;
        Ok(keelson_operator::inject::manifests::Source::from_cluster(&client, name).await?)
    })
}

fn check(options: &check::cluster::Options) -> anyhow::Result<check::Report> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("connecting to Kubernetes")?;
        Ok(check::cluster::run(&client, options).await)
    })
}

fn run(
    log_format: &str,
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    webhooks: admission::Config,
    election: lease::Config,
) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| keelson_operator::DEFAULT_LOG_FILTER.into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    // kube's TLS client needs a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("connecting to Kubernetes")?;
        tracing::info!(identity = %election.identity, "keelson operator starting");
        let (drain, abort) = signals().context("installing signal handlers")?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen} for webhooks"))?;
        let admin = tokio::net::TcpListener::bind(admin)
            .await
            .with_context(|| format!("listening on {admin} for the admin server"))?;
        let listeners = keelson_operator::runtime::Listeners {
            webhooks: listener,
            admin: Some(admin),
        };
        let operator = keelson_operator::runtime::run(
            client,
            webhooks,
            election,
            keelson_operator::policy::Config::default(),
            listeners,
            drain,
        );
        tokio::select! {
            stopped = operator => stopped?,
            () = abort => anyhow::bail!("a second signal: stopping without draining"),
        }
        tracing::info!("keelson operator stopped");
        Ok(())
    })
}

/// The first SIGINT or SIGTERM completes the first future: the reconcilers
/// finish their work, the lease is handed back and the webhooks drain. A
/// second signal completes the other one, to give up on draining.
fn signals() -> std::io::Result<(impl Future<Output = ()>, impl Future<Output = ()>)> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (first_tx, first) = tokio::sync::oneshot::channel::<()>();
    let (second_tx, second) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        for (n, tx) in [first_tx, second_tx].into_iter().enumerate() {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if n == 0 {
                tracing::info!("shutting down: draining (a second signal stops at once)");
            }
            let _ = tx.send(());
        }
    });
    // A sender is never dropped unsent: the task above outlives both.
    Ok((first.map(|_| ()), second.map(|_| ())))
}

/// The chart values a running Linkerd keeps in `linkerd-config`.
fn running_values(namespace: &str) -> anyhow::Result<serde_json::Value> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Runtime::new()?.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("connecting to Kubernetes")?;
        let config = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
            client, namespace,
        )
        .get_opt("linkerd-config")
        .await
        .with_context(|| format!("reading ConfigMap {namespace}/linkerd-config"))?
        .with_context(|| {
            format!(
                "no ConfigMap linkerd-config in namespace {namespace}: is Linkerd installed there?"
            )
        })?;
        let text = config
            .data
            .as_ref()
            .and_then(|d| d.get("values"))
            .with_context(|| format!("ConfigMap {namespace}/linkerd-config has no values key"))?;
        yaml_serde::from_str(text)
            .with_context(|| format!("the values in {namespace}/linkerd-config are not YAML"))
    })
}
