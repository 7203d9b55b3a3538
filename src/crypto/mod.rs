//! Archive confidentiality and authenticity, independent of where archives are stored:
//! [`encryption`] (age, public keys on the backing-up host) and [`signing`] (ed25519 signatures
//! over the manifest, public keys on the restoring host).

pub mod encryption;
pub mod signing;
