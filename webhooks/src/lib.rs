//! Keelson's admission webhooks.
//!
//! This crate owns how the webhooks are served: a certificate authority the
//! operator keeps for them, serving certificates it issues and swaps without a
//! restart ([`tls`]), and the HTTPS server with its probes, limits and drain
//! ([`server`]), and the `AdmissionReview` envelope ([`admission`]). What
//! the webhooks decide (proxy injection, validation) lives with the operator,
//! which knows Linkerd's releases, and plugs in as a [`server::Handler`].

#![forbid(unsafe_code)]

pub mod admission;
pub mod server;
pub mod tls;

pub use server::{Handler, Limits, Routes, serve};
pub use tls::{CertResolver, ServingCert, TlsError, WebhookCa, certified_key, server_config};
