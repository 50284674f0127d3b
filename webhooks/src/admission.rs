//! The `AdmissionReview` envelope: decode what the API server sends, hand the
//! request to an admission function, and encode its answer.
//!
//! Handlers built on [`review`] only ever see a well-formed request with its
//! `uid`; a body that is not an `AdmissionReview` is answered with 400 here
//! (there is no `uid` to answer with), and the API server then applies the
//! webhook's failure policy.

use base64_simd::{Out, STANDARD as BASE64};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use kube::Resource;
use kube::core::DynamicObject;
use kube::core::TypeMeta;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;

/// A JSON patch encoded as the review's `patch` field: the base64 text the
/// API server decodes. Encoded once, it is copied into every answer that
/// carries it, so a patch remembered across reviews (the pods of one
/// rollout) costs no encoding per review.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedPatch(Bytes);

impl EncodedPatch {
    /// Length of the encoded (base64) patch.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Encodes a serialized JSON patch.
    pub fn new(patch_json: &[u8]) -> Self {
        // kube-core writes `[]byte` as an array of numbers; the API documents
        // a base64 string (what Go encodes it to), four times smaller.
        Self(Bytes::from(BASE64.encode_type::<Vec<u8>>(patch_json)))
    }

    /// The patch with the JSON bytes at each of `offsets` replaced by
    /// `bytes`, as many as they replace. Only the base64 quanta (three JSON
    /// bytes each) that `bytes` fall in are encoded again: adapting a
    /// remembered patch to a pod costs a copy, not an encoding.
    ///
    /// # Panics
    /// If a replaced range is not within the patch.
    pub fn overwritten(&self, offsets: &[usize], bytes: &[u8]) -> Self {
        let mut text = self.0.to_vec();
        for &offset in offsets {
            let first = offset / 3;
            let end = (offset + bytes.len()).div_ceil(3);
            let chars = first * 4..(end * 4).min(text.len());
            let mut window = BASE64
                .decode_to_vec(&text[chars.clone()])
                .expect("encoded by new");
            window[offset - first * 3..][..bytes.len()].copy_from_slice(bytes);
            // The window decodes to as many bytes as it had, so it encodes
            // to as many characters, padding included.
            let encoded = BASE64.encode(&window, Out::from_slice(&mut text[chars]));
            debug_assert_eq!(encoded.len(), window.len().div_ceil(3) * 4);
        }
        Self(Bytes::from(text))
    }

    /// The patch as JSON again.
    pub fn decode(&self) -> Vec<u8> {
        BASE64.decode_to_vec(&self.0).expect("encoded by new")
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
    let answer = match serde_json::from_slice::<Review<K>>(request.body()) {
        Ok(review) => match review.into_request() {
            Some(admission) => admit(admission).await.into(),
            None => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "the AdmissionReview has no request",
                );
            }
        },
        Err(typed) => {
            let envelope = serde_json::from_slice::<Review<DynamicObject>>(request.body());
            match envelope.ok().and_then(Review::into_request) {
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

/// An `AdmissionReview` as the API server sends it. kube's own type
/// flattens its `TypeMeta`, which makes serde buffer the whole review (the
/// object twice over, for updates) before decoding it, and keeps objects from
/// being taken as raw JSON text.
#[derive(serde::Deserialize)]
#[serde(bound = "K: DeserializeOwned")]
struct Review<K: Resource> {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    request: Option<AdmissionRequest<K>>,
}

impl<K: Resource> Review<K> {
    fn into_request(self) -> Option<AdmissionRequest<K>> {
        let mut request = self.request?;
        request.types = TypeMeta {
            api_version: self.api_version,
            kind: self.kind,
        };
        Some(request)
    }
}

/// The review the API server expects back, in the request's API version,
/// written in one pass.
fn encode(answer: Answer) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'a str,
        kind: &'a str,
        response: &'a AdmissionResponse,
    }
    let types = &answer.response.types;
    const PATCH_FIELD: &[u8] = b",\"patch\":\"";
    // Sized for the patch and the rest of the review, so the answer is
    // written without growing (and copying) the buffer.
    let patch_len = answer.patch.as_ref().map_or(0, |p| p.0.len());
    let mut out = Vec::with_capacity(patch_len + 1024);
    serde_json::to_writer(
        &mut out,
        &Out {
            api_version: &types.api_version,
            kind: &types.kind,
            response: &answer.response,
        },
    )?;
    if let Some(patch) = &answer.patch {
        // The review ends with the response's and its own closing braces;
        // the patch goes in before them. Base64 needs no escaping.
        debug_assert!(out.ends_with(b"}}"));
        out.truncate(out.len() - 2);
        out.extend_from_slice(PATCH_FIELD);
        out.extend_from_slice(&patch.0);
        out.extend_from_slice(b"\"}}");
    }
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

    #[test]
    fn an_overwritten_patch_decodes_to_the_overwritten_json() {
        let json: Vec<u8> = (0..64u8).map(|i| b'a' + i % 26).collect();
        // Every length of patch (so every padding), and every place and
        // length of overwrite, quanta boundaries included.
        for len in 1..json.len() {
            let patch = EncodedPatch::new(&json[..len]);
            for offset in 0..len {
                for n in 0..=(len - offset).min(7) {
                    let bytes = &b"0123456"[..n];
                    let mut expected = json[..len].to_vec();
                    expected[offset..offset + n].copy_from_slice(bytes);
                    let overwritten = patch.overwritten(&[offset], bytes);
                    assert_eq!(overwritten.decode(), expected, "{len} {offset} {n}");
                    assert_eq!(overwritten, EncodedPatch::new(&expected));
                }
            }
        }
        // Several places at once, one quantum apart and in one quantum.
        let patch = EncodedPatch::new(&json);
        let overwritten = patch.overwritten(&[2, 5, 30, 31], b"XY");
        let mut expected = json.clone();
        for at in [2, 5, 30, 31] {
            expected[at..at + 2].copy_from_slice(b"XY");
        }
        assert_eq!(overwritten.decode(), expected);
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
