//! What this device knows and trusts about one mesh: the membership log it
//! verified itself (TM3) and the roster that log yields, its own keys and
//! the epoch root keys it could open, the session certificates it verified,
//! and everything derived from them: display names (decrypted profiles),
//! who a name or key prefix means, how to seal a message to them, and how to
//! open one from them — including the keys of fan-out targets: the mesh key
//! of an epoch (`*`, `@group`), a public topic's key derived from it, and
//! the random keys of the private topics this member is in (opened from
//! their seals in the log and cached here). Keys are opened one epoch at a
//! time and checked against the key confirmation in the log; a seal that
//! does not open or does not match is recorded as a [`BadSeal`] naming its
//! author, reported to the user, and keeps no other epoch from opening.

//!
//! - `state`: [`MeshState`], its keys and bad seals; `names`, `labels`:
//!   names as shown and compared (TM8); `peers`: presence and resolving a
//!   recipient; `sealing`: sealing and opening keys; `certs`: session
//!   certificates.
//! - Pure rules beside the state, tested without I/O: `rotation` (which
//!   keys must rotate, and who may write them), `removal` (a kick's or
//!   ban's entries), `mentions`, `chain` (signed entries checked on a copy
//!   of the roster).

pub mod certs;
pub mod chain;
pub mod labels;
pub mod mentions;
pub mod names;
pub mod peers;
pub mod pins;
pub mod removal;
pub mod rotation;
#[cfg(test)]
mod rules_tests;
pub mod sealing;
pub mod state;

pub use self::certs::{ephemeral_session, recertify, renew_session, session_for};
pub use self::labels::{Label, SenderLabels};
pub use self::names::{
    names_a_session, names_look_alike, session_display_name, session_name_is_members, shown_name,
};
pub use self::state::{
    BadSealRecord, BadSealReport, MeshState, PeerView, SESSION_CERT_LIFETIME,
    SESSION_CERT_RENEW_BEFORE, SessionProfile, SessionView, short,
};
