//! A real SMTP server on 127.0.0.1 for the e-mail tests: Python's
//! aiosmtpd from the venv the test command installs (`SMTP_PYTHON`),
//! optionally with STARTTLS required (a certificate the test made) and AUTH
//! required (one user). Each message it accepts comes back as a [`Mail`].
//! Recipients `busy@…` get a 451 (try later), `nobody@…` a 550 (never).
//!
//! The server reads its stdin until it closes, so it ends with the test
//! process that holds the pipe.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

const LAUNCH: &str = r#"
import email, email.policy, json, socket, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

cert, key, user, password = sys.argv[1:5]

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        if address.startswith("nobody@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        attachments = [
            {"filename": part.get_filename(), "content_type": part.get_content_type(),
             "content": part.get_content() if part.get_content_maintype() == "text" else None}
            for part in message.iter_attachments()
        ]
        print(json.dumps({
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf8", "replace"),
            "headers": [[name, str(value)] for name, value in message.items()],
            "text": text.get_content() if text else "",
            "attachments": attachments,
            "tls": session.ssl is not None,
            "login": session.auth_data.login.decode() if session.auth_data else None,
        }), flush=True)
        return "250 OK"

def authenticate(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login.decode() == user and auth_data.password.decode() == password
    return AuthResult(success=ok, handled=False, auth_data=auth_data)

probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
options = {}
if cert:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    options.update(tls_context=context, require_starttls=True)
if user:
    options.update(authenticator=authenticate, auth_required=True, auth_require_tls=bool(cert))
controller = Controller(Handler(), hostname="127.0.0.1", port=port, **options)
controller.start()
print(port, flush=True)
sys.stdin.read()
controller.stop()
"#;

/// One message the server accepted, as Python's `email` package reads it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The whole message as sent (headers and MIME body).
    pub data: String,
    /// Headers, decoded (RFC 2047 words turned back into text).
    pub headers: Vec<(String, String)>,
    /// The text/plain body, decoded.
    pub text: String,
    /// Attachments: file name, content type, and the content of text ones.
    pub attachments: Vec<(String, String, Option<String>)>,
    /// Whether it came over TLS (after STARTTLS).
    pub tls: bool,
    /// The user it authenticated as.
    pub login: Option<String>,
}

impl Mail {
    /// A header's decoded value (the first of that name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.clone())
    }
}

/// How the server is set up.
#[derive(Debug, Default)]
pub struct SmtpOptions<'a> {
    /// PEM certificate and key: STARTTLS is offered and required.
    pub tls: Option<(&'a Path, &'a Path)>,
    /// User and password AUTH requires.
    pub auth: Option<(&'a str, &'a str)>,
}

/// A running server.
pub struct SmtpServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Mail>>>,
    arrived: Arc<Notify>,
    _process: Child,
    _stdin: ChildStdin,
}

impl SmtpServer {
    pub fn start(options: SmtpOptions<'_>) -> SmtpServer {
        let python = std::env::var("SMTP_PYTHON")
            .expect("SMTP_PYTHON must name a Python with aiosmtpd installed; scripts/test.sh sets it up");
        let (cert, key) = options.tls.map_or((String::new(), String::new()), |(c, k)| {
            (c.display().to_string(), k.display().to_string())
        });
        let (user, password) = options.auth.unwrap_or_default();
        let mut process = Command::new(&python)
            .args(["-c", LAUNCH, &cert, &key, user, password])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start aiosmtpd with {python}: {e}"));
        let mut stdout = BufReader::new(process.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the server prints its port");
        let port =
            line.trim().parse().unwrap_or_else(|_| panic!("aiosmtpd did not start (printed {line:?})"));
        let received: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let arrived: Arc<Notify> = Arc::default();
        let (into, wake) = (received.clone(), arrived.clone());
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { return };
                let Ok(mail) = serde_json::from_str::<Value>(&line) else { continue };
                into.lock().unwrap().push(Mail {
                    from: mail["from"].as_str().unwrap_or_default().to_owned(),
                    to: mail["to"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect(),
                    data: mail["data"].as_str().unwrap_or_default().to_owned(),
                    headers: mail["headers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|h| {
                            (
                                h[0].as_str().unwrap_or_default().to_owned(),
                                h[1].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect(),
                    text: mail["text"].as_str().unwrap_or_default().replace("\r\n", "\n"),
                    attachments: mail["attachments"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            let text = |key: &str| a[key].as_str().unwrap_or_default().to_owned();
                            (text("filename"), text("content_type"), a["content"].as_str().map(str::to_owned))
                        })
                        .collect(),
                    tls: mail["tls"].as_bool().unwrap_or_default(),
                    login: mail["login"].as_str().map(str::to_owned),
                });
                wake.notify_waiters();
            }
        });
        let stdin = process.stdin.take().expect("piped");
        SmtpServer { port, received, arrived, _process: process, _stdin: stdin }
    }

    pub fn received(&self) -> Vec<Mail> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `n` messages arrived (20 s at most).
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        loop {
            let arrived = self.arrived.notified();
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            tokio::time::timeout(Duration::from_secs(20), arrived)
                .await
                .unwrap_or_else(|_| panic!("{} of {n} e-mails after 20 s", received.len()));
        }
    }
}
