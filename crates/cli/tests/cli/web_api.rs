//! The gateway routes the web app adds to `/api/v1` (`docs/api.md`), end
//! to end against real `serve` processes: a peer's safety number (the same
//! on both sides and as `claudemesh peer verify` prints it), marking its
//! key verified, a changed key; an invite made over HTTP that another home
//! joins with; a conversation with one peer, both ways, by pages; held
//! messages, team memory, and tasks, shared state and file leases. Each
//! refusal is an `application/problem+json` with the CLI's exit code.

use serde_json::{Value, json};

use crate::serve::{Api, api_key, eventually, page, team};
use crate::support::{Broker, Gateway, User, code, is_message_id};

/// `serve` for `user`, and the gateway as `key` sees it once its link to
/// the broker is up.
fn serve_up(user: &User, key: &str) -> (Gateway, Api) {
    let gw = user.serve(&[]);
    let api = Api::new(&gw, key);
    api.wait_up();
    (gw, api)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A QR code as the API hands it out.
#[track_caller]
fn is_svg_data_url(v: &Value) {
    let s = v.as_str().unwrap_or_default();
    let b64 = s
        .strip_prefix("data:image/svg+xml;base64,")
        .unwrap_or_else(|| panic!("not an SVG data URL: {v}"));
    assert!(b64.len() > 200, "{s}");
    assert!(
        b64.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')),
        "{s}"
    );
}

#[test]
fn web_api_safety_numbers_match_both_sides_and_the_cli_and_verify_pins_the_key() {
    let broker = Broker::start();
    let (alice, bob) = team(&broker);
    let key_a = api_key(&alice, "web", "read,send,admin", None);
    let read_a = api_key(&alice, "reader", "read", None);
    let topic_a = api_key(&alice, "deploys-bot", "read,send", Some("deploys"));
    let key_b = api_key(&bob, "web", "read,send", None);
    let (gw_a, a) = serve_up(&alice, &key_a);
    let (_gw_b, b) = serve_up(&bob, &key_b);

    let ab = a.get("/api/v1/peers/bob/safety").ok(200);
    let ba = b.get("/api/v1/peers/alice/safety").ok(200);
    let number = ab["safety_number"].as_str().expect("safety_number");
    assert_eq!(ba["safety_number"], number, "{ab} {ba}");
    let groups: Vec<&str> = number.split(' ').collect();
    assert_eq!(groups.len(), 12, "{number}");
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit())),
        "{number}"
    );
    assert_eq!(ab["groups"], json!(groups), "{ab}");
    assert_eq!(ab["name"], "bob");
    assert_eq!(ab["key"], alice.key_of("bob").as_str());
    assert_eq!(ba["name"], "alice");
    assert_eq!(ab["verified"], false);
    assert_eq!(ab["key_changed"], false);
    is_svg_data_url(&ab["qr"]);
    // Exactly what the CLI prints.
    let cli = alice.run(&["--json", "peer", "verify", "bob"]).ok().json();
    assert_eq!(cli["safety_number"], number, "{cli}");
    assert_eq!(cli["key"], ab["key"]);
    // A key prefix names the same peer.
    let by_key = a
        .get(&format!(
            "/api/v1/peers/{}/safety",
            &ab["key"].as_str().unwrap()[..12]
        ))
        .ok(200);
    assert_eq!(by_key["safety_number"], number);

    // Refusals: nobody, yourself, a fan-out target, the wrong key.
    a.get("/api/v1/peers/nobody/safety")
        .problem(404, code::NOT_FOUND);
    a.get("/api/v1/peers/alice/safety")
        .problem(400, code::USAGE);
    a.get("/api/v1/peers/%2A/safety").problem(400, code::USAGE);
    Api::new(&gw_a, &topic_a)
        .get("/api/v1/peers/bob/safety")
        .problem(403, code::DENIED);
    Api::new(&gw_a, &read_a)
        .post("/api/v1/peers/bob/verify", json!({}))
        .problem(403, code::DENIED);
    a.post("/api/v1/peers/bob/verify", json!({"mark": true}))
        .problem(400, code::USAGE);
    a.post("/api/v1/peers/bob/verify", json!([]))
        .problem(400, code::USAGE);

    // Verify flips `verified`, here, in the peer list and for the CLI.
    let v = a.post("/api/v1/peers/bob/verify", json!({})).ok(200);
    assert_eq!(
        v,
        json!({"name": "bob", "key": ab["key"], "verified": true}),
        "{v}"
    );
    let ab2 = a.get("/api/v1/peers/bob/safety").ok(200);
    assert_eq!(ab2["verified"], true, "{ab2}");
    assert_eq!(ab2["key_changed"], false, "{ab2}");
    assert_eq!(ab2["safety_number"], number);
    let peers = a.get("/api/v1/peers").ok(200);
    let bob_row = peers
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["name"] == "bob")
        .expect("bob")
        .clone();
    assert_eq!(bob_row["verified"], true, "{peers}");
    let cli = alice.run(&["--json", "peer", "verify", "bob"]).ok().json();
    assert_eq!(cli["verified"], true, "{cli}");
    // bob has not verified alice.
    assert_eq!(
        b.get("/api/v1/peers/alice/safety").ok(200)["verified"],
        false
    );

    // Someone else joins under the name bob: a new key for a pinned name.
    let mallory = broker.user("mallory");
    mallory.join(&alice.share(&[]), "bob");
    let bob_key = ab["key"].as_str().expect("key").to_owned();
    let new_key = eventually("alice's gateway sees the second bob", || {
        let peers = a.get("/api/v1/peers").ok(200);
        peers
            .as_array()
            .expect("peers")
            .iter()
            .filter(|p| p["name"] == "bob")
            .filter_map(|p| p["key"].as_str())
            .find(|k| *k != bob_key)
            .map(str::to_owned)
            .ok_or_else(|| peers.to_string())
    });
    // The name alone no longer tells them apart.
    a.get("/api/v1/peers/bob/safety").problem(400, code::USAGE);
    let changed = a
        .get(&format!("/api/v1/peers/{}/safety", &new_key[..16]))
        .ok(200);
    assert_eq!(changed["key"], new_key.as_str(), "{changed}");
    assert_eq!(changed["key_changed"], true, "{changed}");
    assert_eq!(changed["verified"], false, "{changed}");
    assert_ne!(changed["safety_number"], number);
    let cli = alice
        .run(&["--json", "peer", "verify", &new_key[..16]])
        .ok()
        .json();
    assert_eq!(cli["safety_number"], changed["safety_number"]);
    assert_eq!(cli["key_changed"], true);
    // The verified bob is still verified.
    let old = a
        .get(&format!("/api/v1/peers/{}/safety", &bob_key[..16]))
        .ok(200);
    assert_eq!(
        (&old["verified"], &old["key_changed"]),
        (&json!(true), &json!(false))
    );
    // Verified again, the new key is trusted.
    a.post(
        &format!("/api/v1/peers/{}/verify", &new_key[..16]),
        json!({}),
    )
    .ok(200);
    let now = a
        .get(&format!("/api/v1/peers/{}/safety", &new_key[..16]))
        .ok(200);
    assert_eq!(
        (&now["verified"], &now["key_changed"]),
        (&json!(true), &json!(false)),
        "{now}"
    );
}

