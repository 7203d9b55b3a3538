//! Health pings for the `db-backup.healthcheck-url` label (pure): healthchecks.io-style monitors
//! get `<url>/start`, `<url>` and `<url>/fail` (the error as body); Uptime Kuma push monitors
//! (`…/api/push/<token>`) get `?status=up|down&msg=…`, since they know no start.

use url::Url;

use super::message::HttpRequest;

/// Healthchecks.io accepts up to 100 kB of body; an error text is cut well below that.
const MAX_FAIL_BODY: usize = 10_000;
/// Uptime Kuma shows `msg` in a list: keep it short.
const MAX_KUMA_MSG: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    Start,
    Success,
    Failure,
}

#[derive(Clone, PartialEq, Eq)]
pub struct PingUrl {
    url: Url,
    kuma: bool,
}

/// Debug output ends up in logs and keys: never the token.
impl std::fmt::Debug for PingUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PingUrl({})", self.redacted())
    }
}

impl PingUrl {
    /// An http(s) URL with a host. The error never repeats the URL: it holds a token.
    pub fn parse(value: &str) -> Result<Self, String> {
        let url = Url::parse(value.trim()).map_err(|e| format!("not a URL ({e}); expected https://host/path"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "scheme '{}' is not http or https with a host; expected https://host/path",
                url.scheme()
            ));
        }
        let kuma = url.path().contains("/api/push/");
        Ok(PingUrl { url, kuma })
    }

    /// How logs name it: scheme and host only.
    pub fn redacted(&self) -> String {
        format!("{}://{}/***", self.url.scheme(), self.url.host_str().unwrap_or(""))
    }

    /// The request one ping sends; None when this kind of monitor has no such ping.
    pub fn request(&self, ping: Ping, error: Option<&str>) -> Option<HttpRequest> {
        if self.kuma {
            return self.kuma_request(ping, error);
        }
        let mut url = self.url.clone();
        let suffix = match ping {
            Ping::Start => "/start",
            Ping::Success => "",
            Ping::Failure => "/fail",
        };
        url.set_path(&format!("{}{suffix}", self.url.path().trim_end_matches('/')));
        let body = match ping {
            Ping::Failure => cut(error.unwrap_or("backup failed"), MAX_FAIL_BODY).into_bytes(),
            _ => Vec::new(),
        };
        Some(HttpRequest { url, headers: Vec::new(), auth: None, content_type: "text/plain; charset=utf-8", body })
    }

    fn kuma_request(&self, ping: Ping, error: Option<&str>) -> Option<HttpRequest> {
        let (status, msg) = match ping {
            Ping::Start => return None,
            Ping::Success => ("up", "OK".to_string()),
            Ping::Failure => ("down", cut(error.unwrap_or("backup failed"), MAX_KUMA_MSG)),
        };
        let mut url = self.url.clone();
        let kept: Vec<(String, String)> = self
            .url
            .query_pairs()
            .filter(|(k, _)| !matches!(k.as_ref(), "status" | "msg" | "ping"))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(kept).append_pair("status", status).append_pair("msg", &msg);
        Some(HttpRequest {
            url,
            headers: Vec::new(),
            auth: None,
            content_type: "text/plain; charset=utf-8",
            body: Vec::new(),
        })
    }
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthchecks_pings_start_success_and_fail_with_the_error() {
        let p = PingUrl::parse("https://hc-ping.com/0b1a2c3d/").unwrap();
        assert_eq!(p.request(Ping::Start, None).unwrap().url.as_str(), "https://hc-ping.com/0b1a2c3d/start");
        assert_eq!(p.request(Ping::Success, None).unwrap().url.as_str(), "https://hc-ping.com/0b1a2c3d");
        let fail = p.request(Ping::Failure, Some("pg_dump: exit code 1")).unwrap();
        assert_eq!(fail.url.as_str(), "https://hc-ping.com/0b1a2c3d/fail");
        assert_eq!(fail.body, b"pg_dump: exit code 1");
        assert_eq!(p.redacted(), "https://hc-ping.com/***");
        assert_eq!(format!("{p:?}"), "PingUrl(https://hc-ping.com/***)");
    }

    #[test]
    fn uptime_kuma_push_urls_get_status_and_message() {
        let p = PingUrl::parse("http://kuma.lan:3001/api/push/Tok3n?status=up&msg=OK&ping=").unwrap();
        assert_eq!(p.request(Ping::Start, None), None);
        assert_eq!(
            p.request(Ping::Success, None).unwrap().url.as_str(),
            "http://kuma.lan:3001/api/push/Tok3n?status=up&msg=OK"
        );
        let down = p.request(Ping::Failure, Some("disk full & more")).unwrap();
        assert_eq!(down.url.as_str(), "http://kuma.lan:3001/api/push/Tok3n?status=down&msg=disk+full+%26+more");
    }

    #[test]
    fn only_http_urls_are_accepted_and_errors_do_not_repeat_them() {
        for bad in ["ftp://h/Tok3n", "hc-ping.com/Tok3n", "mailto:Tok3n@example.com"] {
            let err = PingUrl::parse(bad).unwrap_err();
            assert!(!err.contains("Tok3n"), "{err}");
        }
    }
}
