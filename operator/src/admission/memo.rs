//! Injection decisions remembered by everything they are computed from.
//!
//! The API server names a controller's pods after mutating admission, so
//! the pods of one ReplicaSet, Job or StatefulSet revision reach the injector
//! as the same JSON text: a rollout of a hundred pods renders one patch. The
//! key is what of that text a decision reads (the spec, the annotations,
//! whether there are labels: [`PodShape`]) and the decision's
//! [`inject::Context`], compared byte for byte, so a hit is the decision
//! the injector would make again, and costs no decoding of the pod. Bare
//! pods of one spec, or pods whose labels differ (a new ReplicaSet's
//! template hash, a DaemonSet's), share a decision too.
//!
//! From Kubernetes 1.21 each pod's API token volume has a random name
//! (`kube-api-access-` and five characters), which the proxy mounts. The key
//! leaves those five characters out, and a remembered patch gets each pod's
//! own name written in.

use crate::inject::{self, Decision, Refusal, SkipReason};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_crds::ControlPlane;
use keelson_webhooks::admission::EncodedPatch;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Bytes of keys and patches kept: a pod's text is a few KiB and its
/// encoded patch about 20 KiB, so this holds some 140 rollouts under way
/// at once (a wave of ten DataPlanes in batches of ten has a hundred), and
/// is a seventh of the operator's anonymous memory at 5,000 pods. Past it
/// the memo starts afresh: rollouts are bursts of identical pods, so
/// recency is all that matters.
pub(crate) const BUDGET: usize = 3 << 20;

/// Pods whose text is longer are decided afresh every time: no pod a
/// controller makes comes near it, and keying on a hostile pod's text
/// (megabytes of annotations the API server then refuses) would fill the
/// budget with one-off entries.
const LARGEST_KEY: usize = 256 << 10;

/// The name the service account admission plugin gives the token volume,
/// in quotes, before its random part.
const TOKEN_VOLUME: &str = "\"kube-api-access-";
const TOKEN_RANDOM: usize = 5;

/// Key bytes that never occur in JSON text (UTF-8 has no 0xfe or 0xff):
/// one ends each part of a key, the other stands for a token volume's
/// random characters.
const END: u8 = 0xff;
const BLANK: u8 = 0xfe;

/// A decision as the webhook answers it: the encoded patch, or why not.
#[derive(Clone, Debug, PartialEq)]
pub enum Remembered {
    Patch(EncodedPatch),
    Skip(SkipReason),
    Refuse(Refusal),
}

/// What of a submitted pod its injection reads: its spec (as text), its
/// annotations, and whether it has labels (the patch adds the map when it
/// has none). Its name, labels and owners are not read: the owner's name
/// that the patch's labels carry is in the context.
pub struct PodShape<'a> {
    /// The whole pod: one too long is not remembered.
    pub text: &'a str,
    pub metadata: &'a ObjectMeta,
    pub spec: &'a str,
}

#[derive(Clone)]
struct Entry {
    decided: Remembered,
    /// The token volume's random characters the patch was rendered with,
    /// and where they are in the patch's JSON.
    token: Option<([u8; TOKEN_RANDOM], Arc<[usize]>)>,
}

#[derive(Default)]
struct Decisions {
    entries: HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
    /// Bytes the entries' keys and patches take.
    bytes: usize,
}

/// A ControlPlane and its spec as key bytes.
type SpecBytes = (Arc<ControlPlane>, Arc<[u8]>);

#[derive(Default)]
pub struct Memo {
    decisions: Mutex<Decisions>,
    /// The last ControlPlane decided for and its spec as key bytes, written
    /// once per version of the object: the cache hands out a new `Arc` for
    /// every change, and holding this one keeps its address from being
    /// reused.
    spec: Mutex<Option<SpecBytes>>,
}

