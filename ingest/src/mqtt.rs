//! The MQTT side of the edge, on ntex-mqtt (3.1.1 and 5): its codec and
//! protocol state machine; here only the translation of CONNECT, PUBLISH and
//! SUBSCRIBE to the [`Gate`]'s decisions and back to reason codes.
//!
//! Connections live on ntex's worker threads. The gate's work (registry,
//! stream) runs on the server's tokio runtime, handed over through
//! [`Appender`] (in wire order, by the [`Sequencer`]) and spawned logins.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU16;
use std::sync::Arc;

use bytes::Bytes;
use ntex_io::types::PeerAddr;
use ntex_io::{Filter, Io, IoRef};
use ntex_mqtt::{Control, MqttError, MqttServer, QoS, Reason, v3, v5};
use ntex_service::cfg::SharedCfg;
use ntex_service::{ServiceFactory, fn_factory_with_config, fn_service};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use wenu_core::topic::DeviceTopic;

use crate::appender::{Appender, Outcome};
use crate::downlink::Subscribed;
use crate::gate::{Gate, Login, LoginRequest, Publish, now_ms};
use crate::links::{COMMAND_QUEUE, Command, LinkId, Links};
use crate::policy::{COMPANY_PREFIX, ConnectRefusal, PublishRefusal, may_subscribe};
use crate::sequencer::Sequencer;
use crate::tls::peer_certificate;

/// What every connection's services share.
#[derive(Clone)]
pub(crate) struct Shared {
    pub gate: Arc<Gate>,
    pub links: Arc<Links>,
    /// Devices' new downlink subscriptions, for their first delivery.
    pub downlink: mpsc::Sender<Subscribed>,
    /// The server's runtime, where the gate's work runs.
    pub runtime: Handle,
}

/// Why a connection is closed; ntex-mqtt's service error type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Closed {
    /// A publish refused where the protocol cannot say so otherwise.
    Refused(PublishRefusal),
    /// The server could not process the publish (it is shutting down).
    Unavailable,
}

impl From<()> for Closed {
    fn from(_: ()) -> Self {
        Closed::Unavailable
    }
}

/// Every `Closed` closes the connection; refusals a v5 PUBACK can carry are
/// returned as PUBACKs, not errors.
impl TryFrom<Closed> for v5::PublishAck {
    type Error = Closed;
    fn try_from(closed: Closed) -> Result<Self, Closed> {
        Err(closed)
    }
}

/// One accepted connection, from its CONNACK to its end (dropped then).
pub(crate) struct Connection {
    shared: Shared,
    /// The device id, or `company:{id}` for an alarm reader.
    identity: String,
    client_id: String,
    link: LinkId,
    appender: Appender,
    /// Outcomes of the publishes handed to the appender, by packet id.
    pending: RefCell<Pending>,
}

#[derive(Default)]
struct Pending {
    numbered: HashMap<NonZeroU16, oneshot::Receiver<Outcome>>,
    unnumbered: VecDeque<oneshot::Receiver<Outcome>>,
}

impl Connection {
    fn open(shared: &Shared, login: Login, client_id: String, sink: Sink) -> Connection {
        let (commands, queue) = mpsc::channel(COMMAND_QUEUE);
        let link = shared.links.open(&client_id, login.credential().clone(), commands);
        ntex_rt::spawn(obey(queue, sink));
        shared.gate.counters.connected();
        let identity = match login {
            Login::Device { id, .. } => id,
            Login::Reader { company, .. } => format!("{COMPANY_PREFIX}{company}"),
        };
        // Readers get one too: whatever they publish is refused and counted there.
        let appender = Appender::start(shared.gate.clone(), identity.clone(), &shared.runtime);
        let connection = Connection {
            shared: shared.clone(),
            identity,
            client_id,
            link,
            appender,
            pending: RefCell::default(),
        };
        if connection.is_device() {
            record_presence(shared, &connection.identity, true);
        }
        connection
    }

    fn is_device(&self) -> bool {
        !self.identity.starts_with(COMPANY_PREFIX)
    }

    /// Notes that the publish with packet id `id` (none at QoS 0) came off
    /// the wire; returns where its outcome goes once it is [`submit`](Self::submit)ted.
    pub(crate) fn expect(&self, id: Option<NonZeroU16>) -> oneshot::Sender<Outcome> {
        let (answer, outcome) = oneshot::channel();
        let mut pending = self.pending.borrow_mut();
        match id {
            Some(id) => {
                pending.numbered.insert(id, outcome);
            }
            None => pending.unnumbered.push_back(outcome),
        }
        answer
    }

