//! `coord_put`: the caller's session stores a sealed coordination object (a
//! team memory note or a task). The broker checks what it can without the
//! key (the shape, that the author is this session, the author's signature
//! and certificate, that it is sealed under the current epoch of its scope:
//! the mesh's, or for a task sealed to a topic, the topic's, whose member
//! the author must be) and
//! stores it as received, at the mesh's next feed position; it never sees
//! the contents. Also here: what [`coord_ring_put`](super::coord_ring_put)
//! shares with it (how a [`CoordError`] is refused).

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::cert::CertError;
use claudemesh_crypto::coord::{CoordError, CoordObject};
use claudemesh_crypto::log::Roster;
use claudemesh_proto::frames::{CoordPut, CoordStored};
use claudemesh_proto::limits::MAX_COORD_PER_MEMBER;
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::mesh::MeshHub;
use crate::metrics as m;
use crate::store::{NewCoordObject, PutOutcome};

impl Handle for CoordPut {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let Caller {
            broker,
            session,
            mesh,
        } = caller;
        let o = self.object;
        // The checks that need no key first: a malformed object costs no
        // signature check.
        o.check_shape().map_err(coord_refusal)?;
        if o.kind.is_task_act() {
            return Err(Refusal::new(
                ErrorCode::Malformed,
                format!("a {} is an act on a task: send it as task_act", o.kind),
            ));
        }
        if o.kind == claudemesh_crypto::coord::CoordKind::State {
            return Err(Refusal::new(
                ErrorCode::Malformed,
                "a shared state entry is written at a version: send it as state_set",
            ));
        }
        if o.kind == claudemesh_crypto::coord::CoordKind::Lease {
            return Err(Refusal::new(
                ErrorCode::Malformed,
                "a lease is taken with its tags: send it as lease_take",
            ));
        }
        check_authored(&o, session, mesh).await?;
        // Stored as its own JSON: a resend of the same object serializes to
        // the same bytes, which is how the store tells a duplicate.
        let object_json = serde_json::to_string(&*o).map_err(|e| {
            tracing::error!(error = %e, "serializing a coordination object failed");
            Refusal::internal("the broker could not store it")
        })?;
        let (kind, id) = (o.kind, o.id);
        let new = NewCoordObject {
            mesh: mesh.id,
            kind,
            id,
            author_member: session.member,
            epoch: o.epoch,
            object_json,
            now_ms: crate::now_ms(),
        };
        let outcome = broker
            .store
            .coord_put(&new, MAX_COORD_PER_MEMBER as u64)
            .await
            .map_err(|e| {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::error!(error = %e, "storing a coordination object failed");
                Refusal::internal("the broker could not store it; try again")
            })?;
        let stored = |cseq, duplicate| {
            Ok(Reply::Frame(BrokerFrame::CoordStored(CoordStored {
                req: self.req.clone(),
                kind,
                id,
                cseq,
                duplicate,
            })))
        };
        match outcome {
            PutOutcome::Stored { cseq } => {
                metrics::counter!(m::COORD_WRITES, "op" => "put").increment(1);
                mesh.coord_changed(&[kind], Some(session.conn_id));
                stored(cseq, false)
            }
            PutOutcome::Duplicate { cseq } => stored(cseq, true),
            PutOutcome::Conflict => Err(Refusal::new(
                ErrorCode::Malformed,
                format!("{kind} {id} is already stored with other contents; use a new id"),
            )),
            PutOutcome::Forgotten => Err(Refusal::new(
                ErrorCode::NotFound,
                format!("{kind} {id} was forgotten; use a new id"),
            )),
            PutOutcome::TooMany => Err(Refusal::new(
                ErrorCode::Refused,
                format!(
                    "this member has {MAX_COORD_PER_MEMBER} coordination objects stored, the \
                     most it may; forget some first"
                ),
            )),
        }
    }
}

