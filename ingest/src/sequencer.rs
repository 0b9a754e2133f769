//! Keeps a connection's publishes in the order they came off the wire.
//!
//! ntex-mqtt handles the publishes of one connection concurrently, and the
//! publish service of a later one can start before an earlier one's (a
//! service readiness check can hold the earlier back). So the order is taken
//! where it still holds: this middleware sits outermost and is called for
//! each decoded packet in wire order. It notes every PUBLISH as expected,
//! gathers its payload (the codec hands over a payload that straddles a read
//! buffer in pieces) and hands the whole publish to the connection's
//! appender, all before any await. The publish service then only waits for
//! that publish's outcome.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use ntex_mqtt::{QoS, v3, v5};
use ntex_service::cfg::SharedCfg;
use ntex_service::{Middleware, Service, ServiceCtx};
use tokio::sync::oneshot;

use crate::appender::Outcome;
use crate::gate::Publish;
use crate::mqtt::Connection;

/// The middleware factory, for the 3.1.1 and the 5 server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sequencer;

pub(crate) struct Sequenced<S, Session> {
    service: S,
    session: Session,
    /// A publish whose payload is still arriving.
    gathering: RefCell<Option<Gathering>>,
}

struct Gathering {
    publish: Publish,
    payload: BytesMut,
    answer: oneshot::Sender<Outcome>,
}

impl<S, Session: std::ops::Deref<Target = Connection>> Sequenced<S, Session> {
    /// A PUBLISH header with the first part of its payload (maybe all of it).
    fn publish(
        &self,
        id: Option<std::num::NonZeroU16>,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: &[u8],
        size: u32,
    ) {
        let answer = self.session.expect(id);
        let publish = Publish { topic: topic.to_owned(), payload: Bytes::new(), qos: u8::from(qos), retain };
        let mut gathering = Gathering { publish, payload: BytesMut::from(payload), answer };
        if payload.len() == size as usize {
            gathering.publish.payload = gathering.payload.freeze();
            self.session.submit(gathering.publish, gathering.answer);
        } else {
            *self.gathering.borrow_mut() = Some(gathering);
        }
    }

    /// The next piece of the payload being gathered.
    fn chunk(&self, piece: &[u8], last: bool) {
        let mut gathering = self.gathering.borrow_mut();
        if let Some(current) = gathering.as_mut() {
            current.payload.extend_from_slice(piece);
        }
        if last && let Some(mut whole) = gathering.take() {
            whole.publish.payload = whole.payload.freeze();
            self.session.submit(whole.publish, whole.answer);
        }
    }
}

impl<S> Middleware<S, (SharedCfg, v3::Session<Connection>)> for Sequencer {
    type Service = Sequenced<S, v3::Session<Connection>>;

    fn create(&self, service: S, (_, session): (SharedCfg, v3::Session<Connection>)) -> Self::Service {
        Sequenced { service, session, gathering: RefCell::default() }
    }
}

impl<S> Middleware<S, (SharedCfg, v5::Session<Connection>)> for Sequencer {
    type Service = Sequenced<S, v5::Session<Connection>>;

    fn create(&self, service: S, (_, session): (SharedCfg, v5::Session<Connection>)) -> Self::Service {
        Sequenced { service, session, gathering: RefCell::default() }
    }
}

impl<S> Service<v3::codec::Decoded> for Sequenced<S, v3::Session<Connection>>
where
    S: Service<v3::codec::Decoded>,
{
    type Response = S::Response;
    type Error = S::Error;

    ntex_service::forward_ready!(service);
    ntex_service::forward_poll!(service);
    ntex_service::forward_shutdown!(service);

    async fn call(
        &self,
        packet: v3::codec::Decoded,
        ctx: ServiceCtx<'_, Self>,
    ) -> Result<S::Response, S::Error> {
        match &packet {
            v3::codec::Decoded::Publish(p, payload, _) => {
                self.publish(p.packet_id, &p.topic, p.qos, p.retain, payload, p.payload_size);
            }
            v3::codec::Decoded::PayloadChunk(piece, last) => self.chunk(piece, *last),
            v3::codec::Decoded::Packet(..) => {}
        }
        ctx.call(&self.service, packet).await
    }
}

impl<S> Service<v5::codec::Decoded> for Sequenced<S, v5::Session<Connection>>
where
    S: Service<v5::codec::Decoded>,
{
    type Response = S::Response;
    type Error = S::Error;

    ntex_service::forward_ready!(service);
    ntex_service::forward_poll!(service);
    ntex_service::forward_shutdown!(service);

    async fn call(
        &self,
        packet: v5::codec::Decoded,
        ctx: ServiceCtx<'_, Self>,
    ) -> Result<S::Response, S::Error> {
        match &packet {
            v5::codec::Decoded::Publish(p, payload, _) => {
                self.publish(p.packet_id, &p.topic, p.qos, p.retain, payload, p.payload_size);
            }
            v5::codec::Decoded::PayloadChunk(piece, last) => self.chunk(piece, *last),
            v5::codec::Decoded::Packet(..) => {}
        }
        ctx.call(&self.service, packet).await
    }
}
