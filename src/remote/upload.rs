//! Uploading one archive file: streamed from disk part by part (never whole in memory), visible
//! only once complete, aborted on any failure, then checked against the local file.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use md5::{Digest, Md5};
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use super::error::Redactor;
use super::journal::OpenUpload;
use super::parts;
use super::{Remote, RemoteError, ServicePrefix};

/// What the bucket now holds for one archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub key: String,
    pub size: u64,
    pub parts: u64,
    /// The server's ETag, equal to the one computed from the local file (or the object was read
    /// back and compared byte for byte when the server's ETag is not an MD5).
    pub etag: String,
}

type PartTask = JoinHandle<Result<(usize, PartId, Bytes), object_store::Error>>;

impl Remote {
    /// Uploads `file` (named like one of our archives) into the service's folder, replacing an
    /// object of the same name. Aborts uploads left behind by earlier runs first.
    pub async fn upload(&self, prefix: &ServicePrefix, file: &Path) -> Result<Uploaded, RemoteError> {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let key = prefix.key(name).ok_or_else(|| {
            self.redactor.refused(format!("upload {}", file.display()), "its name is not one of our archive names")
        })?;
        self.abort_left_behind().await?;
        let len = tokio::fs::metadata(file).await.map_err(|e| Redactor::local(file, e))?.len();
        let location = ObjectPath::from(key.as_str());
        let expected = if len <= parts::part_size(len) {
            self.put_single(&location, file, len).await?
        } else {
            self.put_multipart(&location, file, len).await?
        };
        self.check_uploaded(&location, file, len, &expected).await
    }

    async fn put_single(&self, location: &ObjectPath, file: &Path, len: u64) -> Result<String, RemoteError> {
        let mut f = tokio::fs::File::open(file).await.map_err(|e| Redactor::local(file, e))?;
        let body = read_part(&mut f, len).await.map_err(|e| Redactor::local(file, e))?;
        let etag = parts::md5_hex(&body);
        self.s3
            .put(location, PutPayload::from(body))
            .await
            .map_err(|e| self.redactor.classify("upload", location.as_ref(), e))?;
        Ok(etag)
    }

    /// Multipart upload recorded in the journal until it is completed or aborted.
    async fn put_multipart(&self, location: &ObjectPath, file: &Path, len: u64) -> Result<String, RemoteError> {
        let key = location.as_ref();
        let upload_id =
            self.s3.create_multipart(location).await.map_err(|e| self.redactor.classify("upload", key, e))?;
        let record = OpenUpload { key: key.to_string(), upload_id };
        let held = match self.journal.open(&record) {
            Ok(h) => h,
            Err(e) => {
                abort(&self.s3, &self.redactor, &record).await?;
                return Err(Redactor::local(self.journal.dir(), e));
            }
        };
        let completed = match self.send_parts(location, &record.upload_id, file, len).await {
            Ok(sent) => self.complete(location, &record.upload_id, sent, len).await,
            Err(e) => Err(e),
        };
        match completed {
            Ok(etag) => {
                held.finish().map_err(|e| Redactor::local(self.journal.dir(), e))?;
                Ok(etag)
            }
            Err(e) => {
                // If the abort fails too, the record stays and the next contact aborts it.
                if abort(&self.s3, &self.redactor, &record).await.is_ok() {
                    let _ = held.finish();
                }
                Err(e)
            }
        }
    }

    /// Reads the file part by part, at most [`parts::parts_in_flight`] parts in memory and on
    /// the wire at once. Returns each part's id and MD5, in order.
    async fn send_parts(
        &self,
        location: &ObjectPath,
        upload_id: &str,
        file: &Path,
        len: u64,
    ) -> Result<Vec<(PartId, [u8; 16])>, RemoteError> {
        let mut running = VecDeque::new();
        let mut md5s = Vec::new();
        let sent = self.send_parts_into(location, upload_id, file, len, &mut running, &mut md5s).await;
        if sent.is_err() {
            for task in running {
                task.abort();
            }
        }
        Ok(sent?.into_iter().zip(md5s).collect())
    }

