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
        crate::tls::install_crypto_provider();
        // The bundled roots and the extra ones only: reqwest's default, the platform verifier,
        // would look for CA files, and the runtime image has none.
        let mut roots = Vec::new();
        for der in crate::tls::bundled_roots() {
            roots.push(reqwest::Certificate::from_der(der).map_err(|e| format!("bundled root certificate: {e}"))?);
        }
        if let Some(pem) = &extra_roots_pem {
            roots.extend(
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("DB_BACKUP_NOTIFY_CA_FILE: {e}"))?,
            );
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("db-backup/", env!("CARGO_PKG_VERSION")))
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .tls_certs_only(roots)
            .build()
            .map_err(|e| format!("cannot set up the HTTP client for notifications: {e}"))?;
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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::*;

    /// A real TLS server (rustls) for `localhost` with a certificate from a throwaway CA: answers
    /// every request 200 and records its request line. Returns the port, the CA's PEM and the log.
    fn https_receiver() -> (u16, Vec<u8>, Arc<Mutex<Vec<String>>>) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "db-backup test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem().into_bytes();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf =
            CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(leaf.der().to_vec())], key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&log);
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
                let mut reader = BufReader::new(rustls::StreamOwned::new(conn, tcp));
                // A refused handshake ends here with an error: nothing to record.
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                seen.lock().unwrap().push(line.trim().to_string());
                let stream = reader.get_mut();
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                stream.conn.send_close_notify();
                let _ = stream.flush();
            }
        });
        (port, ca_pem, log)
    }

    fn post_to(port: u16) -> Job {
        Job::Http(HttpRequest {
            url: url::Url::parse(&format!("https://localhost:{port}/hook")).unwrap(),
            headers: Vec::new(),
            auth: None,
            content_type: "application/json",
            body: b"{}".to_vec(),
        })
    }

    fn once() -> Policy {
        Policy { timeout: Duration::from_secs(10), attempts: 1, backoff: Duration::ZERO }
    }

    #[tokio::test]
    async fn https_reaches_a_server_whose_ca_is_given_and_refuses_it_otherwise() {
        let (port, ca_pem, log) = https_receiver();

        let trusting = Sender::new(Some(ca_pem), once()).unwrap();
        trusting.deliver(&post_to(port)).await.unwrap();
        assert_eq!(*log.lock().unwrap(), vec!["POST /hook HTTP/1.1".to_string()]);

        // Only the bundled roots: the test CA is not among them, so the certificate is refused.
        let bundled_only = Sender::new(None, once()).unwrap();
        let err = bundled_only.deliver(&post_to(port)).await.unwrap_err();
        assert!(err.contains("certificate"), "{err}");
        assert_eq!(log.lock().unwrap().len(), 1, "nothing was sent over the refused connection");
    }
}
