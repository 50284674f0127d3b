//! The webhook server's certificates: a CA the operator owns, the serving
//! certificates it issues, and a rustls resolver that swaps them while serving.
//!
//! The API server trusts the webhook through the CA's PEM in each webhook
//! configuration's `caBundle`. Serving leaves are short-lived and reissued by
//! the same CA, so rotating a leaf never touches the webhook configurations and
//! never restarts the server: the new certificate goes into [`CertResolver`] and
//! the next handshake presents it.
//!
//! Certificate generation is pure: callers pass the time, as in the operator's
//! `identity` module, so validity windows can be tested and reasoned about.
//! Key material never appears in `Debug` output or logs.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// ALPN protocols the server offers, preferred first. The API server's Go
/// client speaks HTTP/2 when offered; HTTP/1.1 serves probes and tools.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate could not be made, loaded or served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("a serving certificate needs at least one DNS name or IP address")]
    NoNames,
    #[error(
        "a serving certificate valid until {not_after:?} would outlive its CA, valid until {ca_not_after:?}"
    )]
    OutlivesCa {
        not_after: SystemTime,
        ca_not_after: SystemTime,
    },
    #[error("reading the {what} PEM: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the certificate chain PEM holds no certificate")]
    NoCertificate,
    #[error("loading the serving key for its certificate: {0}")]
    Key(#[source] rustls::Error),
    #[error("building the TLS server configuration: {0}")]
    Config(#[source] rustls::Error),
    #[error("loading the {what}: {source}")]
    Load {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("the CA certificate does not belong to the CA key")]
    CaKeyMismatch,
}

fn load(what: &'static str) -> impl FnOnce(rcgen::Error) -> TlsError {
    move |source| TlsError::Load { what, source }
}

fn generate(what: &'static str) -> impl FnOnce(rcgen::Error) -> TlsError {
    move |source| TlsError::Generate { what, source }
}

/// X.509 validity has one-second resolution; rounding down here makes the
/// times we report exactly the ones written into the certificate.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let nanos = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    t - Duration::from_nanos(nanos.into())
}

/// Validity starts a minute early so a peer whose clock is slightly behind
/// ours does not reject a certificate issued a moment ago.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The certificate authority behind the webhook server's certificates.
pub struct WebhookCa {
    cert_pem: String,
    key_pem: String,
    not_after: SystemTime,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for WebhookCa {
    // Hand-written so the CA key can never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookCa")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl WebhookCa {
    /// A new self-signed ECDSA P-256 CA named `common_name`, valid from
    /// `now` (less a minute for clock skew) for `lifetime`. It may sign only
    /// end-entity certificates (path length 0).
    pub fn generate(
        common_name: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Self, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate("CA key"))?;
        let not_after = whole_seconds(now + lifetime);
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = not_after.into();
        let cert = params
            .self_signed(&key)
            .map_err(generate("CA certificate"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after,
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA kept from an earlier [`WebhookCa::generate`] (its [`cert_pem`]
    /// and [`key_pem`]), so every replica and every restart issues under the
    /// one CA the webhook configurations trust.
    ///
    /// [`cert_pem`]: WebhookCa::cert_pem
    /// [`key_pem`]: WebhookCa::key_pem
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(load("CA key"))?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|source| {
            TlsError::Pem {
                what: "CA certificate",
                source,
            }
        })?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| load("CA certificate")(rcgen::Error::CouldNotParseCertificate))?;
        // A certificate that does not belong to the key would make every
        // leaf fail verification, far from the cause; refuse it here.
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(TlsError::CaKeyMismatch);
        }
        let not_after = UNIX_EPOCH
            + Duration::from_secs(
                cert.validity()
                    .not_after
                    .timestamp()
                    .try_into()
                    .unwrap_or(0),
            );
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(load("CA certificate"))?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            not_after,
            issuer,
        })
    }

    /// The CA certificate as PEM, for a webhook configuration's `caBundle`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key as PEM, to keep the CA in a Secret. Never log it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// When the CA expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// A serving certificate for `names` (each a DNS name such as
    /// `keelson-webhook.keelson.svc`, or an IP address, which becomes an IP
    /// SAN), valid from `now` for `lifetime`, with a fresh P-256 key.
    ///
    /// The serial number is derived from the fresh key's hash (rcgen's
    /// default), so every issued certificate has its own.
    pub fn issue(
        &self,
        names: &[&str],
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<ServingCert, TlsError> {
        let Some(first_name) = names.first() else {
            return Err(TlsError::NoNames);
        };
        let not_after = whole_seconds(now + lifetime);
        // A leaf that outlives its CA would break silently on the CA's
        // expiry; refusing here makes rotation logic face it.
        if not_after > self.not_after {
            return Err(TlsError::OutlivesCa {
                not_after,
                ca_not_after: self.not_after,
            });
        }
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate("serving key"))?;
        let sans: Vec<String> = names.iter().map(|&name| name.to_owned()).collect();
        let mut params = CertificateParams::new(sans).map_err(generate("serving certificate"))?;
        // Clients check the SANs; the common name only makes the
        // certificate recognisable to people reading it.
        params
            .distinguished_name
            .push(DnType::CommonName, *first_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = not_after.into();
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate("serving certificate"))?;
        Ok(ServingCert {
            // The chain carries the leaf only: clients already hold the CA
            // from the caBundle, and sending it again only costs bytes.
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after,
        })
    }
}

