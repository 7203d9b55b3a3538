//! Signed manifests: whoever can write to the bucket or the backup directory must not be able to
//! hand a restore their own SQL. The manifest holds every entry's size and sha256, so signing
//! the manifest's bytes covers the whole archive.
//!
//! The scheme is OpenSSH's SSHSIG with ed25519 keys, namespace [`NAMESPACE`]: the backing-up
//! host holds the private key (`DB_BACKUP_SIGNING_KEY_FILE`, `ssh-keygen -t ed25519`), and every
//! host that restores holds only public keys (`DB_BACKUP_SIGNING_PUBLIC_KEYS`, comma-separated,
//! or `DB_BACKUP_SIGNING_PUBLIC_KEYS_FILE`, one per line), so restoring another host's archives
//! needs no secret. The signature is the standard armored format: `ssh-keygen -Y verify` checks
//! it without db-backup.
//!
//! Key creation: `ssh-keygen -t ed25519 -N '' -C "db-backup $(hostname)" -f signing.key` on the
//! backing-up host (mount `signing.key` as a secret; hand out `signing.key.pub`). Rotation: create
//! the new pair, add the new public key to every restoring host's list next to the old one, switch
//! the signing key, and drop the old public key only once no archive signed with it is kept
//! (local and remote retention). A lost or leaked key: remove its public key everywhere at once;
//! archives it signed are then refused unless `--allow-unsigned`.

use std::fmt;
use std::path::Path;

use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

pub const NAMESPACE: &str = "db-backup-manifest";
pub const KEY_FILE_VAR: &str = "DB_BACKUP_SIGNING_KEY_FILE";
pub const PUBLIC_KEYS_VAR: &str = "DB_BACKUP_SIGNING_PUBLIC_KEYS";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("{var}: {problem}")]
    Config { var: &'static str, problem: String },
    #[error("{what} is not signed, and signatures are required ({PUBLIC_KEYS_VAR} or {KEY_FILE_VAR} is set); --allow-unsigned overrides")]
    Missing { what: String },
    #[error("{what}: the manifest signature is malformed")]
    Malformed { what: String },
    #[error("{what}: signed by {fingerprint}, which is not a trusted key (add its public key to {PUBLIC_KEYS_VAR})")]
    UnknownKey { what: String, fingerprint: String },
    #[error(
        "{what}: the manifest signature does not match its content (signed by {fingerprint}); the archive was altered"
    )]
    Invalid { what: String, fingerprint: String },
}

/// The private key that signs manifests.
pub struct SigningKey(PrivateKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.fingerprint())
    }
}

impl SigningKey {
    /// An unencrypted OpenSSH ed25519 private key. Messages never quote the file.
    pub fn from_file(path: &Path) -> Result<Self, SignatureError> {
        let config = |problem: String| SignatureError::Config { var: KEY_FILE_VAR, problem };
        let text = std::fs::read(path).map_err(|e| config(format!("cannot read {}: {}", path.display(), e.kind())))?;
        let key = PrivateKey::from_openssh(&text)
            .map_err(|_| config(format!("{} is not an OpenSSH private key (ssh-keygen -t ed25519)", path.display())))?;
        if key.is_encrypted() {
            return Err(config(format!("{} is protected by a passphrase; create it with -N ''", path.display())));
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(config(format!("{} is a {} key; expected ed25519", path.display(), key.algorithm())));
        }
        Ok(SigningKey(key))
    }

    pub fn public_key(&self) -> &PublicKey {
        self.0.public_key()
    }