    async fn send_parts_into(
        &self,
        location: &ObjectPath,
        upload_id: &str,
        file: &Path,
        len: u64,
        running: &mut VecDeque<PartTask>,
        md5s: &mut Vec<[u8; 16]>,
    ) -> Result<Vec<PartId>, RemoteError> {
        let size = parts::part_size(len);
        let count = parts::part_count(len) as usize;
        let mut f = Some(std::fs::File::open(file).map_err(|e| Redactor::local(file, e))?);
        let mut ids = Vec::with_capacity(count);
        // Part buffers come back once their request is done and are filled again: the memory of
        // an upload stays at a few parts, whatever the allocator would keep of fresh ones.
        let mut spare: Vec<BytesMut> = Vec::new();
        for idx in 0..count {
            let (back, body) = read_part_blocking(f.take(), size.min(len - idx as u64 * size), spare.pop())
                .await
                .map_err(|e| Redactor::local(file, e))?;
            f = Some(back);
            md5s.push(Md5::digest(&body).into());
            running.push_back(spawn_part(&self.s3, location, upload_id, idx, body));
            if running.len() >= parts::parts_in_flight(len) {
                if let Some(task) = running.pop_front() {
                    let (id, body) = self.finish_part(task, location, md5s).await?;
                    ids.push(id);
                    spare.extend(body.try_into_mut().ok());
                }
            }
        }
        while let Some(task) = running.pop_front() {
            ids.push(self.finish_part(task, location, md5s).await?.0);
        }
        Ok(ids)
    }

    /// Waits for one part; its ETag, when the server gives an MD5, must be the MD5 we sent.
    async fn finish_part(
        &self,
        task: PartTask,
        location: &ObjectPath,
        md5s: &[[u8; 16]],
    ) -> Result<(PartId, Bytes), RemoteError> {
        let key = location.as_ref();
        let (idx, part, body) = match task.await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(self.redactor.classify("upload", key, e)),
            Err(e) => return Err(self.redactor.refused(format!("upload {key}"), format!("the part task failed: {e}"))),
        };
        let got = parts::normalize_etag(&part.content_id);
        let sent = hex::encode(md5s[idx]);
        if parts::is_md5_etag(&got) && got != sent {
            return Err(RemoteError::Failed {
                url: self.redactor.url().to_string(),
                operation: format!("upload of {key}"),
                detail: format!("part {} arrived as MD5 {got}, sent {sent}", idx + 1),
            });
        }
        Ok((part, body))
    }

    /// Completes the upload; returns the ETag it must have. If the answer is lost but the object
    /// is there, complete, the upload counts as done.
    async fn complete(
        &self,
        location: &ObjectPath,
        upload_id: &str,
        sent: Vec<(PartId, [u8; 16])>,
        len: u64,
    ) -> Result<String, RemoteError> {
        let (ids, md5s): (Vec<PartId>, Vec<[u8; 16]>) = sent.into_iter().unzip();
        let expected = parts::multipart_etag(&md5s);
        match self.s3.complete_multipart(location, &upload_id.to_string(), ids).await {
            Ok(_) => Ok(expected),
            Err(e) => match self.s3.head(location).await {
                Ok(meta)
                    if meta.size == len
                        && meta.e_tag.as_deref().map(parts::normalize_etag) == Some(expected.clone()) =>
                {
                    Ok(expected)
                }
                _ => Err(self.redactor.classify("complete the upload of", location.as_ref(), e)),
            },
        }
    }

    /// The object must have the local file's size, and its ETag must be the one computed while
    /// sending; a server whose ETag is not an MD5 gets the object read back and compared. An
    /// object that does not match is deleted: it must never pass for a backup.
    async fn check_uploaded(
        &self,
        location: &ObjectPath,
        file: &Path,
        len: u64,
        expected: &str,
    ) -> Result<Uploaded, RemoteError> {
        let key = location.as_ref();
        let meta = self.s3.head(location).await.map_err(|e| self.redactor.classify("check", key, e))?;
        let etag = meta.e_tag.as_deref().map(parts::normalize_etag).unwrap_or_default();
        let problem = if meta.size != len {
            Some(format!("the object has {} bytes, the file {len}", meta.size))
        } else if parts::is_md5_etag(&etag) {
            (etag != expected).then(|| format!("the object's ETag is {etag}, the file's {expected}"))
        } else {
            self.compare_read_back(location, file).await?
        };
        if let Some(detail) = problem {
            let _ = self.s3.delete(location).await;
            return Err(self.redactor.mismatch(key, file, format!("{detail}; the object was deleted")));
        }
        Ok(Uploaded {
            key: key.to_string(),
            size: len,
            parts: parts::part_count(len),
            etag: if etag.is_empty() { expected.to_string() } else { etag },
        })
    }

    /// Reads the object back and compares its MD5 with the local file's.
    async fn compare_read_back(&self, location: &ObjectPath, file: &Path) -> Result<Option<String>, RemoteError> {
        let key = location.as_ref();
        let got = self.s3.get(location).await.map_err(|e| self.redactor.classify("read back", key, e))?;
        let mut stream = got.into_stream();
        let mut remote = Md5::new();
        while let Some(chunk) = stream.next().await {
            remote.update(&chunk.map_err(|e| self.redactor.classify("read back", key, e))?);
        }
        let mut local = Md5::new();
        let mut f = tokio::fs::File::open(file).await.map_err(|e| Redactor::local(file, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await.map_err(|e| Redactor::local(file, e))?;
            if n == 0 {
                break;
            }
            local.update(&buf[..n]);
        }
        let (remote, local) = (hex::encode(remote.finalize()), hex::encode(local.finalize()));
        Ok((remote != local).then(|| format!("read back, the object's MD5 is {remote}, the file's {local}")))
    }
}

