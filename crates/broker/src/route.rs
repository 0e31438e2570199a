//! Who receives a message: its recipients as of send time, minus those
//! whose grants refuse the sender. The rule is [`receives`], used when a
//! message is sent ([`at_send`]), drained from the store
//! ([`crate::fanout::judge_page`]), and pushed after another replica stored
//! it; [`grants_let`] is its grants half, also used for direct messages.
//!
//! Recipients are those of the verified roster "as of send time": a fan-out
//! message is stored with the log length at which it was accepted, and
//! [`Roster::is_recipient_at`] answers for each member.

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::grants::{Cap, Decision};
use claudemesh_crypto::log::Roster;
use claudemesh_proto::ErrorCode;

use crate::mesh::MeshHub;

/// Whether `member` receives `sender`'s topic, group or broadcast message
/// to `target` that the broker accepted when the log was `at_len` entries
/// long: a recipient as of send time, not its sender, and one whose grants
/// let the sender reach it (`grants_let`, asked last; a refusal skips the
/// member silently).
pub fn receives(
    roster: &Roster,
    member: &PublicKey,
    sender: &PublicKey,
    target: &Target,
    at_len: u64,
    grants_let: impl FnOnce() -> bool,
) -> bool {
    member != sender && roster.is_recipient_at(member, target, at_len) && grants_let()
}

/// Whether `recipient`'s grants let `sender` send it a message to `target`
/// (silently dropped or refused: no).
pub fn grants_let(
    mesh: &MeshHub,
    recipient: &PublicKey,
    sender: &PublicKey,
    target: &Target,
) -> bool {
    mesh.grants_allow(recipient, sender, cap_of(target))
}

/// The capability a message to `target` uses.
pub fn cap_of(target: &Target) -> Cap {
    match target {
        Target::Broadcast => Cap::Broadcast,
        Target::Group(_) => Cap::Group,
        Target::Topic(_) => Cap::Topic,
        Target::Member(_) | Target::Session(_) => Cap::Dm,
    }
}

/// The recipient's grants refuse the sender a direct message (the sender
/// is told; see [`direct`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedByGrants;

/// The recipients of a direct message to `key` (a member, or a session of
/// `member`): `[key]` if `member`'s grants allow the sender, none if they
/// drop it silently (stored and accepted, never delivered), or refused.
pub fn direct(
    mesh: &MeshHub,
    member: &PublicKey,
    key: PublicKey,
    sender: &PublicKey,
) -> Result<Vec<PublicKey>, RefusedByGrants> {
    match mesh.grant_decision(member, sender, Cap::Dm) {
        Decision::Allow => Ok(vec![key]),
        Decision::Refuse => Err(RefusedByGrants),
        Decision::SilentDrop => Ok(Vec::new()),
    }
}

/// A fan-out message about to be accepted: checked against the roster now
/// ([`route`]), its recipients (by [`receives`]) and the log length that
/// fixes them.
pub fn at_send(
    mesh: &MeshHub,
    sender: &PublicKey,
    target: &Target,
    epoch: u64,
) -> Result<(Vec<PublicKey>, u64), RouteError> {
    mesh.read_log(|l| {
        let (members, at_len) = route(&l.roster, sender, target, epoch)?;
        let recipients = members
            .into_iter()
            .filter(|m| {
                receives(&l.roster, m, sender, target, at_len, || {
                    grants_let(mesh, m, sender, target)
                })
            })
            .collect();
        Ok((recipients, at_len))
    })
}

/// Why a fan-out send is refused: the code and a message for the sender.
pub type RouteError = (ErrorCode, String);

