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
pub const RECIPIENTS_FILE_VAR: &str = "DB_BACKUP_AGE_RECIPIENTS_FILE";
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
    /// line, `#` comments); `Ok(None)` when neither is set. A bad entry is named by its position.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, CryptoError> {
        let (var, file_var) = (RECIPIENTS_VAR, RECIPIENTS_FILE_VAR);
        match (get(var).filter(|v| !v.trim().is_empty()), get(file_var).filter(|v| !v.trim().is_empty())) {
            (Some(_), Some(_)) => {
                Err(CryptoError::Config { var, problem: format!("set {var} or {file_var}, not both") })
            }
            (Some(v), None) => Self::parse_numbered(&v.replace(',', "\n"), "entry")
                .map(Some)
                .map_err(|problem| CryptoError::Config { var, problem }),
            (None, Some(path)) => {
                let path = path.trim();
                let text = std::fs::read_to_string(path).map_err(|e| CryptoError::Config {
                    var: file_var,
                    problem: format!("cannot read {path}: {}", e.kind()),
                })?;
                Self::parse_numbered(&text, "line")
                    .map(Some)
                    .map_err(|problem| CryptoError::Config { var: file_var, problem: format!("{path}: {problem}") })
            }
            (None, None) => Ok(None),
        }
    }

    /// One recipient per line; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_numbered(text, "line")
    }

    /// [`Recipients::parse`], naming a bad entry "`<word>` N" (counted from 1, blank ones too).
    fn parse_numbered(text: &str, word: &str) -> Result<Self, String> {
        let mut keys: Vec<Box<dyn age::Recipient + Send + Sync>> = Vec::new();
        let mut shown = Vec::new();
        for (n, line) in text.lines().map(str::trim).enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |problem: String| format!("{word} {}: {problem}", n + 1);
            if line.starts_with("AGE-SECRET-KEY-") || line.contains("PRIVATE KEY") {
                return Err(at("this is a private key; give the public key (age1… from `age-keygen -y`)".into()));
            }
            keys.push(parse_recipient(line).map_err(at)?);
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

impl Identities {
    /// Reads only the header of `input` and tells whether one of the identities opens it: what a
    /// run checks before it touches anything.
    pub fn check_opens<R: Read>(&self, input: R, what: &str) -> Result<(), CryptoError> {
        self.decrypt(input, what).map(drop)
    }
}

/// The age keys of this host, read and checked once at start.
#[derive(Debug, Clone, Default)]
pub struct AgeSettings {
    /// Every archive is encrypted to these (`DB_BACKUP_AGE_RECIPIENTS[_FILE]`).
    pub recipients: Option<std::sync::Arc<Recipients>>,
    /// What opens encrypted archives for restore, `verify` and drills (`DB_BACKUP_AGE_IDENTITY_FILE`).
    pub identity: Option<std::sync::Arc<Identities>>,
}

impl AgeSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CryptoError> {
        let recipients = Recipients::from_lookup(&get)?.map(std::sync::Arc::new);
        let identity = match get(IDENTITY_FILE_VAR).filter(|v| !v.trim().is_empty()) {
            Some(path) => Some(std::sync::Arc::new(Identities::from_file(Path::new(path.trim()))?)),
            None => None,
        };
        Ok(AgeSettings { recipients, identity })
    }

    /// The identity, or the error a run must stop with, before touching anything, when the
    /// encrypted archive `what` is to be read without it.
    pub fn identity_for(&self, what: &str) -> Result<&Identities, CryptoError> {
        self.identity.as_deref().ok_or_else(|| CryptoError::NoIdentity { what: what.to_string() })
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
    fn a_bad_recipient_is_named_by_variable_and_position() {
        let (a, secret) = keypair();
        let value = format!("{a}, age1notakey");
        let e = Recipients::from_lookup(|k| (k == RECIPIENTS_VAR).then(|| value.clone())).unwrap_err().to_string();
        assert_eq!(e, "DB_BACKUP_AGE_RECIPIENTS: entry 2: 'age1notakey' is not a valid age public key");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("recipients");
        std::fs::write(&file, format!("# ops team\n{a}\n\n{secret}\n")).unwrap();
        let path = file.to_str().unwrap().to_string();
        let e = Recipients::from_lookup(|k| (k == RECIPIENTS_FILE_VAR).then(|| path.clone())).unwrap_err().to_string();
        assert!(e.starts_with(&format!("DB_BACKUP_AGE_RECIPIENTS_FILE: {path}: line 4: this is a private key")), "{e}");
        assert!(!e.contains(&secret[15..]), "{e}");
        let e = AgeSettings::from_lookup(|k| (k == IDENTITY_FILE_VAR).then(|| "/nonexistent/key".to_string()))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("DB_BACKUP_AGE_IDENTITY_FILE: /nonexistent/key: cannot read it"), "{e}");
        let none = AgeSettings::from_lookup(|_| None).unwrap();
        let e = none.identity_for("db/x.tar.gz.age").unwrap_err().to_string();
        assert!(e.contains("db/x.tar.gz.age is encrypted, and DB_BACKUP_AGE_IDENTITY_FILE is not set"), "{e}");
    }

    #[test]
    fn the_header_alone_says_whether_an_identity_opens_a_file() {
        let (public, secret) = keypair();
        let (_, other) = keypair();
        let dir = tempfile::tempdir().unwrap();
        let sealed = encrypt(&Recipients::parse(&public).unwrap(), &vec![1u8; 200_000]);
        let header_only = &sealed[..sealed.len() - 150_000];
        let right = Identities::from_file(&identity_file(dir.path(), &secret)).unwrap();
        right.check_opens(header_only, "a").unwrap();
        let wrong = Identities::from_file(&identity_file(dir.path(), &other)).unwrap();
        assert!(matches!(wrong.check_opens(header_only, "a"), Err(CryptoError::WrongIdentity { .. })));
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
