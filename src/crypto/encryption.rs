//! Archives encrypted with age (the `age` crate; interoperable with the `age` command-line tool).
//!
//! The backing-up host holds only public keys (`DB_BACKUP_AGE_RECIPIENTS`: `age1…` or
//! `ssh-ed25519 …`, comma-separated, or `DB_BACKUP_AGE_RECIPIENTS_FILE`, one per line); only a
//! restore needs the identity (`DB_BACKUP_AGE_IDENTITY_FILE`: an age identity file as written by
//! `age-keygen`, or an unencrypted OpenSSH private key). Both directions stream.
//! Encryption is not authentication: anyone with the public key can write a valid age file,
//! which is why manifests are signed too ([`super::signing`]).

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub const RECIPIENTS_VAR: &str = "DB_BACKUP_AGE_RECIPIENTS";
pub const IDENTITY_FILE_VAR: &str = "DB_BACKUP_AGE_IDENTITY_FILE";
/// Every age file starts with this line.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("{var}: {problem}")]
    Config { var: &'static str, problem: String },
    #[error("{IDENTITY_FILE_VAR}: {path}: {problem}")]
    Identity { path: PathBuf, problem: String },
    #[error("{what} is encrypted, and {IDENTITY_FILE_VAR} is not set: give the age identity that matches one of DB_BACKUP_AGE_RECIPIENTS")]
    NoIdentity { what: String },
    #[error("{what}: none of the identities in {identity} can decrypt it (it was encrypted for other recipients)")]
    WrongIdentity { what: String, identity: PathBuf },
    #[error("{what}: {problem}")]
    Decrypt { what: String, problem: String },
}

/// The public keys every archive is encrypted to.
pub struct Recipients {
    keys: Vec<Box<dyn age::Recipient + Send + Sync>>,
    shown: Vec<String>,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Recipients").field(&self.shown).finish()
    }
}

impl Recipients {
    /// `DB_BACKUP_AGE_RECIPIENTS` (comma-separated) or `DB_BACKUP_AGE_RECIPIENTS_FILE` (one per
    /// line, `#` comments); `Ok(None)` when neither is set.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, CryptoError> {
        let var = RECIPIENTS_VAR;
        let file_var = "DB_BACKUP_AGE_RECIPIENTS_FILE";
        let config = |problem: String| CryptoError::Config { var, problem };
        let text = match (get(var).filter(|v| !v.trim().is_empty()), get(file_var).filter(|v| !v.trim().is_empty())) {
            (Some(_), Some(_)) => return Err(config(format!("set {var} or {file_var}, not both"))),
            (Some(v), None) => v.replace(',', "\n"),
            (None, Some(path)) => std::fs::read_to_string(path.trim()).map_err(|e| CryptoError::Config {
                var: "DB_BACKUP_AGE_RECIPIENTS_FILE",
                problem: format!("cannot read {}: {}", path.trim(), e.kind()),
            })?,
            (None, None) => return Ok(None),
        };
        Self::parse(&text).map(Some).map_err(config)
    }

    /// One recipient per line; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys: Vec<Box<dyn age::Recipient + Send + Sync>> = Vec::new();
        let mut shown = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if line.starts_with("AGE-SECRET-KEY-") || line.contains("PRIVATE KEY") {
                return Err("this is a private key; give the public key (age1… from `age-keygen -y`)".into());
            }
            keys.push(parse_recipient(line)?);
            shown.push(line.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
        }
        if keys.is_empty() {
            return Err("no recipient given; expected age1… or ssh-ed25519 … public keys".into());
        }
        Ok(Recipients { keys, shown })
    }

    /// The public keys, as given (without comments).
    pub fn shown(&self) -> &[String] {
        &self.shown
    }

    /// Wraps `out`: what is written is encrypted. Call `finish()` on the result, or the file is
    /// truncated (and fails to decrypt, which is the point).
    pub fn encrypt<W: Write>(&self, out: W) -> io::Result<age::stream::StreamWriter<W>> {
        let encryptor = age::Encryptor::with_recipients(self.keys.iter().map(|k| k.as_ref() as &dyn age::Recipient))
            .map_err(|e| io::Error::other(format!("cannot encrypt to {RECIPIENTS_VAR}: {e}")))?;
        encryptor.wrap_output(out)
    }
}

