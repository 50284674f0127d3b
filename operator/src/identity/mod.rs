//! Certificates for the mesh identity and Linkerd's validating webhooks,
//! generated with rcgen. Pure: the caller passes the time, so results are
//! testable and rotation logic can reason about validity windows.
//!
//! Linkerd requires the issuer to be an ECDSA P-256 CA named
//! `identity.<namespace>.<trust domain>`; anchors may be P-256 or RSA, and
//! Keelson makes P-256 ones. Key material never leaves these values except
//! into Secrets; nothing here logs it.

pub mod rotation;

use crate::render::TlsPair;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_crds::controlplane::CertificateSummary;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::time::{Duration, SystemTime};

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("generating the {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("reading the trust anchor to sign with: {0}")]
    Anchor(#[source] rcgen::Error),
    #[error("the {what} is not a readable PEM certificate")]
    Unreadable { what: &'static str },
    #[error("the new issuer does not verify against the trust anchor: {0}")]
    Chain(String),
    #[error("not usable as a trust anchor: {0}")]
    UnusableAnchor(String),
    #[error("{0}")]
    UnusableIssuer(String),
}

fn generate(what: &'static str) -> impl FnOnce(rcgen::Error) -> IdentityError {
    move |source| IdentityError::Generate { what, source }
}

/// Certificate validity from `now`, backdated a minute for clock skew.
fn validity(params: &mut CertificateParams, now: SystemTime, lifetime: Duration) {
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + lifetime).into();
}

fn ca_params(
    cn: &str,
    path_len: Option<u8>,
    now: SystemTime,
    lifetime: Duration,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = match path_len {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, now, lifetime);
    params
}

/// Name of a trust anchor for a trust domain, as Linkerd's docs make them.
pub fn anchor_name(trust_domain: &str) -> String {
    format!("root.linkerd.{trust_domain}")
}

/// Name Linkerd's identity controller requires of its issuer.
pub fn issuer_name(namespace: &str, trust_domain: &str) -> String {
    format!("identity.{namespace}.{trust_domain}")
}

/// A self-signed ECDSA P-256 trust anchor.
pub fn trust_anchor(
    trust_domain: &str,
    lifetime: Duration,
    now: SystemTime,
) -> Result<TlsPair, IdentityError> {
    let key = KeyPair::generate().map_err(generate("trust anchor key"))?;
    let params = ca_params(&anchor_name(trust_domain), Some(1), now, lifetime);
    let cert = params.self_signed(&key).map_err(generate("trust anchor"))?;
    Ok(TlsPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// An issuer CA signed by `anchor`, for the control plane in `namespace`.
pub fn issuer(
    anchor: &TlsPair,
    namespace: &str,
    trust_domain: &str,
    lifetime: Duration,
    now: SystemTime,
) -> Result<TlsPair, IdentityError> {
    let anchor_key = KeyPair::from_pem(&anchor.key_pem).map_err(IdentityError::Anchor)?;
    let signer =
        Issuer::from_ca_cert_pem(&anchor.cert_pem, anchor_key).map_err(IdentityError::Anchor)?;
    let key = KeyPair::generate().map_err(generate("issuer key"))?;
    let params = ca_params(
        &issuer_name(namespace, trust_domain),
        Some(0),
        now,
        lifetime,
    );
    let cert = params
        .signed_by(&key, &signer)
        .map_err(generate("issuer"))?;
    Ok(TlsPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// When a certificate starts and stops being valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// Whether `renew_at_percent` of the lifetime has passed at `now` (an
    /// expired certificate is due too).
    pub fn due(&self, renew_at_percent: u8, now: SystemTime) -> bool {
        now >= self.renew_at(renew_at_percent)
    }

    /// When `renew_at_percent` of the lifetime will have passed.
    pub fn renew_at(&self, renew_at_percent: u8) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + lifetime * u32::from(renew_at_percent.min(100)) / 100
    }
}

/// The validity window of the first certificate in `pem`.
pub fn validity_of(pem: &str, what: &'static str) -> Result<Validity, IdentityError> {
    certificates_in(pem, what)?
        .into_iter()
        .next()
        .map(|(_, validity)| validity)
        .ok_or(IdentityError::Unreadable { what })
}

/// Subject and validity of every certificate in `pem`, in order: a trust
/// bundle holds several during an anchor rotation.
pub fn certificates_in(
    pem: &str,
    what: &'static str,
) -> Result<Vec<(String, Validity)>, IdentityError> {
    let unreadable = || IdentityError::Unreadable { what };
    let at = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().try_into().unwrap_or(0))
    };
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|_| unreadable())?;
        let cert = block.parse_x509().map_err(|_| unreadable())?;
        let validity = Validity {
            not_before: at(cert.validity().not_before),
            not_after: at(cert.validity().not_after),
        };
        out.push((cert.subject().to_string(), validity));
    }
    Ok(out)
}

