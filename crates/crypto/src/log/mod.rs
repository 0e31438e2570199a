//! The membership log: an append-only, hash-chained list of signed entries
//! (genesis, role, invite, revoke-invite, admit, remove, unban, rekey,
//! profile) from which every client derives — and verifies — who is in the
//! mesh, with which role and keys, and the current key epoch.
//!
//! (Entry definitions; signing, hashing and the verifier are added by the
//! log work in this module.)

mod entry;

pub use entry::*;