fn parse_recipient(line: &str) -> Result<Box<dyn age::Recipient + Send + Sync>, String> {
    if line.starts_with("age1") {
        return age::x25519::Recipient::from_str(line)
            .map(|r| Box::new(r) as _)
            .map_err(|_| format!("'{}' is not a valid age public key", short(line)));
    }
    if line.starts_with("ssh-ed25519 ") {
        return age::ssh::Recipient::from_str(line)
            .map(|r| Box::new(r) as _)
            .map_err(|_| format!("'{}' is not a valid ssh-ed25519 public key", short(line)));
    }
    Err(format!("'{}' is not a recipient; expected an age1… or ssh-ed25519 … public key", short(line)))
}

fn short(s: &str) -> String {
    let s: String = s.chars().take(24).collect();
    s.escape_debug().to_string()
}

/// The private keys that decrypt archives, read from `DB_BACKUP_AGE_IDENTITY_FILE`.
pub struct Identities {
    path: PathBuf,
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Identities {
    /// An age identity file (`AGE-SECRET-KEY-1…` lines) or an unencrypted OpenSSH private key.
    /// Error messages never quote the file.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let problem = |p: String| CryptoError::Identity { path: path.to_path_buf(), problem: p };
        let text = std::fs::read(path).map_err(|e| problem(format!("cannot read it: {}", e.kind())))?;
        let keys = if text.starts_with(b"-----BEGIN") {
            ssh_identity(&text, path).map_err(problem)?
        } else {
            let file = age::IdentityFile::from_buffer(BufReader::new(&text[..])).map_err(|_| {
                problem("not an age identity file (AGE-SECRET-KEY-1… lines) nor an OpenSSH private key".into())
            })?;
            file.into_identities().map_err(|_| problem("holds an identity this db-backup cannot use".into()))?
        };
        if keys.is_empty() {
            return Err(problem("holds no identity".into()));
        }
        Ok(Identities { path: path.to_path_buf(), keys })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wraps `input` (an age file named `what` in messages): reads give the plaintext. Fails at
    /// once when no identity matches; a damaged payload fails the reads.
    pub fn decrypt<R: Read>(&self, input: R, what: &str) -> Result<age::stream::StreamReader<R>, CryptoError> {
        let decryptor = age::Decryptor::new(input).map_err(|e| decrypt_error(what, &self.path, e))?;
        decryptor
            .decrypt(self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity))
            .map_err(|e| decrypt_error(what, &self.path, e))
    }
}

