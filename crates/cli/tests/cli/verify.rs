//! Safety numbers: both sides see the same, and a changed key is caught.

use crate::support::{Broker, code};

#[test]
fn safety_numbers_match_on_both_sides_and_a_changed_key_is_caught() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");

    // Both sides compute the same 60 digits, in 12 groups of 5.
    let a = alice.run(&["--json", "peer", "verify", "bob"]).ok().json();
    let b = bob.run(&["--json", "verify", "alice"]).ok().json();
    assert_eq!(a["safety_number"], b["safety_number"], "{a} {b}");
    let groups: Vec<&str> = a["safety_number"].as_str().unwrap().split(' ').collect();
    assert_eq!(groups.len(), 12);
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit()))
    );
    assert_eq!(a["peer"], "bob");
    assert_eq!(a["verified"], false);
    let text = alice.run(&["peer", "verify", "bob"]).ok();
    assert!(
        text.stdout.contains(groups[0]) && text.stdout.contains("--mark"),
        "{text:?}"
    );

    alice.run(&["peer", "verify", "bob", "--mark"]).ok();
    let a = alice.run(&["--json", "peer", "verify", "bob"]).ok().json();
    assert_eq!(a["verified"], true, "{a}");
    assert!(
        alice
            .run(&["peer", "list"])
            .ok()
            .stdout
            .contains("bob (verified)")
    );
    alice.send("bob", "hello, verified bob");

    // Someone else joins under the name bob: a new key for a pinned name.
    let mallory = broker.user("mallory");
    mallory.join(&alice.share(&[]), "bob");
    let peers = alice.run(&["--json", "peers"]).ok().json();
    let bob_key = a["key"].as_str().unwrap().to_owned();
    let new_key = peers
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "bob")
        .filter_map(|p| p["key"].as_str())
        .find(|k| *k != bob_key)
        .expect("the second bob")
        .to_owned();
    let r = alice
        .run(&["send", &new_key[..16], "the launch code"])
        .fails(code::SECURITY);
    assert!(r.stderr.contains("changed since you verified"), "{r:?}");
    let list = alice.run(&["peer", "list"]).ok();
    assert!(list.stdout.contains("bob (KEY CHANGED)"), "{list:?}");
    assert!(list.stderr.contains("WARNING"), "{list:?}");
    let v = alice
        .run(&["--json", "peer", "verify", &new_key[..16]])
        .ok();
    assert_eq!(v.json()["key_changed"], true);
    assert!(v.stderr.contains("WARNING"), "{v:?}");
    // The verified bob is still reachable.
    alice.send(&bob_key[..16], "still you?");
    // Once the numbers have been compared again, the new key is pinned.
    alice
        .run(&["peer", "verify", &new_key[..16], "--mark"])
        .ok();
    alice.send(&new_key[..16], "welcome");
}
