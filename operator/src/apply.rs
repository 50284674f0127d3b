//! Server-side apply of rendered objects under Keelson's one field manager,
//! skipping objects that already hold every field Keelson sets, so that a
//! converged control plane costs no write requests.

use crate::render::CONTROL_PLANE_LABEL;
use keelson_crds::ControlPlane;
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind, PartialObjectMeta};
use serde_json::Value;
use std::collections::BTreeSet;

/// The field manager of everything Keelson applies.
pub const FIELD_MANAGER: &str = "keelson";

/// Why an object could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{kind} {name}: Keelson does not know how to apply this kind")]
    UnknownKind { kind: String, name: String },
    #[error(
        "{kind} {name} belongs to ControlPlane {owner}; Linkerd's cluster-wide objects allow one control plane per cluster"
    )]
    Conflict {
        kind: String,
        name: String,
        owner: String,
    },
    #[error("applying {kind} {name}: {source}")]
    Api {
        kind: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

impl ApplyError {
    /// Turns a failed request about `kind` `name` into an [`ApplyError`].
    pub(crate) fn api<'a>(
        kind: &'a str,
        name: &'a str,
    ) -> impl Fn(kube::Error) -> Self + Copy + 'a {
        move |source| Self::Api {
            kind: kind.into(),
            name: name.into(),
            source: Box::new(source),
        }
    }
}

/// Plural and scope of every kind Keelson renders ([`crate::render::resource_of`]).
fn resource(api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
    let r = crate::render::resource_of(kind)?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Some((
        ApiResource::from_gvk_with_plural(&gvk, r.plural),
        r.namespaced,
    ))
}

/// Applies objects for one owner.
pub struct Applier {
    client: Client,
}

