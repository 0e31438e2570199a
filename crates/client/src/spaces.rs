//! Topics, groups, posts and moderation by their round-1 path:
//! re-exports only, so callers outside this crate (the bench, the broker's
//! tests, the CLI's MCP server) keep compiling while they move to the
//! feature modules ([`crate::topics`], [`crate::groups`],
//! [`crate::messages`], [`crate::moderation`]) and the rules beside the
//! mesh state ([`crate::mesh::rotation`], [`crate::mesh::mentions`]).

pub use crate::groups::*;
pub use crate::mesh::mentions::*;
pub use crate::mesh::rotation::*;
pub use crate::messages::{Posted, send as post};
pub use crate::moderation::*;
pub use crate::topics::*;
