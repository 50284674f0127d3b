//! An object under validation as the review carries it: its JSON text,
//! decoded only into the type its kind names. Decoding a review into kube's
//! `DynamicObject` builds a `serde_json::Value` tree, some thirty times the
//! size of a body made of many small values; typed decoding keeps only what
//! the type has.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::ops::Range;

pub struct RawObject {
    pub text: Box<RawValue>,
    /// Its metadata, as kube's admission types expect of an object; the
    /// validator reads what it needs from the typed object.
    metadata: ObjectMeta,
}

/// An object's JSON text, kept whole, its metadata decoded from it
/// (`metadata: null` reads as none, as k8s-openapi reads it), and where in
/// the text its `spec` is, if it has one.
pub struct Parts {
    pub text: Box<RawValue>,
    pub metadata: ObjectMeta,
    pub spec: Option<Range<usize>>,
}

pub fn parts<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Parts, D::Error> {
    #[derive(Deserialize)]
    struct Head<'a> {
        metadata: Option<ObjectMeta>,
        #[serde(borrow)]
        spec: Option<&'a RawValue>,
    }
    let text = Box::<RawValue>::deserialize(deserializer)?;
    let head: Head<'_> = serde_json::from_str(text.get()).map_err(D::Error::custom)?;
    // The spec's text is a slice of the object's: its place is the
    // distance between the two.
    let spec = head.spec.map(|spec| {
        let start = spec.get().as_ptr() as usize - text.get().as_ptr() as usize;
        start..start + spec.get().len()
    });
    let metadata = head.metadata.unwrap_or_default();
    Ok(Parts {
        text,
        metadata,
        spec,
    })
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Parts { text, metadata, .. } = parts(deserializer)?;
        Ok(Self { text, metadata })
    }
}

impl RawObject {
    /// The object as a `K`; an error names the path of the field that
    /// could not be read (cut, so a huge value is not echoed back).
    pub fn decode<K: DeserializeOwned>(&self) -> Result<K, String> {
        let mut de = serde_json::Deserializer::from_str(self.text.get());
        serde_path_to_error::deserialize::<_, K>(&mut de).map_err(|e| {
            format!(
                "{}: {}",
                e.path(),
                super::validate::cut(&e.inner().to_string())
            )
        })
    }
}

/// Any kind: the review says which, and the validator dispatches on that.
impl kube::Resource for RawObject {
    type DynamicType = ();
    type Scope = kube::core::DynamicResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
