//! Notification URLs in the shoutrrr convention (what watchtower and docker-volume-backup users
//! already write), parsed once into typed targets. Every error names the URL with its secrets
//! redacted: URLs carry tokens and passwords.

use std::collections::BTreeMap;

use lettre::message::Mailbox;
use percent_encoding::percent_decode_str;
use url::Url;

/// The schemes accepted, for error messages.
pub const SCHEMES: &str =
    "generic+https://, generic+http://, slack://, mattermost://, rocketchat://, discord://, ntfy://, smtp://, smtps://";

/// One place notifications go. `redacted` is how logs and errors name it.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: TargetKind,
    redacted: String,
}

impl Target {
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

#[derive(Debug, Clone)]
pub enum TargetKind {
    /// JSON POST of the notification itself.
    Generic {
        url: Url,
        headers: Vec<(String, String)>,
    },
    /// Slack-compatible incoming webhooks: Slack, Mattermost, Rocket.Chat.
    Chat {
        flavor: ChatFlavor,
        url: Url,
        username: Option<String>,
        channel: Option<String>,
    },
    Discord {
        url: Url,
        username: Option<String>,
    },
    Ntfy {
        url: Url,
        auth: Option<HttpAuth>,
        priority: Option<String>,
        tags: Option<String>,
    },
    Smtp(SmtpTarget),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFlavor {
    Slack,
    Mattermost,
    RocketChat,
}

#[derive(Clone, PartialEq, Eq)]
pub enum HttpAuth {
    Basic { user: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpAuth(***)")
    }
}

#[derive(Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub security: SmtpSecurity,
    /// Prefix of every subject line.
    pub subject: String,
    pub client_host: Option<String>,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain SMTP, no TLS (`encryption=none`).
    None,
    /// STARTTLS; `required` refuses a server that does not offer it.
    StartTls { required: bool },
    /// TLS from the first byte (`smtps://`, port 465, `encryption=implicittls`).
    Implicit,
}

/// Why a URL was refused; Display names the URL redacted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("notification URL '{url}': {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

/// Parses one notification URL.
pub fn parse(raw: &str) -> Result<Target, UrlError> {
    let redacted = redact(raw);
    let fail = |reason: String| UrlError { url: redacted.clone(), reason };
    let url = Url::parse(raw.trim()).map_err(|e| fail(format!("not a URL ({e}); expected e.g. {SCHEMES}")))?;
    let query = Query::of(&url).map_err(&fail)?;
    let kind = match url.scheme() {
        "generic" | "generic+https" | "generic+http" => generic(&url, query),
        "slack" => slack(&url, query),
        "mattermost" => mattermost(&url, query),
        "rocketchat" => rocketchat(&url, query),
        "discord" => discord(&url, query),
        "ntfy" => ntfy(&url, query),
        "smtp" | "smtps" => smtp(&url, query).map(TargetKind::Smtp),
        other => Err(format!("unknown scheme '{other}'; expected one of {SCHEMES}")),
    }
    .map_err(fail)?;
    Ok(Target { kind, redacted })
}

/// `scheme://***@host:port/***?key=***`: enough to tell URLs apart, no token or password.
pub fn redact(raw: &str) -> String {
    let raw = raw.trim();
    let Ok(url) = Url::parse(raw) else {
        let scheme = raw
            .split_once("://")
            .map(|(s, _)| s)
            .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)));
        return match scheme {
            Some(s) => format!("{s}://***"),
            None => "***".into(),
        };
    };
    let mut out = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        out.push_str("***@");
    }
    out.push_str(url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    if !matches!(url.path(), "" | "/") {
        out.push_str("/***");
    }
    if let Some(q) = url.query() {
        let keys: Vec<String> = url::form_urlencoded::parse(q.as_bytes()).map(|(k, _)| format!("{k}=***")).collect();
        out.push('?');
        out.push_str(&keys.join("&"));
    }
    out
}

/// Query parameters, keys lowercased; each scheme takes the ones it knows and refuses the rest.
struct Query(BTreeMap<String, String>);

impl Query {
    fn of(url: &Url) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (k, v) in url.query_pairs() {
            if map.insert(k.to_ascii_lowercase(), v.into_owned()).is_some() {
                return Err(format!("query parameter '{k}' is given twice"));
            }
        }
        Ok(Query(map))
    }

    fn take(&mut self, key: &str) -> Option<String> {
        self.0.remove(key).filter(|v| !v.is_empty())
    }

    fn take_flag(&mut self, key: &str) -> Result<bool, String> {
        match self.take(key) {
            None => Ok(false),
            Some(v) => yes_no(&v).ok_or_else(|| format!("{key}='{v}' is not yes or no")),
        }
    }

    fn done(self, known: &str) -> Result<(), String> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!("unknown query parameter '{k}'; this scheme takes {known}")),
        }
    }
}

