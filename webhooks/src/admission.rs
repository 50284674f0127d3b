//! The `AdmissionReview` envelope: decode what the API server sends, hand the
//! request to an admission function, and encode its answer.
//!
//! Handlers built on [`review`] only ever see a well-formed request with its
//! `uid`; a body that is not an `AdmissionReview` is answered with 400 here
//! (there is no `uid` to answer with), and the API server then applies the
//! webhook's failure policy.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use kube::Resource;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::future::Future;
use std::sync::Arc;

/// A JSON patch encoded as the review's `patch` field: the base64 JSON
/// string the API server reads. Encoded once, it is written into every
/// answer that carries it as it is, so a patch remembered across reviews
/// (the pods of one rollout) costs no encoding per review.
#[derive(Clone, Debug)]
pub struct EncodedPatch(Arc<RawValue>);

impl EncodedPatch {
    /// Encodes a serialized JSON patch.
    pub fn new(patch_json: &[u8]) -> Self {
        use base64::Engine as _;
        // kube-core writes `[]byte` as an array of numbers; the API documents
        // a base64 string (what Go encodes it to), four times smaller. The
        // literal is written in one exactly sized buffer: base64 needs no
        // escaping inside quotes.
        let encoded = base64::encoded_len(patch_json.len(), true).unwrap_or(0);
        let mut literal = String::with_capacity(encoded + 2);
        literal.push('"');
        base64::engine::general_purpose::STANDARD.encode_string(patch_json, &mut literal);
        literal.push('"');
        let raw = RawValue::from_string(literal).expect("a base64 string literal is valid JSON");
        Self(Arc::from(raw))
    }

    /// The patch as JSON again.
    pub fn decode(&self) -> Vec<u8> {
        serde_json::from_str::<k8s_openapi::ByteString>(self.0.get())
            .expect("encoded by new")
            .0
    }
}

impl PartialEq for EncodedPatch {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// An answer to a review: kube's response, and its patch, encoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The response; its own `patch` is unset (the patch is below).
    pub response: AdmissionResponse,
    pub patch: Option<EncodedPatch>,
}

impl Answer {
    /// Admits with `patch`, a JSON patch for the object under review.
    pub fn patched(response: AdmissionResponse, patch: EncodedPatch) -> Self {
        // `with_patch` is the only way to set the patch type.
        let mut response = response
            .with_patch(json_patch::Patch(Vec::new()))
            .expect("an empty patch always encodes");
        response.patch = None;
        Self {
            response,
            patch: Some(patch),
        }
    }
}

impl From<AdmissionResponse> for Answer {
    fn from(mut response: AdmissionResponse) -> Self {
        let patch = response.patch.take().map(|p| EncodedPatch::new(&p));
        Self { response, patch }
    }
}

/// Decodes `request` as an `AdmissionReview` of `K`, answers it with
/// `admit` and encodes the response as the review the API server expects
/// back.
///
/// A review whose envelope is sound but whose object is not a `K` is denied
/// with the decoding error, under its `uid`, so the caller sees why; the
/// typed decode comes first because handlers on the hot path (injection)
/// should not pay for decoding twice.
pub async fn review<K, F, Fut, A>(request: Request<Bytes>, admit: F) -> Response<Bytes>
where
    K: Resource + DeserializeOwned,
    F: FnOnce(AdmissionRequest<K>) -> Fut,
    Fut: Future<Output = A>,
    A: Into<Answer>,
{
    if request.method() != Method::POST {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "admission reviews are POSTed",
        );
    }
    let answer = match serde_json::from_slice::<AdmissionReview<K>>(request.body()) {
        Ok(review) => match review.try_into() {
            Ok(admission) => admit(admission).await.into(),
            Err(_) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "the AdmissionReview has no request",
                );
            }
        },
        Err(typed) => {
            let envelope = serde_json::from_slice::<AdmissionReview<DynamicObject>>(request.body());
            let admission: Option<AdmissionRequest<DynamicObject>> =
                envelope.ok().and_then(|r| r.try_into().ok());
            match admission {
                Some(admission) => AdmissionResponse::from(&admission)
                    .deny(format!(
                        "the {} cannot be read: {typed}",
                        admission.kind.kind
                    ))
                    .into(),
                None => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        &format!("the body is not an AdmissionReview: {typed}"),
                    );
                }
            }
        }
    };
    match encode(answer) {
        Ok(body) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Bytes::from(body))
            .expect("a static status and header make a valid response"),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding the AdmissionReview: {e}"),
        ),
    }
}