/// The public facts of every certificate in `pem`, in order: what status
/// shows and the expiry checks read.
pub fn summaries(pem: &str, what: &'static str) -> Result<Vec<CertificateSummary>, IdentityError> {
    let unreadable = || IdentityError::Unreadable { what };
    let time = |t: x509_parser::time::ASN1Time| {
        k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
            .map(Time)
            .map_err(|_| unreadable())
    };
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|_| unreadable())?;
        let cert = block.parse_x509().map_err(|_| unreadable())?;
        let subject = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map_or_else(|| cert.subject().to_string(), str::to_owned);
        out.push(CertificateSummary {
            subject,
            sha256: fingerprint_der(&block.contents),
            not_before: time(cert.validity().not_before)?,
            not_after: time(cert.validity().not_after)?,
        });
    }
    if out.is_empty() {
        return Err(unreadable());
    }
    Ok(out)
}

/// SHA-256 fingerprint of the first certificate in `pem`, hex.
pub fn fingerprint(pem: &str, what: &'static str) -> Result<String, IdentityError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|_| IdentityError::Unreadable { what })?;
    Ok(fingerprint_der(&block.contents))
}

fn fingerprint_der(der: &[u8]) -> String {
    crate::render::proxy::sha256_hex(der)
}

/// Checks that `cert_pem` is signed by `anchor_pem`'s key and names it as
/// issuer: what a proxy verifies before trusting what the issuer signs.
pub fn verify_signed_by(cert_pem: &str, anchor_pem: &str) -> Result<(), IdentityError> {
    let parse = |pem: &str, what: &'static str| {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map(|(_, block)| block)
            .map_err(|_| IdentityError::Unreadable { what })
    };
    verify_blocks(
        &parse(cert_pem, "issuer")?,
        &parse(anchor_pem, "trust anchor")?,
    )
}

fn verify_blocks(
    cert_block: &x509_parser::pem::Pem,
    anchor_block: &x509_parser::pem::Pem,
) -> Result<(), IdentityError> {
    let cert = cert_block
        .parse_x509()
        .map_err(|_| IdentityError::Unreadable { what: "issuer" })?;
    let anchor = anchor_block
        .parse_x509()
        .map_err(|_| IdentityError::Unreadable {
            what: "trust anchor",
        })?;
    if cert.issuer() != anchor.subject() {
        return Err(IdentityError::Chain(format!(
            "issued by {}, not by {}",
            cert.issuer(),
            anchor.subject()
        )));
    }
    cert.verify_signature(Some(anchor.public_key()))
        .map_err(|e| IdentityError::Chain(e.to_string()))
}

/// Checks that `cert_pem` is signed by one of the anchors in `bundle_pem`
/// (an adopted bundle may hold several).
pub fn verify_signed_by_bundle(cert_pem: &str, bundle_pem: &str) -> Result<(), IdentityError> {
    let mut last = IdentityError::Unreadable {
        what: "trust bundle",
    };
    for block in x509_parser::pem::Pem::iter_from_buffer(bundle_pem.as_bytes()) {
        let Ok(block) = block else { break };
        let (_, cert) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|_| IdentityError::Unreadable { what: "issuer" })?;
        match verify_blocks(&cert, &block) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether a user's `tls.crt` valid over `validity` is valid now and not
/// yet past `renew_at_percent` of its life (`then` says what would follow).
fn within(
    validity: Validity,
    renew_at_percent: u8,
    now: SystemTime,
    then: &str,
) -> Result<(), String> {
    if now < validity.not_before {
        return Err(format!(
            "tls.crt is not valid before {}",
            stamp(validity.not_before)
        ));
    }
    if validity.due(renew_at_percent, now) {
        return Err(format!(
            "tls.crt is past {renew_at_percent}% of its lifetime (expires {}): {then}",
            stamp(validity.not_after)
        ));
    }
    Ok(())
}

/// The one PEM block of a user's `tls.crt`, or what is wrong with it.
fn one_certificate(pem: &str) -> Result<x509_parser::pem::Pem, String> {
    let blocks = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "tls.crt is not PEM".to_owned())?;
    match <[_; 1]>::try_from(blocks) {
        Ok([block]) => Ok(block),
        Err(blocks) => Err(format!(
            "tls.crt must hold one certificate, it holds {}",
            blocks.len()
        )),
    }
}