/// Reads exactly `len` bytes (a part is at most a few MiB; it is all that is held in memory).
async fn read_part(f: &mut tokio::fs::File, len: u64) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(len as usize);
    f.read_exact(&mut buf).await?;
    Ok(buf.freeze())
}

/// Reads the next `len` bytes of `f` into `spare` (or a new buffer) on a blocking thread, straight
/// into the buffer (tokio's file adds a copy through its own).
async fn read_part_blocking(
    f: Option<std::fs::File>,
    len: u64,
    spare: Option<BytesMut>,
) -> std::io::Result<(std::fs::File, Bytes)> {
    let mut f = f.ok_or_else(|| std::io::Error::other("the file was lost by an earlier read"))?;
    let mut buf = spare.unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        buf.clear();
        buf.resize(len as usize, 0);
        std::io::Read::read_exact(&mut f, &mut buf)?;
        Ok((f, buf.freeze()))
    })
    .await
    .map_err(std::io::Error::other)?
}

fn spawn_part(s3: &Arc<AmazonS3>, location: &ObjectPath, upload_id: &str, idx: usize, body: Bytes) -> PartTask {
    let (s3, location, upload_id) = (Arc::clone(s3), location.clone(), upload_id.to_string());
    tokio::spawn(async move {
        let part = s3.put_part(&location, &upload_id, idx, PutPayload::from(body.clone())).await?;
        Ok((idx, part, body))
    })
}

/// Aborts one multipart upload; one that no longer exists counts as aborted.
pub(super) async fn abort(s3: &AmazonS3, redactor: &Redactor, upload: &OpenUpload) -> Result<(), RemoteError> {
    let location = ObjectPath::from(upload.key.as_str());
    match s3.abort_multipart(&location, &upload.upload_id).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(redactor.classify("abort the unfinished upload of", &upload.key, e)),
    }
}
