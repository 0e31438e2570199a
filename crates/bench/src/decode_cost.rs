//! A measurement behind `docs/benchmarks.md`, kept as an ignored test so it
//! can be re-run: what decoding one `send` frame costs the broker, the first
//! time it sees the keys in it and once they are known. Each `PublicKey`
//! (an envelope names three: `target`, `sender.member`, `sender.session`)
//! is validated with a full prime-order check the first time its bytes are
//! seen; `claudemesh-crypto` keeps the keys it validated.
//!
//! ```sh
//! cargo test --release -p claudemesh-bench --lib decode_cost -- --ignored --nocapture
//! ```

use std::hint::black_box;
use std::time::Instant;

use claudemesh_crypto::MemberKey;
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::envelope::{
    Envelope, EnvelopeHeader, MessageId, Priority, SealingKey, Target,
};
use claudemesh_crypto::{Hash32, MeshId, PublicKey, SigningKey};
use claudemesh_proto::frames::Send;
use claudemesh_proto::{ClientFrame, decode_client_frame, encode_client_frame};

/// A `send` frame from a fresh member and session to a fresh recipient.
fn send_frame() -> String {
    let member = SigningKey::generate();
    let mesh = Hash32([1; 32]);
    let session = SessionIdentity::new(&member, MeshId(mesh), 1_800_000_000, 3600).unwrap();
    let to = SigningKey::generate().public();
    let env = Envelope::seal(
        &session,
        EnvelopeHeader {
            mesh: MeshId(mesh),
            epoch: 0,
            target: Target::Member(MemberKey(to)),
            id: MessageId::random(),
            reply_to: None,
            priority: Priority::Next,
            sent_at: 1,
            log_head: mesh,
        },
        &[b'.'; 256],
        SealingKey::Direct(&to),
    )
    .unwrap();
    encode_client_frame(&ClientFrame::Send(Send {
        req: Some("1".into()),
        envelope: Box::new(env),
        ttl_ms: None,
        deliver_at_ms: None,
    }))
}

fn mean_us(total: std::time::Duration, n: usize) -> f64 {
    total.as_secs_f64() / n as f64 * 1e6
}

#[test]
#[ignore = "a measurement; run with --release --ignored --nocapture"]
fn decode_cost() {
    let n = 1000;
    // Keys never seen before, then the same keys again.
    let keys: Vec<[u8; 32]> = (0..n)
        .map(|_| SigningKey::generate().public().to_bytes())
        .collect();
    let t = Instant::now();
    for k in &keys {
        black_box(PublicKey::from_bytes(black_box(k)).unwrap());
    }
    let key_new = mean_us(t.elapsed(), n);
    let t = Instant::now();
    for k in &keys {
        black_box(PublicKey::from_bytes(black_box(k)).unwrap());
    }
    let key_known = mean_us(t.elapsed(), n);
    // Frames whose keys are new, then the same frames again.
    let frames: Vec<String> = (0..n).map(|_| send_frame()).collect();
    let t = Instant::now();
    for f in &frames {
        black_box(decode_client_frame(black_box(f)).unwrap());
    }
    let frame_new = mean_us(t.elapsed(), n);
    let t = Instant::now();
    for f in &frames {
        black_box(decode_client_frame(black_box(f)).unwrap());
    }
    let frame_known = mean_us(t.elapsed(), n);
    let t = Instant::now();
    for f in &frames {
        black_box(serde_json::from_str::<serde_json::Value>(black_box(f)).unwrap());
    }
    let value = mean_us(t.elapsed(), n);
    println!(
        "PublicKey::from_bytes: new key {key_new:.1} us, known key {key_known:.2} us; \
         decode_client_frame(send, {} bytes, 256-byte body): new keys {frame_new:.1} us, \
         known keys {frame_known:.1} us; as a serde_json::Value {value:.1} us",
        frames[0].len()
    );
}
