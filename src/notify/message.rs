//! What each target receives for a notification (pure): a title and text for people, the JSON
//! body for scripts, and the HTTP request or email every scheme expects.

use serde_json::json;
use url::Url;

use super::event::{EventKind, Notification};
use super::target::{ChatFlavor, HttpAuth, SmtpTarget, TargetKind};

/// Discord refuses longer messages.
const DISCORD_MAX_CHARS: usize = 2000;

/// One HTTP request, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub auth: Option<HttpAuth>,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// One email, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub subject: String,
    pub text: String,
}

pub enum Outgoing {
    Http(HttpRequest),
    Email(Email),
}

/// `db-backup: backup of db failed on host1`.
pub fn title(n: &Notification) -> String {
    let what = match n.event {
        EventKind::Failure => format!("backup of {} failed", n.service),
        EventKind::Recovery => format!("backup of {} works again", n.service),
        EventKind::Stale => format!("backups of {} are stale", n.service),
        EventKind::Success => format!("backup of {} succeeded", n.service),
        EventKind::DrillFailure => format!("restore drill of {} failed", n.service),
    };
    format!("db-backup: {what} on {}", n.host)
}

/// The facts, one per line, for chat messages and emails.
pub fn text(n: &Notification) -> String {
    let mut lines = Vec::new();
    let mut add = |k: &str, v: String| lines.push(format!("{k}: {v}"));
    if let Some(e) = &n.error {
        add("error", e.clone());
    }
    match (n.event, n.failures) {
        (EventKind::Failure, Some(c)) if c > 1 => {
            add("failures in a row", format!("{c} (repeats are sent at most hourly)"))
        }
        (EventKind::Recovery, Some(c)) => add("after failures", c.to_string()),
        _ => {}
    }
    let container = match (&n.container, &n.engine) {
        (Some(c), Some(e)) => Some(format!("{c} ({e})")),
        (c, e) => c.clone().or(e.clone()),
    };
    if let Some(c) = container {
        add("container", c);
    }
    if let Some(a) = &n.archive {
        add("archive", a.clone());
    }
    if let Some(b) = n.bytes {
        add("size", crate::output::human_bytes(b));
    }
    if let Some(d) = n.duration_seconds {
        add("duration", format!("{d:.1} s"));
    }
    add("at", n.at.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    if let Some(next) = n.next_run {
        add("next run", next.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    }
    lines.join("\n")
}

/// What the target is sent for this notification.
pub fn outgoing(target: &TargetKind, n: &Notification) -> Outgoing {
    let title = title(n);
    let text = text(n);
    let json_body = |v: serde_json::Value| v.to_string().into_bytes();
    let post = |url: &Url, body: Vec<u8>| HttpRequest {
        url: url.clone(),
        headers: Vec::new(),
        auth: None,
        content_type: "application/json",
        body,
    };
    match target {
        TargetKind::Generic { url, headers } => {
            let body = serde_json::to_vec(n).unwrap_or_default();
            Outgoing::Http(HttpRequest { headers: headers.clone(), ..post(url, body) })
        }
        TargetKind::Chat { flavor, url, username, channel } => {
            let (title, text) = match flavor {
                // Slack reads `<…>` as links and mentions (`<!channel>`): a hostile error text
                // must not notify a whole workspace. Its documented escaping is &, <, >.
                ChatFlavor::Slack => (slack_escape(&title), slack_escape(&text)),
                ChatFlavor::Mattermost | ChatFlavor::RocketChat => (title, text),
            };
            let mut body = json!({ "text": format!("*{title}*\n{text}") });
            if let Some(u) = username {
                body[if *flavor == ChatFlavor::RocketChat { "alias" } else { "username" }] = json!(u);
            }
            if let Some(c) = channel {
                body["channel"] = json!(c);
            }
            Outgoing::Http(post(url, json_body(body)))
        }
        TargetKind::Discord { url, username } => {
            let content: String = format!("**{title}**\n{text}").chars().take(DISCORD_MAX_CHARS).collect();
            // No mention in a message ever pings anyone (`@everyone` in an error text).
            let mut body = json!({ "content": content, "allowed_mentions": { "parse": [] } });
            if let Some(u) = username {
                body["username"] = json!(u);
            }
            Outgoing::Http(post(url, json_body(body)))
        }
        TargetKind::Ntfy { url, auth, priority, tags } => {
            let mut headers = vec![("Title".to_string(), title)];
            let default_priority = match n.event {
                EventKind::Failure | EventKind::Stale | EventKind::DrillFailure => "high",
                EventKind::Recovery | EventKind::Success => "default",
            };
            headers.push(("Priority".into(), priority.clone().unwrap_or_else(|| default_priority.into())));
            if let Some(t) = tags {
                headers.push(("Tags".into(), t.clone()));
            }
            Outgoing::Http(HttpRequest {
                url: url.clone(),
                headers,
                auth: auth.clone(),
                content_type: "text/plain; charset=utf-8",
                body: text.into_bytes(),
            })
        }
        TargetKind::Smtp(smtp) => Outgoing::Email(email(smtp, &title, text)),
    }
}

/// Slack's escaping of message text: `&`, `<` and `>` only.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn email(smtp: &SmtpTarget, title: &str, text: String) -> Email {
    // The title already starts with "db-backup: "; a custom subject prefix replaces that.
    let rest = title.strip_prefix("db-backup: ").unwrap_or(title);
    Email { subject: format!("{}: {rest}", smtp.subject), text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::target::parse;
    use chrono::TimeZone;

    fn failure() -> Notification {
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap();
        let mut n = Notification::new(EventKind::Failure, "db", "host1", at);
        n.error = Some("pg_dump: connection refused".into());
        n.engine = Some("postgres".into());
        n.container = Some("app-db-1".into());
        n.failures = Some(3);
        n
    }

    fn http(url: &str) -> HttpRequest {
        match outgoing(&parse(url).unwrap().kind, &failure()) {
            Outgoing::Http(r) => r,
            Outgoing::Email(_) => panic!("{url} is not HTTP"),
        }
    }

    #[test]
    fn generic_sends_the_notification_itself() {
        let r = http("generic+https://example.com/h?@X-Token=abc");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["event"], "failure");
        assert_eq!(v["error"], "pg_dump: connection refused");
        assert_eq!(v["failures"], 3);
        assert_eq!(r.headers, vec![("X-Token".to_string(), "abc".to_string())]);
    }

    #[test]
    fn chat_and_discord_payloads_carry_title_and_facts() {
        let slack: serde_json::Value = serde_json::from_slice(&http("slack://bot@T1/B2/X3").body).unwrap();
        let text = slack["text"].as_str().unwrap();
        assert!(text.starts_with("*db-backup: backup of db failed on host1*"), "{text}");
        assert!(text.contains("error: pg_dump: connection refused") && text.contains("failures in a row: 3"), "{text}");
        assert_eq!(slack["username"], "bot");
        let rc: serde_json::Value = serde_json::from_slice(&http("rocketchat://bot@rc.example.com/a/b").body).unwrap();
        assert_eq!(rc["alias"], "bot");
        let d: serde_json::Value = serde_json::from_slice(&http("discord://tok@42").body).unwrap();
        assert!(d["content"].as_str().unwrap().starts_with("**db-backup: backup of db failed"));
    }

    #[test]
    fn hostile_text_mentions_nobody_on_slack_or_discord() {
        let mut n = failure();
        n.error = Some("role \"<!channel> & @everyone <https://evil.example|x>\" does not exist".into());
        let body = |url: &str| -> serde_json::Value {
            let Outgoing::Http(r) = outgoing(&parse(url).unwrap().kind, &n) else { panic!() };
            serde_json::from_slice(&r.body).unwrap()
        };
        let slack = body("slack://T1/B2/X3");
        let text = slack["text"].as_str().unwrap();
        assert!(text.contains("role \"&lt;!channel&gt; &amp; @everyone &lt;https://evil.example|x&gt;\""), "{text}");
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        let discord = body("discord://tok@42");
        assert_eq!(discord["allowed_mentions"], serde_json::json!({ "parse": [] }));
        assert!(discord["content"].as_str().unwrap().contains("<!channel> & @everyone"), "shown as written");
    }

    #[test]
    fn discord_messages_are_cut_to_its_limit() {
        let mut n = failure();
        n.error = Some("x".repeat(5000));
        let Outgoing::Http(r) = outgoing(&parse("discord://tok@42").unwrap().kind, &n) else { panic!() };
        let d: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(d["content"].as_str().unwrap().chars().count(), DISCORD_MAX_CHARS);
    }

    #[test]
    fn ntfy_gets_plain_text_with_title_and_priority_headers() {
        let r = http("ntfy://ntfy.example.com/backups?tags=warning");
        assert_eq!(r.content_type, "text/plain; charset=utf-8");
        assert!(String::from_utf8(r.body).unwrap().starts_with("error: pg_dump"));
        assert!(r.headers.contains(&("Priority".into(), "high".into())));
        assert!(r.headers.contains(&("Tags".into(), "warning".into())));
    }

    #[test]
    fn email_subject_uses_the_configured_prefix() {
        let url = "smtp://h/?from=a@example.com&to=b@example.com&subject=%5Bbackups%5D";
        let Outgoing::Email(e) = outgoing(&parse(url).unwrap().kind, &failure()) else { panic!() };
        assert_eq!(e.subject, "[backups]: backup of db failed on host1");
        assert!(e.text.contains("container: app-db-1 (postgres)"), "{}", e.text);
    }
}
