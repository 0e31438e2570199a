//! The membership operations of round 1, by their old path: re-exports
//! only, so callers outside this crate (the bench, the broker's tests, the
//! CLI) keep compiling while they move to [`crate::membership`] and
//! [`crate::invites`].

pub use crate::invites::{JoinWith, ShareOptions, Shared, join, revoke_invite, share};
pub use crate::membership::{MAX_NAME_CHARS, create_mesh};