/// The review the API server expects back, in the request's API version,
/// written in one pass.
fn encode(answer: Answer) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Review<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'a str,
        kind: &'a str,
        response: Out<'a>,
    }
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        response: &'a AdmissionResponse,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<&'a RawValue>,
    }
    let types = &answer.response.types;
    // Sized for the patch and the rest of the review, so the answer is
    // written without growing (and copying) the buffer.
    let patch_len = answer.patch.as_ref().map_or(0, |p| p.0.get().len());
    let mut out = Vec::with_capacity(patch_len + 1024);
    serde_json::to_writer(
        &mut out,
        &Review {
            api_version: &types.api_version,
            kind: &types.kind,
            response: Out {
                response: &answer.response,
                patch: answer.patch.as_ref().map(|p| &*p.0),
            },
        },
    )?;
    Ok(out)
}

fn plain(status: StatusCode, message: &str) -> Response<Bytes> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Bytes::from(format!("{message}\n")))
        .expect("a static status and header make a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn post(body: impl Into<Bytes>) -> Request<Bytes> {
        Request::post("/validate").body(body.into()).unwrap()
    }

    fn review_of(object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "c0ffee",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "userInfo": {"username": "alice"},
                "namespace": "apps",
                "object": object,
            }
        }))
        .unwrap()
    }

    async fn body_json(response: Response<Bytes>) -> Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    #[tokio::test]
    async fn answers_with_the_request_uid_and_review_version() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}});
        let response = review::<DynamicObject, _, _, AdmissionResponse>(
            post(review_of(pod)),
            |req| async move {
                assert_eq!(req.namespace.as_deref(), Some("apps"));
                AdmissionResponse::from(&req).deny("spec.version: no such release")
            },
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = body_json(response).await;
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(body["response"]["uid"], "c0ffee");
        assert_eq!(body["response"]["allowed"], false);
        assert_eq!(
            body["response"]["status"]["message"],
            "spec.version: no such release"
        );
    }

    #[tokio::test]
    async fn a_patch_is_sent_as_base64_with_its_type() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}});
        let ops: json_patch::Patch = serde_json::from_value(
            json!([{"op": "add", "path": "/metadata/labels", "value": {"meshed": "yes"}}]),
        )
        .unwrap();
        let expected = serde_json::to_vec(&ops).unwrap();
        let response = review::<DynamicObject, _, _, AdmissionResponse>(
            post(review_of(pod)),
            |req| async move { AdmissionResponse::from(&req).with_patch(ops).unwrap() },
        )
        .await;
        let body = body_json(response).await;
        let encoded = body["response"]["patch"].as_str().expect("a base64 string");
        let decoded: k8s_openapi::ByteString = serde_json::from_value(json!(encoded)).unwrap();
        assert_eq!(decoded.0, expected);
        assert_eq!(body["response"]["patchType"], "JSONPatch");
        assert_eq!(body["response"]["allowed"], true);
    }

    #[tokio::test]
    async fn malformed_bodies_get_400_without_calling_the_handler() {
        for body in [
            &b"not json"[..],
            b"{}",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#,
        ] {
            let response =
                review::<DynamicObject, _, _, AdmissionResponse>(post(body.to_vec()), |_| async {
                    panic!("the handler must not see a malformed review")
                })
                .await;
            assert_eq!(
                response.status(),
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[tokio::test]
    async fn an_object_of_the_wrong_shape_is_denied_under_its_uid() {
        use k8s_openapi::api::core::v1::Pod;
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"containers": "not a list"}});
        let response = review::<Pod, _, _, AdmissionResponse>(post(review_of(pod)), |_| async {
            panic!("the handler must not see an unreadable pod")
        })
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = body_json(response).await;
        assert_eq!(body["response"]["uid"], "c0ffee");
        assert_eq!(body["response"]["allowed"], false);
        let message = body["response"]["status"]["message"].as_str().unwrap();
        assert!(message.starts_with("the Pod cannot be read"), "{message}");
    }

    #[tokio::test]
    async fn only_post_is_answered() {
        let request = Request::get("/validate").body(Bytes::new()).unwrap();
        let response =
            review::<DynamicObject, _, _, AdmissionResponse>(request, |_| async { unreachable!() })
                .await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