    /// Hands a whole publish to the appender (called by the
    /// [`Sequencer`](crate::sequencer::Sequencer), in wire order).
    pub(crate) fn submit(&self, publish: Publish, answer: oneshot::Sender<Outcome>) {
        self.appender.submit(publish, answer);
    }

    /// Waits for the outcome of the publish with packet id `id` (QoS 0:
    /// none; any QoS 0 outcome will do, it only paces the connection).
    async fn outcome(&self, id: Option<NonZeroU16>) -> Result<(), Closed> {
        let outcome = {
            let mut pending = self.pending.borrow_mut();
            match id {
                Some(id) => pending.numbered.remove(&id),
                None => pending.unnumbered.pop_front(),
            }
        };
        match outcome {
            Some(outcome) => match outcome.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(refusal)) => Err(Closed::Refused(refusal)),
                Err(_) => Err(Closed::Unavailable),
            },
            // The sequencer sees every publish first.
            None => Err(Closed::Unavailable),
        }
    }

    /// Subscriptions: an alarm reader to its company's alarm topic, a
    /// device to its own downlink topics; a device's first subscription to
    /// one gets what waits for it there.
    fn may_subscribe(&self, filter: &str) -> bool {
        if may_subscribe(&self.identity, filter) {
            let new = self.shared.links.subscribe(&self.client_id, self.link, filter);
            if new && let Some((device_id, topic)) = DeviceTopic::parse(filter) {
                let subscribed = Subscribed { device_id: device_id.to_owned(), topic };
                if self.shared.downlink.try_send(subscribed).is_err() {
                    metrics::counter!("wenu_edge_downlink_deferred_total").increment(1);
                }
            }
            true
        } else {
            tracing::info!(identity = ?self.identity, filter = ?filter, "subscription refused");
            false
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let current = self.shared.links.remove(&self.client_id, self.link);
        self.shared.gate.counters.disconnected();
        // A connection taken over by a newer one of the same device says nothing.
        if current && self.is_device() {
            record_presence(&self.shared, &self.identity, false);
        }
    }
}

/// Records a device's arrival or departure, off the connection's path.
fn record_presence(shared: &Shared, device_id: &str, online: bool) {
    let (registry, device_id, at) = (shared.gate.registry.clone(), device_id.to_owned(), now_ms());
    shared.runtime.spawn(async move {
        if let Err(err) = registry.record_presence(&device_id, online, at).await {
            tracing::warn!(error = %err, device = %device_id, "could not record a device's presence");
        }
    });
}

/// A connection's handle for the server's own messages.
enum Sink {
    V3(v3::MqttSink),
    V5(v5::MqttSink),
}

/// Carries out what the rest of the server tells a connection, on its
/// worker; ends when the connection is gone from [`Links`].
async fn obey(mut commands: mpsc::Receiver<Command>, sink: Sink) {
    while let Some(command) = commands.recv().await {
        let delivered = match (command, &sink) {
            (Command::Close, Sink::V3(sink)) => {
                sink.close();
                break;
            }
            (Command::Close, Sink::V5(sink)) => {
                sink.close();
                break;
            }
            (Command::Deliver { topic, payload, receipt }, Sink::V3(sink)) => {
                let payload = ntex_bytes::Bytes::copy_from_slice(&payload);
                let sent = sink.publish(topic).send_at_least_once(payload).await.is_ok();
                acknowledged(sent, receipt)
            }
            (Command::Deliver { topic, payload, receipt }, Sink::V5(sink)) => {
                let payload = ntex_bytes::Bytes::copy_from_slice(&payload);
                let sent = sink.publish(topic).send_at_least_once(payload).await.is_ok();
                acknowledged(sent, receipt)
            }
        };
        if !delivered {
            break;
        }
    }
}

/// Tells whoever waits for a delivery's PUBACK that it came.
fn acknowledged(sent: bool, receipt: Option<oneshot::Sender<()>>) -> bool {
    if sent && let Some(receipt) = receipt {
        let _ = receipt.send(());
    }
    sent
}

fn peer_address(io: &IoRef) -> IpAddr {
    io.query::<PeerAddr>().get().map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.0.ip())
}

/// Runs the login on the server's runtime.
async fn login(shared: &Shared, request: LoginRequest) -> Result<Login, ConnectRefusal> {
    let gate = shared.gate.clone();
    let login = shared.runtime.spawn(async move { gate.login(&request).await });
    login.await.unwrap_or(Err(ConnectRefusal::RegistryUnavailable))
}

