//! Scheduled messages (issue 17 item 5, `docs/protocol.md`
//! `send.deliver_at_ms`): a message sent with a delivery time is sealed and
//! signed now, and the broker holds the sealed envelope and stores and
//! delivers it at that time (by its clock) to the recipients of that
//! moment, online or not. The broker answers such a send `scheduled`
//! instead of `accepted`; [`MeshClient::schedule_list`] lists what this
//! member holds there and [`MeshClient::schedule_cancel`] drops one before
//! it is sent.
//!
//! A broker that does not say it holds messages (`welcome.limits.scheduled`
//! false: an older one) would deliver such a message at once, so nothing
//! is sent to it with a delivery time still ahead
//! ([`ClientError::SchedulingUnsupported`]). The pure rules are here: what
//! a send carries of its delivery time, from when its time to live counts,
//! the broker's clock as this device estimates it, and finding a held
//! message by a prefix of its id.

use claudemesh_crypto::envelope::MessageId;
use claudemesh_proto::frames::{HeldMessage, ScheduleCancel, ScheduleListQuery};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};

use crate::client::MeshClient;
use crate::error::{BadInput, ClientError};
use crate::session::unexpected;

/// A delivery time at most this far ahead of the broker's now (or past)
/// is sent at once: the broker does not hold it.
pub const AT_ONCE_WITHIN_MS: u64 = 1000;

/// The fewest hex digits of a message id that name a held message.
pub const MIN_ID_PREFIX: usize = 4;

/// Whether a broker whose clock reads `broker_now_ms` holds a message to
/// be delivered at `deliver_at_ms` (rather than sending it at once).
pub fn is_held(deliver_at_ms: u64, broker_now_ms: u64) -> bool {
    deliver_at_ms > broker_now_ms.saturating_add(AT_ONCE_WITHIN_MS)
}

/// What a `send` carries of its delivery time: the time itself to a broker
/// that holds messages; to one that does not, nothing when the time is
/// (nearly) now or past (both send it at once), and a refusal when it is
/// ahead (that broker would deliver it now).
pub fn wire_deliver_at(
    deliver_at_ms: Option<u64>,
    broker_now_ms: u64,
    broker_schedules: bool,
) -> Result<Option<u64>, ClientError> {
    match deliver_at_ms {
        None => Ok(None),
        Some(at) if broker_schedules => Ok(Some(at)),
        Some(at) if is_held(at, broker_now_ms) => Err(ClientError::SchedulingUnsupported),
        Some(_) => Ok(None),
    }
}

/// The broker's clock (unix ms) from this device's `now_ms` and the skew
/// the last welcome measured (broker minus ours).
pub fn broker_clock(now_ms: u64, skew_ms: i64) -> u64 {
    now_ms.saturating_add_signed(skew_ms)
}

/// A time on the broker's clock on this device's clock.
pub fn local_clock(broker_ms: u64, skew_ms: i64) -> u64 {
    broker_ms.saturating_add_signed(skew_ms.saturating_neg())
}

/// From when a time to live counts, on this device's clock: now, or the
/// delivery time when that is later (the broker counts a held message's
/// TTL from its delivery).
pub fn ttl_start(now_ms: u64, deliver_at_local_ms: Option<u64>) -> u64 {
    now_ms.max(deliver_at_local_ms.unwrap_or(0))
}

/// `input` as a held message's id or id prefix (lower case): 4 to 32 hex
/// digits, or a usage error.
pub fn id_prefix(input: &str) -> Result<String, ClientError> {
    let prefix = input.trim().to_ascii_lowercase();
    if prefix.len() < MIN_ID_PREFIX
        || prefix.len() > 32
        || !prefix.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(ClientError::BadInput(BadInput::HeldId {
            input: input.to_owned(),
        }));
    }
    Ok(prefix)
}

