//! Grants: block, silence, unblock, and revoking broadcast.

use crate::support::{Broker, bodies};

#[test]
fn grants_block_silence_unblock_and_revoke_broadcast() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");

    // Nothing set: an empty list.
    let none = bob.run(&["grants", "--json"]).ok().json();
    assert_eq!(none["mesh"], "team", "{none}");
    assert_eq!(none["grants"], serde_json::json!([]), "{none}");

    // A block is refused at the broker, and the sender is told.
    bob.run(&["block", "alice"]).ok();
    let r = alice.run(&["send", "bob", "hi"]).fails(2);
    assert!(r.stderr.contains("blocked by recipient"), "{r:?}");
    let g = bob.run(&["grants", "--json"]).ok().json();
    let entry = &g["grants"][0];
    assert_eq!(entry["name"], "alice", "{g}");
    assert_eq!(entry["peer"], bob.key_of("alice").as_str(), "{g}");
    assert_eq!(entry["caps"], serde_json::json!([]), "{g}");
    assert_eq!(entry["blocked"], true, "{g}");
    assert_eq!(entry["silent"], false, "{g}");
    assert!(bob.run(&["grants"]).ok().stdout.contains("alice"));

    // A silent block: accepted, never delivered.
    bob.run(&["block", "alice", "--silent"]).ok();
    alice.send("bob", "into the void");
    assert!(bob.inbox_json(&[]).is_empty());
    let g = bob.run(&["grants", "--json"]).ok().json();
    assert_eq!(g["grants"][0]["silent"], true, "{g}");

    // Unblock restores.
    bob.run(&["unblock", "alice"]).ok();
    assert_eq!(
        bob.run(&["grants", "--json"]).ok().json()["grants"],
        serde_json::json!([])
    );
    alice.send("bob", "hello again");
    assert_eq!(bodies(&bob.inbox_json(&[])), ["hello again"]);

    // Revoke broadcast: bob no longer gets alice's `*`, carol does; a DM
    // still reaches bob.
    bob.run(&["revoke", "alice", "broadcast"]).ok();
    let g = bob.run(&["grants", "--json"]).ok().json();
    assert_eq!(
        g["grants"][0]["caps"],
        serde_json::json!([
            "dm", "group", "memory", "presence", "state", "task", "topic"
        ]),
        "{g}"
    );
    assert_eq!(g["grants"][0]["blocked"], false, "{g}");
    alice.send("*", "to everyone");
    alice.send("bob", "just you");
    assert_eq!(bodies(&carol.inbox_json(&[])), ["to everyone"]);
    assert_eq!(bodies(&bob.inbox_json(&[])), ["just you"]);

    // Grant it back: the entry goes away (every capability is the default).
    bob.run(&["grant", "alice", "broadcast"]).ok();
    assert_eq!(
        bob.run(&["grants", "--json"]).ok().json()["grants"],
        serde_json::json!([])
    );
    // `revoke all` refuses, not silently; a bad capability is a usage error.
    bob.run(&["revoke", "alice", "all"]).ok();
    alice.run(&["send", "bob", "hi"]).fails(2);
    bob.run(&["revoke", "alice", "root"]).fails(3);
}