impl Applier {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    fn api(&self, object: &Value) -> Result<(Api<DynamicObject>, String), ApplyError> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (ar, namespaced) = resource(object["apiVersion"].as_str().unwrap_or_default(), kind)
            .ok_or_else(|| ApplyError::UnknownKind {
                kind: kind.into(),
                name: name.clone(),
            })?;
        let api = match object["metadata"]["namespace"].as_str() {
            Some(ns) if namespaced => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        };
        Ok((api, name))
    }

    /// Applies `object` unless the live object already holds all its fields.
    /// Returns whether a write was made.
    pub async fn apply(&self, object: &Value) -> Result<bool, ApplyError> {
        Ok(self.apply_returning_live(object, false).await?.wrote)
    }

    /// Applies a CustomResourceDefinition like [`Self::apply`], and reports
    /// whether the API server serves it yet (condition `Established`), from
    /// the object it read or wrote anyway: no extra request. One that exists
    /// without Keelson's label is someone else's (Linkerd's chart, another
    /// install of the Gateway API) and is left exactly as it is: users'
    /// objects live in it, and Keelson's could be weaker or of another
    /// bundle. Labelling it for the ControlPlane hands it over.
    pub async fn apply_crd(&self, object: &Value) -> Result<AppliedCrd, ApplyError> {
        let Applied {
            wrote,
            live,
            foreign,
        } = self.apply_returning_live(object, true).await?;
        let established = crd_condition(&live, "Established").is_some();
        if foreign {
            return Ok(AppliedCrd {
                wrote,
                established,
                foreign: Some(ForeignCrd {
                    name: live["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    bundle_version: live["metadata"]["annotations"][GATEWAY_BUNDLE_VERSION]
                        .as_str()
                        .map(str::to_owned),
                }),
            });
        }
        if !wrote && establishing_stalled(&live, k8s_openapi::jiff::Timestamp::now()) {
            // kube-apiserver queues a CRD for establishing only on an update
            // event: one whose names an API server accepted just before it
            // stopped stays un-Established after the restart until the CRD
            // changes. Touch it.
            let (api, name) = self.api(object)?;
            tracing::info!(%name, "the CustomResourceDefinition's names are accepted but it is not Established; touching it");
            let touch = serde_json::json!({"metadata": {"annotations": {
                ESTABLISH_REQUESTED: k8s_openapi::jiff::Timestamp::now().to_string(),
            }}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&touch))
                .await
                .map_err(ApplyError::api("CustomResourceDefinition", &name))?;
            return Ok(AppliedCrd {
                wrote: true,
                established,
                foreign: None,
            });
        }
        Ok(AppliedCrd {
            wrote,
            established,
            foreign: None,
        })
    }

    /// Applies `object` unless the live object already holds all its fields
    /// (or, with `keep_foreign`, lacks Keelson's label); returns whether a
    /// write was made and the object as the API server holds it afterwards.
    async fn apply_returning_live(
        &self,
        object: &Value,
        keep_foreign: bool,
    ) -> Result<Applied, ApplyError> {
        let (api, name) = self.api(object)?;
        let kind = object["kind"].as_str().unwrap_or_default();
        let err = ApplyError::api(kind, &name);
        if let Some(live) = api.get_opt(&name).await.map_err(err)? {
            let owner = live.labels().get(CONTROL_PLANE_LABEL);
            if keep_foreign && owner.is_none() {
                return Ok(Applied {
                    wrote: false,
                    live: serde_json::to_value(live).expect("objects serialize"),
                    foreign: true,
                });
            }
            let ours = object["metadata"]["labels"][CONTROL_PLANE_LABEL].as_str();
            if let (Some(owner), Some(ours)) = (owner, ours)
                && owner != ours
            {
                self.adopt(kind, &name, owner).await?;
            }
            let live = serde_json::to_value(live).expect("objects serialize");
            if contains(&live, object) {
                return Ok(Applied::unwritten(live));
            }
            if let Some(version) = newer_crd_storing(&live, object) {
                // The API server refuses to drop a version objects may be
                // stored at. A newer release installed it (this is a
                // rollback), and its CRD serves every version this one does.
                tracing::info!(%name, %version, "keeping the newer CustomResourceDefinition: objects are stored at a version this release does not serve");
                return Ok(Applied::unwritten(live));
            }
        }
        // Force: Keelson owns these objects; a manual edit is drift to undo.
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let applied = api
            .patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(err)?;
        Ok(Applied {
            wrote: true,
            live: serde_json::to_value(applied).expect("objects serialize"),
            foreign: false,
        })
    }

    /// Takes over an object labelled for ControlPlane `owner` if that
    /// ControlPlane is gone: a deleted ControlPlane leaves its CRDs behind
    /// (they hold users' objects), and the next one adopts them. While the
    /// owner exists, the object is its and this is a conflict.
    async fn adopt(&self, kind: &str, name: &str, owner: &str) -> Result<(), ApplyError> {
        let api: Api<ControlPlane> = Api::all(self.client.clone());
        let exists = api
            .get_metadata_opt(owner)
            .await
            .map_err(ApplyError::api("ControlPlane", owner))?
            .is_some();
        if exists {
            return Err(ApplyError::Conflict {
                kind: kind.into(),
                name: name.into(),
                owner: owner.into(),
            });
        }
        tracing::info!(%kind, %name, previous = %owner, "adopting an object of a deleted ControlPlane");
        Ok(())
    }
}

/// Annotation Keelson sets to make the API server look at a CRD again.
const ESTABLISH_REQUESTED: &str = "keelson.dev/establish-requested-at";

/// Seconds a CRD may wait between NamesAccepted and Established before
/// Keelson touches it: the API server establishes within a second or two.
const ESTABLISHING_STALLED_AFTER_SECONDS: i64 = 10;