    pub fn fingerprint(&self) -> String {
        self.0.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The armored SSHSIG (`-----BEGIN SSH SIGNATURE-----`) of `manifest`.
    pub fn sign(&self, manifest: &[u8]) -> Result<String, SignatureError> {
        let problem =
            |e: ssh_key::Error| SignatureError::Config { var: KEY_FILE_VAR, problem: format!("cannot sign: {e}") };
        let sig = self.0.sign(NAMESPACE, HashAlg::Sha512, manifest).map_err(problem)?;
        sig.to_pem(LineEnding::LF).map_err(problem)
    }
}

/// The public keys whose signatures are accepted.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(Vec<PublicKey>);

impl TrustedKeys {
    /// `DB_BACKUP_SIGNING_PUBLIC_KEYS` (comma-separated) or `…_FILE` (one per line, `#`
    /// comments; an `authorized_keys`-style file works).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SignatureError> {
        let var = PUBLIC_KEYS_VAR;
        let file_var = "DB_BACKUP_SIGNING_PUBLIC_KEYS_FILE";
        let config = |problem: String| SignatureError::Config { var, problem };
        let text = match (get(var).filter(|v| !v.trim().is_empty()), get(file_var).filter(|v| !v.trim().is_empty())) {
            (Some(_), Some(_)) => return Err(config(format!("set {var} or {file_var}, not both"))),
            (Some(v), None) => v.replace(',', "\n"),
            (None, Some(path)) => std::fs::read_to_string(path.trim())
                .map_err(|e| config(format!("cannot read {file_var} {}: {}", path.trim(), e.kind())))?,
            (None, None) => return Ok(TrustedKeys::default()),
        };
        Self::parse(&text).map_err(config)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if line.contains("PRIVATE KEY") {
                return Err("this is a private key; give the public key (the .pub file)".into());
            }
            let key = PublicKey::from_openssh(line)
                .map_err(|_| format!("'{}' is not an OpenSSH public key", line.chars().take(24).collect::<String>()))?;
            if key.algorithm() != Algorithm::Ed25519 {
                return Err(format!(
                    "{} is a {} key; expected ssh-ed25519",
                    key.fingerprint(HashAlg::Sha256),
                    key.algorithm()
                ));
            }
            keys.push(key);
        }
        Ok(TrustedKeys(keys))
    }

    /// Also trusts `key` (a host always trusts the key it signs with).
    pub fn with(mut self, key: &PublicKey) -> Self {
        if !self.0.iter().any(|k| k.key_data() == key.key_data()) {
            self.0.push(key.clone());
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.0.iter().map(|k| k.fingerprint(HashAlg::Sha256).to_string()).collect()
    }

    /// Checks `signature` over `manifest` (the archive is named `what` in messages); returns the
    /// signer's fingerprint.
    pub fn verify(&self, manifest: &[u8], signature: Option<&[u8]>, what: &str) -> Result<String, SignatureError> {
        let Some(signature) = signature else { return Err(SignatureError::Missing { what: what.into() }) };
        let sig = SshSig::from_pem(signature).map_err(|_| SignatureError::Malformed { what: what.into() })?;
        let signer = PublicKey::from(sig.public_key().clone());
        let fingerprint = signer.fingerprint(HashAlg::Sha256).to_string();
        let Some(trusted) = self.0.iter().find(|k| k.key_data() == signer.key_data()) else {
            return Err(SignatureError::UnknownKey { what: what.into(), fingerprint });
        };
        trusted
            .verify(NAMESPACE, manifest, &sig)
            .map_err(|_| SignatureError::Invalid { what: what.into(), fingerprint: fingerprint.clone() })?;
        Ok(fingerprint)
    }
}

/// The archive entry that holds the manifest's signature, written just before `manifest.json`
/// (which stays the last entry).
pub const SIGNATURE_NAME: &str = "manifest.json.sig";
/// A signature is a few hundred bytes; anything longer is not one of ours.
pub const MAX_SIGNATURE_LEN: usize = 4096;

/// What the environment says about signatures: the key to sign with (backing-up hosts) and the
/// keys to trust (every host; a host always trusts its own key). Read once at start.
#[derive(Debug, Clone, Default)]
pub struct SignaturePolicy {
    pub key: Option<std::sync::Arc<SigningKey>>,
    pub trusted: TrustedKeys,
}

impl SignaturePolicy {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SignatureError> {
        let key = match get(KEY_FILE_VAR).filter(|v| !v.trim().is_empty()) {
            Some(path) => Some(std::sync::Arc::new(SigningKey::from_file(Path::new(path.trim()))?)),
            None => None,
        };
        let mut trusted = TrustedKeys::from_lookup(&get)?;
        if let Some(k) = &key {
            trusted = trusted.with(k.public_key());
        }
        Ok(SignaturePolicy { key, trusted })
    }

