//! Injection decisions remembered by everything they are computed from.
//!
//! The API server names a controller's pods after mutating admission, so
//! the pods of one ReplicaSet, Job or StatefulSet revision reach the injector
//! as identical objects: a rollout of a hundred pods renders one patch. The
//! key covers every input of [`inject::inject`], so a hit is the decision the
//! injector would make again.

use crate::inject::{self, Decision, Refusal, SkipReason};
use keelson_webhooks::admission::EncodedPatch;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, PoisonError};

/// Decisions kept; past this the memo starts afresh (rollouts are bursts of
/// identical pods, so recency is all that matters).
const CAPACITY: usize = 256;

/// A decision as the webhook answers it: the encoded patch, or why not.
#[derive(Clone, Debug, PartialEq)]
pub enum Remembered {
    Patch(EncodedPatch),
    Skip(SkipReason),
    Refuse(Refusal),
}

#[derive(Default)]
pub struct Memo {
    decisions: Mutex<HashMap<u64, Remembered>>,
}

impl Memo {
    /// The decision for `req`, computed once per distinct input.
    pub fn decide(&self, req: &inject::Request<'_>) -> Remembered {
        let key = key(req);
        if let Some(hit) = self.lock().get(&key) {
            return hit.clone();
        }
        let decided = match inject::inject(req) {
            Decision::Inject(patch) => Remembered::Patch(EncodedPatch::new(patch.json())),
            Decision::Skip(reason) => Remembered::Skip(reason),
            Decision::Refuse(refusal) => Remembered::Refuse(refusal),
        };
        let mut decisions = self.lock();
        if decisions.len() >= CAPACITY {
            decisions.clear();
        }
        decisions.insert(key, decided.clone());
        decided
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Remembered>> {
        self.decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn key(req: &inject::Request<'_>) -> u64 {
    let mut h = DefaultHasher::new();
    req.control_plane.hash(&mut h);
    req.release.version.to_string().hash(&mut h);
    (req.kubernetes.major, req.kubernetes.minor).hash(&mut h);
    req.trust_anchors_pem.hash(&mut h);
    req.owner.as_ref().map(|o| (&o.kind, &o.name)).hash(&mut h);
    // Hashed in one write: many small writes cost more than the buffer.
    // Serializing into memory cannot fail (string keys only), and 0xff,
    // never part of JSON text, keeps one value's end from passing for the
    // next's start.
    let mut json = Vec::with_capacity(4096);
    let _ = serde_json::to_writer(&mut json, req.spec);
    json.push(0xff);
    let _ = serde_json::to_writer(&mut json, req.namespace);
    json.push(0xff);
    let _ = serde_json::to_writer(&mut json, req.pod);
    h.write(&json);
    h.finish()
}