/// When a CRD's condition `type_` turned True, if it is True.
fn crd_condition(live: &Value, type_: &str) -> Option<Option<k8s_openapi::jiff::Timestamp>> {
    live["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_ && c["status"] == "True")
        .map(|c| {
            c["lastTransitionTime"]
                .as_str()
                .and_then(|t| t.parse().ok())
        })
}

/// Names accepted long ago, yet not Established: the API server lost track.
fn establishing_stalled(live: &Value, now: k8s_openapi::jiff::Timestamp) -> bool {
    if crd_condition(live, "Established").is_some() {
        return false;
    }
    match crd_condition(live, "NamesAccepted") {
        Some(Some(accepted)) => {
            now.as_second() - accepted.as_second() >= ESTABLISHING_STALLED_AFTER_SECONDS
        }
        _ => false,
    }
}

/// What an apply did: whether it wrote, the object as it stands, and
/// whether it was left alone as someone else's.
struct Applied {
    wrote: bool,
    live: Value,
    foreign: bool,
}

impl Applied {
    fn unwritten(live: Value) -> Self {
        Self {
            wrote: false,
            live,
            foreign: false,
        }
    }
}

/// Annotation naming the Gateway API release a CRD is of.
pub const GATEWAY_BUNDLE_VERSION: &str = "gateway.networking.k8s.io/bundle-version";

/// What applying a CustomResourceDefinition found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedCrd {
    /// A write was made.
    pub wrote: bool,
    /// The API server serves the CRD's kind (condition `Established=True`).
    pub established: bool,
    /// It exists without Keelson's label, and was left as it is.
    pub foreign: Option<ForeignCrd>,
}

pub use keelson_crds::controlplane::ForeignCrd;

/// For a CustomResourceDefinition whose live version serves every version
/// `desired` serves: a version its objects are stored at
/// (`status.storedVersions`) that `desired` does not serve. Then the live CRD
/// is newer and must stay. Where the live CRD lacks a version `desired`
/// needs, the apply goes ahead and the API server names what blocks it.
fn newer_crd_storing(live: &Value, desired: &Value) -> Option<String> {
    let served = |crd: &Value| -> BTreeSet<String> {
        crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str().map(str::to_owned))
            .collect()
    };
    let wanted = served(desired);
    if !wanted.is_subset(&served(live)) {
        return None;
    }
    live["status"]["storedVersions"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|v| !wanted.contains(*v))
        .map(str::to_owned)
}

/// An object's identity for pruning: kind, namespace, name.
fn key(object: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        s(&object["kind"]),
        s(&object["metadata"]["namespace"]),
        s(&object["metadata"]["name"]),
    )
}

/// Whether Keelson applied this object (rather than created it once, like the
/// trust-anchor Secret, or someone else made it).
/// Kinds Keelson retires ([`Applier::retire`]) instead of deleting.
pub fn retired_not_deleted(object: &Value) -> bool {
    matches!(
        object["kind"].as_str(),
        Some("ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration")
    )
}

fn applied_by_keelson(obj: &PartialObjectMeta<DynamicObject>) -> bool {
    obj.managed_fields().iter().any(|f| {
        f.manager.as_deref() == Some(FIELD_MANAGER) && f.operation.as_deref() == Some("Apply")
    })
}

