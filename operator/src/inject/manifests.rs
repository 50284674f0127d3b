//! `keelson inject -f`: the proxy injected into the pod templates of
//! manifests, for teams that commit injected manifests, by the same
//! [`super::inject`] the webhook runs. Each workload's template is injected
//! as the webhook would inject a pod of it, in a namespace with
//! `linkerd.io/inject: enabled`: a template annotated `disabled` is left
//! alone, and the owner labels name the workload as they would on its pods.
//! Pure: the caller reads the ControlPlane and trust bundle.

use super::{Context, Decision, Owner, Refusal, SkipReason};
use crate::catalog::{KubeVersion, Release};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_crds::ControlPlaneSpec;
use serde::Deserialize as _;
use serde_json::{Value, json};

/// What the templates are injected for: a ControlPlane, the release its
/// proxies run and its trust bundle.
pub struct Offline<'a> {
    pub control_plane: &'a str,
    pub spec: &'a ControlPlaneSpec,
    pub release: &'static Release,
    pub kubernetes: KubeVersion,
    pub trust_anchors_pem: &'a str,
    /// As the trust-roots ConfigMap publishes it; `None`: the digest of
    /// `trust_anchors_pem`.
    pub trust_root_sha256: Option<&'a str>,
    /// In CNI mode, the ControlPlane's `status.cni.redirectSha256`.
    pub cni_redirect_sha256: Option<&'a str>,
}

/// What `keelson inject` injects for, owned: a ControlPlane, the release
/// it runs and its trust bundle.
pub struct Source {
    pub control_plane: keelson_crds::ControlPlane,
    pub release: &'static Release,
    pub kubernetes: KubeVersion,
    pub anchors: String,
    pub trust_root_sha256: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
}

impl Source {
    /// For `cp`: the release it runs (its spec's, before it ran one), and
    /// the Kubernetes version given or the release's floor.
    pub fn new(
        cp: keelson_crds::ControlPlane,
        anchors: String,
        trust_root_sha256: Option<String>,
        kubernetes: Option<KubeVersion>,
    ) -> Result<Self, SourceError> {
        let version = cp
            .status
            .as_ref()
            .and_then(|s| s.current_version.clone())
            .unwrap_or_else(|| cp.spec.version.clone());
        let release =
            crate::catalog::find(&version).map_err(|e| SourceError::Invalid(e.to_string()))?;
        Ok(Self {
            kubernetes: kubernetes.unwrap_or(release.kubernetes_floor),
            control_plane: cp,
            release,
            anchors,
            trust_root_sha256,
        })
    }

    /// The cluster's ControlPlane (`name`, or the only one), its trust
    /// bundle as the webhook reads it, and the API server's version.
    pub async fn from_cluster(
        client: &kube::Client,
        name: Option<&str>,
    ) -> Result<Self, SourceError> {
        use crate::render::proxy::{TRUST_ROOTS, TRUST_ROOTS_KEY, published_digest, trust_bundle};
        let kube = |what: String| {
            move |source| SourceError::Kube {
                what,
                source: Box::new(source),
            }
        };
        let cps: kube::Api<keelson_crds::ControlPlane> = kube::Api::all(client.clone());
        let cp = match name {
            Some(name) => cps
                .get(name)
                .await
                .map_err(kube(format!("reading ControlPlane {name}")))?,
            None => {
                let mut all = cps
                    .list(&Default::default())
                    .await
                    .map_err(kube("listing ControlPlanes".into()))?
                    .items;
                match all.len() {
                    1 => all.remove(0),
                    n => {
                        return Err(SourceError::Invalid(format!(
                            "{n} ControlPlanes exist; name one with --control-plane"
                        )));
                    }
                }
            }
        };
        let namespace = cp.spec.namespace.clone();
        let roots: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client.clone(), &namespace);
        let bundle = roots
            .get(TRUST_ROOTS)
            .await
            .map_err(kube(format!("reading ConfigMap {namespace}/{TRUST_ROOTS}")))?;
        let anchors = trust_bundle(&bundle).map(str::to_owned).ok_or_else(|| {
            SourceError::Invalid(format!(
                "ConfigMap {namespace}/{TRUST_ROOTS} has no {TRUST_ROOTS_KEY}"
            ))
        })?;
        let digest = published_digest(&bundle).map(str::to_owned);
        let info = client
            .apiserver_version()
            .await
            .map_err(kube("reading the API server's version".into()))?;
        let kubernetes = KubeVersion::of_server(&info).map_err(SourceError::Invalid)?;
        Self::new(cp, anchors, digest, Some(kubernetes))
    }

    pub fn offline(&self) -> Offline<'_> {
        Offline {
            control_plane: self
                .control_plane
                .metadata
                .name
                .as_deref()
                .unwrap_or_default(),
            spec: &self.control_plane.spec,
            release: self.release,
            kubernetes: self.kubernetes,
            trust_anchors_pem: &self.anchors,
            trust_root_sha256: self.trust_root_sha256.as_deref(),
            cni_redirect_sha256: self
                .control_plane
                .status
                .as_ref()
                .and_then(|s| s.cni.as_ref()?.redirect_sha256.as_deref()),
        }
    }
}