/// shoutrrr's booleans: yes/no, true/false, 1/0.
fn yes_no(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Some(true),
        "no" | "false" | "0" | "off" => Some(false),
        _ => None,
    }
}

fn decoded(s: &str) -> Result<String, String> {
    percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| "user or password is not UTF-8".into())
}

fn user_of(url: &Url) -> Result<Option<String>, String> {
    Ok(Some(decoded(url.username())?).filter(|u| !u.is_empty()))
}

fn password_of(url: &Url) -> Result<Option<String>, String> {
    url.password().map(decoded).transpose().map(|p| p.filter(|p| !p.is_empty()))
}

fn host_of(url: &Url) -> Result<String, String> {
    url.host_str().filter(|h| !h.is_empty()).map(str::to_owned).ok_or_else(|| "the URL has no host".into())
}

fn segments(url: &Url) -> Result<Vec<String>, String> {
    url.path().split('/').filter(|s| !s.is_empty()).map(decoded).collect()
}

/// `https://host[:port]/path`, built from parts so nothing of the input URL leaks in by accident.
fn https_url(tls: bool, host: &str, port: Option<u16>, path: &[&str]) -> Result<Url, String> {
    let mut url = Url::parse(&format!("{}://{host}", if tls { "https" } else { "http" }))
        .map_err(|e| format!("'{host}' is not a host name ({e})"))?;
    url.set_port(port).map_err(|_| "the URL cannot take a port".to_string())?;
    url.path_segments_mut().map_err(|_| "the URL cannot take a path".to_string())?.extend(path);
    Ok(url)
}

/// `generic+https://host/path?k=v&@Header=value`: query parameters pass through to the target
/// URL, except `@name=value`, which become request headers (shoutrrr's convention).
fn generic(url: &Url, query: Query) -> Result<TargetKind, String> {
    let mut query = query;
    let tls = match url.scheme() {
        "generic+http" => false,
        "generic+https" => true,
        _ => !query.take_flag("disabletls")?,
    };
    let mut target = https_url(tls, &host_of(url)?, url.port(), &[])?;
    target.set_path(url.path());
    if !url.username().is_empty() || url.password().is_some() {
        target.set_username(url.username()).map_err(|_| "the URL cannot take a user".to_string())?;
        target.set_password(url.password()).map_err(|_| "the URL cannot take a password".to_string())?;
    }
    let mut headers = Vec::new();
    let mut pairs = Vec::new();
    for (k, v) in url.query_pairs() {
        match k.strip_prefix('@') {
            Some(name) if !name.is_empty() => headers.push((name.to_string(), v.into_owned())),
            Some(_) => return Err("'@' names a header: write @Header-Name=value".into()),
            None if k.eq_ignore_ascii_case("disabletls") => {}
            None => pairs.push((k.into_owned(), v.into_owned())),
        }
    }
    if !pairs.is_empty() {
        target.query_pairs_mut().extend_pairs(pairs);
    }
    Ok(TargetKind::Generic { url: target, headers })
}

/// `slack://hook:A-B-C@webhook` or the older `slack://[botname@]A/B/C`, both for the incoming
/// webhook `https://hooks.slack.com/services/A/B/C`.
fn slack(url: &Url, mut query: Query) -> Result<TargetKind, String> {
    let host = host_of(url)?;
    let user = user_of(url)?;
    let only_webhooks = "only webhooks are supported: slack://hook:T…-B…-X…@webhook";
    if (host == "webhook") != (user.as_deref() == Some("hook")) || (host != "webhook" && url.password().is_some()) {
        return Err(only_webhooks.into());
    }
    let (parts, mut username) = if host == "webhook" {
        let token = password_of(url)?.ok_or("the webhook token is missing: slack://hook:T…-B…-X…@webhook")?;
        (token.split('-').map(str::to_owned).collect::<Vec<_>>(), None)
    } else {
        let mut parts = vec![host];
        parts.extend(segments(url)?);
        (parts, user)
    };
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric())) {
        return Err(
            "the webhook token must be three parts, T…/B…/X…, as in https://hooks.slack.com/services/T…/B…/X…".into()
        );
    }
    username = query.take("botname").or(username);
    let channel = query.take("channel");
    query.done("botname, channel")?;
    let path: Vec<&str> = std::iter::once("services").chain(parts.iter().map(String::as_str)).collect();
    Ok(TargetKind::Chat {
        flavor: ChatFlavor::Slack,
        url: https_url(true, "hooks.slack.com", None, &path)?,
        username,
        channel,
    })
}

