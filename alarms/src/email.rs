//! E-mail: each notification as a plain-text message to a company's
//! `mailto:` channels, sent through a [`MailSender`] — an SMTP relay
//! ([`SmtpSender`]: TLS from the first byte with `smtps://`, STARTTLS with
//! `smtp://…?tls=required`, AUTH from the URL's user and password).
//!
//! The message's `Message-ID` is made of the notification and channel, so
//! the rare resend after a crash is the same message to mail clients that
//! drop duplicates. A 5xx answer is final (a dead letter); a 4xx answer, a
//! timeout or a lost connection is retried.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, Message, MultiPart, SinglePart, header::ContentType};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::channel::{Channel, ChannelDirectory, ChannelKind, ChannelNotifier, channel, routed};
use crate::chat::{details, headline};
use crate::notify::{Notifier, NotifyError};
use crate::store::Notification;

/// Where e-mails go out (an SMTP relay; SES on AWS).
#[async_trait]
pub trait MailSender: Send + Sync + 'static {
    async fn send(&self, message: Message) -> Result<(), NotifyError>;
}

/// A file attached to a message (a report's CSV).
#[derive(Debug, Clone)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// An SMTP relay.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpSender {
    /// A relay at `url` (`smtps://user:password@host:465`,
    /// `smtp://user:password@host:587?tls=required`, or plain
    /// `smtp://host:25` on a trusted network); `ca_pem` adds a root
    /// certificate to the system's for a relay with a private CA.
    pub fn new(url: &str, ca_pem: Option<&[u8]>, timeout: Duration) -> Result<Self, String> {
        // lettre's errors for a bad URL never include the password.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| e.to_string())?;
        if let Some(pem) = ca_pem {
            let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
            let host = parsed.host_str().unwrap_or_default().to_owned();
            let certificate = Certificate::from_pem(pem).map_err(|e| format!("SMTP CA certificate: {e}"))?;
            let parameters = TlsParameters::builder(host)
                .add_root_certificate(certificate)
                .build_rustls()
                .map_err(|e| e.to_string())?;
            let starttls = parsed.query_pairs().any(|(k, v)| k == "tls" && v == "required");
            builder = match parsed.scheme() {
                "smtps" => builder.tls(Tls::Wrapper(parameters)),
                "smtp" if starttls => builder.tls(Tls::Required(parameters)),
                _ => return Err("a CA certificate needs smtps:// or smtp://…?tls=required".into()),
            };
        }
        Ok(SmtpSender { transport: builder.timeout(Some(timeout)).build() })
    }
}

#[async_trait]
impl MailSender for SmtpSender {
    async fn send(&self, message: Message) -> Result<(), NotifyError> {
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(err) if err.is_permanent() => Err(NotifyError::permanent(format!("SMTP: {err}"))),
            Err(err) => Err(NotifyError::retryable(format!("SMTP: {err}"))),
        }
    }
}

/// No relay configured: every send fails, retryably, saying which setting
/// is missing (so the dead letter that follows explains itself).
pub struct NoRelay(pub &'static str);

#[async_trait]
impl MailSender for NoRelay {
    async fn send(&self, _message: Message) -> Result<(), NotifyError> {
        Err(NotifyError::retryable(format!("no SMTP relay: {}", self.0)))
    }
}

/// Builds a message from `from` to `to`, with `attachments` after the text.
pub fn message(
    from: &Mailbox,
    to: &str,
    subject: &str,
    text: String,
    message_id: Option<String>,
    attachments: Vec<Attachment>,
) -> Result<Message, NotifyError> {
    let to: Mailbox = to.parse().map_err(|e| NotifyError::permanent(format!("address {to:?}: {e}")))?;
    let builder = Message::builder().from(from.clone()).to(to).subject(subject).message_id(message_id);
    let text = SinglePart::plain(text);
    let built = if attachments.is_empty() {
        builder.singlepart(text)
    } else {
        let mut parts = MultiPart::mixed().singlepart(text);
        for file in attachments {
            let content_type = ContentType::parse(&file.content_type)
                .map_err(|e| NotifyError::permanent(format!("content type {:?}: {e}", file.content_type)))?;
            parts = parts
                .singlepart(lettre::message::Attachment::new(file.filename).body(file.body, content_type));
        }
        builder.multipart(parts)
    };
    built.map_err(|e| NotifyError::permanent(format!("message: {e}")))
}

/// Alarm notifications by e-mail.
pub struct EmailNotifier {
    directory: Arc<dyn ChannelDirectory>,
    sender: Arc<dyn MailSender>,
    from: Mailbox,
}

impl EmailNotifier {
    pub fn new(directory: Arc<dyn ChannelDirectory>, sender: Arc<dyn MailSender>, from: Mailbox) -> Self {
        EmailNotifier { directory, sender, from }
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn kind(&self) -> &'static str {
        "email"
    }

    async fn targets(&self, notification: &Notification) -> Result<Vec<String>, NotifyError> {
        let channels = routed(self.directory.as_ref(), ChannelKind::Email, notification).await?;
        Ok(channels.into_iter().map(|c| c.id).collect())
    }

    async fn send(&self, target: &str, notification: &Notification) -> Result<(), NotifyError> {
        let channel = channel(self.directory.as_ref(), &notification.transition.company, target).await?;
        self.deliver(&channel, notification).await
    }
}

#[async_trait]
impl ChannelNotifier for EmailNotifier {
    fn channel_kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    async fn deliver(&self, channel: &Channel, notification: &Notification) -> Result<(), NotifyError> {
        let (company, target) = (&notification.transition.company, &channel.id);
        let Some(to) = channel.url.strip_prefix("mailto:") else {
            return Err(NotifyError::permanent(format!("channel {target} is not an e-mail channel")));
        };
        let domain = self.from.email.domain();
        let text = format!(
            "{}\n\n-- \nWenu alarm notification for company {company}, sent to this address as channel {target}.\n",
            details(notification)
        );
        let id = format!("<{}.{target}@{domain}>", notification.id);
        let message = message(&self.from, to, &headline(notification), text, Some(id), Vec::new())?;
        self.sender.send(message).await
    }
}
