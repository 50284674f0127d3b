//! The I/O side of `keelson check`: reads what the checks judge and probes
//! the webhook endpoints. A read that fails is a failed check, named.

use super::{
    Finding, Outcome, Report, certificates, cni_daemon_set, control_plane, deployment, leader,
    version_skew,
};
use crate::admission::configurations::{INJECTOR, VALIDATOR};
use crate::controlplane::material::ISSUER_SECRET;
use crate::leader::lease::LEASE_NAME;
use crate::render::CONTROL_PLANE_LABEL;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use keelson_crds::ControlPlane;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Linkerd's names for the trust bundle and the annotations/labels on
/// meshed pods.
const TRUST_ROOTS: &str = "linkerd-identity-trust-roots";
const PROXY_VERSION: &str = "linkerd.io/proxy-version";
const CONTROL_PLANE_NS: &str = "linkerd.io/control-plane-ns";

pub struct Options {
    /// Keelson's namespace: its leader Lease lives there.
    pub namespace: String,
    /// Warn about certificates that expire sooner than this.
    pub warn_within: Duration,
    /// Bound on each webhook probe.
    pub timeout: Duration,
}

/// Runs every check against the cluster `client` talks to.
pub async fn run(client: &Client, options: &Options) -> Report {
    let mut report = Report::default();
    let now = SystemTime::now();
    let cps = match Api::<ControlPlane>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            report.section(
                "ControlPlanes",
                vec![fail(format!("listing ControlPlanes: {e}"))],
            );
            return report;
        }
    };
    if cps.is_empty() {
        report.section(
            "ControlPlanes",
            vec![fail("no ControlPlane in the cluster".to_owned())],
        );
    }
    for cp in &cps {
        let ns = cp.spec.namespace.as_str();
        let mut findings = control_plane(cp);
        findings.extend(deployments(client, cp).await);
        if let Some(cni) = &cp.spec.cni {
            let d = read(
                Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(
                    client.clone(),
                    &cni.namespace,
                )
                .get_opt(crate::render::cni::NAME),
                &format!("DaemonSet {}/{}", cni.namespace, crate::render::cni::NAME),
            )
            .await;
            // The release running, else the one asked for.
            let version = cp
                .status
                .as_ref()
                .and_then(|s| s.current_version.clone())
                .unwrap_or_else(|| cp.spec.version.clone());
            let release = crate::catalog::find(&version).ok();
            findings.push(match d {
                Ok(d) => cni_daemon_set(&cni.namespace, d.as_ref(), release),
                Err(f) => f,
            });
        }
        let roots = read(
            Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt(TRUST_ROOTS),
            &format!("ConfigMap {ns}/{TRUST_ROOTS}"),
        )
        .await;
        findings.extend(match roots {
            Ok(cm) => certificates(
                &format!("trust anchor in ConfigMap {ns}/{TRUST_ROOTS}"),
                cm.and_then(|c| c.data?.get("ca-bundle.crt").cloned())
                    .as_deref(),
                now,
                options.warn_within,
            ),
            Err(f) => vec![f],
        });
        let issuer = read(
            Api::<Secret>::namespaced(client.clone(), ns).get_opt(ISSUER_SECRET),
            &format!("Secret {ns}/{ISSUER_SECRET}"),
        )
        .await;
        findings.extend(match issuer {
            // Managed issuers keep Linkerd's keys; external ones are
            // kubernetes.io/tls Secrets.
            Ok(secret) => certificates(
                &format!("issuer in Secret {ns}/{ISSUER_SECRET}"),
                secret
                    .and_then(|s| {
                        let data = s.data?;
                        let cert = data.get("crt.pem").or_else(|| data.get("tls.crt"))?;
                        String::from_utf8(cert.0.clone()).ok()
                    })
                    .as_deref(),
                now,
                options.warn_within,
            ),
            Err(f) => vec![f],
        });
        findings.push(proxies(client, cp).await);
        report.section(
            format!("ControlPlane {} (namespace {ns})", cp.name_any()),
            findings,
        );
    }
    let lease_name = format!("{}/{LEASE_NAME}", options.namespace);
    let mut keelson = vec![match read(
        Api::<Lease>::namespaced(client.clone(), &options.namespace).get_opt(LEASE_NAME),
        &format!("Lease {lease_name}"),
    )
    .await
    {
        Ok(lease) => leader(&lease_name, lease.and_then(|l| l.spec).as_ref(), now),
        Err(f) => f,
    }];
    keelson.extend(webhooks(client, !cps.is_empty(), options, now).await);
    report.section("Keelson", keelson);
    report
}