/// Checks that a trust anchor Keelson did not make can replace the current
/// one: a single CA certificate that may sign certificates, valid now and not
/// yet due for rotation itself, whose key (P-256 or RSA, as Linkerd accepts)
/// signs an issuer that verifies against it.
pub fn check_anchor(
    anchor: &TlsPair,
    namespace: &str,
    trust_domain: &str,
    renew_at_percent: u8,
    now: SystemTime,
) -> Result<(), IdentityError> {
    let unusable = |why: String| IdentityError::UnusableAnchor(why);
    let block = one_certificate(&anchor.cert_pem).map_err(unusable)?;
    let cert = block
        .parse_x509()
        .map_err(|e| unusable(format!("tls.crt is not an X.509 certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(unusable(
            "tls.crt is not a CA (basicConstraints CA:TRUE is missing)".into(),
        ));
    }
    if let Ok(Some(usage)) = cert.key_usage()
        && !usage.value.key_cert_sign()
    {
        return Err(unusable("tls.crt's key usage lacks keyCertSign".into()));
    }
    let validity = validity_of(&anchor.cert_pem, "declared trust anchor")?;
    within(
        validity,
        renew_at_percent,
        now,
        "it would be rotated away at once",
    )
    .map_err(unusable)?;
    let key = KeyPair::from_pem(&anchor.key_pem)
        .map_err(|e| unusable(format!("tls.key is not a readable private key: {e}")))?;
    let algorithm = key.algorithm();
    let rsa = [
        &rcgen::PKCS_RSA_SHA256,
        &rcgen::PKCS_RSA_SHA384,
        &rcgen::PKCS_RSA_SHA512,
    ];
    if algorithm != &rcgen::PKCS_ECDSA_P256_SHA256 && !rsa.contains(&algorithm) {
        return Err(unusable(format!(
            "tls.key is a {algorithm:?} key; Linkerd takes ECDSA P-256 or RSA anchors"
        )));
    }
    // Signing a throw-away issuer proves the key belongs to the certificate.
    let probe = issuer(
        anchor,
        namespace,
        trust_domain,
        Duration::from_secs(60),
        now,
    )
    .map_err(|e| unusable(format!("tls.key cannot sign with tls.crt: {e}")))?;
    verify_signed_by(&probe.cert_pem, &anchor.cert_pem)
        .map_err(|_| unusable("tls.key is not the key of tls.crt".into()))
}

/// The next issuer's key and a certificate signing request for it, for a
/// trust anchor kept off the cluster to sign.
pub struct IssuerRequest {
    pub key_pem: String,
    pub csr_pem: String,
}

/// A new ECDSA P-256 key (as Linkerd requires of its issuer) and a request
/// naming the issuer `identity.<namespace>.<trust domain>` as a CA.
pub fn issuer_request(namespace: &str, trust_domain: &str) -> Result<IssuerRequest, IdentityError> {
    let key = KeyPair::generate().map_err(generate("issuer key"))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, issuer_name(namespace, trust_domain));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let csr = params
        .serialize_request(&key)
        .map_err(generate("issuer signing request"))?;
    Ok(IssuerRequest {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem().map_err(generate("issuer signing request"))?,
    })
}