/// The held message whose id is `input`: its 32 hex digits, or a prefix of
/// at least [`MIN_ID_PREFIX`] of them that no other held message shares.
pub fn find_held(held: &[HeldMessage], input: &str) -> Result<MessageId, ClientError> {
    let prefix = id_prefix(input)?;
    let matching: Vec<MessageId> = held
        .iter()
        .map(|m| m.id)
        .filter(|id| id.to_hex().starts_with(&prefix))
        .collect();
    match matching.as_slice() {
        [one] => Ok(*one),
        [] => Err(ClientError::NotFound(format!(
            "no message {prefix}… is scheduled (see claudemesh schedule list)"
        ))),
        many => Err(ClientError::AmbiguousHeld {
            prefix,
            candidates: many
                .iter()
                .map(|id| id.to_hex()[..12].to_owned())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// An `unknown_type` answer to a scheduling request: the broker predates
/// scheduling.
fn unsupported_if_unknown(e: ClientError) -> ClientError {
    match e {
        ClientError::Refused {
            code: ErrorCode::UnknownType,
            ..
        } => ClientError::SchedulingUnsupported,
        e => e,
    }
}

impl MeshClient {
    /// The broker's clock now (unix ms), as this device estimates it from
    /// the last welcome: what [`crate::SendOptions::deliver_at_ms`] is
    /// measured by (`in 2h` is this plus two hours).
    pub fn broker_now_ms(&self) -> u64 {
        self.session().broker_now_ms()
    }

    /// The broker's clock minus this device's (ms), as the last welcome
    /// measured it: what turns a time on this device's clock into one on
    /// the broker's ([`broker_clock`]) and back ([`local_clock`]).
    pub fn broker_skew_ms(&self) -> i64 {
        self.session().broker_seen().skew_ms
    }

    /// Whether the broker holds messages for later
    /// (`welcome.limits.scheduled` of the last connection).
    pub fn broker_schedules(&self) -> bool {
        self.session().broker_seen().schedules
    }

    /// The messages this member holds at the broker for later (its own,
    /// from any of its sessions), soonest first: held, or failed when their
    /// time came (with why).
    pub async fn schedule_list(&self) -> Result<Vec<HeldMessage>, ClientError> {
        if !self.broker_schedules() {
            return Err(ClientError::SchedulingUnsupported);
        }
        let frame = self
            .session()
            .request(
                |req| ClientFrame::ScheduleList(ScheduleListQuery { req: Some(req) }),
                "list the scheduled messages",
            )
            .await
            .map_err(unsupported_if_unknown)?;
        match frame {
            BrokerFrame::SchedulePage(page) => Ok(page.messages),
            other => Err(unexpected(&other)),
        }
    }

    /// Cancels a message held for later: the broker drops it, and it will
    /// never be sent (its outbox entry here becomes `cancelled`). One
    /// already sent, or never held, is [`ClientError::NotFound`] with the
    /// broker's word (such as the seq it was sent as).
    pub async fn schedule_cancel(&self, id: MessageId) -> Result<(), ClientError> {
        if !self.broker_schedules() {
            return Err(ClientError::SchedulingUnsupported);
        }
        let frame = self
            .session()
            .request(
                |req| ClientFrame::ScheduleCancel(ScheduleCancel { req: Some(req), id }),
                "cancel the scheduled message",
            )
            .await
            .map_err(|e| match unsupported_if_unknown(e) {
                ClientError::Refused {
                    code: ErrorCode::NotFound,
                    message,
                } => {
                    ClientError::NotFound(format!("cannot cancel {}: {message}", &id.to_hex()[..8]))
                }
                e => e,
            })?;
        match frame {
            BrokerFrame::ScheduleCancelled(c) if c.id == id => {
                let mesh = self.mesh().id;
                self.local().outbox_cancelled(&mesh, &id).await?;
                Ok(())
            }
            other => Err(unexpected(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_kind::ErrorKind;

    fn held(first: u8) -> HeldMessage {
        let mut id = [0x11; 16];
        id[0] = first;
        HeldMessage {
            id: MessageId(id),
            target: "*".into(),
            deliver_at_ms: 10_000,
            ttl_ms: None,
            size: 100,
            created_at_ms: 1000,
            state: "held".into(),
            error: None,
        }
    }

    #[test]
    fn a_time_ahead_goes_only_to_a_broker_that_holds_messages() {
        let now = 1_000_000;
        // Nothing to schedule: nothing carried, whatever the broker.
        assert_eq!(wire_deliver_at(None, now, false).unwrap(), None);
        assert_eq!(wire_deliver_at(None, now, true).unwrap(), None);
        // A broker that holds messages gets the time as given (it sends a
        // past one at once itself).
        for at in [now - 5000, now, now + 1000, now + 3_600_000] {
            assert_eq!(wire_deliver_at(Some(at), now, true).unwrap(), Some(at));
        }
        // An older broker would deliver at once: a time ahead is refused,
        // one within a second or past is sent now, without the field.
        let e = wire_deliver_at(Some(now + 1001), now, false).unwrap_err();
        assert!(matches!(e, ClientError::SchedulingUnsupported), "{e}");
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert!(e.to_string().contains("upgrade"), "{e}");
        assert_eq!(wire_deliver_at(Some(now + 1000), now, false).unwrap(), None);
        assert_eq!(
            wire_deliver_at(Some(now - 60_000), now, false).unwrap(),
            None
        );
    }

    #[test]
    fn held_means_more_than_a_second_ahead() {
        assert!(!is_held(1000, 1000));
        assert!(!is_held(2000, 1000));
        assert!(is_held(2001, 1000));
        assert!(!is_held(0, u64::MAX));
        assert!(!is_held(u64::MAX, u64::MAX));
    }

    #[test]
    fn clocks_convert_both_ways_and_a_ttl_counts_from_delivery() {
        assert_eq!(broker_clock(10_000, 250), 10_250);
        assert_eq!(broker_clock(10_000, -250), 9_750);
        assert_eq!(local_clock(10_250, 250), 10_000);
        assert_eq!(local_clock(9_750, -250), 10_000);
        assert_eq!(broker_clock(0, -5), 0);
        assert_eq!(local_clock(u64::MAX, -5), u64::MAX);
        // Held until 50 000: a TTL given at 10 000 counts from 50 000.
        assert_eq!(ttl_start(10_000, Some(50_000)), 50_000);
        // Its time passed (a resend after it): from now.
        assert_eq!(ttl_start(60_000, Some(50_000)), 60_000);
        assert_eq!(ttl_start(10_000, None), 10_000);
    }

    #[test]
    fn a_held_message_is_found_by_its_id_or_a_unique_prefix() {
        let list = [held(0xab), held(0xac), held(0x12)];
        let ab = list[0].id;
        assert_eq!(find_held(&list, &ab.to_hex()).unwrap(), ab);
        assert_eq!(find_held(&list, "ab11").unwrap(), ab);
        assert_eq!(find_held(&list, " AB111111 ").unwrap(), ab);
        // Shared by two: a usage error naming both.
        let e = find_held(&list, "a").unwrap_err();
        assert!(matches!(e, ClientError::BadInput(_)), "{e}");
        let list2 = [held(0xab), held(0xab)];
        let e = find_held(&list2, "ab11").unwrap_err();
        assert!(matches!(e, ClientError::AmbiguousHeld { .. }), "{e}");
        assert_eq!(e.kind(), ErrorKind::Usage);
        // Too short, not hex, too long: usage errors.
        for bad in ["ab1", "zzzz", "", &"a".repeat(33)] {
            let e = find_held(&list, bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad:?}: {e}");
        }
        // Held by no one: not found.
        let e = find_held(&list, "ffff").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("ffff"), "{e}");
    }
}