fn fail(message: String) -> Finding {
    Finding::new(Outcome::Fail, message)
}

async fn read<T>(
    request: impl Future<Output = Result<T, kube::Error>>,
    what: &str,
) -> Result<T, Finding> {
    request
        .await
        .map_err(|e| fail(format!("reading {what}: {e}")))
}

async fn deployments(client: &Client, cp: &ControlPlane) -> Vec<Finding> {
    let ns = cp.spec.namespace.as_str();
    let lp = ListParams::default().labels(&format!("{CONTROL_PLANE_LABEL}={}", cp.name_any()));
    match read(
        Api::<Deployment>::namespaced(client.clone(), ns).list(&lp),
        &format!("the Deployments in {ns}"),
    )
    .await
    {
        Ok(list) if list.items.is_empty() => {
            vec![fail(format!(
                "no control-plane Deployments in namespace {ns}"
            ))]
        }
        Ok(list) => list.items.iter().map(deployment).collect(),
        Err(f) => vec![f],
    }
}

/// Meshed pods are labelled with their control plane's namespace and
/// annotated with their proxy's release.
async fn proxies(client: &Client, cp: &ControlPlane) -> Finding {
    let ns = cp.spec.namespace.as_str();
    let lp = ListParams::default().labels(&format!("{CONTROL_PLANE_NS}={ns}"));
    match read(
        Api::<Pod>::all(client.clone()).list_metadata(&lp),
        "meshed pods",
    )
    .await
    {
        Ok(pods) => {
            let versions: Vec<Option<String>> = pods
                .items
                .iter()
                .map(|p| p.annotations().get(PROXY_VERSION).cloned())
                .collect();
            let current = cp
                .status
                .as_ref()
                .and_then(|s| s.current_version.as_deref());
            version_skew(current, &versions)
        }
        Err(f) => f,
    }
}

async fn webhooks(
    client: &Client,
    expect_injector: bool,
    options: &Options,
    now: SystemTime,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let validator = read(
        Api::<ValidatingWebhookConfiguration>::all(client.clone()).get_opt(VALIDATOR),
        &format!("ValidatingWebhookConfiguration {VALIDATOR}"),
    )
    .await;
    let what = format!("ValidatingWebhookConfiguration {VALIDATOR}");
    match validator {
        Ok(Some(c)) => {
            for w in c.webhooks.unwrap_or_default() {
                out.extend(webhook(client, &what, &w.client_config, options, now).await);
            }
        }
        Ok(None) => out.push(fail(format!("{what} is missing"))),
        Err(f) => out.push(f),
    }
    if expect_injector {
        let what = format!("MutatingWebhookConfiguration {INJECTOR}");
        match read(
            Api::<MutatingWebhookConfiguration>::all(client.clone()).get_opt(INJECTOR),
            &what,
        )
        .await
        {
            Ok(Some(c)) => {
                for w in c.webhooks.unwrap_or_default() {
                    out.extend(webhook(client, &what, &w.client_config, options, now).await);
                }
            }
            Ok(None) => out.push(fail(format!(
                "{what} is missing: no pod gets a proxy (is the operator running?)"
            ))),
            Err(f) => out.push(f),
        }
    }
    out
}