/// The checks of an object every write shares once its shape is right: its
/// author is this connection's session, it verifies (signature and
/// certificate), and it is sealed under the current epoch of its scope:
/// the mesh's, or for a task sealed to a topic, the topic's (its author
/// must be in the topic).
pub(super) async fn check_authored(
    o: &CoordObject,
    session: &crate::sessions::SessionHandle,
    mesh: &MeshHub,
) -> Result<(), Refusal> {
    if o.author.session != session.session || o.author.member != session.member {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "the object's author is not this connection's session",
        ));
    }
    o.verify(&mesh.id).map_err(coord_refusal)?;
    match o.topic() {
        None => sealed_under_current_epoch(mesh, o.epoch).await,
        Some(topic) => sealed_to_topic(mesh, topic, &o.author.member.0, o.epoch).await,
    }
}

/// Refuses an object sealed to `topic` unless the topic exists, `author`
/// is one of its members, and it is sealed under the topic's current key:
/// a private topic's key epoch (and no `topic_rekey` owed), a public one's
/// mesh epoch. Another replica's append a moment ago is adopted and the
/// check made again.
pub(super) async fn sealed_to_topic(
    mesh: &MeshHub,
    topic: &str,
    author: &PublicKey,
    epoch: u64,
) -> Result<(), Refusal> {
    let check = || mesh.read_log(|l| topic_check(&l.roster, topic, author, epoch));
    match check() {
        Err(_) if mesh.caught_up().await => check(),
        r => r,
    }
}

fn topic_check(
    roster: &Roster,
    topic: &str,
    author: &PublicKey,
    epoch: u64,
) -> Result<(), Refusal> {
    let Some(info) = roster.topic(topic) else {
        return Err(Refusal::new(
            ErrorCode::NotFound,
            format!("no topic #{topic} in this mesh"),
        ));
    };
    if !info.members.contains_key(author) {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!("only members of #{topic} may write or act on its tasks"),
        ));
    }
    if !info.private {
        return epoch_check(roster, epoch);
    }
    if info.needs_rekey {
        return Err(Refusal::new(
            ErrorCode::RekeyRequired,
            format!(
                "a member left the private topic #{topic} and no topic_rekey followed yet; \
                 rotate its key, then reseal the object"
            ),
        ));
    }
    if epoch != info.key_epoch {
        return Err(Refusal::new(
            ErrorCode::RekeyRequired,
            format!(
                "the object is sealed under key epoch {epoch} of #{topic}, which is at {}",
                info.key_epoch
            ),
        ));
    }
    Ok(())
}

/// A coordination object or ring link that does not verify, refused with
/// the code a client acts on.
pub(super) fn coord_refusal(e: CoordError) -> Refusal {
    let code = match &e {
        CoordError::BadSignature => ErrorCode::BadSignature,
        CoordError::BadCertificate(CertError::Expired { .. }) => ErrorCode::CertExpired,
        CoordError::BadCertificate(_) => ErrorCode::BadCertificate,
        CoordError::UnsupportedVersion(_)
        | CoordError::WrongMesh
        | CoordError::TooLarge(_)
        | CoordError::UnknownScope
        | CoordError::NotTopicScoped(_)
        | CoordError::Decrypt => ErrorCode::Malformed,
    };
    Refusal::new(code, e.to_string())
}

/// Refuses an object sealed under another epoch than the mesh's, or while a
/// rekey is owed (so after a kick nothing new opens with the removed
/// member's keys). A rekey another replica appended a moment ago is
/// adopted and the check made again.
pub(super) async fn sealed_under_current_epoch(mesh: &MeshHub, epoch: u64) -> Result<(), Refusal> {
    let check = || mesh.read_log(|l| epoch_check(&l.roster, epoch));
    match check() {
        Err(_) if mesh.caught_up().await => check(),
        r => r,
    }
}

fn epoch_check(roster: &Roster, epoch: u64) -> Result<(), Refusal> {
    if roster.needs_rekey() {
        return Err(Refusal::new(
            ErrorCode::RekeyRequired,
            "a member left or was removed, or a joiner is owed the current key, and no rekey \
             followed yet; write a rekey (or have an owner or admin write it), then reseal the \
             object",
        ));
    }
    if epoch != roster.epoch() {
        return Err(Refusal::new(
            ErrorCode::RekeyRequired,
            format!(
                "the object is sealed under epoch {epoch}, the mesh is at epoch {}",
                roster.epoch()
            ),
        ));
    }
    Ok(())
}