/// Checks a certificate signed off the cluster for the request whose key is
/// `key_pem`: one certificate, a CA named as Linkerd's issuer, for that
/// key, signed by an anchor of `bundle_pem`, valid now and not yet due for
/// renewal itself.
pub fn check_signed_issuer(
    cert_pem: &str,
    key_pem: &str,
    bundle_pem: &str,
    namespace: &str,
    trust_domain: &str,
    renew_at_percent: u8,
    now: SystemTime,
) -> Result<(), IdentityError> {
    let unusable = |why: String| IdentityError::UnusableIssuer(why);
    let block = one_certificate(cert_pem).map_err(unusable)?;
    let cert = block
        .parse_x509()
        .map_err(|e| unusable(format!("tls.crt is not an X.509 certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(unusable(
            "tls.crt is not a CA (sign it with basicConstraints CA:TRUE, pathlen:0)".into(),
        ));
    }
    let name = issuer_name(namespace, trust_domain);
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    if cn != Some(name.as_str()) {
        return Err(unusable(format!(
            "tls.crt names {}, not {name}",
            cn.unwrap_or("no common name")
        )));
    }
    let key = KeyPair::from_pem(key_pem)
        .map_err(|e| unusable(format!("the request's key is unreadable: {e}")))?;
    if cert.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice() {
        return Err(unusable(
            "tls.crt is not for this request's key (was another request signed?)".into(),
        ));
    }
    let validity = validity_of(cert_pem, "signed issuer")?;
    within(validity, renew_at_percent, now, "it would be due at once").map_err(unusable)?;
    let signed = x509_parser::pem::Pem::iter_from_buffer(bundle_pem.as_bytes())
        .filter_map(Result::ok)
        .any(|anchor| {
            anchor.parse_x509().is_ok_and(|anchor| {
                cert.issuer() == anchor.subject()
                    && cert.verify_signature(Some(anchor.public_key())).is_ok()
            })
        });
    if !signed {
        return Err(unusable(format!(
            "tls.crt (issued by {}) is not signed by an anchor of the trust bundle",
            cert.issuer()
        )));
    }
    Ok(())
}

fn stamp(t: SystemTime) -> String {
    k8s_openapi::jiff::Timestamp::try_from(t).map_or_else(|_| format!("{t:?}"), |t| t.to_string())
}