/// A serving certificate and its private key, as PEM.
#[derive(Clone)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// When the certificate expires; rotation should start well before.
    pub not_after: SystemTime,
}

impl fmt::Debug for ServingCert {
    // Hand-written so the key can never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCert")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl ServingCert {
    /// The certificate and key ready for rustls; see [`certified_key`].
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        certified_key(&self.cert_pem, &self.key_pem)
    }
}

/// The crypto provider every TLS object here is built with. Passed explicitly
/// rather than installed process-wide, so nothing depends on whichever
/// provider another crate in the process installed first (or on none being
/// installed at all).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads a PEM certificate chain (leaf first) and its PEM private key, and
/// checks that the key belongs to the leaf, so a mismatched pair is refused
/// here rather than failing every handshake later.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what: "certificate chain",
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|source| TlsError::Pem {
            what: "private key",
            source,
        })?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(TlsError::Key)?;
    Ok(Arc::new(certified))
}

/// Hands every handshake the current serving certificate, which
/// [`CertResolver::replace`] swaps while the server runs.
///
/// A `std` `RwLock` around an `Arc` is the atomic swap: readers hold the lock
/// only to clone the `Arc`, writers only to replace it, and handshakes are far
/// too rare for contention to matter, so a crate such as arc-swap would add a
/// dependency without a measurable gain.
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertResolver {
    // Hand-written: the certified key is not something to print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").finish_non_exhaustive()
    }
}

impl CertResolver {
    /// A resolver serving `initial` until it is replaced. Taking the first
    /// certificate here means the server can never start without one.
    pub fn new(initial: Arc<CertifiedKey>) -> Self {
        Self {
            current: RwLock::new(initial),
        }
    }

    /// Serves `next` from the next handshake on; established connections
    /// keep the certificate they were opened with.
    pub fn replace(&self, next: Arc<CertifiedKey>) {
        // The lock guards a single Arc assignment, which cannot be left half
        // done, so a poisoned lock still holds a valid certificate.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One certificate covers every name the webhook is reached by, so
        // the SNI the client sent does not change the answer.
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// A TLS server configuration serving `resolver`'s certificate with the ring
/// provider, TLS 1.2 and 1.3, no client authentication, and ALPN for HTTP/2
/// and HTTP/1.1.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::*;

    const DAY: Duration = Duration::from_secs(86_400);

    /// A fixed time with a fractional second, to exercise the rounding.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_800_000_000_250)
    }

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
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

    fn unix_seconds(t: SystemTime) -> i64 {
        i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
    }

