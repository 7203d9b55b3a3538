//! The TLS setup that the S3 client (object_store) and notifications (reqwest) share: one rustls
//! crypto provider for the process, and Mozilla's roots bundled at build time, because the
//! runtime image has no CA files.

use std::sync::Once;

/// rustls needs a process-wide crypto provider when reqwest is built without one; ring builds
/// with a C compiler alone (aws-lc-rs would need cmake).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Mozilla's root certificates (DER), compiled in.
pub fn bundled_roots() -> impl Iterator<Item = &'static [u8]> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().map(|der| der.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_a_provider_once_and_bundles_roots() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        // Mozilla's program holds well over a hundred roots; a handful would mean a broken bundle.
        assert!(bundled_roots().count() > 100);
    }
}
