//! Property tests: decode(encode(frame)) == frame for every frame type, and
//! the codec's typed errors.

use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::coord::{CoordFacts, CoordId, CoordKind, CoordObject, RingLink};
use claudemesh_crypto::envelope::{
    Envelope, EnvelopeHeader, MessageId, Priority, SealingKey, Target,
};
use claudemesh_crypto::grants::{Cap, GrantMap, GrantSet};
use claudemesh_crypto::log::{LogBuilder, LogEntry, PeerType, Role};
use claudemesh_crypto::receipt::{
    Receipt, ReceiptFacts, ReceiptState, Via, Watermark, WatermarkFacts,
};
use claudemesh_crypto::{Hash32, MeshId, Nonce, PublicKey, Signature, SigningKey, SymmetricKey};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use crate::codec::*;
use crate::errors::ErrorCode;
use crate::frames::*;
use crate::hello::{Hello, HelloPresence};
use crate::limits::{Limits, MAX_FRAME_BYTES};
use claudemesh_crypto::MemberKey;
use claudemesh_crypto::SessionKey;

fn key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(|s| SigningKey::from_seed(&s).public())
}

fn hash() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn req() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-zA-Z0-9_-]{1,64}")
}

fn blob() -> impl Strategy<Value = EncryptedBlob> {
    (
        any::<u64>(),
        any::<[u8; 24]>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(epoch, n, ciphertext)| EncryptedBlob {
            epoch,
            nonce: Nonce(n),
            ciphertext,
        })
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![Just(Status::Idle), Just(Status::Working), Just(Status::Dnd)]
}

fn peer_type() -> impl Strategy<Value = Option<PeerType>> {
    proptest::option::of(prop_oneof![
        Just(PeerType::Ai),
        Just(PeerType::Human),
        Just(PeerType::Bot)
    ])
}

/// A small real log (the entries are expensive to sign, so built once per case).
fn log_entries() -> impl Strategy<Value = Vec<LogEntry>> {
    (any::<[u8; 32]>(), 0usize..3).prop_map(|(seed, n)| {
        let owner = SigningKey::from_seed(&seed);
        let mut log = LogBuilder::new(&owner, 1_700_000_000);
        for _ in 0..n {
            log.add_member(&owner, Role::Member, 1_700_000_000).unwrap();
        }
        log.entries().to_vec()
    })
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        any::<[u8; 32]>(),
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
    )
        .prop_map(|(seed, body, direct)| {
            let member = SigningKey::from_seed(&seed);
            let session =
                SessionIdentity::new(&member, MeshId(Hash32([1; 32])), 1_700_000_000, 3600)
                    .unwrap();
            let header = EnvelopeHeader {
                mesh: MeshId(Hash32([1; 32])),
                epoch: 0,
                target: if direct {
                    Target::Member(MemberKey(member.public()))
                } else {
                    Target::Topic("deploys".into())
                },
                id: MessageId(seed[..16].try_into().unwrap()),
                reply_to: direct.then_some(MessageId([7; 16])),
                priority: Priority::Now,
                sent_at: 1_700_000_000_000,
                log_head: Hash32([2; 32]),
            };
            let k = SymmetricKey::from_bytes([3; 32]);
            let pk = member.public();
            let sealing = if direct {
                SealingKey::Direct(&pk)
            } else {
                SealingKey::Symmetric(&k)
            };
            Envelope::seal(&session, header, &body, sealing).unwrap()
        })
}

fn signer(seed: [u8; 32]) -> SessionIdentity {
    let member = SigningKey::from_seed(&seed);
    SessionIdentity::new(&member, MeshId(Hash32([1; 32])), 1_700_000_000, 3600).unwrap()
}

fn coord_object() -> impl Strategy<Value = CoordObject> {
    (
        any::<[u8; 32]>(),
        any::<[u8; 16]>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        0..CoordKind::ALL.len(),
    )
        .prop_map(|(seed, id, epoch, text, kind)| {
            CoordObject::seal(
                &signer(seed),
                &SymmetricKey::from_bytes([5; 32]),
                epoch,
                CoordFacts {
                    kind: CoordKind::ALL[kind],
                    id: CoordId(id),
                    rev: 1,
                    at_ms: 1_700_000_001_000,
                },
                &text,
            )
            .unwrap()
        })
}