#[test]
fn web_api_an_invite_made_over_http_lets_a_third_home_join() {
    let broker = Broker::start();
    let (alice, bob) = team(&broker);
    let admin_a = api_key(&alice, "web", "read,send,admin", None);
    let plain_a = api_key(&alice, "script", "read,send", None);
    let topic_a = api_key(&alice, "deploys-bot", "read,send,admin", Some("deploys"));
    let admin_b = api_key(&bob, "web", "read,send,admin", None);
    let (gw_a, a) = serve_up(&alice, &admin_a);

    let before = now_secs();
    let inv = a.post("/api/v1/invites", json!({})).ok(201);
    let url = inv["url"].as_str().expect("url").to_owned();
    assert!(url.contains('#'), "the secret is in the fragment: {inv}");
    assert!(
        inv["app_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("claudemesh://join/")),
        "{inv}"
    );
    let id = inv["id"].as_str().expect("id");
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{inv}"
    );
    assert_eq!(inv["max_uses"], 1);
    assert_eq!(inv["role"], "member");
    let expires = inv["expires_at"].as_u64().expect("expires_at");
    assert!(
        (before + 604_800..=now_secs() + 604_800).contains(&expires),
        "{inv}"
    );
    is_svg_data_url(&inv["qr"]);

    // carol joins with it on the command line.
    let carol = broker.user("carol");
    carol.join(&url, "carol");
    let carol_key = carol.key_of("carol");
    eventually("alice's gateway lists carol", || {
        let peers = a.get("/api/v1/peers").ok(200);
        let found = peers
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["key"] == carol_key.as_str()));
        if found {
            Ok(())
        } else {
            Err(peers.to_string())
        }
    });
    // It was for one use.
    let dave = broker.user("dave");
    dave.run(&["join", &url, "--name", "dave"])
        .fails(code::REFUSED);

    // Uses, validity and role as asked.
    let before = now_secs();
    let two = a
        .post(
            "/api/v1/invites",
            json!({"uses": 2, "expires_in": 3600, "role": "admin"}),
        )
        .ok(201);
    assert_eq!(
        (&two["max_uses"], &two["role"]),
        (&json!(2), &json!("admin")),
        "{two}"
    );
    let expires = two["expires_at"].as_u64().expect("expires_at");
    assert!(
        (before + 3600..=now_secs() + 3600).contains(&expires),
        "{two}"
    );
    assert_ne!(two["url"], inv["url"]);
    dave.join(two["url"].as_str().expect("url"), "dave");
    let roles = alice.run(&["--json", "peer", "list"]).ok().json();
    let dave_row = roles
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["name"] == "dave")
        .cloned()
        .unwrap_or_else(|| panic!("no dave in {roles}"));
    assert_eq!(dave_row["role"], "admin", "{dave_row}");

    // Refusals.
    for bad in [
        json!({"uses": 0}),
        json!({"expires_in": 0}),
        json!({"role": "owner"}),
        json!({"uses": 1, "code": true}),
        json!([null, null]),
    ] {
        a.post("/api/v1/invites", bad.clone())
            .problem(400, code::USAGE);
    }
    Api::new(&gw_a, &plain_a)
        .post("/api/v1/invites", json!({}))
        .problem(403, code::DENIED);
    Api::new(&gw_a, &topic_a)
        .post("/api/v1/invites", json!({}))
        .problem(403, code::DENIED);
    drop(gw_a);
    // bob is a member: his key may ask, his role may not.
    let (_gw_b, b) = serve_up(&bob, &admin_b);
    b.post("/api/v1/invites", json!({}))
        .problem(403, code::REFUSED);
}