fn ssh_identity(text: &[u8], path: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, String> {
    let name = Some(path.display().to_string());
    match age::ssh::Identity::from_buffer(BufReader::new(text), name) {
        Ok(age::ssh::Identity::Unencrypted(key)) => Ok(vec![Box::new(age::ssh::Identity::Unencrypted(key))]),
        Ok(age::ssh::Identity::Encrypted(_)) => {
            Err("the OpenSSH key is protected by a passphrase, which an unattended restore cannot type; use an age identity (age-keygen)".into())
        }
        _ => Err("not an OpenSSH private key age can use (ssh-ed25519 or ssh-rsa)".into()),
    }
}

fn decrypt_error(what: &str, identity: &Path, e: age::DecryptError) -> CryptoError {
    match e {
        age::DecryptError::NoMatchingKeys => {
            CryptoError::WrongIdentity { what: what.into(), identity: identity.into() }
        }
        age::DecryptError::UnknownFormat | age::DecryptError::InvalidHeader => {
            CryptoError::Decrypt { what: what.into(), problem: "not an age file".into() }
        }
        other => CryptoError::Decrypt { what: what.into(), problem: format!("cannot decrypt: {other}") },
    }
}

/// Whether `head` (the first bytes of a file) starts an age file.
pub fn is_age(head: &[u8]) -> bool {
    head.starts_with(AGE_MAGIC)
}

/// The identity file from the environment, or the error a restore must stop with, before
/// touching anything, when an encrypted archive is to be read without it.
pub fn identity_from_lookup(get: impl Fn(&str) -> Option<String>, what: &str) -> Result<Identities, CryptoError> {
    match get(IDENTITY_FILE_VAR).filter(|v| !v.trim().is_empty()) {
        Some(path) => Identities::from_file(Path::new(path.trim())),
        None => Err(CryptoError::NoIdentity { what: what.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn keypair() -> (String, String) {
        let id = age::x25519::Identity::generate();
        (id.to_public().to_string(), id.to_string().expose_secret().to_string())
    }

    fn encrypt(recipients: &Recipients, data: &[u8]) -> Vec<u8> {
        let mut w = recipients.encrypt(Vec::new()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn identity_file(dir: &Path, secret: &str) -> PathBuf {
        let p = dir.join("identity");
        std::fs::write(&p, format!("# created: test\n{secret}\n")).unwrap();
        p
    }

    #[test]
    fn round_trips_a_stream_larger_than_a_chunk() {
        let (public, secret) = keypair();
        let dir = tempfile::tempdir().unwrap();
        let recipients = Recipients::parse(&public).unwrap();
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let sealed = encrypt(&recipients, &data);
        assert!(is_age(&sealed) && sealed.len() > data.len());
        let ids = Identities::from_file(&identity_file(dir.path(), &secret)).unwrap();
        let mut plain = Vec::new();
        ids.decrypt(&sealed[..], "a.tar.gz.age").unwrap().read_to_end(&mut plain).unwrap();
        assert_eq!(plain, data);
    }

    #[test]
    fn a_wrong_identity_is_refused_by_name() {
        let (public, _) = keypair();
        let (_, other_secret) = keypair();
        let dir = tempfile::tempdir().unwrap();
        let sealed = encrypt(&Recipients::parse(&public).unwrap(), b"x");
        let ids = Identities::from_file(&identity_file(dir.path(), &other_secret)).unwrap();
        let Err(e) = ids.decrypt(&sealed[..], "a.tar.gz.age") else { panic!("a wrong identity decrypted") };
        assert!(matches!(e, CryptoError::WrongIdentity { .. }), "{e}");
        assert!(!e.to_string().contains(&other_secret));
    }

    #[test]
    fn a_truncated_file_fails_to_read() {
        let (public, secret) = keypair();
        let dir = tempfile::tempdir().unwrap();
        let sealed = encrypt(&Recipients::parse(&public).unwrap(), &vec![7u8; 100_000]);
        let ids = Identities::from_file(&identity_file(dir.path(), &secret)).unwrap();
        let mut out = Vec::new();
        let cut = &sealed[..sealed.len() - 100];
        assert!(ids.decrypt(cut, "a").unwrap().read_to_end(&mut out).is_err());
    }

    #[test]
    fn recipients_from_the_environment() {
        let (a, _) = keypair();
        let (b, _) = keypair();
        let both = format!("{a}, {b}");
        let got = Recipients::from_lookup(|k| (k == RECIPIENTS_VAR).then(|| both.clone())).unwrap().unwrap();
        assert_eq!(got.shown(), [a.as_str(), b.as_str()]);
        assert!(Recipients::from_lookup(|_| None).unwrap().is_none());
        let e = Recipients::from_lookup(|_| Some(a.clone())).unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn private_keys_and_garbage_are_not_recipients() {
        let (_, secret) = keypair();
        let e = Recipients::parse(&secret).unwrap_err();
        assert!(e.contains("private key") && !e.contains(&secret[20..]), "{e}");
        assert!(Recipients::parse("age1notakey").unwrap_err().contains("not a valid age public key"));
        assert!(Recipients::parse("gpg:ABCDEF").unwrap_err().contains("expected an age1"));
        assert!(Recipients::parse("# only a comment\n").unwrap_err().contains("no recipient"));
    }

    #[test]
    fn missing_or_bad_identity_files_never_quote_them() {
        let dir = tempfile::tempdir().unwrap();
        let e = identity_from_lookup(|_| None, "db/2026-01-01T00-00-00Z.tar.gz.age").unwrap_err().to_string();
        assert!(e.contains("is encrypted, and DB_BACKUP_AGE_IDENTITY_FILE is not set"), "{e}");
        let p = dir.path().join("bad");
        std::fs::write(&p, "SECRET-LOOKING-GARBAGE\n").unwrap();
        let e = Identities::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("not an age identity file") && !e.contains("SECRET-LOOKING"), "{e}");
    }
}