/// What happened to one workload.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Injected {
        workload: String,
    },
    Skipped {
        workload: String,
        reason: SkipReason,
    },
    /// No pod template (a Service, a ConfigMap): passed through.
    NotAWorkload {
        object: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("document {document} is not YAML: {source}")]
    Yaml {
        document: usize,
        source: yaml_serde::Error,
    },
    #[error("{workload}: its pod template is not a valid pod: {source}")]
    InvalidTemplate {
        workload: String,
        source: serde_json::Error,
    },
    #[error("{workload}: Linkerd sidecar proxy injection refused: {refusal}")]
    Refused { workload: String, refusal: Refusal },
}

/// The documents of `text` with every workload's pod template injected, as
/// YAML, and what happened to each.
pub fn inject_manifests(
    text: &str,
    offline: &Offline<'_>,
) -> Result<(String, Vec<Outcome>), Error> {
    let mut out = String::new();
    let mut outcomes = Vec::new();
    for (i, document) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let mut doc = Value::deserialize(document).map_err(|source| Error::Yaml {
            document: i + 1,
            source,
        })?;
        if doc.is_null() {
            continue;
        }
        if doc["kind"] == "List" {
            for item in doc["items"].as_array_mut().into_iter().flatten() {
                outcomes.push(inject_object(item, offline)?);
            }
        } else {
            outcomes.push(inject_object(&mut doc, offline)?);
        }
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(&doc).expect("JSON values serialize as YAML"));
    }
    Ok((out, outcomes))
}

/// Where a kind keeps its pod template, and the owner its pods resolve to.
fn template_of(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    })
}

