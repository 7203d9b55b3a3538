//! Sending one message: HTTP through reqwest (rustls, bundled roots), email through lettre
//! (rustls), each attempt bounded in time, a few attempts with backoff.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::message::{Email, HttpRequest};
use super::target::{HttpAuth, SmtpSecurity, SmtpTarget};

/// How hard delivery tries before giving up.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Per attempt.
    pub timeout: Duration,
    pub attempts: u32,
    /// Before the second attempt; doubles after each.
    pub backoff: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { timeout: Duration::from_secs(10), attempts: 3, backoff: Duration::from_secs(2) }
    }
}

/// One message to one place.
#[derive(Debug, Clone)]
pub enum Job {
    Http(HttpRequest),
    Email(Box<SmtpTarget>, Email),
}

/// Everything attempts share: the HTTP client and the extra trusted certificates.
pub struct Sender {
    pub http: reqwest::Client,
    pub extra_roots_pem: Option<Vec<u8>>,
    pub policy: Policy,
}

impl Sender {
    pub fn new(extra_roots_pem: Option<Vec<u8>>, policy: Policy) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("db-backup/", env!("CARGO_PKG_VERSION")))
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::limited(3));
        if let Some(pem) = &extra_roots_pem {
            for cert in
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("DB_BACKUP_NOTIFY_CA_FILE: {e}"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| format!("cannot set up the HTTP client for notifications: {e}"))?;
        Ok(Sender { http, extra_roots_pem, policy })
    }

    /// Tries up to `policy.attempts` times; the last error when every attempt failed.
    pub async fn deliver(&self, job: &Job) -> Result<(), String> {
        let mut delay = self.policy.backoff;
        let mut last = String::new();
        for attempt in 1..=self.policy.attempts {
            let outcome = tokio::time::timeout(self.policy.timeout, self.attempt(job)).await;
            match outcome {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(_) => last = self.no_answer(),
            }
            if attempt < self.policy.attempts {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        Err(last)
    }

    async fn attempt(&self, job: &Job) -> Result<(), String> {
        match job {
            Job::Http(request) => self.post(request).await,
            Job::Email(target, email) => self.mail(target, email).await,
        }
    }

    async fn post(&self, r: &HttpRequest) -> Result<(), String> {
        let mut builder =
            self.http.post(r.url.clone()).header(reqwest::header::CONTENT_TYPE, r.content_type).body(r.body.clone());
        for (name, value) in &r.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder = match &r.auth {
            None => builder,
            Some(HttpAuth::Basic { user, password }) => builder.basic_auth(user, Some(password)),
            Some(HttpAuth::Bearer(token)) => builder.bearer_auth(token),
        };
        let response = builder.send().await.map_err(|e| self.describe_http_error(e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered HTTP {status}"))
        }
    }

    async fn mail(&self, t: &SmtpTarget, email: &Email) -> Result<(), String> {
        let transport = self.smtp_transport(t)?;
        let mut message = Message::builder().from(t.from.clone()).subject(email.subject.clone());
        for to in &t.to {
            message = message.to(to.clone());
        }
        let message = message
            .message_id(None)
            .header(ContentType::TEXT_PLAIN)
            .body(email.text.clone())
            .map_err(|e| format!("cannot build the email: {e}"))?;
        transport.send(message).await.map(|_| ()).map_err(|e| describe_chain("cannot send the email", &e))
    }

    fn smtp_transport(&self, t: &SmtpTarget) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let tls_parameters = || -> Result<TlsParameters, String> {
            let mut params = TlsParameters::builder(t.host.clone());
            if let Some(pem) = &self.extra_roots_pem {
                let cert = Certificate::from_pem(pem).map_err(|e| format!("DB_BACKUP_NOTIFY_CA_FILE: {e}"))?;
                params = params.add_root_certificate(cert);
            }
            params.build_rustls().map_err(|e| format!("cannot set up TLS for {}: {e}", t.host))
        };
        let tls = match t.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::StartTls { required: true } => Tls::Required(tls_parameters()?),
            SmtpSecurity::StartTls { required: false } => Tls::Opportunistic(tls_parameters()?),
            SmtpSecurity::Implicit => Tls::Wrapper(tls_parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&t.host)
            .port(t.port)
            .tls(tls)
            .timeout(Some(self.policy.timeout));
        if let Some((user, password)) = &t.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        if let Some(name) = &t.client_host {
            builder = builder.hello_name(ClientId::Domain(name.clone()));
        }
        Ok(builder.build())
    }
}

impl Sender {
    /// reqwest's own message is "error sending request"; the cause is in its sources.
    fn describe_http_error(&self, e: reqwest::Error) -> String {
        if e.is_timeout() {
            return self.no_answer();
        }
        describe_chain(if e.is_connect() { "cannot connect" } else { "the request failed" }, &e)
    }

    fn no_answer(&self) -> String {
        format!("no answer within {} s", self.policy.timeout.as_secs_f64())
    }
}

fn describe_chain(what: &str, e: &dyn std::error::Error) -> String {
    let mut parts = vec![what.to_string(), e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