/// A self-signed serving certificate for a webhook Service
/// (`<service>.<namespace>.svc`), which is also its CA bundle.
pub fn webhook_serving(
    service: &str,
    namespace: &str,
    lifetime: Duration,
    now: SystemTime,
) -> Result<TlsPair, IdentityError> {
    let name = format!("{service}.{namespace}.svc");
    let key = KeyPair::generate().map_err(generate("webhook key"))?;
    let mut params =
        CertificateParams::new(vec![name.clone()]).map_err(generate("webhook certificate"))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, now, lifetime);
    let cert = params
        .self_signed(&key)
        .map_err(generate("webhook certificate"))?;
    Ok(TlsPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    const DAY: Duration = Duration::from_secs(86400);

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }

    fn cn(cert: &X509Certificate<'_>) -> String {
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn assert_p256(cert: &X509Certificate<'_>) {
        let spki = cert.public_key();
        assert_eq!(
            spki.algorithm.algorithm,
            oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap();
        assert_eq!(curve, oid_registry::OID_EC_P256);
        assert_eq!(
            cert.signature_algorithm.algorithm,
            oid_registry::OID_SIG_ECDSA_WITH_SHA256
        );
    }

    #[test]
    fn issuer_chains_to_its_anchor_with_linkerds_names_and_key_type() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let anchor = trust_anchor("cluster.local", 365 * DAY, now).unwrap();
        let issuer_pair = issuer(&anchor, "linkerd", "cluster.local", 30 * DAY, now).unwrap();

        let (anchor_der, issuer_der) = (der(&anchor.cert_pem), der(&issuer_pair.cert_pem));
        let (_, a) = X509Certificate::from_der(&anchor_der).unwrap();
        let (_, i) = X509Certificate::from_der(&issuer_der).unwrap();

        assert_eq!(cn(&a), "root.linkerd.cluster.local");
        assert_eq!(cn(&i), "identity.linkerd.cluster.local");
        assert!(a.is_ca() && i.is_ca());
        assert_eq!(
            i.basic_constraints()
                .unwrap()
                .unwrap()
                .value
                .path_len_constraint,
            Some(0)
        );
        assert!(i.key_usage().unwrap().unwrap().value.key_cert_sign());
        assert_p256(&a);
        assert_p256(&i);
        assert_eq!(i.issuer(), a.subject());
        i.verify_signature(Some(a.public_key()))
            .expect("issuer is signed by the anchor");
        a.verify_signature(None).expect("anchor is self-signed");

        let not_after = i.validity().not_after.timestamp();
        let expected = (now + 30 * DAY)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert_eq!(not_after, expected);
        assert!(i.validity().not_before.timestamp() < expected - 30 * 86400 + 1);
    }

    #[test]
    fn issuers_from_one_anchor_differ_but_share_the_chain() {
        let now = SystemTime::now();
        let anchor = trust_anchor("example.org", DAY, now).unwrap();
        let one = issuer(&anchor, "mesh", "example.org", DAY, now).unwrap();
        let two = issuer(&anchor, "mesh", "example.org", DAY, now).unwrap();
        assert_ne!(one.key_pem, two.key_pem);
        let anchor_der = der(&anchor.cert_pem);
        let (_, a) = X509Certificate::from_der(&anchor_der).unwrap();
        for pair in [one, two] {
            let d = der(&pair.cert_pem);
            let (_, i) = X509Certificate::from_der(&d).unwrap();
            i.verify_signature(Some(a.public_key())).unwrap();
            assert_eq!(cn(&i), "identity.mesh.example.org");
        }
    }

    #[test]
    fn webhook_certificates_name_their_service_and_serve_tls() {
        let pair = webhook_serving(
            "linkerd-sp-validator",
            "linkerd",
            365 * DAY,
            SystemTime::now(),
        )
        .unwrap();
        let d = der(&pair.cert_pem);
        let (_, c) = X509Certificate::from_der(&d).unwrap();
        assert_eq!(cn(&c), "linkerd-sp-validator.linkerd.svc");
        let san = c.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::DNSName("linkerd-sp-validator.linkerd.svc")]
        );
        assert!(c.extended_key_usage().unwrap().unwrap().value.server_auth);
        c.verify_signature(None).unwrap();
    }

    #[test]
    fn issuers_are_due_for_renewal_at_the_configured_share_of_their_life() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let anchor = trust_anchor("cluster.local", 365 * DAY, now).unwrap();
        let pair = issuer(&anchor, "linkerd", "cluster.local", 10 * DAY, now).unwrap();
        let v = validity_of(&pair.cert_pem, "issuer").unwrap();
        // Backdated a minute for clock skew.
        assert_eq!(v.not_before, now - Duration::from_secs(60));
        assert_eq!(v.not_after, now + 10 * DAY);
        assert!(!v.due(70, now));
        assert!(!v.due(70, now + 6 * DAY));
        assert!(v.due(70, now + 7 * DAY));
        assert!(v.due(70, now + 11 * DAY), "expired is due");
        assert!(matches!(
            validity_of("garbage", "issuer"),
            Err(IdentityError::Unreadable { what: "issuer" })
        ));
    }

    #[test]
    fn only_the_signing_anchor_verifies_an_issuer() {
        let now = SystemTime::now();
        let anchor = trust_anchor("cluster.local", DAY, now).unwrap();
        let other = trust_anchor("cluster.local", DAY, now).unwrap();
        let pair = issuer(&anchor, "linkerd", "cluster.local", DAY, now).unwrap();
        verify_signed_by(&pair.cert_pem, &anchor.cert_pem).unwrap();
        // Same subject name, another key: the signature check catches it.
        assert!(matches!(
            verify_signed_by(&pair.cert_pem, &other.cert_pem),
            Err(IdentityError::Chain(_))
        ));
        let foreign = trust_anchor("example.org", DAY, now).unwrap();
        assert!(matches!(
            verify_signed_by(&pair.cert_pem, &foreign.cert_pem),
            Err(IdentityError::Chain(_))
        ));
    }

    /// What a root kept off the cluster does with a request: sign its
    /// public key (`key_pem`'s) as a CA named `cn`, or as a leaf.
    fn sign_offline(
        anchor: &TlsPair,
        key_pem: &str,
        cn: &str,
        ca: bool,
        now: SystemTime,
    ) -> String {
        let signer = Issuer::from_ca_cert_pem(
            &anchor.cert_pem,
            KeyPair::from_pem(&anchor.key_pem).unwrap(),
        )
        .unwrap();
        let mut params = ca_params(cn, Some(0), now, DAY);
        if !ca {
            params.is_ca = IsCa::NoCa;
        }
        let key = KeyPair::from_pem(key_pem).unwrap();
        params.signed_by(&key, &signer).unwrap().pem()
    }

    #[test]
    fn an_issuer_signed_off_the_cluster_is_checked_against_its_request() {
        let now = SystemTime::now();
        let anchor = trust_anchor("cluster.local", 10 * DAY, now).unwrap();
        let request = issuer_request("linkerd", "cluster.local").unwrap();
        // The request is a CSR for the issuer's name, over its own key.
        let (_, block) = x509_parser::pem::parse_x509_pem(request.csr_pem.as_bytes()).unwrap();
        let (_, csr) = X509CertificationRequest::from_der(&block.contents).unwrap();
        csr.verify_signature().unwrap();
        assert_eq!(
            csr.certification_request_info.subject.to_string(),
            "CN=identity.linkerd.cluster.local"
        );
        let name = "identity.linkerd.cluster.local";
        let check = |cert: &str, key: &str, bundle: &str| {
            check_signed_issuer(cert, key, bundle, "linkerd", "cluster.local", 70, now)
        };
        let good = sign_offline(&anchor, &request.key_pem, name, true, now);
        check(&good, &request.key_pem, &anchor.cert_pem).unwrap();
        // A bundle of two anchors: either may have signed it.
        let other = trust_anchor("cluster.local", 10 * DAY, now).unwrap();
        let bundle = format!("{}{}", other.cert_pem, anchor.cert_pem);
        check(&good, &request.key_pem, &bundle).unwrap();

        let refused = |cert: &str, key: &str, bundle: &str, why: &str| {
            let message = check(cert, key, bundle).unwrap_err().to_string();
            assert!(message.contains(why), "{message}");
        };
        refused(
            &good,
            &request.key_pem,
            &other.cert_pem,
            "not signed by an anchor of the trust bundle",
        );
        let another = issuer_request("linkerd", "cluster.local").unwrap();
        refused(
            &good,
            &another.key_pem,
            &anchor.cert_pem,
            "not for this request's key",
        );
        let leaf = sign_offline(&anchor, &request.key_pem, name, false, now);
        refused(&leaf, &request.key_pem, &anchor.cert_pem, "not a CA");
        let misnamed = sign_offline(
            &anchor,
            &request.key_pem,
            "identity.other.cluster.local",
            true,
            now,
        );
        refused(
            &misnamed,
            &request.key_pem,
            &anchor.cert_pem,
            "not identity.linkerd.cluster.local",
        );
        refused(
            &format!("{good}{good}"),
            &request.key_pem,
            &anchor.cert_pem,
            "one certificate",
        );
        refused("junk", &request.key_pem, &anchor.cert_pem, "it holds 0");
    }

    #[test]
    fn a_declared_anchor_must_be_a_current_signing_ca_with_its_own_key() {
        let now = SystemTime::now();
        let check =
            |pair: &TlsPair, at| check_anchor(pair, "linkerd", "cluster.local", 70, at).map(|_| ());
        let why = |pair: &TlsPair, at| match check(pair, at) {
            Err(IdentityError::UnusableAnchor(why)) => why,
            other => panic!("expected a rejection, got {other:?}"),
        };
        let good = trust_anchor("cluster.local", 100 * DAY, now).unwrap();
        check(&good, now).unwrap();

        let other = trust_anchor("cluster.local", 100 * DAY, now).unwrap();
        let swapped = TlsPair {
            cert_pem: good.cert_pem.clone(),
            key_pem: other.key_pem.clone(),
        };
        assert!(why(&swapped, now).contains("not the key of tls.crt"));

        let two = TlsPair {
            cert_pem: format!("{}{}", good.cert_pem, other.cert_pem),
            key_pem: good.key_pem.clone(),
        };
        assert!(why(&two, now).contains("one certificate, it holds 2"));

        let leaf = webhook_serving("web", "apps", 100 * DAY, now).unwrap();
        assert!(why(&leaf, now).contains("not a CA"));

        assert!(why(&good, now + 71 * DAY).contains("past 70% of its lifetime"));
        assert!(why(&good, now - DAY).contains("not valid before"));

        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = ca_params("root.linkerd.cluster.local", None, now, DAY)
            .self_signed(&p384)
            .unwrap();
        let p384 = TlsPair {
            cert_pem: cert.pem(),
            key_pem: p384.serialize_pem(),
        };
        assert!(why(&p384, now).contains("ECDSA P-256 or RSA"));

        let garbage = TlsPair {
            cert_pem: good.cert_pem.clone(),
            key_pem: "not a key".into(),
        };
        assert!(why(&garbage, now).contains("tls.key is not a readable private key"));
    }

    #[test]
    fn a_bad_anchor_is_an_error_not_a_panic() {
        let bad = TlsPair {
            cert_pem: "not a cert".into(),
            key_pem: "not a key".into(),
        };
        assert!(matches!(
            issuer(&bad, "linkerd", "cluster.local", DAY, SystemTime::now()),
            Err(IdentityError::Anchor(_))
        ));
    }
}
