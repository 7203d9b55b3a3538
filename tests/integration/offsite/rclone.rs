//! An independent S3 client (Debian's rclone) to look at the bucket the way an operator would:
//! list objects, list unfinished multipart uploads, put foreign objects. Credentials go through
//! rclone's environment, never argv.

use std::process::{Command, Output};

use super::garage::{Garage, REGION};

/// rclone's configuration for this Garage, as environment variables.
pub fn rclone_env(g: &Garage) -> Vec<(String, String)> {
    [
        ("RCLONE_CONFIG", "/dev/null".to_string()),
        ("RCLONE_CONFIG_G_TYPE", "s3".into()),
        ("RCLONE_CONFIG_G_PROVIDER", "Other".into()),
        ("RCLONE_CONFIG_G_ENDPOINT", g.endpoint()),
        ("RCLONE_CONFIG_G_REGION", REGION.into()),
        ("RCLONE_CONFIG_G_ACCESS_KEY_ID", g.key.id.clone()),
        ("RCLONE_CONFIG_G_SECRET_ACCESS_KEY", g.key.secret.clone()),
        ("RCLONE_CONFIG_G_FORCE_PATH_STYLE", "true".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub fn rclone(g: &Garage, args: &[&str]) -> Output {
    let mut cmd = Command::new("rclone");
    // The machine's AWS_* settings (e.g. AWS_CA_BUNDLE) are not this Garage's.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("RCLONE_")) {
        cmd.env_remove(k);
    }
    cmd.args(args).envs(rclone_env(g)).output().expect("run rclone (Debian package rclone; .ci/run installs it)")
}

fn ok(g: &Garage, args: &[&str]) -> String {
    let out = rclone(g, args);
    assert!(out.status.success(), "rclone {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every object key in the bucket, sorted.
pub fn objects(g: &Garage, bucket: &str) -> Vec<String> {
    let mut v: Vec<String> =
        ok(g, &["lsf", "-R", "--files-only", &format!("g:{bucket}")]).lines().map(str::to_string).collect();
    v.sort();
    v
}

/// Keys of the unfinished multipart uploads in the bucket (S3 ListMultipartUploads).
pub fn multipart_uploads(g: &Garage, bucket: &str) -> Vec<String> {
    let text = ok(g, &["backend", "list-multipart-uploads", &format!("g:{bucket}")]);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut keys = Vec::new();
    for uploads in json.as_object().into_iter().flat_map(|m| m.values()) {
        for u in uploads.as_array().into_iter().flatten() {
            keys.push(u["Key"].as_str().unwrap_or_default().to_string());
        }
    }
    keys
}

/// Puts `data` at `key` as someone else would.
pub fn put(g: &Garage, bucket: &str, key: &str, data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("obj");
    std::fs::write(&f, data).unwrap();
    ok(g, &["copyto", f.to_str().unwrap(), &format!("g:{bucket}/{key}")]);
}