fn ring_link() -> impl Strategy<Value = RingLink> {
    (any::<[u8; 32]>(), 1..u64::MAX).prop_map(|(seed, epoch)| {
        RingLink::seal(
            &signer(seed),
            epoch,
            &SymmetricKey::from_bytes([5; 32]),
            &SymmetricKey::from_bytes([6; 32]),
            1_700_000_001_000,
        )
    })
}

fn coord_client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        (req(), coord_object()).prop_map(|(req, o)| ClientFrame::CoordPut(CoordPut {
            req,
            object: Box::new(o)
        })),
        (req(), any::<[u8; 16]>()).prop_map(|(req, id)| ClientFrame::CoordForget(CoordForget {
            req,
            kind: CoordKind::Memory,
            id: CoordId(id)
        })),
        (req(), any::<u64>()).prop_map(|(req, after)| ClientFrame::CoordSync(CoordSync {
            req,
            kind: CoordKind::Memory,
            after
        })),
        (req(), ring_link()).prop_map(|(req, l)| ClientFrame::CoordRingPut(CoordRingPut {
            req,
            link: Box::new(l)
        })),
        (req(), any::<u64>())
            .prop_map(|(req, after)| ClientFrame::CoordRing(CoordRingQuery { req, after })),
        (
            req(),
            coord_object(),
            any::<bool>(),
            any::<u64>(),
            proptest::collection::vec(any::<[u8; 16]>(), 0..4)
        )
            .prop_map(|(req, o, exclusive, ttl_ms, tags)| ClientFrame::LeaseTake(
                LeaseTake {
                    req,
                    object: Box::new(o),
                    exclusive,
                    ttl_ms,
                    tags: tags.iter().copied().map(CoordId).collect(),
                    probe: tags.into_iter().rev().map(CoordId).collect(),
                }
            )),
        (
            req(),
            proptest::collection::vec(any::<[u8; 16]>(), 0..4),
            any::<u64>()
        )
            .prop_map(|(req, ids, ttl_ms)| ClientFrame::LeaseRenew(LeaseRenew {
                req,
                ids: ids.into_iter().map(CoordId).collect(),
                ttl_ms,
            })),
        (req(), coord_object()).prop_map(|(req, o)| ClientFrame::StateSet(StateSet {
            req,
            object: Box::new(o)
        })),
        (req(), coord_object(), any::<bool>()).prop_map(|(req, o, force)| ClientFrame::TaskAct(
            TaskActFrame {
                req,
                act: Box::new(o),
                force
            }
        )),
    ]
}

