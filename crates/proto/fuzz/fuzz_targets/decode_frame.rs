//! Fuzz target: arbitrary bytes into both frame decoders. No input may panic,
//! and any frame that decodes must re-encode and decode to the same value.
#![no_main]

use claudemesh_proto::{
    decode_broker_frame, decode_client_frame, encode_broker_frame, encode_client_frame,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(frame) = decode_client_frame(text) {
        let again = decode_client_frame(&encode_client_frame(&frame))
            .expect("re-encoded client frame decodes");
        assert_eq!(again, frame);
    }
    if let Ok(frame) = decode_broker_frame(text) {
        let again = decode_broker_frame(&encode_broker_frame(&frame))
            .expect("re-encoded broker frame decodes");
        assert_eq!(again, frame);
    }
    let _ = claudemesh_proto::codec::salvage_req(text);
});