/// `mattermost://[username@]host[:port]/token[/channel][?disabletls=yes]`.
fn mattermost(url: &Url, mut query: Query) -> Result<TargetKind, String> {
    let segs = segments(url)?;
    let (token, channel) = match segs.as_slice() {
        [token] => (token, None),
        [token, channel] => (token, Some(channel.clone())),
        _ => return Err("expected mattermost://[username@]host[:port]/token[/channel]".into()),
    };
    let tls = !query.take_flag("disabletls")?;
    let username = user_of(url)?;
    query.done("disabletls")?;
    let hook = https_url(tls, &host_of(url)?, url.port(), &["hooks", token])?;
    Ok(TargetKind::Chat { flavor: ChatFlavor::Mattermost, url: hook, username, channel })
}

/// `rocketchat://[username@]host[:port]/tokenA/tokenB[/channel][?disabletls=yes]`.
fn rocketchat(url: &Url, mut query: Query) -> Result<TargetKind, String> {
    let segs = segments(url)?;
    let (a, b, channel) = match segs.as_slice() {
        [a, b] => (a, b, None),
        [a, b, channel] => (a, b, Some(channel.clone())),
        _ => return Err("expected rocketchat://[username@]host[:port]/tokenA/tokenB[/channel]".into()),
    };
    let tls = !query.take_flag("disabletls")?;
    let username = user_of(url)?;
    query.done("disabletls")?;
    let hook = https_url(tls, &host_of(url)?, url.port(), &["hooks", a, b])?;
    Ok(TargetKind::Chat { flavor: ChatFlavor::RocketChat, url: hook, username, channel })
}

/// `discord://token@webhookid[?username=…]`.
fn discord(url: &Url, mut query: Query) -> Result<TargetKind, String> {
    let id = host_of(url)?;
    let token = user_of(url)?.ok_or("the webhook token is missing: discord://token@webhookid")?;
    if !id.chars().all(|c| c.is_ascii_digit()) || !segments(url)?.is_empty() {
        return Err("expected discord://token@webhookid, the two last parts of the webhook URL".into());
    }
    let username = query.take("username");
    query.done("username")?;
    let hook = https_url(true, "discord.com", None, &["api", "webhooks", &id, &token])?;
    Ok(TargetKind::Discord { url: hook, username })
}

/// `ntfy://[user:password@]host[:port]/topic[?scheme=http&priority=…&tags=…]`; a password alone
/// is an access token.
fn ntfy(url: &Url, mut query: Query) -> Result<TargetKind, String> {
    let segs = segments(url)?;
    let [topic] = segs.as_slice() else {
        return Err("expected ntfy://[user:password@]host[:port]/topic".into());
    };
    let tls = match query.take("scheme").as_deref() {
        None | Some("https") => true,
        Some("http") => false,
        Some(other) => return Err(format!("scheme='{other}' is not http or https")),
    };
    let auth = match (user_of(url)?, password_of(url)?) {
        (None, None) => None,
        (None, Some(token)) => Some(HttpAuth::Bearer(token)),
        (Some(user), password) => Some(HttpAuth::Basic { user, password: password.unwrap_or_default() }),
    };
    let priority = query.take("priority");
    let tags = query.take("tags");
    query.done("scheme, priority, tags")?;
    Ok(TargetKind::Ntfy { url: https_url(tls, &host_of(url)?, url.port(), &[topic])?, auth, priority, tags })
}