impl Applier {
    /// Lists the objects of `object`'s kind that belong to `owner`, metadata
    /// only (CRDs and ConfigMaps are large; their names are enough).
    async fn owned_like(
        &self,
        object: &Value,
        owner: &str,
    ) -> Result<Vec<PartialObjectMeta<DynamicObject>>, ApplyError> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let (ar, _) = resource(object["apiVersion"].as_str().unwrap_or_default(), kind)
            .ok_or_else(|| ApplyError::UnknownKind {
                kind: kind.into(),
                name: String::new(),
            })?;
        // Namespaced kinds are listed in `object`'s namespace alone (the
        // control plane's, or CNI mode's plugin's): the install grants
        // Keelson Secrets and workloads there, not cluster-wide (and a
        // ControlPlane never changes either namespace).
        let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let lp = ListParams::default().labels(&format!("{CONTROL_PLANE_LABEL}={owner}"));
        api.list_metadata(&lp)
            .await
            .map(|l| l.items)
            .map_err(ApplyError::api(kind, &format!("(list of {owner})")))
    }

    async fn delete(
        &self,
        obj: &PartialObjectMeta<DynamicObject>,
        like: &Value,
    ) -> Result<(), ApplyError> {
        let mut target = like.clone();
        target["metadata"] =
            serde_json::json!({"name": obj.name_any(), "namespace": obj.namespace()});
        if retired_not_deleted(like) {
            return self.retire(&target).await;
        }
        self.delete_named(&target).await.map(drop)
    }

    /// Takes back every field Keelson applied to `object` (its kind and
    /// name), leaving the object itself: for webhook configurations, which
    /// Keelson's install creates as empty shells so that Keelson never
    /// needs to create one (a create cannot be limited by name, and a
    /// webhook Keelson could register on anything could rewrite what others
    /// create). An empty configuration calls nothing.
    pub async fn retire(&self, object: &Value) -> Result<(), ApplyError> {
        let shell = serde_json::json!({
            "apiVersion": object["apiVersion"],
            "kind": object["kind"],
            "metadata": {"name": object["metadata"]["name"]},
        });
        let (api, name) = self.api(&shell)?;
        let err = ApplyError::api(object["kind"].as_str().unwrap_or_default(), &name);
        // Gone already: nothing of Keelson's is left in it, and applying
        // would create it.
        if api.get_metadata_opt(&name).await.map_err(err)?.is_none() {
            return Ok(());
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(&shell))
            .await
            .map(drop)
            .map_err(err)
    }

    /// Deletes what Keelson applied for `owner` that `desired` no longer
    /// contains (objects a new release dropped), except CustomResourceDefinitions.
    /// Returns how many it deleted.
    pub async fn prune(&self, owner: &str, desired: &[Value]) -> Result<usize, ApplyError> {
        let wanted: BTreeSet<_> = desired.iter().map(key).collect();
        let mut kinds_seen = BTreeSet::new();
        let mut deleted = 0;
        // Per namespace: CNI mode's objects live in a namespace of their own.
        for like in desired {
            if !kinds_seen.insert((
                like["apiVersion"].to_string(),
                like["kind"].to_string(),
                like["metadata"]["namespace"].to_string(),
            )) {
                continue;
            }
            for obj in self.owned_like(like, owner).await? {
                let k = (
                    like["kind"].as_str().unwrap_or_default().to_owned(),
                    obj.namespace().unwrap_or_default(),
                    obj.name_any(),
                );
                if wanted.contains(&k) || !applied_by_keelson(&obj) {
                    continue;
                }
                if k.0 == "Namespace" {
                    // A namespace goes only on uninstall, and only if Keelson
                    // created it for this very ControlPlane and it holds
                    // nothing else (controlplane::namespace). A release never
                    // drops its namespace; one found here belongs to an
                    // earlier ControlPlane of the same name.
                    continue;
                }
                if k.0 == "CustomResourceDefinition" {
                    // Deleting a CRD deletes every object of its kind: users'
                    // data, which is never removed automatically.
                    tracing::warn!(name = %k.2, "the release no longer installs this CustomResourceDefinition; leaving it and its objects in place");
                    continue;
                }
                tracing::info!(kind = %k.0, namespace = %k.1, name = %k.2, "pruning");
                self.delete(&obj, like).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Takes `object` over from the tools that installed it (Helm, kubectl:
    /// [`installed_by_tool`]): applied first, so every field Keelson sets is
    /// its own (and a Role's rules are Keelson's, which it may write without
    /// `escalate`); then the fields the tools still own become Keelson's (one
    /// patch of `metadata.managedFields`, only over the object as read), and
    /// `object` is applied again, so that whatever of theirs Keelson does
    /// not render (Helm's labels, kubectl's last-applied annotation) is
    /// removed and neither tool is left owning a field. Repeating it is
    /// harmless.
    pub async fn take_over(&self, object: &Value) -> Result<(), ApplyError> {
        let (api, name) = self.api(object)?;
        let kind = object["kind"].as_str().unwrap_or_default();
        let err = ApplyError::api(kind, &name);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let live = api
            .patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(err)?;
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        );
        if let Some(entries) = taken_over(live.managed_fields(), api_version, now) {
            let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
                {"op": "test", "path": "/metadata/resourceVersion",
                 "value": live.resource_version()},
                {"op": "replace", "path": "/metadata/managedFields", "value": entries},
            ]))
            .expect("a JSON patch");
            api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
                .await
                .map_err(err)?;
            tracing::info!(%kind, %name, "took field ownership over from the tools that installed it");
            api.patch(&name, &params, &Patch::Apply(object))
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    /// Deletes the object `object` names (its kind, namespace and name);
    /// returns whether there was one.
    pub async fn delete_named(&self, object: &Value) -> Result<bool, ApplyError> {
        let (api, name) = self.api(object)?;
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(source) => Err(ApplyError::api(
                object["kind"].as_str().unwrap_or_default(),
                &name,
            )(source)),
        }
    }

    /// Deletes every object of `owner` of the kinds in `kinds`, in that order.
    pub async fn delete_owned(&self, owner: &str, kinds: &[Value]) -> Result<(), ApplyError> {
        for like in kinds {
            for obj in self.owned_like(like, owner).await? {
                self.delete(&obj, like).await?;
            }
        }
        Ok(())
    }
}

