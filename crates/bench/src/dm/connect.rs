//! Opening a raw connection and authenticating it with a hello, as the
//! wire-level clients do.

use claudemesh_client::wire::{self, WsSink, WsStream};
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_proto::ClientFrame;
use claudemesh_proto::hello::{Hello, HelloPresence};

use crate::light::next_light;
use crate::{BenchError, Result};

use super::bounds::CONNECT_TIMEOUT;

/// Signs and sends a hello for this connection's challenge as `session`.
pub(crate) async fn send_hello(opened: &mut wire::Opened, session: &SessionIdentity) -> Result<()> {
    let hello = Hello::sign(
        session,
        &opened.challenge.nonce.0,
        opened.version,
        None,
        HelloPresence::default(),
        "claudemesh-bench",
    );
    wire::send_frame(&mut opened.sink, &ClientFrame::Hello(Box::new(hello))).await?;
    Ok(())
}

/// Opens a connection and authenticates as `session`.
pub(crate) async fn hello(url: &str, session: &SessionIdentity) -> Result<(WsSink, WsStream)> {
    let mut opened = wire::open(url, CONNECT_TIMEOUT).await?;
    send_hello(&mut opened, session).await?;
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, next_light(&mut opened.stream))
        .await
        .map_err(|_| BenchError("the broker did not answer the hello".into()))??;
    match answer.kind.as_str() {
        "welcome" => Ok((opened.sink, opened.stream)),
        other => Err(BenchError(format!(
            "hello answered with {other}: {}",
            answer.message.unwrap_or_default()
        ))),
    }
}