/// The caBundle's validity, then whether the endpoint answers `/readyz`.
async fn webhook(
    client: &Client,
    what: &str,
    config: &WebhookClientConfig,
    options: &Options,
    now: SystemTime,
) -> Vec<Finding> {
    let Some(ca) = config
        .ca_bundle
        .as_ref()
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
    else {
        return vec![fail(format!("{what} has no caBundle"))];
    };
    let mut out = certificates(
        &format!("{what} caBundle"),
        Some(&ca),
        now,
        options.warn_within,
    );
    let (endpoint, answer) = match (&config.url, &config.service) {
        (Some(url), _) => (
            url.clone(),
            tokio::time::timeout(options.timeout, probe_url(url, &ca)).await,
        ),
        (None, Some(s)) => {
            let port = s.port.unwrap_or(443);
            // Service names resolve only inside the cluster: go through the
            // API server's proxy, which does not check the certificate.
            let path = format!(
                "/api/v1/namespaces/{}/services/https:{}:{port}/proxy/readyz",
                s.namespace, s.name
            );
            let request = http::Request::get(path).body(Vec::new());
            let probe = async {
                let request = request.map_err(|e| e.to_string())?;
                client
                    .request_text(request)
                    .await
                    .map(|_| "through the API server's service proxy")
                    .map_err(|e| e.to_string())
            };
            (
                format!("Service {}/{}:{port}", s.namespace, s.name),
                tokio::time::timeout(options.timeout, probe).await,
            )
        }
        (None, None) => {
            out.push(fail(format!("{what} names neither a URL nor a Service")));
            return out;
        }
    };
    out.push(match answer {
        Ok(Ok(how)) => Finding::new(
            Outcome::Pass,
            format!("{what}: {endpoint} answers /readyz ({how})"),
        ),
        Ok(Err(e)) => fail(format!("{what}: {endpoint} is not reachable: {e}")),
        Err(_) => fail(format!(
            "{what}: {endpoint} did not answer /readyz within {:?}",
            options.timeout
        )),
    });
    out
}

/// `GET /readyz` at the webhook URL's host, over TLS verified against the
/// configuration's caBundle, as the API server would connect.
async fn probe_url(url: &str, ca_pem: &str) -> Result<&'static str, String> {
    let (host, port) = host_port(url)?;
    let mut roots = rustls::RootCertStore::empty();
    for block in x509_parser::pem::Pem::iter_from_buffer(ca_pem.as_bytes()) {
        let block = block.map_err(|e| format!("reading the caBundle: {e}"))?;
        roots
            .add(block.contents.into())
            .map_err(|e| format!("reading the caBundle: {e}"))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| format!("{host}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with the caBundle: {e}"))?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| format!("reading: {e}"))?;
    match status_code(&response) {
        Some(200) => Ok("TLS verified with the caBundle"),
        Some(code) => Err(format!("/readyz answered {code}")),
        None => Err("the answer is not HTTP".to_owned()),
    }
}

/// Host and port of an `https://` URL (443 by default; IPv6 in brackets).
fn host_port(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url} is not an https:// URL"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url}: unclosed ["))?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(format!("{url} names no host"));
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("{url}: bad port {p}"))?,
        None => 443,
    };
    Ok((host.to_owned(), port))
}

/// The status code of an HTTP/1.x response.
fn status_code(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_name_host_and_port() {
        assert_eq!(
            host_port("https://127.0.0.1:9443/validate"),
            Ok(("127.0.0.1".into(), 9443))
        );
        assert_eq!(
            host_port("https://keelson.example/inject?x=1"),
            Ok(("keelson.example".into(), 443))
        );
        assert_eq!(host_port("https://[::1]:8443/x"), Ok(("::1".into(), 8443)));
        assert!(host_port("http://127.0.0.1/").is_err());
        assert!(host_port("https://:443/").is_err());
        assert!(host_port("https://h:port/").is_err());
    }

    #[test]
    fn status_lines_are_read() {
        assert_eq!(
            status_code(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
            Some(200)
        );
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"\x15\x03\x03"), None);
        assert_eq!(status_code(b""), None);
    }
}
