//! Events from admission handlers, published off the request path.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::sync::mpsc;

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

/// Publishes queued Events until every sender is gone.
pub async fn publish(recorder: Recorder, mut notices: mpsc::Receiver<Notice>) {
    while let Some(n) = notices.recv().await {
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