fn coord_broker_frame() -> impl Strategy<Value = BrokerFrame> {
    prop_oneof![
        (req(), any::<[u8; 16]>(), any::<u64>(), any::<bool>()).prop_map(
            |(req, id, cseq, duplicate)| BrokerFrame::CoordStored(CoordStored {
                req,
                kind: CoordKind::Memory,
                id: CoordId(id),
                cseq,
                duplicate
            })
        ),
        (
            req(),
            proptest::collection::vec(
                (
                    any::<u64>(),
                    any::<[u8; 16]>(),
                    proptest::option::of(coord_object()),
                    proptest::option::of(coord_object())
                ),
                0..3
            ),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(
                |(req, changes, head, more)| BrokerFrame::CoordPage(CoordPage {
                    req,
                    kind: CoordKind::Memory,
                    changes: changes
                        .into_iter()
                        .map(|(cseq, id, object, act)| CoordChange {
                            cseq,
                            id: CoordId(id),
                            object: object.map(Box::new),
                            act: act.map(Box::new),
                            expires_at_ms: Some(cseq ^ 7).filter(|e| e % 2 == 0),
                            withheld: cseq % 3 == 0,
                        })
                        .collect(),
                    head,
                    more,
                    grants: head ^ 5,
                })
            ),
        (req(), any::<u64>(), any::<bool>()).prop_map(|(req, epoch, duplicate)| {
            BrokerFrame::CoordRingStored(CoordRingStored {
                req,
                epoch,
                duplicate,
            })
        }),
        (
            req(),
            proptest::collection::vec(ring_link(), 0..3),
            any::<bool>()
        )
            .prop_map(
                |(req, links, more)| BrokerFrame::CoordRingPage(CoordRingPage { req, links, more })
            ),
        (
            req(),
            any::<bool>(),
            any::<[u8; 16]>(),
            any::<u64>(),
            0..3u8,
            proptest::option::of(coord_object()),
            any::<u64>()
        )
            .prop_map(|(req, ok, id, version, phase, act, cseq)| {
                BrokerFrame::TaskState(TaskState {
                    req,
                    ok,
                    id: CoordId(id),
                    version,
                    phase: [TaskPhase::Open, TaskPhase::Claimed, TaskPhase::Done][phase as usize],
                    holder: act.as_ref().map(|a| a.member()),
                    act: act.map(Box::new),
                    cseq,
                })
            }),
        (
            req(),
            any::<bool>(),
            any::<[u8; 16]>(),
            any::<u64>(),
            proptest::option::of(coord_object()),
            any::<u64>()
        )
            .prop_map(|(req, ok, id, version, current, cseq)| {
                BrokerFrame::StateAnswer(StateAnswer {
                    req,
                    ok,
                    id: CoordId(id),
                    version,
                    cseq,
                    current: current.map(Box::new),
                })
            }),
        (
            req(),
            any::<bool>(),
            any::<[u8; 16]>(),
            any::<u64>(),
            proptest::option::of(coord_object())
        )
            .prop_map(|(req, granted, id, at, held)| {
                BrokerFrame::LeaseAnswer(LeaseAnswer {
                    req,
                    granted,
                    id: CoordId(id),
                    expires_at_ms: at,
                    cseq: at / 2,
                    conflicts: held
                        .into_iter()
                        .map(|o| LeaseHeld {
                            id: o.id,
                            holder: o.member(),
                            session: o.author.session,
                            exclusive: granted,
                            expires_at_ms: at,
                            object: Box::new(o),
                        })
                        .collect(),
                })
            }),
        (
            req(),
            proptest::collection::vec(any::<[u8; 16]>(), 0..4),
            any::<u64>()
        )
            .prop_map(|(req, ids, expires_at_ms)| {
                BrokerFrame::LeaseRenewed(LeaseRenewed {
                    req,
                    ids: ids.into_iter().map(CoordId).collect(),
                    expires_at_ms,
                })
            }),
        proptest::collection::vec(0..CoordKind::ALL.len(), 1..3).prop_map(|kinds| {
            BrokerFrame::CoordChanged(CoordChanged {
                kinds: kinds.into_iter().map(|k| CoordKind::ALL[k]).collect(),
            })
        }),
    ]
}

fn receipt() -> impl Strategy<Value = SeqReceipt> {
    (any::<[u8; 32]>(), any::<u64>(), any::<[u8; 16]>(), 0..3u8).prop_map(
        |(seed, seq, id, state)| {
            let me = signer(seed);
            let state = [
                ReceiptState::Delivered,
                ReceiptState::Shown,
                ReceiptState::Answered,
            ][usize::from(state)];
            let receipt = Receipt::sign(
                &me,
                ReceiptFacts {
                    state,
                    sender: MemberKey(SigningKey::from_seed(&[7; 32]).public()),
                    id: MessageId(id),
                    target: Target::Member(me.member()),
                    at_ms: 1_700_000_001_000,
                    via: Via::Inbox,
                    reply: (state == ReceiptState::Answered).then_some(MessageId([1; 16])),
                },
            )
            .unwrap();
            SeqReceipt { seq, receipt }
        },
    )
}

fn watermark() -> impl Strategy<Value = Watermark> {
    (
        any::<[u8; 32]>(),
        1..u64::MAX / 2,
        proptest::collection::btree_set(1..1000u64, 0..5),
    )
        .prop_map(|(seed, upto, missing)| {
            let upto = upto.max(1000);
            Watermark::sign(
                &signer(seed),
                WatermarkFacts {
                    state: ReceiptState::Shown,
                    target: Target::Topic("deploys".into()),
                    from: 0,
                    upto,
                    missing: missing.into_iter().collect(),
                    at_ms: 1_700_000_001_000,
                    via: Via::Channel,
                },
            )
            .unwrap()
        })
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        proptest::option::of(hash()),
        status(),
        peer_type(),
        proptest::option::of(blob()),
        "[ -~]{0,40}",
    )
        .prop_map(
            |(seed, challenge, log_head, status, peer_type, summary, client)| {
                let member = SigningKey::from_seed(&seed);
                let session =
                    SessionIdentity::new(&member, MeshId(Hash32([1; 32])), 1_700_000_000, 3600)
                        .unwrap();
                let presence = HelloPresence {
                    status,
                    peer_type,
                    summary,
                };
                Hello::sign(&session, &challenge, 1, log_head, presence, &client)
            },
        )
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        hello().prop_map(|h| ClientFrame::Hello(Box::new(h))),
        (
            req(),
            envelope(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>())
        )
            .prop_map(
                |(req, envelope, ttl_ms, deliver_at_ms)| ClientFrame::Send(Send {
                    req,
                    envelope: Box::new(envelope),
                    ttl_ms,
                    deliver_at_ms,
                })
            ),
        (
            proptest::collection::vec(any::<u64>(), 0..10),
            any::<bool>()
        )
            .prop_map(|(seqs, read)| ClientFrame::Ack(Ack { seqs, read })),
        proptest::collection::vec(receipt(), 0..3)
            .prop_map(|receipts| ClientFrame::Receipt(ReceiptFrame { receipts })),
        proptest::collection::vec(watermark(), 0..3)
            .prop_map(|marks| ClientFrame::Watermark(WatermarkFrame { marks })),
        (
            req(),
            proptest::option::of(status()),
            proptest::option::of(blob()),
            peer_type()
        )
            .prop_map(
                |(req, status, summary, peer_type)| ClientFrame::PresenceSet(PresenceSet {
                    req,
                    status,
                    summary,
                    peer_type
                })
            ),
        (req(), proptest::option::of("[0-9a-f]{64}/[0-9a-f-]{1,64}"))
            .prop_map(|(req, after)| ClientFrame::PeerList(PeerListQuery { req, after })),
        (req(), any::<u64>(), proptest::option::of(any::<u32>())).prop_map(
            |(req, from_seq, limit)| ClientFrame::LogFetch(LogFetch {
                req,
                from_seq,
                limit
            })
        ),
        (req(), log_entries())
            .prop_map(|(req, entries)| ClientFrame::LogAppend(LogAppend { req, entries })),
        (
            req(),
            log_entries(),
            proptest::collection::vec(any::<u8>(), 0..100)
        )
            .prop_map(|(req, e, bundle)| ClientFrame::InviteCreate(InviteCreate {
                req,
                entry: e[0].clone(),
                bundle
            })),
        (req(), key(), any::<[u8; 32]>()).prop_map(
            |(req, invite_key, s)| ClientFrame::InviteFetch(InviteFetch {
                req,
                invite_key,
                proof: Signature([s, s].concat().try_into().unwrap())
            })
        ),
        (req(), log_entries()).prop_map(|(req, e)| ClientFrame::InviteJoin(InviteJoin {
            req,
            entry: e[0].clone()
        })),
        (req(), log_entries()).prop_map(|(req, e)| ClientFrame::MeshCreate(MeshCreate {
            token: None,
            req,
            genesis: e[0].clone()
        })),
        (req(), any::<[u8; 16]>(), proptest::option::of(key())).prop_map(|(req, id, after)| {
            ClientFrame::MessageStatus(MessageStatusQuery {
                req,
                id: MessageId(id),
                after,
            })
        }),
        (
            req(),
            "[a-z]{1,8}",
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(req, topic, limit, before_seq)| ClientFrame::TopicHistory(
                TopicHistoryQuery {
                    req,
                    topic,
                    limit,
                    before_seq
                }
            )),
        (
            req(),
            any::<[u8; 32]>(),
            any::<u64>(),
            proptest::collection::vec((any::<[u8; 32]>(), any::<bool>(), any::<bool>()), 0..3)
        )
            .prop_map(|(req, seed, version, entries)| {
                let member = SigningKey::from_seed(&seed);
                let map: GrantMap = entries
                    .into_iter()
                    .map(|(peer, dm, silent)| {
                        let caps = if dm {
                            [Cap::Dm].into()
                        } else {
                            Default::default()
                        };
                        (SigningKey::from_seed(&peer).public(), (caps, silent))
                    })
                    .collect();
                ClientFrame::GrantsSet(GrantsSetFrame {
                    req,
                    grants: Box::new(GrantSet::sign(&member, MeshId(Hash32(seed)), version, &map)),
                })
            }),
        req().prop_map(|req| ClientFrame::ScheduleList(ScheduleListQuery { req })),
        (req(), any::<[u8; 16]>()).prop_map(|(req, id)| ClientFrame::ScheduleCancel(
            ScheduleCancel {
                req,
                id: MessageId(id),
            }
        )),
        coord_client_frame(),
        req().prop_map(|req| ClientFrame::Ping(Request { req })),
    ]
}