/// The ids, in order, of a conversation page.
fn ids(v: &Value) -> Vec<String> {
    page(v)
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Sends over the API; the id.
#[track_caller]
fn send(api: &Api, body: Value) -> String {
    let sent = api.post("/api/v1/messages", body).ok(201);
    let id = sent["id"].as_str().expect("id").to_owned();
    assert!(is_message_id(&id), "{sent}");
    id
}

/// Waits until `api`'s inbox holds message `id`.
#[track_caller]
fn arrives(api: &Api, id: &str) {
    eventually("the message arrives", || {
        let v = api.get("/api/v1/messages?unread=false").ok(200);
        if page(&v).iter().any(|m| m["id"] == id) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
}

#[test]
fn web_api_a_conversation_shows_both_ways_newest_first_by_pages() {
    let broker = Broker::start();
    let (alice, bob) = team(&broker);
    let carol = broker.user("carol");
    carol.join(&alice.share(&[]), "carol");
    alice.run(&["topic", "create", "deploys"]).ok();
    let key_a = api_key(&alice, "web", "read,send", None);
    let topic_a = api_key(&alice, "deploys-bot", "read,send", Some("deploys"));
    let key_b = api_key(&bob, "web", "read,send", None);
    let (gw_a, a) = serve_up(&alice, &key_a);
    let (_gw_b, b) = serve_up(&bob, &key_b);

    // Each waits for the one before to arrive, so their times increase.
    let m1 = send(&a, json!({"to": "bob", "body": "one: alice to bob"}));
    arrives(&b, &m1);
    let m2 = send(
        &b,
        json!({"to": "alice", "body": "two: bob answers", "reply_to": m1, "priority": "now"}),
    );
    arrives(&a, &m2);
    // Not part of it: a broadcast, and a message to someone else.
    let other = send(&a, json!({"to": "*", "body": "to everyone"}));
    arrives(&b, &other);
    send(&a, json!({"to": "carol", "body": "to carol"}));
    let m3 = send(&a, json!({"to": "bob", "body": "three: alice again"}));
    arrives(&b, &m3);
    let m4 = send(&b, json!({"to": "alice", "body": "four: bob again"}));
    arrives(&a, &m4);
    // To bob's gateway session: direct too.
    let m5 = send(
        &a,
        json!({"to": "bob@serve", "body": "five: to bob's session"}),
    );
    arrives(&b, &m5);

    let all = a.get("/api/v1/conversations/bob/messages").ok(200);
    assert_eq!(
        ids(&all),
        [
            m5.as_str(),
            m4.as_str(),
            m3.as_str(),
            m2.as_str(),
            m1.as_str()
        ],
        "{all}"
    );
    assert_eq!(all["peer"], "bob");
    assert_eq!(all["key"], alice.key_of("bob").as_str());
    assert_eq!(all["more"], false);
    let msgs = all["messages"].as_array().expect("messages");
    let you: Vec<bool> = msgs.iter().map(|m| m["you"] == true).collect();
    assert_eq!(you, [true, false, true, false, true], "{all}");
    let alice_key = alice.key_of("alice");
    let first = &msgs[4];
    assert_eq!(first["body"], "one: alice to bob");
    assert_eq!(first["from"], alice_key.as_str());
    assert_eq!(
        (&first["from_name"], &first["to_name"]),
        (&json!("alice"), &json!("bob"))
    );
    assert_eq!(first["read"], true);
    assert!(first["reply_to"].is_null(), "{first}");
    assert_eq!(first["priority"], "next");
    let answer = &msgs[3];
    assert_eq!(answer["body"], "two: bob answers");
    assert_eq!(
        (&answer["from_name"], &answer["to_name"]),
        (&json!("bob"), &json!("alice"))
    );
    assert_eq!(answer["reply_to"], m1.as_str());
    assert_eq!(answer["priority"], "now");
    assert_eq!(answer["read"], false, "not read yet: {answer}");
    let times: Vec<u64> = msgs
        .iter()
        .map(|m| m["sent_at"].as_u64().expect("sent_at"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // bob's side: the same messages, the other way round.
    let theirs = b.get("/api/v1/conversations/alice/messages").ok(200);
    assert_eq!(ids(&theirs), ids(&all), "{theirs}");
    let you: Vec<bool> = theirs["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["you"] == true)
        .collect();
    assert_eq!(you, [false, true, false, true, false], "{theirs}");
    assert_eq!(theirs["messages"][0]["body"], "five: to bob's session");
    // The times are the senders' own, the same on both sides.
    assert_eq!(
        theirs["messages"][2]["sent_at"],
        all["messages"][2]["sent_at"]
    );

    // Pages.
    let p1 = a.get("/api/v1/conversations/bob/messages?limit=2").ok(200);
    assert_eq!(ids(&p1), [m5.as_str(), m4.as_str()]);
    assert_eq!(p1["more"], true);
    let p2 = a
        .get(&format!(
            "/api/v1/conversations/bob/messages?limit=2&before={m4}"
        ))
        .ok(200);
    assert_eq!(ids(&p2), [m3.as_str(), m2.as_str()]);
    assert_eq!(p2["more"], true);
    let p3 = a
        .get(&format!(
            "/api/v1/conversations/bob/messages?limit=2&before={m2}"
        ))
        .ok(200);
    assert_eq!(ids(&p3), [m1.as_str()]);
    assert_eq!(p3["more"], false);
    let one = a.get("/api/v1/conversations/bob/messages?limit=0").ok(200);
    assert_eq!(ids(&one), [m5.as_str()]);

    // Read marks show.
    a.post("/api/v1/messages/read", json!({"ids": [m2]}))
        .ok(200);
    let after = a.get("/api/v1/conversations/bob/messages").ok(200);
    assert_eq!(after["messages"][3]["read"], true, "{after}");
    assert_eq!(after["messages"][1]["read"], false, "{after}");

    // Refusals.
    a.get(&format!(
        "/api/v1/conversations/bob/messages?before={other}"
    ))
    .problem(404, code::NOT_FOUND);
    a.get("/api/v1/conversations/bob/messages?before=nope")
        .problem(400, code::USAGE);
    a.get("/api/v1/conversations/bob/messages?page=2")
        .problem(400, code::USAGE);
    a.get("/api/v1/conversations/nobody/messages")
        .problem(404, code::NOT_FOUND);
    a.get("/api/v1/conversations/alice/messages")
        .problem(400, code::USAGE);
    Api::new(&gw_a, &topic_a)
        .get("/api/v1/conversations/bob/messages")
        .problem(403, code::DENIED);
    // carol's conversation holds the one message to her.
    let with_carol = a.get("/api/v1/conversations/carol/messages").ok(200);
    assert_eq!(
        with_carol["messages"][0]["body"], "to carol",
        "{with_carol}"
    );
    assert_eq!(ids(&with_carol).len(), 1, "{with_carol}");
}

/// Unix ms now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

#[test]
fn gateway_schedules_lists_and_cancels_messages_for_later() {
    let broker = Broker::start();
    let (alice, bob) = team(&broker);
    let key_a = api_key(&alice, "web", "read,send", None);
    let topic_a = api_key(&alice, "deploys-bot", "read,send", Some("deploys"));
    let key_b = api_key(&bob, "web", "read,send", None);
    let (gw_a, a) = serve_up(&alice, &key_a);
    let (_gw_b, b) = serve_up(&bob, &key_b);
    let bot = crate::serve::Api::new(&gw_a, &topic_a);

    // In three seconds, and in an hour (to be cancelled).
    let soon = a
        .post(
            "/api/v1/messages",
            json!({"to": "bob", "body": "in three seconds", "in": 3}),
        )
        .ok(201);
    let id = soon["id"].as_str().expect("id").to_owned();
    assert!(is_message_id(&id), "{soon}");
    let at = soon["deliver_at_ms"].as_u64().expect("deliver_at_ms");
    assert!(at > now_ms() && at < now_ms() + 10_000, "{soon}");
    assert_eq!(soon["seq"], 0, "not stored yet: {soon}");
    let in_an_hour = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    )
    .to_string();
    let later = a
        .post(
            "/api/v1/messages",
            json!({"to": "bob", "body": "never", "at": in_an_hour, "ttl": 60}),
        )
        .ok(201);
    let later_id = later["id"].as_str().expect("id").to_owned();
    let listed = a.get("/api/v1/scheduled").ok(200);
    let held = listed["messages"].as_array().expect("messages");
    assert_eq!(held.len(), 2, "{listed}");
    assert_eq!(held[0]["id"], id.as_str(), "soonest first: {listed}");
    assert_eq!(held[1]["id"], later_id.as_str());
    for m in held {
        assert_eq!(m["to"], "bob", "{m}");
        assert_eq!(m["state"], "held", "{m}");
        assert!(
            m["target"]
                .as_str()
                .unwrap_or_default()
                .starts_with("member:")
        );
        assert!(m.get("body").is_none(), "the broker holds no text: {m}");
    }
    assert_eq!(held[1]["ttl"], 60, "{listed}");
    // Its status says when it goes.
    let status = a.get(&format!("/api/v1/messages/{later_id}")).ok(200);
    assert_eq!(status["delivery"]["state"], "scheduled", "{status}");
    // A key limited to a topic sees none of them and cancels none.
    let none = bot.get("/api/v1/scheduled").ok(200);
    assert_eq!(none["messages"], json!([]), "{none}");
    bot.delete(&format!("/api/v1/scheduled/{later_id}"))
        .problem(404, code::NOT_FOUND);
    // Bad times.
    for bad in [
        json!({"to": "bob", "body": "x", "in": 3, "at": in_an_hour}),
        json!({"to": "bob", "body": "x", "in": 0}),
        json!({"to": "bob", "body": "x", "at": "tomorrow"}),
        json!({"to": "bob", "body": "x", "at": "2001-01-01T00:00:00Z"}),
    ] {
        a.post("/api/v1/messages", bad).problem(400, code::USAGE);
    }
    a.delete("/api/v1/scheduled/not-an-id")
        .problem(400, code::USAGE);
    // Cancelled: gone, and never sent.
    a.delete(&format!("/api/v1/scheduled/{later_id}")).ok(204);
    a.delete(&format!("/api/v1/scheduled/{later_id}"))
        .problem(404, code::NOT_FOUND);

    // Bob has nothing before its time, and the message after it.
    let got = eventually("bob gets the scheduled message", || {
        let v = b.get("/api/v1/messages").ok(200);
        let msgs = page(&v);
        match msgs.iter().find(|m| m["id"] == id.as_str()) {
            Some(m) => Ok((now_ms(), m.clone(), msgs.len())),
            None => Err(v.to_string()),
        }
    });
    assert!(got.0 >= at, "delivered {} ms early", at - got.0);
    assert_eq!(got.1["body"], "in three seconds");
    assert_eq!(got.2, 1, "the cancelled one never arrives");
    eventually("the held list empties once it is sent", || {
        let v = a.get("/api/v1/scheduled").ok(200);
        if v["messages"] == json!([]) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    let status = eventually("its delivery shows it sent", || {
        let v = a.get(&format!("/api/v1/messages/{id}")).ok(200);
        if v["delivery"]["state"] == "accepted" {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert!(
        status["delivery"]["seq"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
}

/// The team's memory over HTTP: a note remembered through one gateway is
/// found by a word through another, filtered by tags, kept from a key
/// limited to topics, forgettable only by its author, and gone for
/// everyone once forgotten.
#[test]
fn gateway_remembers_recalls_and_forgets_notes() {
    let broker = Broker::start();
    let (alice, bob) = team(&broker);
    let key_a = api_key(&alice, "web", "read,send", None);
    let topic_a = api_key(&alice, "deploys-bot", "read,send", Some("deploys"));
    let key_b = api_key(&bob, "web", "read,send", None);
    let (gw_a, a) = serve_up(&alice, &key_a);
    let (gw_b, b) = serve_up(&bob, &key_b);
    let bot = crate::serve::Api::new(&gw_a, &topic_a);

    let note = a
        .post(
            "/api/v1/memory",
            json!({"text": "the staging database listens on port 5433", "tags": ["infra", "DB"]}),
        )
        .ok(201);
    let id = note["id"].as_str().expect("id").to_owned();
    assert!(is_message_id(&id), "{note}");
    assert_eq!(note["tags"], json!(["infra", "db"]), "{note}");
    assert_eq!(note["author_name"], "alice", "{note}");

    // Bob finds it by words in it, best match first.
    let found = b.get("/api/v1/memory?q=staging%20port").ok(200);
    let notes = found["notes"].as_array().expect("notes");
    assert_eq!(notes.len(), 1, "{found}");
    assert_eq!(notes[0]["id"], id.as_str());
    assert_eq!(
        notes[0]["text"],
        "the staging database listens on port 5433"
    );
    assert_eq!(notes[0]["author_name"], "alice");
    assert_eq!(notes[0]["departed"], false);
    assert_eq!(
        notes[0]["forgettable"], false,
        "bob is neither author nor admin"
    );
    assert_eq!(note["forgettable"], true, "{note}");
    let tagged = b.get("/api/v1/memory?tags=infra,db").ok(200);
    assert_eq!(
        tagged["notes"].as_array().map(Vec::len),
        Some(1),
        "{tagged}"
    );
    let none = b.get("/api/v1/memory?q=staging&tags=nope").ok(200);
    assert_eq!(none["notes"], json!([]), "{none}");
    let none = b.get("/api/v1/memory?q=kubernetes").ok(200);
    assert_eq!(none["notes"], json!([]), "{none}");

    // Mesh-wide: a key limited to a topic may not read or write it.
    bot.get("/api/v1/memory").problem(403, code::DENIED);
    bot.post("/api/v1/memory", json!({"text": "x"}))
        .problem(403, code::DENIED);
    // Bad input.
    a.post("/api/v1/memory", json!({"text": "  "}))
        .problem(400, code::USAGE);
    a.post(
        "/api/v1/memory",
        json!({"text": "x", "tags": ["no spaces"]}),
    )
    .problem(400, code::USAGE);
    a.delete("/api/v1/memory/zz").problem(400, code::USAGE);

    // Only its author (or an owner or admin) forgets it; bob is neither, and
    // his key is no admin key either.
    b.delete(&format!("/api/v1/memory/{id}"))
        .problem(403, code::DENIED);
    let admin_b = api_key(&bob, "mod", "read,send,admin", None);
    crate::serve::Api::new(&gw_b, &admin_b)
        .delete(&format!("/api/v1/memory/{id}"))
        .problem(403, code::REFUSED);
    // Alice owns the mesh: her bot's `send` key may not forget bob's note,
    // a key made with `admin` may.
    let bobs = b
        .post(
            "/api/v1/memory",
            json!({"text": "bob's note about the flaky test"}),
        )
        .ok(201);
    let bobs_id = bobs["id"].as_str().expect("id").to_owned();
    a.get("/api/v1/memory").ok(200);
    a.delete(&format!("/api/v1/memory/{bobs_id}"))
        .problem(403, code::DENIED);
    let admin_a = api_key(&alice, "mod", "read,send,admin", None);
    crate::serve::Api::new(&gw_a, &admin_a)
        .delete(&format!("/api/v1/memory/{bobs_id}"))
        .ok(204);
    a.delete(&format!("/api/v1/memory/{}", &id[..8])).ok(204);
    let gone = b.get("/api/v1/memory?q=staging").ok(200);
    assert_eq!(gone["notes"], json!([]), "{gone}");
    a.delete(&format!("/api/v1/memory/{id}"))
        .problem(404, code::NOT_FOUND);
}

/// Issue 17 over HTTP: two gateways split work through tasks (one claim
/// wins, the other is 409 naming the holder), share state by
/// compare-and-set (a key holding `/`, percent-encoded), and keep out of
/// each other's files through leases (an overlapping take is 409 naming
/// the holder); the other member's stream hears `coordination` events.
#[test]
fn gateway_splits_work_shares_state_and_leases() {
    let broker = Broker::start();
    let (alice, bob) = team(&broker);
    let key_a = api_key(&alice, "web", "read,send", None);
    let topic_a = api_key(&alice, "deploys-bot", "read,send", Some("deploys"));
    let key_b = api_key(&bob, "web", "read,send", None);
    let (gw_a, a) = serve_up(&alice, &key_a);
    let (_gw_b, b) = serve_up(&bob, &key_b);
    let bot = Api::new(&gw_a, &topic_a);
    let bob_events = b.events("?kinds=coordination", &[]);
    assert_eq!(bob_events.head.status, 200);
    let alice_events = a.events("?kinds=coordination", &[]);
    assert_eq!(alice_events.head.status, 200);

    // Tasks.
    let task = a
        .post(
            "/api/v1/tasks",
            json!({"title": "fix the flaky login test", "priority": "high", "tags": ["CI"], "assignee": "bob"}),
        )
        .ok(201);
    let id = task["id"].as_str().expect("id").to_owned();
    assert!(is_message_id(&id), "{task}");
    assert_eq!(task["status"], "open", "{task}");
    assert_eq!(task["tags"], json!(["ci"]), "{task}");
    assert_eq!(task["assignee_name"], "bob", "{task}");
    assert_eq!(
        (task["mine"].clone(), task["can_force"].clone()),
        (json!(true), json!(true))
    );
    // Bob's gateway hears it from the broker; alice's own stream from her
    // gateway, which wrote it (the broker does not echo a write).
    for stream in [&bob_events, &alice_events] {
        let heard = stream.next_of(&["coordination"]).json();
        assert!(
            heard["kinds"]
                .as_array()
                .is_some_and(|k| k.contains(&json!("task"))),
            "{heard}"
        );
    }
    drop(alice_events);
    let listed = b.get("/api/v1/tasks?assignee=me").ok(200);
    assert_eq!(listed["tasks"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["tasks"][0]["creator_name"], "alice");
    assert_eq!(listed["tasks"][0]["can_force"], false);
    let claimed = b
        .post(&format!("/api/v1/tasks/{}/claim", &id[..8]), json!({}))
        .ok(200);
    assert_eq!(claimed["status"], "claimed", "{claimed}");
    assert_eq!(claimed["held_by_me"], true, "{claimed}");
    let lost = a
        .post(&format!("/api/v1/tasks/{id}/claim"), json!({}))
        .problem(409, code::CONFLICT);
    assert!(
        lost["detail"]
            .as_str()
            .is_some_and(|d| d.contains("claimed by bob")),
        "{lost}"
    );
    a.post(&format!("/api/v1/tasks/{id}/complete"), json!({}))
        .problem(409, code::CONFLICT);
    let done = b
        .post(
            &format!("/api/v1/tasks/{id}/complete"),
            json!({"result": "fixed in a1b2c3"}),
        )
        .ok(200);
    assert_eq!(done["status"], "done", "{done}");
    let shown = a.get(&format!("/api/v1/tasks/{id}")).ok(200);
    assert_eq!(shown["result"], "fixed in a1b2c3", "{shown}");
    assert_eq!(shown["holder_name"], "bob", "{shown}");
    assert_eq!(a.get("/api/v1/tasks").ok(200)["tasks"], json!([]));
    assert_eq!(
        a.get("/api/v1/tasks?status=done").ok(200)["tasks"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    a.get("/api/v1/tasks?status=finished")
        .problem(400, code::USAGE);
    a.post("/api/v1/tasks", json!({"title": " "}))
        .problem(400, code::USAGE);
    a.post("/api/v1/tasks", json!({"title": "x", "priority": "asap"}))
        .problem(400, code::USAGE);
    a.get("/api/v1/tasks/zz").problem(400, code::USAGE);
    a.get("/api/v1/tasks/0000").problem(404, code::NOT_FOUND);
    // A key limited to #deploys sees, acts on and creates the tasks of
    // #deploys only.
    assert_eq!(bot.get("/api/v1/tasks").ok(200)["tasks"], json!([]));
    bot.post("/api/v1/tasks", json!({"title": "for everyone"}))
        .problem(403, code::DENIED);
    bot.post("/api/v1/tasks", json!({"title": "x", "topic": "general"}))
        .problem(403, code::DENIED);
    bot.get("/api/v1/tasks?topic=general")
        .problem(403, code::DENIED);
    bot.get(&format!("/api/v1/tasks/{id}"))
        .problem(403, code::DENIED);
    bot.post(&format!("/api/v1/tasks/{id}/claim"), json!({}))
        .problem(403, code::DENIED);
    let admin_a = api_key(&alice, "mod", "read,send,admin", None);
    Api::new(&gw_a, &admin_a)
        .post("/api/v1/topics", json!({"name": "deploys"}))
        .ok(201);
    let scoped = bot
        .post(
            "/api/v1/tasks",
            json!({"title": "roll back staging", "topic": "#deploys"}),
        )
        .ok(201);
    assert_eq!(scoped["topic"], "deploys", "{scoped}");
    let scoped_id = scoped["id"].as_str().expect("id").to_owned();
    let seen = bot.get("/api/v1/tasks?topic=deploys").ok(200);
    assert_eq!(seen["tasks"][0]["id"], scoped_id.as_str(), "{seen}");
    bot.post(&format!("/api/v1/tasks/{scoped_id}/claim"), json!({}))
        .ok(200);
    // Bob is not in #deploys: its task is not his to see.
    b.get(&format!("/api/v1/tasks/{scoped_id}"))
        .problem(404, code::NOT_FOUND);
    a.post("/api/v1/tasks", json!({"title": "x", "topic": "no-such"}))
        .problem(404, code::NOT_FOUND);
    a.post(
        "/api/v1/tasks",
        json!({"title": "x", "topic": "not a name"}),
    )
    .problem(400, code::USAGE);
    // Deleting: the creator's (bob's key may not, and bob may not).
    b.delete(&format!("/api/v1/tasks/{id}"))
        .problem(403, code::DENIED);
    a.delete(&format!("/api/v1/tasks/{id}")).ok(204);
    a.get(&format!("/api/v1/tasks/{id}"))
        .problem(404, code::NOT_FOUND);

    // Shared state: compare-and-set, a key holding `/`.
    let set = a
        .put(
            "/api/v1/state/deploy%2Flock",
            json!({"value": {"by": "alice"}, "if_version": 0}),
        )
        .ok(200);
    assert_eq!(
        (set["key"].clone(), set["version"].clone()),
        (json!("deploy/lock"), json!(1)),
        "{set}"
    );
    let moved = b
        .put(
            "/api/v1/state/deploy%2Flock",
            json!({"value": {"by": "bob"}, "if_version": 0}),
        )
        .problem(409, code::CONFLICT);
    assert!(
        moved["detail"]
            .as_str()
            .is_some_and(|d| d.contains("alice")),
        "{moved}"
    );
    let got = b.get("/api/v1/state/deploy%2Flock").ok(200);
    assert_eq!(got["value"], json!({"by": "alice"}), "{got}");
    assert_eq!(got["writer_name"], "alice", "{got}");
    b.put("/api/v1/state/owner", json!({"value": null})).ok(200);
    let all = a.get("/api/v1/state?prefix=deploy/").ok(200);
    assert_eq!(all["entries"].as_array().map(Vec::len), Some(1), "{all}");
    b.delete("/api/v1/state/deploy%2Flock?if_version=7")
        .problem(409, code::CONFLICT);
    b.delete("/api/v1/state/deploy%2Flock?if_version=1").ok(204);
    a.get("/api/v1/state/deploy%2Flock")
        .problem(404, code::NOT_FOUND);
    a.delete("/api/v1/state/deploy%2Flock")
        .problem(404, code::NOT_FOUND);
    a.put("/api/v1/state/k", json!({"value": "x".repeat(9000)}))
        .problem(400, code::USAGE);
    bot.get("/api/v1/state").problem(403, code::DENIED);

    // File leases.
    let lease = a
        .post(
            "/api/v1/leases",
            json!({"repo": "github.com/example/app", "paths": ["src/net/"], "reason": "refactoring net", "ttl_minutes": 30}),
        )
        .ok(201);
    let lease_id = lease["id"].as_str().expect("id").to_owned();
    assert_eq!(lease["paths"], json!(["src/net/"]), "{lease}");
    assert_eq!(lease["exclusive"], true, "{lease}");
    let seen = b.get("/api/v1/leases").ok(200);
    assert_eq!(seen["leases"][0]["holder_name"], "alice", "{seen}");
    assert_eq!(seen["leases"][0]["can_release"], false, "{seen}");
    let blocked = b
        .post(
            "/api/v1/leases",
            json!({"repo": "github.com/example/app", "paths": ["src/net/a.rs"]}),
        )
        .problem(409, code::CONFLICT);
    assert!(
        blocked["detail"]
            .as_str()
            .is_some_and(|d| d.contains("alice") && d.contains("refactoring net")),
        "{blocked}"
    );
    b.post(
        "/api/v1/leases",
        json!({"repo": "github.com/example/app", "paths": ["src/**"]}),
    )
    .problem(400, code::USAGE);
    b.post(
        "/api/v1/leases",
        json!({"repo": "github.com/example/app", "paths": ["src/"], "ttl_minutes": 5000}),
    )
    .problem(400, code::USAGE);
    b.delete(&format!("/api/v1/leases/{lease_id}"))
        .problem(403, code::DENIED);
    let renewed = a
        .post(
            &format!("/api/v1/leases/{}/renew", &lease_id[..8]),
            json!({"ttl_minutes": 60}),
        )
        .ok(200);
    assert!(
        renewed["expires_at_ms"].as_u64() > lease["expires_at_ms"].as_u64(),
        "{renewed}"
    );
    a.delete(&format!("/api/v1/leases/{lease_id}")).ok(204);
    b.post(
        "/api/v1/leases",
        json!({"repo": "github.com/example/app", "paths": ["src/net/a.rs"]}),
    )
    .ok(201);
    bot.get("/api/v1/leases").problem(403, code::DENIED);
}