impl Memo {
    /// The decision for the pod whose JSON text is `pod` in `context`, whose
    /// spec is `control_plane`'s: remembered, or made by `render` once per
    /// distinct input. Errors are passed on, not remembered.
    pub fn decide<E>(
        &self,
        control_plane: &Arc<ControlPlane>,
        context: &inject::Context<'_>,
        pod: &PodShape<'_>,
        render: impl FnOnce() -> Result<Decision, E>,
    ) -> Result<Remembered, E> {
        debug_assert!(std::ptr::eq(context.spec, &control_plane.spec));
        if pod.text.len() > LARGEST_KEY {
            return Ok(Entry::new(render()?, None).decided);
        }
        let token = token_volume(pod.spec);
        let key = key(
            context,
            &self.spec_bytes(control_plane),
            pod,
            token.as_ref(),
        );
        let random = token.map(|(random, _)| random);
        // Cloned out, so the lock is not held while the patch is adapted.
        let hit = self.lock().entries.get(key.as_slice()).cloned();
        if let Some(entry) = hit {
            return Ok(entry.for_token(random));
        }
        let entry = Entry::new(render()?, random);
        let decided = entry.decided.clone();
        // Only injections are worth remembering: a skip or a refusal is
        // decided from metadata without rendering, and pods the injector
        // skips are the ones nobody vouches for.
        let Remembered::Patch(patch) = &entry.decided else {
            return Ok(decided);
        };
        let key_len = key.len();
        let size = key_len + patch.len();
        let mut decisions = self.lock();
        if decisions.bytes + size > BUDGET {
            decisions.entries.clear();
            decisions.bytes = 0;
        }
        decisions.bytes += size;
        // Another request may have decided the same pod meanwhile.
        if let Some(replaced) = decisions.entries.insert(key.into_boxed_slice(), entry) {
            decisions.bytes -= key_len + replaced.decided.patch_len();
        }
        Ok(decided)
    }

    fn spec_bytes(&self, control_plane: &Arc<ControlPlane>) -> Arc<[u8]> {
        let mut last = self.spec.lock().unwrap_or_else(PoisonError::into_inner);
        match &*last {
            Some((seen, bytes)) if Arc::ptr_eq(seen, control_plane) => Arc::clone(bytes),
            _ => {
                // Serializing into memory cannot fail (string keys only).
                let bytes: Arc<[u8]> = serde_json::to_vec(&control_plane.spec)
                    .unwrap_or_default()
                    .into();
                *last = Some((Arc::clone(control_plane), Arc::clone(&bytes)));
                bytes
            }
        }
    }

    /// How many decisions are kept, and the bytes they take.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        let decisions = self.lock();
        (decisions.entries.len(), decisions.bytes)
    }

    fn lock(&self) -> MutexGuard<'_, Decisions> {
        self.decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Remembered {
    fn patch_len(&self) -> usize {
        match self {
            Remembered::Patch(patch) => patch.len(),
            _ => 0,
        }
    }
}

impl Entry {
    fn new(decision: Decision, random: Option<[u8; TOKEN_RANDOM]>) -> Self {
        let patch = match decision {
            Decision::Inject(patch) => patch,
            Decision::Skip(reason) => return Self::other(Remembered::Skip(reason)),
            Decision::Refuse(refusal) => return Self::other(Remembered::Refuse(refusal)),
        };
        let json = patch.json();
        // The patch names the volume where it copies the pod's mount (the
        // proxy's and linkerd-init's). Every place is recorded: for pods
        // whose texts differ only in the name, the name is all their
        // patches differ in.
        let token = random.map(|random| {
            let name = format!("{TOKEN_VOLUME}{}\"", String::from_utf8_lossy(&random));
            let text = std::str::from_utf8(json).expect("a patch is JSON text");
            let at = text
                .match_indices(&name)
                .map(|(i, _)| i + TOKEN_VOLUME.len())
                .collect();
            (random, at)
        });
        Self {
            decided: Remembered::Patch(EncodedPatch::new(json)),
            token,
        }
    }

    fn other(decided: Remembered) -> Self {
        Self {
            decided,
            token: None,
        }
    }

