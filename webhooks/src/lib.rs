//! Keelson's admission webhooks.
//!
//! This crate owns how the webhooks are served: a certificate authority the
//! operator keeps for them, serving certificates it issues and swaps without a
//! restart ([`tls`]), and the HTTPS server with its probes, limits and drain
//! ([`server`]). The proxy-injection and validation handlers are to come; they
//! plug into the server as [`server::Handler`]s.

#![forbid(unsafe_code)]

pub mod server;
pub mod tls;

pub use server::{Handler, Limits, Routes, serve};
pub use tls::{CertResolver, ServingCert, TlsError, WebhookCa, certified_key, server_config};
