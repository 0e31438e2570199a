//! `hello`, the handshake (TM2), written once: a `hello` signed over this
//! connection's challenge, with a session certificate of a current member,
//! admits a session to its mesh ([`admit`]); the mesh then hears of it
//! ([`announce`]) and the session gets what waited for it (the first
//! drain). When a session's connection ends, [`farewell`] leaves the mesh's
//! presence.

use std::sync::Arc;

use claudemesh_crypto::cert::CertError;
use claudemesh_crypto::log::RemoveKind;
use claudemesh_proto::frames::{PeerPresence, Welcome};
use claudemesh_proto::hello::{Hello, HelloError};
use claudemesh_proto::version::SUPPORTED_VERSIONS;
use claudemesh_proto::{BrokerFrame, ErrorCode, Limits};

use super::{Caller, Context, Handle, Refusal, Reply, short_hex};
use crate::mesh::MeshHub;
use crate::metrics as m;
use crate::outbox::Outbox;
use crate::sessions::{SessionHandle, SessionPresence};
use crate::state::BrokerState;
use crate::store::{MemberState, SessionRecord};
use crate::wire::text;
use crate::writer::WriteJob;
use claudemesh_crypto::MemberKey;
use claudemesh_crypto::SessionKey;

impl Handle for Hello {
    async fn handle(self, _caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        Err(Refusal::new(
            ErrorCode::AlreadyAuthenticated,
            "already authenticated",
        ))
    }

    /// Admits the session, then announces it and sends it what is waiting
    /// for it.
    async fn before_hello(self, cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let admitted = admit(cx.broker, cx.conn_id, cx.nonce, cx.out, self).await?;
        // The address's count of connections waiting for a hello drops.
        *cx.pending = None;
        *cx.session = Some(admitted.session.clone());
        *cx.mesh = Some(admitted.mesh.clone());
        announce(cx.broker, &admitted).await;
        // The first drain runs before this connection's next frame is read,
        // so anything the client asks after `welcome` is answered after every
        // queued message: a `ping` marks the end of the backlog.
        crate::delivery::drain(cx.broker, &admitted.mesh, &admitted.session).await;
        Ok(Reply::Nothing)
    }
}

/// A session the handshake admitted.
#[derive(Debug)]
pub struct Admitted {
    /// The session, registered with its mesh, its `welcome` queued.
    pub session: Arc<SessionHandle>,
    /// Its mesh.
    pub mesh: Arc<MeshHub>,
}

/// Checks a `hello` and registers the session with its mesh, its `welcome`
/// queued first. A refusal ends the connection, except when the store
/// failed (`internal`: the client may say hello again).
pub async fn admit(
    broker: &BrokerState,
    conn_id: u64,
    nonce: &[u8; 32],
    out: &Outbox,
    hello: Hello,
) -> Result<Admitted, Refusal> {
    let admitted = check_and_register(broker, conn_id, nonce, out, hello).await;
    match &admitted {
        Ok(_) => metrics::counter!(m::HANDSHAKES, "result" => "ok").increment(1),
        Err(r) if r.fatal => {
            metrics::counter!(m::HANDSHAKES, "result" => r.code.as_str()).increment(1);
        }
        Err(_) => {}
    }
    admitted
}

