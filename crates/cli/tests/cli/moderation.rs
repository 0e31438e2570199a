//! Removing members: who may kick and ban, and that anyone may leave.

use serde_json::Value;

use crate::support::{Broker, bodies, code};

#[test]
fn only_owners_and_admins_remove_and_anyone_may_leave() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");

    let r = bob
        .run(&["-y", "peer", "kick", "carol"])
        .fails(code::REFUSED)
        .with_hint();
    assert!(r.stderr.contains("only owners and admins"), "{r:?}");
    bob.run(&["-y", "peer", "ban", "carol"])
        .fails(code::REFUSED);
    bob.run(&["-y", "peer", "unban", "carol"])
        .fails(code::REFUSED);
    alice
        .run(&["-y", "peer", "kick", "alice"])
        .fails(code::USAGE);
    alice
        .run(&["-y", "peer", "kick", "nobody"])
        .fails(code::NOT_FOUND);
    alice
        .run(&["-y", "peer", "unban", "carol"])
        .fails(code::NOT_FOUND);

    alice.run(&["-y", "peer", "kick", "carol"]).ok();
    carol.run(&["inbox"]).fails(code::REFUSED);
    assert_eq!(
        alice.run(&["peer", "bans", "--json"]).ok().json(),
        Value::Array(vec![]),
        "a kick is not a ban"
    );
    alice.send("*", "without carol");
    assert_eq!(bodies(&bob.inbox_json(&[])), ["without carol"]);

    // Carol forgets the mesh, and may come back with a new invite.
    let left = carol.run(&["--json", "-y", "mesh", "leave"]).ok().json();
    assert_eq!(left["already_removed"], true, "{left}");
    assert_eq!(
        carol.run(&["mesh", "list", "--json"]).ok().json(),
        Value::Array(vec![])
    );
    carol.join(&alice.share(&[]), "carol");
    alice.send("*", "welcome back");
    assert_eq!(bodies(&carol.inbox_json(&[])), ["welcome back"]);

    // Bob leaves by himself; the next broadcast writes the new key first.
    let r = bob.run(&["-y", "mesh", "leave"]).ok();
    assert!(r.stdout.contains("Left mesh"), "{r:?}");
    assert_eq!(
        bob.run(&["mesh", "list", "--json"]).ok().json(),
        Value::Array(vec![])
    );
    let before = carol.run(&["status", "--json"]).ok().json()[0]["log_entries"]
        .as_u64()
        .expect("log_entries");
    carol.send("*", "after bob left");
    let after = carol.run(&["status", "--json"]).ok().json()[0]["log_entries"]
        .as_u64()
        .expect("log_entries");
    assert!(after > before, "carol wrote the rekey: {before} → {after}");
    assert!(
        bodies(&alice.inbox_json(&[])).contains(&"after bob left"),
        "alice reads the new epoch"
    );

    // The owner cannot leave.
    alice.run(&["-y", "mesh", "leave"]).fails(code::REFUSED);
}
