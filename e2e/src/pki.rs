//! Certificates for the test cluster: a CA, the API server's serving
//! certificate, an admin client certificate and the service-account signing key.
//!
//! rustls only accepts X.509 v3 certificates with the usual extensions, which
//! rcgen writes (a bare `openssl x509 -req` certificate is v1 and is refused).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM-encoded material for one test cluster.
pub struct ClusterPki {
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// ECDSA P-256 key (PKCS#8) that signs service-account tokens.
    pub service_account_key_pem: String,
    /// Its public half, which the API server verifies tokens with.
    pub service_account_pub_pem: String,
}

/// Names the API server answers to: loopback, and the in-cluster Service names
/// so that in-cluster style clients verify too.
const SERVING_NAMES: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.96.0.1",
];

impl ClusterPki {
    pub fn generate() -> Result<Self, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "keelson-e2e-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert_pem = ca.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca, ca_key);

        let leaf = |cn: &str,
                    org: Option<&str>,
                    names: &[&str],
                    usage: ExtendedKeyUsagePurpose|
         -> Result<(String, String), rcgen::Error> {
            let key = KeyPair::generate()?;
            let mut params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
            params.distinguished_name.push(DnType::CommonName, cn);
            if let Some(org) = org {
                params
                    .distinguished_name
                    .push(DnType::OrganizationName, org);
            }
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![usage];
            Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
        };

        let (serving_cert_pem, serving_key_pem) = leaf(
            "kube-apiserver",
            None,
            SERVING_NAMES,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        // O=system:masters is bound to cluster-admin by the API server itself.
        let (admin_cert_pem, admin_key_pem) = leaf(
            "keelson-e2e-admin",
            Some("system:masters"),
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;

        let sa_key = KeyPair::generate()?;
        Ok(Self {
            ca_cert_pem,
            serving_cert_pem,
            serving_key_pem,
            admin_cert_pem,
            admin_key_pem,
            service_account_key_pem: sa_key.serialize_pem(),
            service_account_pub_pem: sa_key.public_key_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn parse(pem: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        pem.contents
    }

    #[test]
    fn certificates_are_v3_chain_to_the_ca_and_carry_their_usages() {
        let pki = ClusterPki::generate().unwrap();
        let ca_der = parse(&pki.ca_cert_pem);
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        assert_eq!(ca.version(), X509Version::V3);
        assert!(ca.is_ca());

        let serving_der = parse(&pki.serving_cert_pem);
        let (_, serving) = X509Certificate::from_der(&serving_der).unwrap();
        assert_eq!(serving.version(), X509Version::V3);
        assert_eq!(serving.issuer(), ca.subject());
        serving
            .verify_signature(Some(ca.public_key()))
            .expect("serving certificate is signed by the CA");
        let sans = serving.subject_alternative_name().unwrap().unwrap();
        let names = &sans.value.general_names;
        assert!(
            names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])),
            "{names:?}"
        );
        assert!(
            names.contains(&GeneralName::DNSName("localhost")),
            "{names:?}"
        );
        assert!(
            serving
                .extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .server_auth
        );

        let admin_der = parse(&pki.admin_cert_pem);
        let (_, admin) = X509Certificate::from_der(&admin_der).unwrap();
        admin.verify_signature(Some(ca.public_key())).unwrap();
        assert!(
            admin
                .extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .client_auth
        );
        let org: Vec<_> = admin
            .subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(org, ["system:masters"]);
    }
}