async fn check_and_register(
    broker: &BrokerState,
    conn_id: u64,
    nonce: &[u8; 32],
    out: &Outbox,
    hello: Hello,
) -> Result<Admitted, Refusal> {
    let refuse = |code: ErrorCode, message: String| Refusal::new(code, message).fatal();
    if !SUPPORTED_VERSIONS.contains(&hello.version) {
        return Err(refuse(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not spoken here; this broker speaks {SUPPORTED_VERSIONS:?}",
                hello.version
            ),
        ));
    }
    let mesh = match broker.hub.mesh(&hello.mesh_id).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Err(refuse(
                ErrorCode::UnknownMesh,
                format!(
                    "this broker has no mesh {}",
                    short_hex(hello.mesh_id.to_hex())
                ),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "loading mesh failed");
            return Err(Refusal::internal("the broker could not load the mesh"));
        }
    };
    let now_secs = crate::now_ms() / 1000;
    if let Err(e) = hello.verify(nonce, now_secs) {
        let (code, msg) = match e {
            HelloError::BadSignature => (
                ErrorCode::BadSignature,
                "hello signature does not verify for this connection's challenge".to_owned(),
            ),
            HelloError::Certificate(CertError::Expired { .. }) => {
                (ErrorCode::CertExpired, e.to_string())
            }
            HelloError::Certificate(_) => (ErrorCode::BadCertificate, e.to_string()),
            HelloError::TooLarge(_) => (ErrorCode::Malformed, e.to_string()),
        };
        return Err(refuse(code, msg));
    }
    let member = hello.cert.member;
    // A member who joined through another replica a moment ago: adopt the
    // entries it appended (verified) before refusing.
    if !mesh.read_log(|l| l.roster.is_member(&member)) {
        mesh.caught_up().await;
    }
    // Read under the lock rather than cloning the roster: a handshake only
    // needs a few lookups, and a big mesh's roster is large.
    let (log_head, log_len) = mesh.read_log(|l| {
        let roster = &l.roster;
        if roster.is_member(&member) {
            return Ok((roster.head(), roster.len()));
        }
        let (code, msg) = match roster.departed().get(&member).map(|d| d.how) {
            Some(RemoveKind::Ban) => (ErrorCode::Banned, "this member is banned"),
            Some(RemoveKind::Kick | RemoveKind::Leave) if roster.banned().contains(&member) => {
                (ErrorCode::Banned, "this member is banned")
            }
            Some(RemoveKind::Kick | RemoveKind::Leave) => (
                ErrorCode::Removed,
                "this member was removed from the mesh; rejoin with a new invite",
            ),
            None => (
                ErrorCode::NotAMember,
                "this key is not a member of the mesh; join with an invite",
            ),
        };
        Err(refuse(code, msg.to_owned()))
    })?;
    let now = crate::now_ms();
    let presence = SessionPresence {
        status: hello.presence.status,
        peer_type: hello.presence.peer_type,
        summary: hello.presence.summary.clone(),
    };
    let handle = Arc::new(SessionHandle::new(
        conn_id,
        hello.version,
        mesh.id,
        hello.cert.clone(),
        out.clone(),
        presence,
        now,
    ));
    let config = &broker.config;
    let limits = Limits {
        rate_per_sec: config.rate_per_sec,
        rate_burst: config.rate_burst,
        member_rate_per_sec: config.member_rate_per_sec,
        member_rate_burst: config.member_rate_burst,
        member_bytes_per_sec: config.member_bytes_per_sec,
        max_sessions_per_member: u32::try_from(config.max_sessions_per_member).unwrap_or(u32::MAX),
        ..Limits::default()
    };
    let welcome = text(&BrokerFrame::Welcome(Box::new(Welcome {
        member,
        session: hello.cert.session,
        log_head,
        log_len,
        limits,
        time_ms: now,
    })));
    // Welcome goes into the queue before the session is visible to the
    // mesh, so no other session's presence can reach this client first;
    // both happen under the mesh's session lock with the per-member cap.
    if let Err(connected) =
        mesh.admit_session(handle.clone(), config.max_sessions_per_member, welcome)
    {
        metrics::counter!(m::CAPPED, "cap" => "sessions_per_member").increment(1);
        return Err(refuse(
            ErrorCode::TooManySessions,
            format!(
                "this member already has {connected} sessions connected to this broker (at most \
                 {}); close one or retry later",
                config.max_sessions_per_member
            ),
        ));
    }
    Ok(Admitted {
        session: handle,
        mesh,
    })
}

/// Tells the mesh (and, with replicas, the others) about a session just
/// admitted, and records its key in the store the first time it is seen.
pub async fn announce(broker: &BrokerState, admitted: &Admitted) {
    let Admitted { session, mesh } = admitted;
    mesh.broadcast_presence(session.as_peer(), session.conn_id);
    if mesh.first_sight_of(&session.session) {
        // Group-committed with messages: only a message to this session
        // sent while it is offline needs the row, and while it is connected
        // the hub knows it.
        broker
            .writer
            .submit(WriteJob::Session(Box::new(SessionRecord {
                mesh: mesh.id,
                session: session.session,
                member: session.member,
                at_ms: session.connected_at_ms,
            })))
            .await;
    }
}

/// Takes a closing session out of its mesh: the member's last presence is
/// kept for `peers` if this was its last session anywhere, and every other
/// session hears it went.
pub fn farewell(broker: &BrokerState, session: &SessionHandle, mesh: &MeshHub) {
    let last_alone = mesh.remove_session(session);
    let now = crate::now_ms();
    let p = session.presence();
    // With replicas, the member may still be connected to another (without,
    // no session is remote).
    let elsewhere = mesh.has_remote(&session.member);
    let member_now = mesh.read_log(|l| l.roster.is_member(&session.member));
    let member_stays = !last_alone || elsewhere;
    if !member_now {
        return;
    }
    // The member's last session here: its last presence is kept for
    // `peers` while it is offline.
    if !member_stays {
        let state = MemberState {
            status: p.status,
            peer_type: p.peer_type,
            summary: p.summary.clone(),
            last_seen_ms: now,
        };
        mesh.set_member_state(session.member, state.clone());
        broker.member_states.save(mesh.id, session.member, state);
    }
    // This session is announced gone either way (peers drop it; the
    // coalescing slot of every other session replaces its last presence
    // with this). While another session of the member stays, its summary
    // is not repeated.
    mesh.broadcast_presence(
        PeerPresence {
            member: MemberKey(session.member),
            session: Some(SessionKey(session.session)),
            cert: None,
            online: false,
            status: p.status,
            peer_type: p.peer_type,
            summary: if member_stays { None } else { p.summary },
            connected_at_ms: None,
            last_seen_ms: Some(now),
            live_push: false,
        },
        session.conn_id,
    );
}