    /// The decision for a pod whose token volume has `random` in its name.
    fn for_token(&self, random: Option<[u8; TOKEN_RANDOM]>) -> Remembered {
        match (&self.decided, &self.token, random) {
            (Remembered::Patch(patch), Some((rendered, at)), Some(random))
                if *rendered != random =>
            {
                Remembered::Patch(patch.overwritten(at, &random))
            }
            (decided, ..) => decided.clone(),
        }
    }
}

/// The random characters of the pod's token volume name and where they
/// are in its text, when the text names exactly one such volume (any other
/// text is keyed as it is).
fn token_volume(pod: &str) -> Option<([u8; TOKEN_RANDOM], Vec<usize>)> {
    let bytes = pod.as_bytes();
    let mut random: Option<[u8; TOKEN_RANDOM]> = None;
    let mut at = Vec::new();
    for (i, _) in pod.match_indices(TOKEN_VOLUME) {
        let start = i + TOKEN_VOLUME.len();
        let name = bytes.get(start..start + TOKEN_RANDOM)?;
        let closed = bytes.get(start + TOKEN_RANDOM) == Some(&b'"');
        if !closed
            || !name
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            || random.is_some_and(|r| r != name)
        {
            return None;
        }
        random = name.try_into().ok();
        at.push(start);
    }
    Some((random?, at))
}

/// Everything the decision is made from, as bytes compared whole.
fn key(
    context: &inject::Context<'_>,
    spec: &[u8],
    pod: &PodShape<'_>,
    token: Option<&([u8; TOKEN_RANDOM], Vec<usize>)>,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(pod.text.len() + context.trust_anchors_pem.len() + 1024);
    let mut part = |bytes: &[u8]| {
        key.extend_from_slice(bytes);
        key.push(END);
    };
    part(context.control_plane.as_bytes());
    part(context.release.version.to_string().as_bytes());
    part(&context.kubernetes.major.to_le_bytes());
    part(&context.kubernetes.minor.to_le_bytes());
    part(context.trust_anchors_pem.as_bytes());
    part(context.trust_root_sha256.unwrap_or_default().as_bytes());
    part(context.cni_redirect_sha256.unwrap_or_default().as_bytes());
    let owner = context.owner.as_ref();
    part(owner.map_or(&b""[..], |o| o.kind.as_bytes()));
    part(owner.map_or(&b""[..], |o| o.name.as_bytes()));
    part(spec);
    // Serializing into memory cannot fail (string keys only).
    let _ = serde_json::to_writer(&mut key, context.namespace);
    key.push(END);
    let _ = serde_json::to_writer(&mut key, &pod.metadata.annotations);
    key.push(END);
    let labelled = pod.metadata.labels.as_ref().is_some_and(|l| !l.is_empty());
    key.push(u8::from(labelled));
    key.push(END);
    let start = key.len();
    key.extend_from_slice(pod.spec.as_bytes());
    for &at in token.map(|(_, at)| at.as_slice()).unwrap_or_default() {
        key[start + at..][..TOKEN_RANDOM].fill(BLANK);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_token_volume_name_is_found_everywhere_it_is_used() {
        let pod = r#"{"volumeMounts":[{"name":"kube-api-access-x7k2p"}],"volumes":[{"name":"kube-api-access-x7k2p"}]}"#;
        let (random, at) = token_volume(pod).unwrap();
        assert_eq!(&random, b"x7k2p");
        assert_eq!(at.len(), 2);
        for i in at {
            assert_eq!(&pod[i..i + 5], "x7k2p");
        }
        // Two names, or one not shaped as the API server makes them: the
        // text is keyed as it is.
        for other in [
            r#"{"a":"kube-api-access-x7k2p","b":"kube-api-access-q9z4m"}"#,
            r#"{"a":"kube-api-access-X7K2P"}"#,
            r#"{"a":"kube-api-access-x7k2pq"}"#,
            r#"{"a":"kube-api-access-x7"}"#,
            r#"{"a":"my-kube-api-access-x7k2p"}"#,
            r#"{"a":"web"}"#,
        ] {
            assert_eq!(token_volume(other), None, "{other}");
        }
    }
}