/// Checks a fan-out message against the roster and returns its live
/// recipients (every member it is for, but the sender) and the log length
/// that fixes them.
pub fn route(
    roster: &Roster,
    sender: &PublicKey,
    target: &Target,
    epoch: u64,
) -> Result<(Vec<PublicKey>, u64), RouteError> {
    let mesh_epoch = |what: &str| -> Result<(), RouteError> {
        if roster.needs_rekey() {
            return Err((
                ErrorCode::RekeyRequired,
                format!(
                    "a member left or was removed, or a joiner is owed the current key, and no \
                     rekey followed yet; write a rekey (or have an owner or admin write it), then \
                     reseal the message to {what}"
                ),
            ));
        }
        if epoch != roster.epoch() {
            return Err((
                ErrorCode::RekeyRequired,
                format!(
                    "the message is sealed under epoch {epoch}, the mesh is at epoch {}",
                    roster.epoch()
                ),
            ));
        }
        Ok(())
    };
    match target {
        Target::Topic(name) => {
            let Some(topic) = roster.topic(name) else {
                return Err((
                    ErrorCode::UnknownRecipient,
                    format!("there is no topic #{name} in this mesh"),
                ));
            };
            if topic.private {
                if !topic.members.contains_key(sender) {
                    return Err((
                        ErrorCode::Forbidden,
                        format!("#{name} is private and you are not a member of it"),
                    ));
                }
                if topic.needs_rekey {
                    return Err((
                        ErrorCode::RekeyRequired,
                        format!("a member left #{name}; write a topic_rekey before posting"),
                    ));
                }
                if epoch != topic.key_epoch {
                    return Err((
                        ErrorCode::RekeyRequired,
                        format!(
                            "the message is sealed under key epoch {epoch} of #{name}, which is \
                             at {}",
                            topic.key_epoch
                        ),
                    ));
                }
            } else {
                mesh_epoch(&format!("#{name}"))?;
            }
        }
        Target::Group(name) => {
            mesh_epoch(&format!("@{name}"))?;
        }
        Target::Broadcast => mesh_epoch("*")?,
        Target::Member(_) | Target::Session(_) => {
            return Err((
                ErrorCode::Malformed,
                "a direct target is not a fan-out target".into(),
            ));
        }
    }
    let recipients = roster.recipients_now(target);
    if let Target::Group(name) = target
        && recipients.is_empty()
    {
        return Err((
            ErrorCode::UnknownRecipient,
            format!("no member is in @{name} (or a group below it)"),
        ));
    }
    Ok((
        recipients.into_iter().filter(|m| m != sender).collect(),
        roster.len(),
    ))
}

#[cfg(test)]
mod tests {
    use claudemesh_crypto::SigningKey;
    use claudemesh_crypto::log::{EntryBody, LogBuilder, RemoveKind, Role, topic_create_body};

    use super::*;

    const T: u64 = 1_700_000_000;

    #[test]
    fn routes_check_epochs_membership_and_rekeys() {
        let owner = SigningKey::generate();
        let mut log = LogBuilder::new(&owner, T);
        let alice = log.add_member(&owner, Role::Member, T).unwrap();
        let bob = log.add_member(&owner, Role::Member, T).unwrap();
        let (body, key) =
            topic_create_body("ops", true, "", &alice.public(), &log.roster().mesh_id()).unwrap();
        log.push(&alice, T, body).unwrap();
        let ops = Target::Topic("ops".into());
        let r = log.roster();
        assert_eq!(
            route(r, &alice.public(), &ops, 0).unwrap().0,
            Vec::<PublicKey>::new()
        );
        assert_eq!(
            route(r, &bob.public(), &ops, 0).unwrap_err().0,
            ErrorCode::Forbidden
        );
        assert_eq!(
            route(r, &alice.public(), &Target::Topic("nope".into()), 0)
                .unwrap_err()
                .0,
            ErrorCode::UnknownRecipient
        );
        assert_eq!(
            route(r, &alice.public(), &Target::Group("eng".into()), 0)
                .unwrap_err()
                .0,
            ErrorCode::UnknownRecipient
        );
        let (all, at_len) = route(r, &alice.public(), &Target::Broadcast, 0).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(at_len, r.len());
        assert_eq!(
            route(r, &alice.public(), &Target::Broadcast, 1)
                .unwrap_err()
                .0,
            ErrorCode::RekeyRequired
        );
        drop(key);
        // Bob leaves of his own accord: broadcasts wait for a rekey.
        log.push(
            &bob,
            T,
            EntryBody::Remove {
                member: bob.public(),
                how: RemoveKind::Leave,
            },
        )
        .unwrap();
        assert_eq!(
            route(log.roster(), &alice.public(), &Target::Broadcast, 0)
                .unwrap_err()
                .0,
            ErrorCode::RekeyRequired
        );
        log.rekey(&alice, T).unwrap();
        assert!(route(log.roster(), &alice.public(), &Target::Broadcast, 1).is_ok());
    }
}
