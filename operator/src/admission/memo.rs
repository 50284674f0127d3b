//! Injection decisions remembered by everything they are computed from.
//!
//! The API server names a controller's pods after mutating admission, so
//! the pods of one ReplicaSet, Job or StatefulSet revision reach the injector
//! as identical objects: a rollout of a hundred pods renders one patch. The
//! key covers every input of [`inject::inject`], so a hit is the decision the
//! injector would make again.

use crate::inject::{self, Decision, SkipReason};
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
}

#[derive(Default)]
pub struct Memo {
    decisions: Mutex<HashMap<u64, Remembered>>,
}

impl Memo {
    /// The decision for `req`, computed once per distinct input.
    pub fn decide(&self, req: &inject::Request<'_>) -> Result<Remembered, serde_json::Error> {
        let key = key(req)?;
        if let Some(hit) = self.lock().get(&key) {
            return Ok(hit.clone());
        }
        let decided = match inject::inject(req) {
            Decision::Inject(patch) => {
                Remembered::Patch(EncodedPatch::new(&serde_json::to_vec(&patch)?))
            }
            Decision::Skip(reason) => Remembered::Skip(reason),
        };
        let mut decisions = self.lock();
        if decisions.len() >= CAPACITY {
            decisions.clear();
        }
        decisions.insert(key, decided.clone());
        Ok(decided)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Remembered>> {
        self.decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Feeds serialized JSON straight into a hasher, without a buffer.
struct HashWriter<'a>(&'a mut DefaultHasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn key(req: &inject::Request<'_>) -> Result<u64, serde_json::Error> {
    let mut h = DefaultHasher::new();
    req.control_plane.hash(&mut h);
    req.release.version.to_string().hash(&mut h);
    (req.kubernetes.major, req.kubernetes.minor).hash(&mut h);
    req.trust_anchors_pem.hash(&mut h);
    req.owner.as_ref().map(|o| (&o.kind, &o.name)).hash(&mut h);
    // Separators keep one value's end from passing for the next's start.
    serde_json::to_writer(HashWriter(&mut h), req.spec)?;
    0xffu8.hash(&mut h);
    serde_json::to_writer(HashWriter(&mut h), req.namespace)?;
    0xffu8.hash(&mut h);
    serde_json::to_writer(HashWriter(&mut h), req.pod)?;
    Ok(h.finish())
}