    /// Signatures are required as soon as any key is trusted.
    pub fn required(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// Before anything is touched: `Ok(Some(fingerprint))` for a good signature, `Ok(None)` for
    /// an unsigned archive where that is allowed (no key configured, or `allow_unsigned`, which
    /// the caller must report loudly); a missing, unknown or bad signature is an error otherwise.
    pub fn check(
        &self,
        manifest: &[u8],
        signature: Option<&[u8]>,
        what: &str,
        allow_unsigned: bool,
    ) -> Result<Option<String>, SignatureError> {
        if !self.required() || (allow_unsigned && signature.is_none()) {
            return Ok(None);
        }
        match self.trusted.verify(manifest, signature, what) {
            Ok(fingerprint) => Ok(Some(fingerprint)),
            Err(_) if allow_unsigned => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (tempfile::TempDir, SigningKey) {
        let dir = tempfile::tempdir().unwrap();
        let k = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519).unwrap();
        let path = dir.path().join("signing");
        std::fs::write(&path, k.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
        let loaded = SigningKey::from_file(&path).unwrap();
        (dir, loaded)
    }

    const MANIFEST: &[u8] = br#"{"format":1,"entries":[{"name":"databases/app.sql","size":10,"sha256":"00"}]}"#;

    #[test]
    fn a_signature_verifies_with_the_public_key_only() {
        let (_d, k) = key();
        let sig = k.sign(MANIFEST).unwrap();
        assert!(sig.starts_with("-----BEGIN SSH SIGNATURE-----"), "{sig}");
        let public = k.public_key().to_openssh().unwrap();
        let trusted = TrustedKeys::parse(&format!("# backup hosts\n{public} node-1\n")).unwrap();
        assert_eq!(trusted.verify(MANIFEST, Some(sig.as_bytes()), "a").unwrap(), k.fingerprint());
    }

    #[test]
    fn altered_missing_foreign_and_malformed_signatures_are_refused() {
        let (_d, k) = key();
        let (_d2, other) = key();
        let trusted = TrustedKeys::default().with(k.public_key());
        let sig = k.sign(MANIFEST).unwrap();
        let altered = String::from_utf8(MANIFEST.to_vec()).unwrap().replace("\"size\":10", "\"size\":11");
        let e = trusted.verify(altered.as_bytes(), Some(sig.as_bytes()), "a").unwrap_err();
        assert!(matches!(e, SignatureError::Invalid { .. }), "{e}");
        assert!(matches!(trusted.verify(MANIFEST, None, "a").unwrap_err(), SignatureError::Missing { .. }));
        let foreign = other.sign(MANIFEST).unwrap();
        let e = trusted.verify(MANIFEST, Some(foreign.as_bytes()), "a").unwrap_err();
        assert_eq!(e, SignatureError::UnknownKey { what: "a".into(), fingerprint: other.fingerprint() });
        assert!(matches!(trusted.verify(MANIFEST, Some(b"junk"), "a").unwrap_err(), SignatureError::Malformed { .. }));
    }

    #[test]
    fn rotation_trusts_old_and_new_keys_at_once() {
        let (_d, old) = key();
        let (_d2, new) = key();
        let list = format!("{},{}", old.public_key().to_openssh().unwrap(), new.public_key().to_openssh().unwrap());
        let trusted = TrustedKeys::from_lookup(|k| (k == PUBLIC_KEYS_VAR).then(|| list.clone())).unwrap();
        for k in [&old, &new] {
            trusted.verify(MANIFEST, Some(k.sign(MANIFEST).unwrap().as_bytes()), "a").unwrap();
        }
    }

    #[test]
    fn bad_key_files_are_named_without_quoting_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "-----BEGIN OPENSSH PRIVATE KEY-----\nSECRETSTUFF\n").unwrap();
        let e = SigningKey::from_file(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(KEY_FILE_VAR) && e.contains("not an OpenSSH private key") && !e.contains("SECRETSTUFF"),
            "{e}"
        );
        assert!(TrustedKeys::parse("ssh-rsa AAAA").unwrap_err().contains("not an OpenSSH public key"));
        assert!(TrustedKeys::parse("-----BEGIN OPENSSH PRIVATE KEY-----").unwrap_err().contains("private key"));
    }

    #[test]
    fn the_policy_requires_signatures_once_a_key_is_trusted() {
        let (dir, k) = key();
        let path = dir.path().join("signing");
        let p = path.to_str().unwrap().to_string();
        let signer = SignaturePolicy::from_lookup(|v| (v == KEY_FILE_VAR).then(|| p.clone())).unwrap();
        assert!(signer.required(), "a signing host trusts its own key");
        let sig = signer.key.as_ref().unwrap().sign(MANIFEST).unwrap();
        assert_eq!(signer.check(MANIFEST, Some(sig.as_bytes()), "a", false).unwrap(), Some(k.fingerprint()));
        assert!(matches!(signer.check(MANIFEST, None, "a", false), Err(SignatureError::Missing { .. })));
        assert_eq!(signer.check(MANIFEST, None, "a", true).unwrap(), None);
        let altered = signer.check(b"{}", Some(sig.as_bytes()), "a", false);
        assert!(matches!(altered, Err(SignatureError::Invalid { .. })));
        let open = SignaturePolicy::from_lookup(|_| None).unwrap();
        assert!(!open.required());
        assert_eq!(open.check(MANIFEST, None, "a", false).unwrap(), None);
    }
}
