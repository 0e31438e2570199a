//! Mesh keys after a member leaves or is kicked: resealed messages,
//! `mesh rekey`, bad-seal warnings.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Broker, bodies, code};

#[test]
fn a_message_sealed_before_a_leave_is_resealed_with_its_id_under_the_new_key() {
    use claudemesh_client::client::{ConnectOptions, SessionChoice, now_ms};
    use claudemesh_crypto::envelope::{Priority, Target};

    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");

    let home = claudemesh_client::Home::open(&alice.home).unwrap();
    let mesh = home.select_mesh(None).unwrap().clone();
    let opts = ConnectOptions {
        session: SessionChoice::Named("sdk".into()),
        ..ConnectOptions::default()
    };
    // Sealed under epoch 0 and left in the outbox (as if the connection
    // dropped before the broker answered).
    let id = broker.rt.block_on(async {
        let c = claudemesh_client::MeshClient::connect(&home, &mesh, opts.clone())
            .await
            .unwrap();
        let env = c
            .with_state(|s| {
                s.seal(
                    Target::Broadcast,
                    b"sealed before bob left",
                    Priority::Next,
                    None,
                    now_ms(),
                )
            })
            .unwrap();
        assert_eq!(env.epoch, 0);
        c.local().outbox_put(&env, now_ms()).await.unwrap();
        c.close().await;
        env.id
    });
    broker.quiet.wait();

    // Bob leaves: the mesh key must rotate before anything goes to `*`.
    bob.run(&["-y", "mesh", "leave"]).ok();

    // On reconnect the outbox is resent; the broker answers rekey_required;
    // the client writes the rekey (any member may after a leave), reseals
    // under epoch 1 with the same id, and sends it again.
    broker.rt.block_on(async {
        let c = claudemesh_client::MeshClient::connect(&home, &mesh, opts)
            .await
            .unwrap();
        let mut state = String::new();
        for _ in 0..500 {
            let entry = c.local().outbox_get(&mesh.id, &id).await.unwrap().unwrap();
            state = entry.state;
            if state != "pending" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(state, "accepted");
        let pending = c.local().outbox_pending(&mesh.id).await.unwrap();
        assert!(pending.is_empty(), "{pending:?}");
        assert_eq!(c.with_state(|s| s.roster().epoch()), 1);
        c.close().await;
    });
    broker.quiet.wait();

    let got = carol.inbox_json(&[]);
    assert_eq!(bodies(&got), ["sealed before bob left"]);
    assert_eq!(got[0]["id"], id.to_hex().as_str());
}

#[test]
fn mesh_rekey_bad_seal_warnings_and_a_join_after_a_kick() {
    use claudemesh_client::client::{ConnectOptions, SessionChoice, now_ms};
    use claudemesh_crypto::log::{EntryBody, LogEntry, rekey_body};

    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    let mallory = broker.user("mallory");
    let eve = broker.user("eve");
    let dave = broker.user("dave");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");
    mallory.join(&alice.share(&[]), "mallory");
    eve.join(&alice.share(&[]), "eve");
    // An invite made before the kick, used after it.
    let early = alice.share(&[]);

    // The kick says what is true: a new key for those who remain, and the
    // invite carol joined with revoked.
    let r = alice.run(&["-y", "peer", "kick", "carol"]).ok();
    assert!(
        r.stdout.contains("sealed to the remaining members only"),
        "{r:?}"
    );
    assert!(r.stdout.contains("Revoked 1 invite(s)"), "{r:?}");
    // `claudemesh join` with the older invite works end to end: the joiner,
    // owed the current key, writes the next one itself.
    let joined = dave
        .run(&["--json", "join", &early, "--name", "dave"])
        .ok()
        .json();
    assert_eq!(joined["name"], "team", "{joined}");
    let st = dave.run(&["status", "--json"]).ok().json();
    assert_eq!(st[0]["epoch"], 2, "{st}");
    assert_eq!(st[0]["bad_seals"], Value::Array(vec![]), "{st}");
    alice.send("*", "hello dave");
    assert_eq!(bodies(&dave.inbox_json(&[])), ["hello dave"]);

    // `mesh rekey`: the owner may, a plain member may not (now).
    let r = alice.run(&["--json", "mesh", "rekey"]).ok().json();
    assert_eq!(r["epoch"], 3, "{r}");
    assert_eq!(r["members"], 5, "{r}");
    let r = bob.run(&["mesh", "rekey"]).fails(code::REFUSED).with_hint();
    assert!(r.stderr.contains("owner"), "{r:?}");

    // Eve leaves; mallory repairs it with garbage sealed to bob (through
    // the SDK: the CLI would never write such an entry).
    eve.run(&["-y", "mesh", "leave"]).ok();
    let home = claudemesh_client::Home::open(&mallory.home).unwrap();
    let mesh = home.select_mesh(None).unwrap().clone();
    let bob_key = claudemesh_crypto::PublicKey::from_hex(&alice.key_of("bob")).unwrap();
    broker.rt.block_on(async {
        let opts = ConnectOptions {
            session: SessionChoice::Named("sdk".into()),
            ..ConnectOptions::default()
        };
        let c = claudemesh_client::MeshClient::connect(&home, &mesh, opts)
            .await
            .unwrap();
        c.append_entries(|s| {
            let r = s.roster();
            let root = claudemesh_crypto::EpochRootKey::generate(r.epoch() + 1);
            let members: Vec<_> = r.members().keys().copied().collect();
            let mut body = rekey_body(&root, &r.mesh_id(), &members).unwrap();
            if let EntryBody::Rekey { sealed, .. } = &mut body {
                for s in sealed.iter_mut().filter(|s| s.recipient == bob_key) {
                    s.ciphertext = vec![9; s.ciphertext.len()];
                }
            }
            Ok(vec![LogEntry::sign(
                s.member_key(),
                r.len(),
                r.head(),
                now_ms() / 1000,
                body,
            )])
        })
        .await
        .unwrap();
        c.close().await;
    });
    broker.quiet.wait();

    // Bob's next command warns, naming mallory, and re-rolls the key (the
    // epoch was made by a member); `status --json` lists the bad seal.
    let st = bob.run(&["status", "--json"]).ok();
    assert!(
        st.stderr.contains("WARNING") && st.stderr.contains("mallory"),
        "{st:?}"
    );
    let seals = st.json()[0]["bad_seals"].clone();
    assert_eq!(seals[0]["author_name"], "mallory", "{seals}");
    assert_eq!(seals[0]["epoch"], 4, "{seals}");
    assert_eq!(seals[0]["kind"], "mesh", "{seals}");
    assert_eq!(seals[0]["current"], false, "re-rolled already: {seals}");
    assert_eq!(st.json()[0]["epoch"], 5);
    // Plain status lists it too; a later command no longer warns.
    let st = bob.run(&["status"]).ok();
    assert!(st.stdout.contains("mallory"), "{st:?}");
    let r = bob.run(&["peers"]).ok();
    assert!(!r.stderr.contains("WARNING"), "{r:?}");
    alice.send("*", "after the re-roll");
    assert_eq!(
        bodies(&bob.inbox_json(&[])),
        ["hello dave", "after the re-roll"]
    );
}