fn held_message() -> impl Strategy<Value = HeldMessage> {
    (
        any::<[u8; 16]>(),
        prop_oneof![
            key().prop_map(|k| format!("member:{}", k.to_hex())),
            Just("#deploys".to_owned()),
            Just("@eng".to_owned()),
            Just("*".to_owned()),
        ],
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        any::<u64>(),
        any::<u64>(),
        proptest::option::of("[ -~]{0,40}"),
    )
        .prop_map(
            |(id, target, deliver_at_ms, ttl_ms, size, created_at_ms, error)| HeldMessage {
                id: MessageId(id),
                target,
                deliver_at_ms,
                ttl_ms,
                size,
                created_at_ms,
                state: if error.is_some() { "failed" } else { "held" }.to_owned(),
                error,
            },
        )
}

fn peer() -> impl Strategy<Value = PeerPresence> {
    (
        key(),
        proptest::option::of(key()),
        any::<bool>(),
        status(),
        peer_type(),
        proptest::option::of(blob()),
        proptest::option::of(any::<u64>()),
        any::<bool>(),
    )
        .prop_map(
            |(member, session, online, status, peer_type, summary, seen, live_push)| PeerPresence {
                member: MemberKey(member),
                session: session.map(SessionKey),
                cert: None,
                online,
                status,
                peer_type,
                summary,
                connected_at_ms: seen,
                last_seen_ms: seen,
                live_push,
            },
        )
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL)
}

