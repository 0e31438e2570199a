//! Invites (TM6): uses are counted atomically (two people racing for the
//! last use: exactly one gets in), and expired, revoked, used-up or unknown
//! invites fail with clear errors that consume nothing.

use std::time::Duration;

use claudemesh_client::ClientError;
use claudemesh_client::invites;
use claudemesh_client::invites::ShareOptions;
use claudemesh_crypto::invite::Invite;
use claudemesh_crypto::log::Role;
use claudemesh_proto::ErrorCode;

use crate::both;
use crate::support::*;

fn refused_with(r: Result<Peer, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Refused { code, message }) => {
            assert!(!message.is_empty());
            code
        }
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(p) => panic!("{} joined but should not have", p.name),
    }
}

async fn one_use_two_concurrent_joins(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let url = invite(&alice, ShareOptions::default()).await;
    let (r1, r2) = tokio::join!(
        join_with(&broker, &url, "bob"),
        join_with(&broker, &url, "carol")
    );
    let (ok, err) = match (r1, r2) {
        (Ok(p), Err(e)) | (Err(e), Ok(p)) => (p, e),
        (Ok(_), Ok(_)) => panic!("a one-use invite admitted two people"),
        (Err(a), Err(b)) => panic!("nobody got in: {a} / {b}"),
    };
    assert!(
        matches!(
            err,
            ClientError::Refused {
                code: ErrorCode::InviteExhausted,
                ..
            }
        ),
        "the loser is told the invite is used up: {err}"
    );
    // The log agrees: one admit through that invite, and the winner is a member.
    let a = alice.connect().await;
    let (members, uses) = a.with_state(|s| {
        let inv = s.roster().invites().values().next().cloned().unwrap();
        (s.roster().members().len(), inv.uses)
    });
    assert_eq!((members, uses), (2, 1));
    assert!(a.resolve(&ok.name).await.is_ok());
    a.close().await;
    broker.stop().await;
}
both!(one_use_two_concurrent_joins);

async fn expired_revoked_unknown_and_used_up(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;

    // Expired (by the broker's clock).
    let url = invite(
        &alice,
        ShareOptions {
            expires_in: Duration::from_secs(1),
            ..ShareOptions::default()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        refused_with(join_with(&broker, &url, "late").await),
        ErrorCode::InviteExpired
    );

    // Revoked.
    let a = alice.connect().await;
    let shared = invites::share(&a, &ShareOptions::default()).await.unwrap();
    invites::revoke_invite(&a, &shared.id[..12]).await.unwrap();
    assert!(
        invites::revoke_invite(&a, &shared.id).await.is_err(),
        "revoking twice is an error"
    );
    a.close().await;
    assert_eq!(
        refused_with(join_with(&broker, &shared.url, "revoked").await),
        ErrorCode::InviteRevoked
    );

    // Unknown: a well-formed invite this broker never heard of.
    let stranger = Invite::generate(&broker.url).unwrap();
    assert_eq!(
        refused_with(join_with(&broker, &stranger.to_https_url(), "stranger").await),
        ErrorCode::InviteNotFound
    );

    // Used up: two uses, three joiners in turn.
    let url = invite(
        &alice,
        ShareOptions {
            max_uses: 2,
            ..ShareOptions::default()
        },
    )
    .await;
    join_with(&broker, &url, "first").await.unwrap();
    join_with(&broker, &url, "second").await.unwrap();
    assert_eq!(
        refused_with(join_with(&broker, &url, "third").await),
        ErrorCode::InviteExhausted
    );

    // None of the failures left a member or a key behind.
    let a = alice.connect().await;
    let names: Vec<String> = a
        .peers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    a.close().await;
    for name in ["late", "revoked", "stranger", "third"] {
        let h = claudemesh_client::Home::open(&broker.dir.path().join(name)).unwrap();
        assert!(h.meshes().is_empty(), "{name} has no mesh");
        assert!(
            !h.root().join("meshes").exists()
                || std::fs::read_dir(h.root().join("meshes"))
                    .unwrap()
                    .next()
                    .is_none(),
            "{name} kept no keys"
        );
    }
    broker.stop().await;
}
both!(expired_revoked_unknown_and_used_up);

async fn roles_and_who_may_invite(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    // A member may not invite.
    let b = bob.connect().await;
    let r = invites::share(&b, &ShareOptions::default()).await;
    assert!(
        matches!(
            r,
            Err(ClientError::Refused {
                code: ErrorCode::Forbidden,
                ..
            })
        ),
        "{r:?}"
    );
    b.close().await;
    // An admin invite makes an admin, who may invite.
    let url = invite(
        &alice,
        ShareOptions {
            role: Role::Admin,
            ..ShareOptions::default()
        },
    )
    .await;
    let carol = join_with(&broker, &url, "carol").await.unwrap();
    let c = carol.connect().await;
    assert!(c.is_admin());
    let shared = invites::share(&c, &ShareOptions::default()).await.unwrap();
    c.close().await;
    join_with(&broker, &shared.url, "dave").await.unwrap();
    broker.stop().await;
}
both!(roles_and_who_may_invite);