/// Whether field manager `manager` is a tool that installs Linkerd (its
/// Helm charts, or its CLI's output through kubectl), whose fields a
/// takeover moves to Keelson. Controllers that write to the same objects
/// (the Deployment controller's revision annotation, `kubectl rollout
/// restart`'s timestamp) keep theirs.
pub fn installed_by_tool(manager: &str) -> bool {
    manager == "helm"
        || manager == "before-first-apply"
        || (manager.starts_with("kubectl") && manager != "kubectl-rollout")
}

/// `entries` (an object's managed fields) with every field set of an
/// installing tool ([`installed_by_tool`]) merged into Keelson's own
/// `Apply` entry (made at `now` for `api_version` if there is none), as
/// `kubectl`'s client-side-to-server-side upgrade does; `None` when no
/// tool owns anything. Subresources (status) are left alone.
pub fn taken_over(
    entries: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry],
    api_version: &str,
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry>> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    let main = |e: &ManagedFieldsEntry| e.subresource.as_deref().unwrap_or_default().is_empty();
    let tools =
        |e: &ManagedFieldsEntry| main(e) && e.manager.as_deref().is_some_and(installed_by_tool);
    if !entries.iter().any(tools) {
        return None;
    }
    let mut fields = Value::Object(Default::default());
    let mut out = Vec::new();
    for e in entries {
        if tools(e) {
            if let Some(f) = &e.fields_v1 {
                merge_field_sets(&mut fields, &f.0);
            }
        } else {
            out.push(e.clone());
        }
    }
    let ours = out.iter_mut().find(|e| {
        main(e)
            && e.manager.as_deref() == Some(FIELD_MANAGER)
            && e.operation.as_deref() == Some("Apply")
    });
    match ours {
        Some(entry) => {
            let mut merged = entry.fields_v1.take().map(|f| f.0).unwrap_or_default();
            merge_field_sets(&mut merged, &fields);
            entry.fields_v1 = Some(FieldsV1(merged));
        }
        None => out.push(ManagedFieldsEntry {
            api_version: Some(api_version.to_owned()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            manager: Some(FIELD_MANAGER.into()),
            operation: Some("Apply".into()),
            subresource: None,
            time: Some(now),
        }),
    }
    Some(out)
}

/// The union of two `FieldsV1` sets (tries of `f:`/`k:`/`v:`/`i:` keys).
fn merge_field_sets(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (k, v) in from {
                merge_field_sets(
                    into.entry(k.clone())
                        .or_insert(Value::Object(Default::default())),
                    v,
                );
            }
        }
        (into @ Value::Null, from) => *into = from.clone(),
        _ => {}
    }
}

/// A JSON merge patch (RFC 7386) from `previous` to `next`: `next`, with
/// fields that `previous` had and `next` lacks set to null so they are removed.
pub fn merge_patch(previous: &Value, next: &Value) -> Value {
    match (previous, next) {
        (Value::Object(p), Value::Object(n)) => {
            let mut out = n.clone();
            for (k, pv) in p {
                match n.get(k) {
                    None => {
                        out.insert(k.clone(), Value::Null);
                    }
                    Some(nv) => {
                        out.insert(k.clone(), merge_patch(pv, nv));
                    }
                }
            }
            Value::Object(out)
        }
        _ => next.clone(),
    }
}

/// Whether `live` holds every field of `desired` with the same value. The API
/// server adds defaults and status, so `live` is usually a superset; lists
/// must match item for item.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| contains(lv, dv))),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| contains(lv, dv))
        }
        (Value::Number(l), Value::Number(d)) => same_number(l, d),
        (l, d) => l == d,
    }
}

