//! The bounds of a `dm` run: message counts and sizes, and how long each
//! phase may take. Other scenarios share the time limits.

use std::time::Duration;

/// Messages when neither `--messages` nor `--duration` bounds the run.
pub const DEFAULT_MESSAGES: u64 = 20_000;
/// Smallest body: the SDK path carries a 20-digit timestamp in it.
pub const MIN_BODY_BYTES: usize = 24;
/// Bound on setting up (mesh, joins, connections, sealing).
pub const SETUP_LIMIT: Duration = Duration::from_secs(600);
/// How long to wait for deliveries after the last send.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// Open loop: most sends in flight per sender before pacing falls behind.
pub const OPEN_LOOP_IN_FLIGHT: usize = 4096;
/// How long a client may take to connect.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
