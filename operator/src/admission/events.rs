//! Events from admission handlers, published off the request path.
//!
//! Every pod a workload creates is admitted, so the same Event ("Linkerd
//! sidecar proxy injected", on the same Deployment) comes once per pod:
//! ten thousand API writes in a rollout of ten thousand pods. A repeat of an
//! Event published for the same object within [`REPEAT_WINDOW`] is dropped,
//! as client-go's recorder (which Linkerd's injector uses) drops an
//! object's events past a small burst; the first of each still shows on
//! the workload at once.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long an Event stands for its repeats.
const REPEAT_WINDOW: Duration = Duration::from_secs(60);
/// Events remembered before the ones older than the window are forgotten.
const REMEMBERED: usize = 4096;

/// Events waiting to be published; beyond this many, new ones are dropped.
const QUEUE: usize = 1024;

/// One Event to publish.
#[derive(Debug)]
pub struct Notice {
    pub reference: ObjectReference,
    pub type_: EventType,
    pub reason: String,
    pub note: String,
}

pub fn queue() -> (mpsc::Sender<Notice>, mpsc::Receiver<Notice>) {
    mpsc::channel(QUEUE)
}

/// When each Event (by object, type, reason and note) was last published.
#[derive(Default)]
struct Repeats {
    published: HashMap<u64, Instant>,
    hasher: foldhash::fast::RandomState,
}

impl Repeats {
    /// Whether `n` is to be published at `now`; if so, it is remembered.
    fn fresh(&mut self, n: &Notice, now: Instant) -> bool {
        let r = &n.reference;
        let key = self.hasher.hash_one((
            (&r.namespace, &r.kind, &r.name, &r.uid),
            n.type_ == EventType::Warning,
            &n.reason,
            &n.note,
        ));
        if self
            .published
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < REPEAT_WINDOW)
        {
            return false;
        }
        if self.published.len() >= REMEMBERED {
            self.published
                .retain(|_, at| now.duration_since(*at) < REPEAT_WINDOW);
        }
        // Still full of recent ones: a burst of distinct Events. Forget
        // them all rather than grow; at worst a repeat is published.
        if self.published.len() >= REMEMBERED {
            self.published.clear();
        }
        self.published.insert(key, now);
        true
    }
}

/// Publishes queued Events until every sender is gone.
pub async fn publish(recorder: Recorder, mut notices: mpsc::Receiver<Notice>) {
    let mut repeats = Repeats::default();
    while let Some(n) = notices.recv().await {
        if !repeats.fresh(&n, Instant::now()) {
            continue;
        }
        let event = Event {
            type_: n.type_,
            reason: n.reason,
            note: Some(n.note),
            action: "Admit".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &n.reference).await {
            tracing::debug!(error = %e, "recording an admission event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(name: &str, reason: &str, note: &str) -> Notice {
        Notice {
            reference: ObjectReference {
                kind: Some("Deployment".into()),
                namespace: Some("shop".into()),
                name: Some(name.into()),
                ..ObjectReference::default()
            },
            type_: EventType::Normal,
            reason: reason.into(),
            note: note.into(),
        }
    }

    #[test]
    fn an_event_repeated_within_the_window_is_published_once() {
        let mut repeats = Repeats::default();
        let start = Instant::now();
        let injected = notice("web", "Injected", "proxy edge-25.10.7 injected");
        assert!(repeats.fresh(&injected, start));
        for s in 1..60 {
            let at = start + Duration::from_secs(s);
            assert!(!repeats.fresh(&injected, at), "{s}s later");
        }
        // Another object, reason or note is another Event.
        for other in [
            notice("api", "Injected", "proxy edge-25.10.7 injected"),
            notice("web", "InjectionSkipped", "proxy edge-25.10.7 injected"),
            notice("web", "Injected", "proxy edge-25.12.1 injected"),
        ] {
            assert!(repeats.fresh(&other, start + Duration::from_secs(1)));
        }
        // Past the window it is published again, then stands for a window.
        let later = start + REPEAT_WINDOW;
        assert!(repeats.fresh(&injected, later));
        assert!(!repeats.fresh(&injected, later + Duration::from_secs(1)));
    }

    #[test]
    fn what_is_remembered_is_bounded() {
        let mut repeats = Repeats::default();
        let start = Instant::now();
        for i in 0..3 * REMEMBERED {
            let n = notice(&format!("web-{i}"), "Injected", "injected");
            assert!(repeats.fresh(&n, start));
            assert!(repeats.published.len() <= REMEMBERED);
        }
        // Old ones are forgotten before recent ones.
        let mut repeats = Repeats::default();
        for i in 0..REMEMBERED {
            let n = notice(&format!("old-{i}"), "Injected", "injected");
            assert!(repeats.fresh(&n, start));
        }
        let now = start + REPEAT_WINDOW;
        let recent = notice("recent", "Injected", "injected");
        assert!(repeats.fresh(&recent, now));
        assert_eq!(repeats.published.len(), 1);
        assert!(!repeats.fresh(&recent, now));
    }
}