/// `smtp://user:password@host:port/?from=…&to=…[,…]` with shoutrrr's options: `encryption`
/// (auto, none, explicittls, implicittls), `usestarttls`, `fromname`, `subject`, `clienthost`.
/// `smtps://` is implicit TLS. Auto: implicit TLS on port 465; else STARTTLS, required when a
/// password would otherwise travel in clear.
fn smtp(url: &Url, mut query: Query) -> Result<SmtpTarget, String> {
    let host = host_of(url)?;
    let implicit_scheme = url.scheme() == "smtps";
    let port = url.port().unwrap_or(if implicit_scheme { 465 } else { 25 });
    let credentials = match (user_of(url)?, password_of(url)?) {
        (None, None) => None,
        (Some(user), Some(password)) => Some((user, password)),
        _ => return Err("give both user and password (smtp://user:password@host), or neither".into()),
    };
    let from_name = query.take("fromname");
    let from = query.take("from").or(query.take("fromaddress")).ok_or("from=ADDRESS is missing")?;
    let from = mailbox(&from, from_name)?;
    let to = query.take("to").or(query.take("toaddresses")).ok_or("to=ADDRESS[,ADDRESS…] is missing")?;
    let to = to
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| mailbox(a, None))
        .collect::<Result<Vec<_>, _>>()?;
    if to.is_empty() {
        return Err("to= names no address".into());
    }
    let starttls_wanted = match query.take("usestarttls") {
        None => true,
        Some(v) => yes_no(&v).ok_or_else(|| format!("usestarttls='{v}' is not yes or no"))?,
    };
    let security = match query.take("encryption").map(|e| e.to_ascii_lowercase()).as_deref() {
        _ if implicit_scheme => SmtpSecurity::Implicit,
        None | Some("auto") if port == 465 => SmtpSecurity::Implicit,
        None | Some("auto") if !starttls_wanted => SmtpSecurity::None,
        None | Some("auto") => SmtpSecurity::StartTls { required: credentials.is_some() },
        Some("none") => SmtpSecurity::None,
        Some("explicittls" | "starttls") => SmtpSecurity::StartTls { required: true },
        Some("implicittls" | "tls") => SmtpSecurity::Implicit,
        Some(other) => return Err(format!("encryption='{other}' is not auto, none, explicittls or implicittls")),
    };
    if security == SmtpSecurity::None && credentials.is_some() {
        return Err("encryption=none would send the password in clear; use STARTTLS or implicit TLS".into());
    }
    match query.take("auth").map(|a| a.to_ascii_lowercase()).as_deref() {
        None | Some("plain" | "login" | "unknown" | "none") => {}
        Some(other) => return Err(format!("auth='{other}' is not supported; plain or login are")),
    }
    let subject = query.take("subject").unwrap_or_else(|| "db-backup".into());
    let client_host = query.take("clienthost");
    query.done("from, fromname, to, encryption, usestarttls, auth, subject, clienthost")?;
    Ok(SmtpTarget { host, port, credentials, from, to, security, subject, client_host })
}