fn inject_object(object: &mut Value, offline: &Offline<'_>) -> Result<Outcome, Error> {
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let workload = format!("{}/{name}", kind.to_ascii_lowercase());
    let Some(path) = template_of(&kind) else {
        return Ok(Outcome::NotAWorkload { object: workload });
    };
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let owner = (kind != "Pod").then(|| Owner {
        kind: kind.clone(),
        name: name.clone(),
    });
    let Some(template) = path.iter().try_fold(&mut *object, |v, key| v.get_mut(*key)) else {
        return Ok(Outcome::NotAWorkload { object: workload });
    };
    // The pod as the API server would send it: the template, in the
    // workload's namespace.
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "spec": template.get("spec").cloned().unwrap_or(Value::Null)});
    let had_namespace = pod["metadata"].get("namespace").is_some();
    pod["metadata"]["namespace"] = namespace.clone().into();
    let typed: Pod =
        serde_json::from_value(pod.clone()).map_err(|source| Error::InvalidTemplate {
            workload: workload.clone(),
            source,
        })?;
    let namespace_meta = ObjectMeta {
        name: Some(namespace),
        annotations: Some([("linkerd.io/inject".to_owned(), "enabled".to_owned())].into()),
        ..ObjectMeta::default()
    };
    let context = Context {
        control_plane: offline.control_plane,
        spec: offline.spec,
        release: offline.release,
        kubernetes: offline.kubernetes,
        trust_anchors_pem: offline.trust_anchors_pem,
        trust_root_sha256: offline.trust_root_sha256,
        cni_redirect_sha256: offline.cni_redirect_sha256,
        namespace: &namespace_meta,
        owner,
    };
    match super::inject(&context, &typed) {
        Decision::Inject(patch) => {
            json_patch::patch(&mut pod, &patch.ops()).expect("the patch applies to its own pod");
            if !had_namespace && let Some(meta) = pod["metadata"].as_object_mut() {
                meta.remove("namespace");
            }
            let Value::Object(mut injected) = pod else {
                unreachable!("a pod is an object")
            };
            template["metadata"] = injected.remove("metadata").unwrap_or_default();
            template["spec"] = injected.remove("spec").unwrap_or_default();
            Ok(Outcome::Injected { workload })
        }
        Decision::Skip(reason) => Ok(Outcome::Skipped { workload, reason }),
        Decision::Refuse(refusal) => Err(Error::Refused { workload, refusal }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    const ANCHORS: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn run(text: &str) -> Result<(Vec<Value>, Vec<Outcome>), Error> {
        let spec: ControlPlaneSpec = yaml_serde::from_str("version: edge-26.6.3").unwrap();
        let offline = Offline {
            control_plane: "linkerd",
            spec: &spec,
            release: catalog::find("edge-26.6.3").unwrap(),
            kubernetes: KubeVersion {
                major: 1,
                minor: 31,
            },
            trust_anchors_pem: ANCHORS,
            trust_root_sha256: None,
            cni_redirect_sha256: None,
        };
        let (yaml, outcomes) = inject_manifests(text, &offline)?;
        let docs = yaml_serde::Deserializer::from_str(&yaml)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        Ok((docs, outcomes))
    }

    fn containers(template: &Value) -> Vec<&str> {
        let spec = &template["spec"];
        spec["initContainers"]
            .as_array()
            .into_iter()
            .chain(spec["containers"].as_array())
            .flatten()
            .map(|c| c["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn workloads_are_injected_and_everything_else_passes_through() {
        let (docs, outcomes) = run("
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: example.com/web:1}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: '@daily'
  jobTemplate:
    spec:
      template:
        metadata: {annotations: {linkerd.io/inject: disabled}}
        spec: {restartPolicy: Never, containers: [{name: job, image: example.com/job:1}]}
")
        .unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0]["spec"], json!({"ports": [{"port": 80}]}));
        let template = &docs[1]["spec"]["template"];
        assert_eq!(
            containers(template),
            ["linkerd-init", "linkerd-proxy", "web"]
        );
        assert_eq!(
            template["metadata"]["labels"]["linkerd.io/proxy-deployment"],
            "web"
        );
        assert_eq!(
            template["metadata"]["labels"]["linkerd.io/workload-ns"],
            "shop"
        );
        assert!(template["metadata"].get("namespace").is_none());
        assert_eq!(
            template["metadata"]["annotations"]["linkerd.io/proxy-version"],
            "edge-26.6.3"
        );
        // Disabled by its own annotation: untouched.
        assert_eq!(
            containers(&docs[2]["spec"]["jobTemplate"]["spec"]["template"]),
            ["job"]
        );
        assert_eq!(
            outcomes,
            [
                Outcome::NotAWorkload {
                    object: "service/web".into()
                },
                Outcome::Injected {
                    workload: "deployment/web".into()
                },
                Outcome::Skipped {
                    workload: "cronjob/nightly".into(),
                    reason: SkipReason::Disabled
                },
            ]
        );
    }

    #[test]
    fn lists_are_injected_item_by_item_and_refusals_name_the_workload() {
        let (docs, _) = run("
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: one}
  spec: {containers: [{name: app, image: example.com/app:1}]}
")
        .unwrap();
        assert_eq!(
            containers(&docs[0]["items"][0]),
            ["linkerd-init", "linkerd-proxy", "app"]
        );
        let refused = run("
apiVersion: v1
kind: Pod
metadata: {name: two, annotations: {config.linkerd.io/proxy-log-http-headers: maybe}}
spec: {containers: [{name: app, image: example.com/app:1}]}
")
        .unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("pod/two: Linkerd sidecar proxy injection refused"),
            "{refused}"
        );
        let broken =
            run("kind: Pod\nmetadata: {name: three}\nspec: {containers: 7}\n").unwrap_err();
        assert!(
            broken
                .to_string()
                .starts_with("pod/three: its pod template"),
            "{broken}"
        );
    }
}