async fn handshake_v3(
    shared: Shared,
    handshake: v3::Handshake,
) -> Result<v3::HandshakeAck<Connection>, Closed> {
    let packet = handshake.packet();
    let io = handshake.io().get_ref();
    let request = LoginRequest {
        address: peer_address(&io),
        username: packet.username.as_ref().map(|u| u.to_string()),
        password: packet.password.as_ref().map(|p| Bytes::copy_from_slice(p)),
        certificate: peer_certificate(&io),
        client_id: packet.client_id.to_string(),
        clean_session: packet.clean_session,
        has_will: packet.last_will.is_some(),
    };
    let client_id = request.client_id.clone();
    Ok(match login(&shared, request).await {
        Ok(login) => {
            let connection = Connection::open(&shared, login, client_id, Sink::V3(handshake.sink()));
            handshake.ack(connection, false)
        }
        Err(refusal) => match refusal {
            ConnectRefusal::BadPassword | ConnectRefusal::UnknownDevice | ConnectRefusal::NoCredentials => {
                handshake.bad_username_or_pwd()
            }
            ConnectRefusal::ClientIdMismatch => handshake.identifier_rejected(),
            ConnectRefusal::RegistryUnavailable => handshake.service_unavailable(),
            _ => handshake.not_authorized(),
        },
    })
}

async fn handshake_v5(
    shared: Shared,
    handshake: v5::Handshake,
) -> Result<v5::HandshakeAck<Connection>, Closed> {
    use v5::codec::ConnectAckReason as Code;
    let packet = handshake.packet();
    let io = handshake.io().get_ref();
    let request = LoginRequest {
        address: peer_address(&io),
        username: packet.username.as_ref().map(|u| u.to_string()),
        password: packet.password.as_ref().map(|p| Bytes::copy_from_slice(p)),
        certificate: peer_certificate(&io),
        client_id: packet.client_id.to_string(),
        clean_session: packet.clean_start,
        has_will: packet.last_will.is_some(),
    };
    let client_id = request.client_id.clone();
    Ok(match login(&shared, request).await {
        Ok(login) => {
            let connection = Connection::open(&shared, login, client_id, Sink::V5(handshake.sink()));
            handshake.ack(connection).with(|ack| {
                // QoS 2 and retained messages are refused: say so up front.
                ack.max_qos = QoS::AtLeastOnce;
                ack.retain_available = false;
                ack.shared_subscription_available = false;
                ack.wildcard_subscription_available = false;
            })
        }
        Err(refusal) => handshake.failed(match refusal {
            ConnectRefusal::BadPassword | ConnectRefusal::UnknownDevice | ConnectRefusal::NoCredentials => {
                Code::BadUserNameOrPassword
            }
            ConnectRefusal::ClientIdMismatch => Code::ClientIdentifierNotValid,
            ConnectRefusal::RegistryUnavailable => Code::ServerUnavailable,
            ConnectRefusal::Disabled => Code::Banned,
            ConnectRefusal::Throttled => Code::ConnectionRateExceeded,
            ConnectRefusal::CertificateMismatch
            | ConnectRefusal::CertificateWithoutName
            | ConnectRefusal::CertificateRevoked
            | ConnectRefusal::WillRefused
            | ConnectRefusal::PersistentSession => Code::NotAuthorized,
        }),
    })
}

/// A 3.1.1 PUBACK cannot carry a refusal: a refused publish closes the
/// connection, so the device keeps its copy and sends it again.
async fn publish_v3(connection: &Connection, publish: v3::Publish) -> Result<(), Closed> {
    connection.outcome(publish.id()).await
}

/// MQTT 5 carries the refusal in the PUBACK; a disabled device's session is
/// closed.
async fn publish_v5(connection: &Connection, publish: v5::Publish) -> Result<v5::PublishAck, Closed> {
    use v5::codec::PublishAckReason as Code;
    let refusal = match connection.outcome(publish.id()).await {
        Ok(()) => return Ok(publish.ack()),
        Err(closed @ (Closed::Refused(PublishRefusal::Disabled) | Closed::Unavailable)) => {
            return Err(closed);
        }
        Err(Closed::Refused(refusal)) => refusal,
    };
    let code = match refusal {
        PublishRefusal::InvalidTopic => Code::TopicNameInvalid,
        PublishRefusal::ForeignTopic | PublishRefusal::Disabled => Code::NotAuthorized,
        PublishRefusal::Oversized { .. } | PublishRefusal::Retained | PublishRefusal::ExactlyOnceQos => {
            Code::ImplementationSpecificError
        }
        PublishRefusal::StreamUnavailable | PublishRefusal::QuotaExceeded => Code::QuotaExceeded,
        PublishRefusal::RegistryUnavailable => Code::UnspecifiedError,
        PublishRefusal::MalformedControl => Code::PayloadFormatInvalid,
        PublishRefusal::UnknownCommand => Code::ImplementationSpecificError,
    };
    Ok(v5::PublishAck::new(code).reason(refusal.label().into()))
}