fn mailbox(address: &str, name: Option<String>) -> Result<Mailbox, String> {
    let address = address.trim().parse().map_err(|_| format!("'{address}' is not an email address"))?;
    Ok(Mailbox::new(name, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_of(t: &Target) -> String {
        match &t.kind {
            TargetKind::Generic { url, .. }
            | TargetKind::Chat { url, .. }
            | TargetKind::Discord { url, .. }
            | TargetKind::Ntfy { url, .. } => url.to_string(),
            TargetKind::Smtp(s) => format!("{}:{}", s.host, s.port),
        }
    }

    #[test]
    fn generic_urls_become_json_posts_with_headers_and_pass_through_query() {
        let t = parse("generic+https://hooks.example.com/in/abc?x=1&@Authorization=Bearer%20tok").unwrap();
        let TargetKind::Generic { url, headers } = &t.kind else { panic!("{t:?}") };
        assert_eq!(url.as_str(), "https://hooks.example.com/in/abc?x=1");
        assert_eq!(headers, &vec![("Authorization".to_string(), "Bearer tok".to_string())]);
        assert_eq!(url_of(&parse("generic+http://127.0.0.1:8080/h").unwrap()), "http://127.0.0.1:8080/h");
        assert_eq!(url_of(&parse("generic://example.com/h").unwrap()), "https://example.com/h");
        assert_eq!(url_of(&parse("generic://example.com/h?disabletls=yes").unwrap()), "http://example.com/h");
    }

    #[test]
    fn slack_webhooks_in_both_shoutrrr_forms() {
        let new = parse("slack://hook:T000-B000-XXXX@webhook?channel=ops").unwrap();
        let old = parse("slack://bot@T000/B000/XXXX").unwrap();
        assert_eq!(url_of(&new), "https://hooks.slack.com/services/T000/B000/XXXX");
        assert_eq!(url_of(&old), url_of(&new));
        let TargetKind::Chat { username, channel, .. } = &old.kind else { panic!() };
        assert_eq!((username.as_deref(), channel.as_deref()), (Some("bot"), None));
        let err = parse("slack://xoxb:secret@channel").unwrap_err();
        assert!(err.reason.contains("only webhooks"), "{err}");
        assert!(parse("slack://T000/B000").is_err());
    }

    #[test]
    fn mattermost_rocketchat_discord_ntfy_build_their_webhook_urls() {
        assert_eq!(
            url_of(&parse("mattermost://bot@chat.example.com/tok/ops").unwrap()),
            "https://chat.example.com/hooks/tok"
        );
        assert_eq!(
            url_of(&parse("mattermost://127.0.0.1:8065/tok?disabletls=yes").unwrap()),
            "http://127.0.0.1:8065/hooks/tok"
        );
        assert_eq!(
            url_of(&parse("rocketchat://rc.example.com/a/b/%23ops").unwrap()),
            "https://rc.example.com/hooks/a/b"
        );
        assert_eq!(url_of(&parse("discord://tok@123456").unwrap()), "https://discord.com/api/webhooks/123456/tok");
        let n = parse("ntfy://:tk_abc@ntfy.example.com/backups?priority=high&scheme=http").unwrap();
        assert_eq!(url_of(&n), "http://ntfy.example.com/backups");
        let TargetKind::Ntfy { auth, priority, .. } = &n.kind else { panic!() };
        assert_eq!(auth, &Some(HttpAuth::Bearer("tk_abc".into())));
        assert_eq!(priority.as_deref(), Some("high"));
    }

    #[test]
    fn smtp_security_follows_scheme_port_and_options() {
        let sec = |u: &str| match parse(u).unwrap().kind {
            TargetKind::Smtp(s) => s.security,
            _ => panic!(),
        };
        let q = "?from=db@example.com&to=ops@example.com";
        assert_eq!(sec(&format!("smtp://u:p@mail.example.com:587/{q}")), SmtpSecurity::StartTls { required: true });
        assert_eq!(sec(&format!("smtp://mail.example.com/{q}")), SmtpSecurity::StartTls { required: false });
        assert_eq!(sec(&format!("smtp://u:p@mail.example.com:465/{q}")), SmtpSecurity::Implicit);
        assert_eq!(sec(&format!("smtps://u:p@mail.example.com/{q}")), SmtpSecurity::Implicit);
        assert_eq!(
            sec(&format!("smtp://u:p@mail.example.com:2525/{q}&encryption=ImplicitTLS")),
            SmtpSecurity::Implicit
        );
        assert_eq!(sec(&format!("smtp://mail.example.com/{q}&encryption=none")), SmtpSecurity::None);
        let TargetKind::Smtp(s) = parse(&format!("smtp://u%40x:p%2Fw@h/{q},b@example.com&fromname=DB")).unwrap().kind
        else {
            panic!()
        };
        assert_eq!(s.credentials, Some(("u@x".into(), "p/w".into())));
        assert_eq!(s.to.len(), 2);
        assert_eq!(s.from.to_string(), "DB <db@example.com>");
    }

    #[test]
    fn bad_urls_are_refused_naming_the_url_without_its_secrets() {
        let cases = [
            ("telegram://tok3n@telegram?chats=1", "unknown scheme 'telegram'"),
            ("smtp://user:hunter2@mail.example.com/?to=a@example.com", "from=ADDRESS is missing"),
            ("smtp://user:hunter2@mail.example.com/?from=a@example.com&to=b@example.com&encryption=none", "in clear"),
            ("smtp://user:hunter2@h/?from=nope&to=b@example.com", "'nope' is not an email address"),
            ("ntfy://u:hunter2@h/topic?colour=red", "unknown query parameter 'colour'"),
            ("discord://hunter2@not-a-number", "discord://token@webhookid"),
            ("generic+https://u:hunter2@[::1/x", "not a URL"),
            ("hunter2", "not a URL"),
        ];
        for (raw, want) in cases {
            let err = parse(raw).unwrap_err().to_string();
            assert!(err.contains(want), "{raw}: {err}");
            assert!(!err.contains("hunter2") && !err.contains("tok3n"), "secret in: {err}");
            assert!(err.starts_with("notification URL '"), "{err}");
        }
    }

    #[test]
    fn redaction_keeps_scheme_host_and_keys_only() {
        assert_eq!(
            redact("smtp://user:pw@mail.example.com:587/?from=a@b&to=c@d"),
            "smtp://***@mail.example.com:587?from=***&to=***"
        );
        assert_eq!(redact("generic+https://hooks.example.com/t/secret"), "generic+https://hooks.example.com/***");
        assert_eq!(redact("slack://hook:T-B-X@webhook"), "slack://***@webhook");
        assert_eq!(redact("weird://[bad"), "weird://***");
    }
}
