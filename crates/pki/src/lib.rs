//! Certificate naming, peer classification and certificate issuance for ServiceRadar's mTLS
//! identities (CONTRACT §2 and §3).
//!
//! This crate owns three pure jobs: parsing and validating the names that certificates carry
//! (the `<component_id>.<partition>.<tenant_slug>.serviceradar` common name, SPIFFE URIs and
//! tenant slugs) in [`names`]; reading a peer's leaf certificate and classifying it as a platform
//! or tenant identity in [`peer`]; and minting CA and component certificates from PEM inputs in
//! [`ca`]. It must not do I/O of any kind: no files, no network, no environment, and no system
//! clock inside its functions — every time is an explicit argument so callers and tests control
//! it. Chain verification during the TLS handshake belongs to the TLS stack, and looking up
//! tenants or enrolled components belongs to the services; this crate only supplies the pure
//! pieces they combine.

pub mod ca;
pub mod names;
pub mod peer;
mod validity;

pub use ca::{CaError, CertAuthority, IssuedCert, LeafSpec, LeafUsage, chain_pem, needs_reissue};
pub use names::{
    ComponentName, ComponentType, DEFAULT_PLATFORM_SLUG, DEFAULT_TRUST_DOMAIN, NameError, NamePart,
    SlugProblem, SpiffeId, validate_slug,
};
pub use peer::{
    CaCertificate, ClassifyContext, IdentityKind, PeerCertificate, PeerError, PeerIdentity,
    check_issuing_tenant, classify, issued_by,
};
