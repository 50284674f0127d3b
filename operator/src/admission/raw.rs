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

pub struct RawObject {
    pub text: Box<RawValue>,
    /// Its metadata, as kube's admission types expect of an object; the
    /// validator reads what it needs from the typed object.
    metadata: ObjectMeta,
}

/// An object's JSON text, kept whole, and its metadata decoded from it
/// (`metadata: null` reads as none, as k8s-openapi reads it).
pub fn text_and_metadata<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<(Box<RawValue>, ObjectMeta), D::Error> {
    #[derive(Deserialize)]
    struct Head {
        metadata: Option<ObjectMeta>,
    }
    let text = Box::<RawValue>::deserialize(deserializer)?;
    let head: Head = serde_json::from_str(text.get()).map_err(D::Error::custom)?;
    Ok((text, head.metadata.unwrap_or_default()))
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (text, metadata) = text_and_metadata(deserializer)?;
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
