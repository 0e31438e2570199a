//! The hello handshake, written once: sign a hello over the broker's
//! challenge with a session certificate, wait for the welcome (presence
//! chatter is not an answer), and check that it welcomes the identity that
//! said hello. The long-lived session and the one-shot log recovery both
//! greet the broker through [`greet`].

use std::time::Duration;

use claudemesh_crypto::Hash32;
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_proto::frames::Welcome;
use claudemesh_proto::hello::{Hello, HelloPresence};
use claudemesh_proto::{BrokerFrame, ClientFrame};

use crate::error::ClientError;
use crate::wire;
use claudemesh_proto::clock::now_ms;

/// What the first handshake learned about the broker.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The broker instance.
    pub broker_id: String,
    /// Versions it speaks.
    pub versions: Vec<u32>,
    /// The version in use.
    pub version: u32,
    /// Upgrade round trip, ms.
    pub rtt_ms: u64,
    /// Broker clock minus ours, ms (corrected by half the round trip).
    pub skew_ms: i64,
    /// The welcome.
    pub welcome: Welcome,
}

/// What a hello says: who is connecting, how far its verified log goes,
/// and what it announces.
pub(crate) struct Greeting<'a> {
    /// The session (its key and certificate) saying hello.
    pub session: &'a SessionIdentity,
    /// The head of the log this device verified (`None`: it has none).
    pub log_head: Option<Hash32>,
    /// Status, peer type and encrypted summary announced.
    pub presence: HelloPresence,
    /// Software id.
    pub client_name: &'a str,
}

/// Says hello on an opened connection and returns what the broker learned
/// and said: the welcome, checked to name this member and this session.
pub(crate) async fn greet(
    opened: &mut wire::Opened,
    greeting: Greeting<'_>,
    timeout: Duration,
) -> Result<ConnInfo, ClientError> {
    let hello = Hello::sign(
        greeting.session,
        &opened.challenge.nonce.0,
        opened.version,
        greeting.log_head,
        greeting.presence,
        greeting.client_name,
    );
    wire::send_frame(&mut opened.sink, &ClientFrame::Hello(Box::new(hello))).await?;
    let answer = tokio::time::timeout(timeout, async {
        loop {
            // Presence chatter is not an answer (brokers before this one
            // could send it ahead of the welcome).
            match wire::next_frame(&mut opened.stream).await? {
                BrokerFrame::Presence(_) | BrokerFrame::LogUpdate(_) => continue,
                other => return Ok::<_, ClientError>(other),
            }
        }
    })
    .await
    .map_err(|_| ClientError::Timeout("answer the hello"))??;
    let welcome = match answer {
        BrokerFrame::Welcome(w) => *w,
        other => return Err(wire::refused(other)),
    };
    if welcome.member != greeting.session.cert.member
        || welcome.session != greeting.session.public()
    {
        return Err(ClientError::Protocol(
            "the broker welcomed another identity than ours".into(),
        ));
    }
    let skew_ms = i64::try_from(welcome.time_ms).unwrap_or(i64::MAX)
        - i64::try_from(now_ms()).unwrap_or(0)
        + i64::try_from(opened.rtt_ms / 2).unwrap_or(0);
    Ok(ConnInfo {
        broker_id: opened.challenge.broker_id.clone(),
        versions: opened.challenge.versions.clone(),
        version: opened.version,
        rtt_ms: opened.rtt_ms,
        skew_ms,
        welcome,
    })
}
