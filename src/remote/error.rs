//! What can go wrong with the remote, in words an operator can act on. The server's own error
//! text is never shown whole: S3 servers echo the access key id (Garage: "No such key: GK…"), so
//! every detail passes through [`Redactor`] first.

use std::path::PathBuf;

use object_store::client::{HttpError, HttpErrorKind};

use super::config::{Credentials, RemoteUrl};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote {url}: cannot reach {endpoint}: {detail}")]
    Unreachable { url: String, endpoint: String, detail: String },
    #[error(
        "remote {url}: access denied by {endpoint}; check AWS_ACCESS_KEY_ID[_FILE], AWS_SECRET_ACCESS_KEY[_FILE], AWS_REGION and the key's permissions on bucket '{bucket}'"
    )]
    AccessDenied { url: String, endpoint: String, bucket: String },
    #[error("remote {url}: bucket '{bucket}' does not exist at {endpoint}; create it or fix DB_BACKUP_REMOTE")]
    NoSuchBucket { url: String, endpoint: String, bucket: String },
    #[error("remote {url}: no object '{key}'")]
    NotFound { url: String, key: String },
    #[error("remote {url}: object '{key}' does not match the local file {path}: {detail}")]
    Mismatch { url: String, key: String, path: PathBuf, detail: String },
    #[error("remote {url}: refusing to {action}: {reason}")]
    Refused { url: String, action: String, reason: String },
    #[error("{path}: {source}")]
    Local { path: PathBuf, source: std::io::Error },
    #[error("remote {url}: {operation} failed: {detail}")]
    Failed { url: String, operation: String, detail: String },
}

impl RemoteError {
    /// Worth trying again later (the endpoint was down or overloaded), as opposed to a
    /// configuration or integrity problem that another attempt would only repeat.
    pub fn is_transient(&self) -> bool {
        matches!(self, RemoteError::Unreachable { .. })
    }
}

/// Turns object_store errors into [`RemoteError`]s with no secret in them.
#[derive(Clone)]
pub struct Redactor {
    url: String,
    endpoint: String,
    bucket: String,
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(url: &RemoteUrl, endpoint: &str, credentials: &Credentials) -> Self {
        let mut secrets =
            vec![credentials.access_key_id.expose().to_string(), credentials.secret_access_key.expose().to_string()];
        secrets.extend(credentials.session_token.as_ref().map(|t| t.expose().to_string()));
        secrets.retain(|s| !s.is_empty());
        Redactor { url: url.to_string(), endpoint: endpoint.to_string(), bucket: url.bucket.clone(), secrets }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// `text` with every credential replaced by `<redacted>`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "<redacted>");
        }
        out
    }

    pub fn refused(&self, action: impl Into<String>, reason: impl Into<String>) -> RemoteError {
        RemoteError::Refused { url: self.url.clone(), action: action.into(), reason: reason.into() }
    }

    pub fn mismatch(&self, key: &str, path: &std::path::Path, detail: impl Into<String>) -> RemoteError {
        RemoteError::Mismatch { url: self.url.clone(), key: key.into(), path: path.into(), detail: detail.into() }
    }

    /// Classifies an object_store error raised while doing `operation` on `key`.
    pub fn classify(&self, operation: &str, key: &str, err: object_store::Error) -> RemoteError {
        let text = chain_text(&err);
        if text.contains("NoSuchBucket") {
            return RemoteError::NoSuchBucket {
                url: self.url.clone(),
                endpoint: self.endpoint.clone(),
                bucket: self.bucket.clone(),
            };
        }
        let denied = ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403 Forbidden"];
        if matches!(err, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. })
            || denied.iter().any(|d| text.contains(d))
        {
            return RemoteError::AccessDenied {
                url: self.url.clone(),
                endpoint: self.endpoint.clone(),
                bucket: self.bucket.clone(),
            };
        }
        if let object_store::Error::NotFound { .. } = err {
            return RemoteError::NotFound { url: self.url.clone(), key: key.to_string() };
        }
        if let Some(kind) = http_error_kind(&err) {
            let network = matches!(
                kind,
                HttpErrorKind::Connect | HttpErrorKind::Timeout | HttpErrorKind::Interrupted | HttpErrorKind::Request
            );
            if network || closed_before_sending(&err) {
                return RemoteError::Unreachable {
                    url: self.url.clone(),
                    endpoint: self.endpoint.clone(),
                    detail: self.scrub(&last_sentence(&text)),
                };
            }
        }
        RemoteError::Failed { url: self.url.clone(), operation: operation.to_string(), detail: self.scrub(&text) }
    }

    pub fn local(path: &std::path::Path, source: std::io::Error) -> RemoteError {
        RemoteError::Local { path: path.to_path_buf(), source }
    }
}

/// Every message in the error's source chain, joined.
fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

fn http_error_kind(err: &(dyn std::error::Error + 'static)) -> Option<HttpErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<HttpError>() {
            return Some(h.kind());
        }
        cur = e.source();
    }
    None
}

/// A request that never left because its connection closed first (hyper: "operation was
/// canceled: connection was not ready"): object_store leaves it unclassified, but the endpoint
/// dropped the connection, so it is the network's failure like a refused one.
fn closed_before_sending(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_canceled() || h.is_closed()) {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The innermost cause ("Connection refused (os error 111)"), which is what an operator needs.
fn last_sentence(text: &str) -> String {
    text.rsplit(": ").find(|s| !s.trim().is_empty()).unwrap_or(text).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::config::Secret;

    fn redactor() -> Redactor {
        let creds = Credentials {
            access_key_id: Secret::new("GK123".into()),
            secret_access_key: Secret::new("sekrit".into()),
            session_token: None,
        };
        Redactor::new(&RemoteUrl { bucket: "b".into(), prefix: String::new() }, "http://127.0.0.1:1", &creds)
    }

    #[test]
    fn scrub_removes_every_credential() {
        assert_eq!(redactor().scrub("No such key: GK123 (sekrit)"), "No such key: <redacted> (<redacted>)");
    }

    #[test]
    fn permission_errors_name_the_variables_not_the_values() {
        let err =
            object_store::Error::PermissionDenied { path: "k".into(), source: "Forbidden: No such key: GK123".into() };
        let e = redactor().classify("upload", "k", err).to_string();
        assert!(e.contains("access denied") && e.contains("AWS_ACCESS_KEY_ID[_FILE]") && !e.contains("GK123"), "{e}");
    }

    #[test]
    fn missing_bucket_is_named() {
        let err = object_store::Error::NotFound { path: "k".into(), source: "<Code>NoSuchBucket</Code>".into() };
        assert!(matches!(redactor().classify("list", "k", err), RemoteError::NoSuchBucket { .. }));
    }
}