/// Numbers compare by value: the API server holds a CRD schema's bounds as
/// floats and returns `65535` for the `65535.0` Keelson sends.
fn same_number(l: &serde_json::Number, d: &serde_json::Number) -> bool {
    if let (Some(l), Some(d)) = (l.as_i64(), d.as_i64()) {
        return l == d;
    }
    if let (Some(l), Some(d)) = (l.as_u64(), d.as_u64()) {
        return l == d;
    }
    l.as_f64() == d.as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_takeover_moves_the_installing_tools_fields_to_keelson_and_leaves_controllers_theirs() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};
        let entry = |manager: &str, operation: &str, subresource: Option<&str>, fields: Value| {
            ManagedFieldsEntry {
                api_version: Some("apps/v1".into()),
                fields_type: Some("FieldsV1".into()),
                fields_v1: Some(FieldsV1(fields)),
                manager: Some(manager.into()),
                operation: Some(operation.into()),
                subresource: subresource.map(str::to_owned),
                time: None,
            }
        };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let helm = entry(
            "helm",
            "Update",
            None,
            json!({"f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}}}, "f:spec": {"f:replicas": {}}}),
        );
        let controller = entry(
            "kube-controller-manager",
            "Update",
            None,
            json!({"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}}),
        );
        let status = entry(
            "kube-controller-manager",
            "Update",
            Some("status"),
            json!({"f:status": {}}),
        );
        let ours = entry(
            FIELD_MANAGER,
            "Apply",
            None,
            json!({"f:metadata": {"f:labels": {"f:keelson.dev/control-plane": {}}}}),
        );
        assert_eq!(
            taken_over(
                &[controller.clone(), status.clone()],
                "apps/v1",
                now.clone()
            ),
            None
        );

        let out = taken_over(
            &[helm.clone(), controller.clone(), status.clone(), ours],
            "apps/v1",
            now.clone(),
        )
        .expect("helm owned fields");
        assert_eq!(out.len(), 3);
        assert!(out.contains(&controller) && out.contains(&status));
        let keelson = out
            .iter()
            .find(|e| e.manager.as_deref() == Some(FIELD_MANAGER))
            .unwrap();
        assert_eq!(
            keelson.fields_v1.as_ref().unwrap().0,
            json!({"f:metadata": {"f:labels": {"f:keelson.dev/control-plane": {}, "f:app.kubernetes.io/managed-by": {}}},
                   "f:spec": {"f:replicas": {}}})
        );
        // No entry of Keelson's yet (a CLI install): one is made.
        let cli = entry(
            "kubectl-client-side-apply",
            "Update",
            None,
            json!({"f:data": {}}),
        );
        let out = taken_over(&[cli], "v1", now).expect("kubectl owned fields");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].manager.as_deref(), Some(FIELD_MANAGER));
        assert_eq!(out[0].operation.as_deref(), Some("Apply"));
        assert_eq!(out[0].api_version.as_deref(), Some("v1"));
        assert!(!installed_by_tool("kubectl-rollout") && installed_by_tool("kubectl-edit"));
    }

    #[test]
    fn a_crd_accepted_long_ago_but_not_established_is_stalled() {
        let crd = |conditions: Value| json!({"status": {"conditions": conditions}});
        let now: k8s_openapi::jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let accepted =
            |at: &str| json!({"type": "NamesAccepted", "status": "True", "lastTransitionTime": at});
        let established = json!({"type": "Established", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"});
        assert!(establishing_stalled(
            &crd(json!([accepted("2026-01-01T00:00:00Z")])),
            now
        ));
        assert!(
            !establishing_stalled(&crd(json!([accepted("2026-01-01T00:00:55Z")])), now),
            "the API server establishes within seconds"
        );
        assert!(!establishing_stalled(
            &crd(json!([accepted("2026-01-01T00:00:00Z"), established])),
            now
        ));
        assert!(
            !establishing_stalled(&crd(json!([])), now),
            "names not accepted (a conflict) is not for a touch to fix"
        );
    }

    #[test]
    fn defaults_added_by_the_server_do_not_count_as_drift() {
        let desired = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let live = json!({"spec": {"replicas": 1, "progressDeadlineSeconds": 600, "template": {"spec": {
            "containers": [{"name": "a", "image": "x", "terminationMessagePath": "/dev/termination-log"}],
            "dnsPolicy": "ClusterFirst"}}}, "status": {"replicas": 1}});
        assert!(contains(&live, &desired));
    }

    #[test]
    fn changed_values_missing_fields_and_list_changes_are_drift() {
        let desired = json!({"data": {"k": "v"}, "list": [1, 2]});
        assert!(!contains(
            &json!({"data": {"k": "w"}, "list": [1, 2]}),
            &desired
        ));
        assert!(!contains(&json!({"data": {}, "list": [1, 2]}), &desired));
        assert!(!contains(
            &json!({"data": {"k": "v"}, "list": [1, 2, 3]}),
            &desired
        ));
        assert!(!contains(
            &json!({"data": {"k": "v"}, "list": [2, 1]}),
            &desired
        ));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(contains(
            &json!({"maximum": 65535, "minimum": 1}),
            &json!({"maximum": 65535.0, "minimum": 1.0})
        ));
        assert!(!contains(
            &json!({"maximum": 65535}),
            &json!({"maximum": 65535.5})
        ));
        assert!(!contains(&json!({"n": u64::MAX}), &json!({"n": -1})));
        assert!(contains(&json!({"n": u64::MAX}), &json!({"n": u64::MAX})));
    }

    #[test]
    fn a_newer_crd_storing_a_version_the_rendering_lacks_is_kept() {
        let versions =
            |names: &[&str]| -> Value { names.iter().map(|n| json!({"name": n})).collect() };
        // 2.17's Gateway API HTTPRoute after 2.18 stored objects at v1.
        let desired = json!({"spec": {"versions": versions(&["v1alpha2", "v1beta1"])}});
        let newer = json!({"spec": {"versions": versions(&["v1", "v1beta1", "v1alpha2"])},
            "status": {"storedVersions": ["v1beta1", "v1"]}});
        assert_eq!(newer_crd_storing(&newer, &desired).as_deref(), Some("v1"));
        // Nothing stored at versions the rendering lacks: apply.
        let same = json!({"spec": {"versions": versions(&["v1alpha2", "v1beta1"])},
            "status": {"storedVersions": ["v1beta1"]}});
        assert_eq!(newer_crd_storing(&same, &desired), None);
        // The live CRD lacks a version the rendering needs: not newer, apply
        // and let the API server say what blocks it.
        let older = json!({"spec": {"versions": versions(&["v1alpha1", "v1beta1"])},
            "status": {"storedVersions": ["v1alpha1"]}});
        assert_eq!(newer_crd_storing(&older, &desired), None);
        assert_eq!(newer_crd_storing(&json!({}), &desired), None);
    }

    #[test]
    fn merge_patches_null_what_was_dropped_at_any_depth() {
        let previous =
            json!({"a": 1, "gone": "x", "nested": {"keep": 1, "drop": 2}, "list": [1, 2]});
        let next = json!({"a": 2, "nested": {"keep": 1}, "list": [3]});
        assert_eq!(
            merge_patch(&previous, &next),
            json!({"a": 2, "gone": null, "nested": {"keep": 1, "drop": null}, "list": [3]})
        );
    }

    #[test]
    fn every_rendered_kind_has_a_resource() {
        use crate::render;
        let cp: keelson_crds::ControlPlane = yaml_serde::from_str(
            "apiVersion: keelson.dev/v1alpha1\nkind: ControlPlane\nmetadata: {name: l}\nspec: {version: edge-25.4.4, highAvailability: true, cni: {}}\n",
        )
        .unwrap();
        for r in render::offline::render(&cp, None).unwrap() {
            let o = &r.object;
            let (ar, namespaced) = resource(
                o["apiVersion"].as_str().unwrap(),
                o["kind"].as_str().unwrap(),
            )
            .unwrap_or_else(|| panic!("no resource for {}", o["kind"]));
            assert_eq!(
                namespaced,
                o["metadata"]["namespace"].is_string(),
                "{}",
                o["kind"]
            );
            assert_eq!(ar.api_version, o["apiVersion"].as_str().unwrap());
        }
    }
}
