//! Checking a bundle before it is published, with the bundle library.
//!
//! [`verify`] runs `satchel_format::open::verify_reader` with the server's
//! trusted signer keys and the route's target: container shape, manifest,
//! signature by a trusted key, target equal to the URL's, not expired,
//! payload size and sha256, clean end of the container. The serial rule
//! (strictly above the highest ever published) is checked by the store,
//! atomically with the write.
//!
//! It never decrypts: the server holds no age identity.

use std::path::Path;
use std::sync::Arc;

use http::StatusCode;
use satchel_format::open::verify_reader;
use satchel_format::verify::Checks;
use satchel_format::{SiteName, Target, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::store::BundleMeta;

/// The admins' signing keys the server accepts bundles from.
#[derive(Clone, Debug, Default)]
pub struct Signers(Arc<Vec<VerifyingKey>>);

impl Signers {
    /// Reads PEM SPKI public keys.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<Signers, satchel_format::KeyError> {
        let keys = paths
            .iter()
            .map(|p| VerifyingKey::read_pem_file(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Signers(Arc::new(keys)))
    }

    /// From keys already loaded.
    pub fn from_keys(keys: Vec<VerifyingKey>) -> Signers {
        Signers(Arc::new(keys))
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No keys: nothing can be published.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the store records about a verified bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Manifest serial.
    pub serial: u64,
    /// Site named by a host bundle's manifest.
    pub site: Option<SiteName>,
    /// sha256 of the whole bundle file (hex).
    pub sha256: String,
    /// Signer key id.
    pub signer: String,
    /// Manifest expiry (RFC 3339).
    pub expires: String,
    /// The payload's sha256 the signed manifest names (hex).
    pub payload_sha256: String,
}

impl Checked {
    /// The metadata the store keeps for this bundle, published now by
    /// `published_by` (a scope label); `size` is the bundle file's.
    pub fn into_meta(self, target: &Target, size: u64, published_by: String) -> BundleMeta {
        BundleMeta {
            target: target.to_string(),
            serial: self.serial,
            site: self.site,
            sha256: self.sha256,
            size,
            signer: self.signer,
            expires: self.expires,
            published: crate::now_rfc3339(),
            published_by,
            payload_sha256: self.payload_sha256,
        }
    }
}

/// Verifies `bytes` as a bundle for `target` signed by one of `signers`.
pub fn verify(bytes: &[u8], target: &Target, signers: &Signers) -> Result<Checked, ApiError> {
    if signers.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "no_trusted_signers",
            "the server has no trusted signer keys configured (trusted_signers)",
        ));
    }
    let mut checks = Checks::new(signers.0.as_ref().clone());
    checks.target = Some(target.clone());
    let verified = verify_reader(bytes, &checks).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bundle_refused",
            format!("the bundle did not verify: {e}"),
        )
    })?;
    let m = verified.manifest();
    Ok(Checked {
        serial: m.serial,
        site: m.site.clone(),
        sha256: hex::encode(Sha256::digest(bytes)),
        signer: verified.signer().to_string(),
        expires: crate::rfc3339(m.expires),
        payload_sha256: hex::encode(m.payload.sha256),
    })
}