fn broker_frame() -> impl Strategy<Value = BrokerFrame> {
    prop_oneof![
        (
            any::<[u8; 32]>(),
            "[a-z0-9-]{1,20}",
            any::<u64>(),
            proptest::collection::vec(1u32..5, 1..3)
        )
            .prop_map(|(n, broker_id, time_ms, versions)| BrokerFrame::Challenge(
                Challenge {
                    nonce: ChallengeNonce(n),
                    broker_id,
                    time_ms,
                    versions
                }
            )),
        (key(), key(), hash(), any::<u64>(), any::<u64>()).prop_map(
            |(member, session, log_head, log_len, time_ms)| BrokerFrame::Welcome(Box::new(
                Welcome {
                    member: MemberKey(member),
                    session: SessionKey(session),
                    log_head,
                    log_len,
                    limits: Limits::default(),
                    time_ms
                }
            ))
        ),
        (
            req(),
            error_code(),
            "[ -~]{0,80}",
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(req, code, message, retry_after_ms)| BrokerFrame::Error(
                ErrorFrame {
                    req,
                    code,
                    message,
                    retry_after_ms
                }
            )),
        (req(), any::<[u8; 16]>(), any::<u64>(), any::<bool>()).prop_map(
            |(req, id, seq, duplicate)| BrokerFrame::Accepted(Accepted {
                req,
                id: MessageId(id),
                seq,
                duplicate,
                tseq: None,
            })
        ),
        (any::<u64>(), envelope(), any::<u64>()).prop_map(|(seq, envelope, queued_at_ms)| {
            BrokerFrame::Deliver(Deliver {
                seq,
                envelope: Box::new(envelope),
                queued_at_ms,
                deadline_ms: None,
                tseq: None,
            })
        }),
        peer().prop_map(|peer| BrokerFrame::Presence(PresenceUpdate {
            peer: Box::new(peer)
        })),
        (
            req(),
            proptest::collection::vec(peer(), 0..4),
            proptest::option::of("[0-9a-f]{64}/[0-9a-f-]{1,64}")
        )
            .prop_map(|(req, peers, next)| BrokerFrame::Peers(Peers { req, peers, next })),
        (req(), log_entries(), hash(), any::<u64>(), any::<bool>()).prop_map(
            |(req, entries, head, len, more)| BrokerFrame::LogEntries(LogEntries {
                req,
                entries,
                head,
                len,
                more
            })
        ),
        (req(), hash(), any::<u64>())
            .prop_map(|(req, head, len)| BrokerFrame::LogAppended(LogAppended { req, head, len })),
        (hash(), any::<u64>())
            .prop_map(|(head, len)| BrokerFrame::LogUpdate(LogUpdate { head, len })),
        (
            req(),
            hash(),
            proptest::collection::vec(any::<u8>(), 0..100),
            log_entries(),
            any::<u64>()
        )
            .prop_map(
                |(req, mesh_id, bundle, log, log_len)| BrokerFrame::InviteBundle(InviteBundle {
                    req,
                    mesh_id: MeshId(mesh_id),
                    bundle,
                    log,
                    log_len
                })
            ),
        (req(), hash(), any::<u64>()).prop_map(|(req, head, len)| BrokerFrame::Joined(Joined {
            req,
            head,
            len
        })),
        (
            req(),
            any::<[u8; 16]>(),
            any::<u64>(),
            proptest::collection::vec(
                (
                    key(),
                    prop_oneof![
                        Just(DeliveryState::Queued),
                        Just(DeliveryState::Delivered),
                        Just(DeliveryState::Read),
                        Just(DeliveryState::Expired),
                        Just(DeliveryState::Answered)
                    ]
                ),
                0..4
            )
        )
            .prop_map(|(req, id, seq, r)| BrokerFrame::MessageStatusResult(
                MessageStatusResult {
                    req,
                    id: MessageId(id),
                    seq,
                    deadline_ms: None,
                    tseq: None,
                    next: r.first().map(|(k, _)| *k),
                    recipients: r
                        .into_iter()
                        .map(|(recipient, state)| RecipientStatus {
                            recipient,
                            state,
                            receipts: vec![],
                            marks: vec![],
                        })
                        .collect(),
                }
            )),
        (
            req(),
            "[a-z]{1,8}",
            proptest::collection::vec((any::<u64>(), envelope()), 0..3),
            any::<bool>()
        )
            .prop_map(|(req, topic, m, more)| BrokerFrame::TopicHistoryResult(
                TopicHistoryResult {
                    req,
                    topic,
                    messages: m
                        .into_iter()
                        .map(|(seq, envelope)| Deliver {
                            seq,
                            envelope: Box::new(envelope),
                            queued_at_ms: seq,
                            deadline_ms: None,
                            tseq: None,
                        })
                        .collect(),
                    more,
                }
            )),
        (req(), any::<u64>())
            .prop_map(|(req, version)| BrokerFrame::GrantsStored(GrantsStored { req, version })),
        (req(), any::<[u8; 16]>(), any::<u64>(), any::<bool>()).prop_map(
            |(req, id, deliver_at_ms, duplicate)| BrokerFrame::Scheduled(Scheduled {
                req,
                id: MessageId(id),
                deliver_at_ms,
                duplicate,
            })
        ),
        (req(), proptest::collection::vec(held_message(), 0..4))
            .prop_map(|(req, messages)| BrokerFrame::SchedulePage(SchedulePage { req, messages })),
        (req(), any::<[u8; 16]>()).prop_map(|(req, id)| BrokerFrame::ScheduleCancelled(
            ScheduleCancelled {
                req,
                id: MessageId(id),
            }
        )),
        coord_broker_frame(),
        (req(), any::<u64>()).prop_map(|(req, time_ms)| BrokerFrame::Pong(Pong { req, time_ms })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn client_frames_roundtrip(frame in client_frame()) {
        let text = encode_client_frame(&frame);
        let tag = format!("\"type\":\"{}\"", frame.type_name());
        prop_assert!(text.contains(&tag));
        prop_assert_eq!(decode_client_frame(&text).unwrap(), frame);
    }

    #[test]
    fn broker_frames_roundtrip(frame in broker_frame()) {
        let text = encode_broker_frame(&frame);
        let tag = format!("\"type\":\"{}\"", frame.type_name());
        prop_assert!(text.contains(&tag));
        prop_assert_eq!(decode_broker_frame(&text).unwrap(), frame);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = decode_client_frame(&text);
        let _ = decode_broker_frame(&text);
        let _ = salvage_req(&text);
    }
}

#[test]
fn unknown_types_are_typed_errors_never_ignored() {
    assert_eq!(
        decode_client_frame(r#"{"type":"set_state","key":"x"}"#),
        Err(FrameError::UnknownType("set_state".into()))
    );
    assert_eq!(
        decode_broker_frame(r#"{"type":"hello_ack"}"#),
        Err(FrameError::UnknownType("hello_ack".into()))
    );
    // A broker frame sent by a client is unknown on that direction.
    assert_eq!(
        decode_client_frame(r#"{"type":"welcome"}"#),
        Err(FrameError::UnknownType("welcome".into()))
    );
    let e = decode_client_frame(r#"{"type":"mystery","req":"r1"}"#).unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnknownType);
    assert_eq!(
        salvage_req(r#"{"type":"mystery","req":"r1"}"#).as_deref(),
        Some("r1")
    );
}

#[test]
fn malformed_frames_name_their_type() {
    let e = decode_client_frame(r#"{"type":"log_fetch","from_seq":"zero"}"#).unwrap_err();
    assert!(
        matches!(&e, FrameError::Malformed { frame_type: Some(t), .. } if t == "log_fetch"),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::Malformed);
    for bad in ["", "null", "[]", "{}", "{\"type\":7}", "not json"] {
        assert!(
            matches!(
                decode_client_frame(bad),
                Err(FrameError::Malformed {
                    frame_type: None,
                    ..
                })
            ),
            "{bad}"
        );
    }
    let long_req = format!(r#"{{"type":"ping","req":"{}"}}"#, "r".repeat(65));
    assert!(matches!(
        decode_client_frame(&long_req),
        Err(FrameError::Malformed { .. })
    ));
}

#[test]
fn oversized_frames_are_refused_before_parsing() {
    let big = format!(
        r#"{{"type":"ping","req":"{}"}}"#,
        "x".repeat(MAX_FRAME_BYTES)
    );
    assert_eq!(
        decode_client_frame(&big),
        Err(FrameError::TooLarge {
            len: big.len(),
            max: MAX_FRAME_BYTES
        })
    );
    // Not even valid JSON: still TooLarge, proving nothing was parsed.
    let junk = "{".repeat(MAX_FRAME_BYTES + 1);
    assert!(matches!(
        decode_client_frame(&junk),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(
        FrameError::TooLarge { len: 1, max: 0 }.code(),
        ErrorCode::FrameTooLarge
    );
}

#[test]
fn type_lists_match_the_enums() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen_client = std::collections::BTreeSet::new();
    let mut seen_broker = std::collections::BTreeSet::new();
    for _ in 0..1000 {
        let c = client_frame().new_tree(&mut runner).unwrap().current();
        seen_client.insert(c.type_name());
        let b = broker_frame().new_tree(&mut runner).unwrap().current();
        seen_broker.insert(b.type_name());
    }
    let want_c: std::collections::BTreeSet<_> = ClientFrame::TYPES.iter().copied().collect();
    let want_b: std::collections::BTreeSet<_> = BrokerFrame::TYPES.iter().copied().collect();
    assert_eq!(
        seen_client, want_c,
        "every client frame type is generated and listed"
    );
    assert_eq!(
        seen_broker, want_b,
        "every broker frame type is generated and listed"
    );
}

#[test]
fn the_fuzz_seed_corpus_decodes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_frame");
    let mut types = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = match (decode_client_frame(&text), decode_broker_frame(&text)) {
            (Ok(f), _) => f.type_name(),
            (_, Ok(f)) => f.type_name(),
            (Err(e), _) => panic!("{} does not decode: {e}", path.display()),
        };
        types.insert(name);
    }
    assert_eq!(
        types.len(),
        ClientFrame::TYPES.len() + BrokerFrame::TYPES.len(),
        "one seed per frame type"
    );
}