    #[test]
    fn ca_is_a_self_signed_p256_certificate_signing_ca() {
        let ca = WebhookCa::generate("keelson-webhook-ca", 365 * DAY, now()).unwrap();
        let ca_der = der(ca.cert_pem());
        let (_, cert) = X509Certificate::from_der(&ca_der).unwrap();

        assert_eq!(cert.version(), X509Version::V3);
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "keelson-webhook-ca");
        let constraints = cert.basic_constraints().unwrap().unwrap().value;
        assert!(constraints.ca);
        assert_eq!(constraints.path_len_constraint, Some(0));
        let usage = cert.key_usage().unwrap().unwrap().value;
        assert!(usage.key_cert_sign());
        assert!(!usage.digital_signature());
        assert_p256(&cert);
        cert.verify_signature(None).unwrap();
        assert_eq!(
            cert.validity().not_before.timestamp(),
            unix_seconds(now()) - 60
        );
        assert_eq!(
            cert.validity().not_after.timestamp(),
            unix_seconds(now() + 365 * DAY)
        );
    }

    #[test]
    fn serving_certificate_is_a_p256_server_auth_leaf_signed_by_the_ca() {
        let ca = WebhookCa::generate("keelson-webhook-ca", 365 * DAY, now()).unwrap();
        let leaf = ca
            .issue(
                &["keelson-webhook.keelson.svc", "127.0.0.1", "::1"],
                30 * DAY,
                now(),
            )
            .unwrap();
        let (ca_der, leaf_der) = (der(ca.cert_pem()), der(&leaf.cert_pem));
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf_der).unwrap();

        assert_eq!(cert.version(), X509Version::V3);
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth);
        assert!(!eku.client_auth);
        assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
        let sans = &cert.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(
            sans.general_names,
            [
                GeneralName::DNSName("keelson-webhook.keelson.svc"),
                GeneralName::IPAddress(&[127, 0, 0, 1]),
                GeneralName::IPAddress(&Ipv6Addr::LOCALHOST.octets()),
            ]
        );
        assert_p256(&cert);
        assert_eq!(cert.issuer(), ca_cert.subject());
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        // The reported expiry is exactly the certificate's.
        assert_eq!(
            cert.validity().not_after.timestamp(),
            unix_seconds(leaf.not_after)
        );
        assert_eq!(leaf.not_after, whole_seconds(now() + 30 * DAY));
    }

    #[test]
    fn reissued_certificates_get_their_own_key_and_serial() {
        let ca = WebhookCa::generate("keelson-webhook-ca", 365 * DAY, now()).unwrap();
        let first = ca.issue(&["webhook.keelson.svc"], DAY, now()).unwrap();
        let second = ca.issue(&["webhook.keelson.svc"], 2 * DAY, now()).unwrap();
        let (first_der, second_der) = (der(&first.cert_pem), der(&second.cert_pem));
        let (_, a) = X509Certificate::from_der(&first_der).unwrap();
        let (_, b) = X509Certificate::from_der(&second_der).unwrap();
        assert_ne!(a.raw_serial(), b.raw_serial());
        assert_ne!(a.public_key().raw, b.public_key().raw);
        assert_ne!(first.key_pem, second.key_pem);
    }

    #[test]
    fn a_kept_ca_issues_leaves_that_chain_to_the_original() {
        let ca = WebhookCa::generate("keelson-webhook-ca", 365 * DAY, now()).unwrap();
        let kept = WebhookCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(kept.not_after(), ca.not_after());
        assert_eq!(kept.cert_pem(), ca.cert_pem());
        let leaf = kept.issue(&["webhook.keelson.svc"], DAY, now()).unwrap();
        let (ca_der, leaf_der) = (der(ca.cert_pem()), der(&leaf.cert_pem));
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf_der).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        // The loaded CA still refuses leaves that would outlive it.
        let err = kept
            .issue(&["webhook.keelson.svc"], 366 * DAY, now())
            .unwrap_err();
        assert!(matches!(err, TlsError::OutlivesCa { .. }), "{err}");
    }

    #[test]
    fn a_kept_ca_must_match_its_key() {
        let a = WebhookCa::generate("keelson-webhook-ca", 365 * DAY, now()).unwrap();
        let b = WebhookCa::generate("keelson-webhook-ca", 365 * DAY, now()).unwrap();
        let err = WebhookCa::from_pem(a.cert_pem(), b.key_pem()).unwrap_err();
        assert!(matches!(err, TlsError::CaKeyMismatch), "{err}");
        let err = WebhookCa::from_pem("not a certificate", a.key_pem()).unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err}");
        let err = WebhookCa::from_pem(a.cert_pem(), "not a key").unwrap_err();
        assert!(matches!(err, TlsError::Load { .. }), "{err}");
    }

    #[test]
    fn a_serving_certificate_may_not_outlive_its_ca() {
        let ca = WebhookCa::generate("keelson-webhook-ca", 30 * DAY, now()).unwrap();
        let err = ca
            .issue(&["webhook.keelson.svc"], 31 * DAY, now())
            .unwrap_err();
        assert!(matches!(err, TlsError::OutlivesCa { .. }), "{err}");
        ca.issue(&["webhook.keelson.svc"], 30 * DAY, now()).unwrap();
    }

    #[test]
    fn a_serving_certificate_needs_a_name() {
        let ca = WebhookCa::generate("keelson-webhook-ca", 30 * DAY, now()).unwrap();
        let err = ca.issue(&[], DAY, now()).unwrap_err();
        assert!(matches!(err, TlsError::NoNames), "{err}");
    }

    #[test]
    fn certified_key_refuses_a_key_of_another_certificate() {
        let ca = WebhookCa::generate("keelson-webhook-ca", 365 * DAY, now()).unwrap();
        let a = ca.issue(&["webhook.keelson.svc"], DAY, now()).unwrap();
        let b = ca.issue(&["webhook.keelson.svc"], DAY, now()).unwrap();
        a.certified_key().unwrap();
        let err = certified_key(&a.cert_pem, &b.key_pem).unwrap_err();
        assert!(matches!(err, TlsError::Key(_)), "{err}");
        let err = certified_key("", &a.key_pem).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate), "{err}");
    }

    #[test]
    fn debug_output_never_shows_keys() {
        let ca = WebhookCa::generate("keelson-webhook-ca", 365 * DAY, now()).unwrap();
        let leaf = ca.issue(&["webhook.keelson.svc"], DAY, now()).unwrap();
        let resolver = CertResolver::new(leaf.certified_key().unwrap());
        for shown in [
            format!("{ca:?}"),
            format!("{leaf:?}"),
            format!("{resolver:?}"),
        ] {
            assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        }
    }

    #[test]
    fn server_config_offers_h2_then_http1() {
        let ca = WebhookCa::generate("keelson-webhook-ca", 365 * DAY, now()).unwrap();
        let leaf = ca.issue(&["webhook.keelson.svc"], DAY, now()).unwrap();
        let resolver = Arc::new(CertResolver::new(leaf.certified_key().unwrap()));
        let config = server_config(resolver).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