/// The MQTT server of one listener (plain TCP, or behind TLS): 3.1.1 and 5
/// on the same port.
pub(crate) fn server<F: Filter>(
    shared: Shared,
) -> impl ServiceFactory<Io<F>, SharedCfg, Response = (), Error = MqttError<Closed>, InitError = ()> + 'static
{
    let (for_v3, for_v5) = (shared.clone(), shared);
    let v3 = v3::MqttServer::new(fn_service(move |handshake| handshake_v3(for_v3.clone(), handshake)))
        .middleware(Sequencer)
        .protocol(fn_factory_with_config(async |session: v3::Session<Connection>| {
            Ok::<_, Closed>(fn_service(move |message| {
                let session = session.clone();
                async move { Ok::<_, Closed>(protocol_v3(&session, message)) }
            }))
        }))
        // MQTT 3.1.1 has no server DISCONNECT: closing says it all. (Without a
        // service here, ntex-mqtt warns at every closed connection.)
        .control(fn_factory_with_config(async |_: v3::Session<Connection>| {
            Ok::<_, Closed>(fn_service(async |_: Control<Closed>| Ok::<_, Closed>(None)))
        }))
        .publish(fn_factory_with_config(async |session: v3::Session<Connection>| {
            Ok::<_, Closed>(fn_service(move |publish| {
                let session = session.clone();
                async move { publish_v3(&session, publish).await }
            }))
        }));
    let v5 = v5::MqttServer::new(fn_service(move |handshake| handshake_v5(for_v5.clone(), handshake)))
        .middleware(Sequencer)
        .protocol(fn_factory_with_config(async |session: v5::Session<Connection>| {
            Ok::<_, Closed>(fn_service(move |message| {
                let session = session.clone();
                async move { Ok::<_, Closed>(protocol_v5(&session, message)) }
            }))
        }))
        .control(fn_factory_with_config(async |_: v5::Session<Connection>| {
            Ok::<_, Closed>(fn_service(async |control: Control<Closed>| Ok::<_, Closed>(control_v5(control))))
        }))
        .publish(fn_factory_with_config(async |session: v5::Session<Connection>| {
            Ok::<_, Closed>(fn_service(move |publish| {
                let session = session.clone();
                async move { publish_v5(&session, publish).await }
            }))
        }));
    MqttServer::new().v3(v3).v5(v5)
}

fn protocol_v3(connection: &Connection, message: v3::ProtocolMessage) -> v3::ProtocolMessageAck {
    match message {
        v3::ProtocolMessage::Subscribe(mut subscribe) => {
            for mut subscription in subscribe.iter_mut() {
                if connection.may_subscribe(subscription.topic()) {
                    subscription.confirm(QoS::AtLeastOnce);
                } else {
                    subscription.fail();
                }
            }
            subscribe.ack()
        }
        message => message.ack(),
    }
}

fn protocol_v5(connection: &Connection, message: v5::ProtocolMessage) -> v5::ProtocolMessageAck {
    match message {
        v5::ProtocolMessage::Subscribe(mut subscribe) => {
            for mut subscription in subscribe.iter_mut() {
                if connection.may_subscribe(subscription.topic()) {
                    subscription.confirm(QoS::AtLeastOnce);
                } else {
                    subscription.fail(v5::codec::SubscribeAckReason::NotAuthorized);
                }
            }
            subscribe.ack()
        }
        message => message.ack(),
    }
}

/// The DISCONNECT a v5 client gets when its connection is closed for a reason.
fn control_v5(control: Control<Closed>) -> Option<v5::codec::Encoded> {
    use v5::codec::DisconnectReasonCode as Code;
    let Control::Stop(Reason::Error(error)) = control else { return None };
    let code = match error.get_ref() {
        Closed::Refused(PublishRefusal::Disabled) => Code::NotAuthorized,
        Closed::Refused(_) => Code::ImplementationSpecificError,
        Closed::Unavailable => Code::ServerBusy,
    };
    Some(v5::codec::Packet::from(v5::codec::Disconnect::new(code)).into())
}
