//! Protocol versions and their negotiation. The websocket subprotocol names
//! the framing (`claudemesh.v1`); the `challenge` lists the protocol versions
//! a broker speaks and the client's `hello` picks one of them.

/// The websocket subprotocol both sides must agree on.
pub const SUBPROTOCOL: &str = "claudemesh.v1";
/// The websocket path on the broker.
pub const WS_PATH: &str = "/ws";
/// Protocol versions this build speaks, highest last. Version 2 is
/// version 1 plus one push, `coord_changed`, which a broker sends only to
/// sessions that chose 2: a client of version 1 ends its session on a frame
/// type it does not know.
pub const SUPPORTED_VERSIONS: &[u32] = &[1, 2];
/// The version this build prefers.
pub const CURRENT_VERSION: u32 = 2;
/// The first version whose sessions are sent `coord_changed`.
pub const COORD_CHANGED_SINCE: u32 = 2;

/// The highest version both sides speak, if any.
pub fn negotiate(broker: &[u32], client: &[u32]) -> Option<u32> {
    client.iter().filter(|v| broker.contains(v)).max().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_common() {
        assert_eq!(negotiate(&[1, 2, 3], &[2, 3, 4]), Some(3));
        assert_eq!(negotiate(&[1], &[2]), None);
        assert_eq!(
            negotiate(SUPPORTED_VERSIONS, SUPPORTED_VERSIONS),
            Some(CURRENT_VERSION)
        );
    }
}
