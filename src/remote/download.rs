//! Downloading one archive into a local directory: written as `<name>.partial`, checked against
//! the object's size (and its ETag when that is an MD5 we can recompute), fsynced, then renamed.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use tokio::io::AsyncWriteExt;

use super::error::Redactor;
use super::parts::{self, EtagBuilder};
use super::{Remote, RemoteError, ServicePrefix};
use crate::store::{partial_of, sync_dir};

impl Remote {
    /// Downloads archive `name` of the service into `dir`, returning the final path. Refuses to
    /// replace an existing file; a `.partial` left by an earlier attempt is replaced.
    pub async fn download(&self, prefix: &ServicePrefix, name: &str, dir: &Path) -> Result<PathBuf, RemoteError> {
        self.download_verified(prefix, name, dir, |_| Ok(())).await
    }

    /// As [`Remote::download`], and `check` (e.g. the archive's own verification) must accept the
    /// `.partial` file before it gets its name.
    pub async fn download_verified(
        &self,
        prefix: &ServicePrefix,
        name: &str,
        dir: &Path,
        check: impl FnOnce(&Path) -> Result<(), String> + Send + 'static,
    ) -> Result<PathBuf, RemoteError> {
        let key = prefix.key(name).ok_or_else(|| {
            self.redactor.refused(format!("download '{}'", name.escape_debug()), "not one of our archive names")
        })?;
        let dest = dir.join(name);
        if tokio::fs::symlink_metadata(&dest).await.is_ok() {
            return Err(self.redactor.refused(format!("download {key}"), format!("{} already exists", dest.display())));
        }
        let partial = partial_of(&dest);
        let mut result = self.fetch_into(&key, &partial).await;
        if result.is_ok() {
            let p = partial.clone();
            result = match tokio::task::spawn_blocking(move || check(&p)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(detail)) => Err(self.redactor.mismatch(&key, &partial, detail)),
                Err(e) => Err(self.redactor.mismatch(&key, &partial, format!("the check stopped: {e}"))),
            };
        }
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        tokio::fs::rename(&partial, &dest).await.map_err(|e| Redactor::local(&dest, e))?;
        sync_dir(dir).map_err(|e| Redactor::local(dir, e))?;
        Ok(dest)
    }

    async fn fetch_into(&self, key: &str, partial: &Path) -> Result<(), RemoteError> {
        let location = ObjectPath::from(key);
        let got = self.s3.get(&location).await.map_err(|e| self.redactor.classify("download", key, e))?;
        let size = got.meta.size;
        let etag = got.meta.e_tag.as_deref().map(parts::normalize_etag).unwrap_or_default();
        let mut expected = expected_etag(&etag, size);
        let mut file = open_partial(partial).await.map_err(|e| Redactor::local(partial, e))?;
        let mut stream = got.into_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.redactor.classify("download", key, e))?;
            if let Some(b) = expected.as_mut() {
                b.update(&chunk);
            }
            file.write_all(&chunk).await.map_err(|e| Redactor::local(partial, e))?;
            written += chunk.len() as u64;
        }
        file.sync_all().await.map_err(|e| Redactor::local(partial, e))?;
        if written != size {
            return Err(self.redactor.mismatch(key, partial, format!("received {written} bytes of {size}")));
        }
        if let Some(b) = expected {
            let computed = b.finish();
            if computed != etag {
                return Err(self.redactor.mismatch(
                    key,
                    partial,
                    format!("received bytes have ETag {computed}, the object {etag}"),
                ));
            }
        }
        Ok(())
    }
}

/// An ETag we can recompute: a plain MD5, or a multipart one cut the way our uploads cut.
fn expected_etag(etag: &str, size: u64) -> Option<EtagBuilder> {
    if !parts::is_md5_etag(etag) {
        return None;
    }
    match etag.split_once('-') {
        None => Some(EtagBuilder::single()),
        Some((_, n)) if n.parse::<u64>().ok() == Some(parts::part_count(size)) => {
            Some(EtagBuilder::multipart(parts::part_size(size)))
        }
        // Uploaded by another tool with other part sizes: the archive's own checks still apply.
        Some(_) => None,
    }
}

async fn open_partial(path: &Path) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path).await
}
