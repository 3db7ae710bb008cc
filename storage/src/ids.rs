//! Prefixed unique ids (`ten_`, `usr_`, `proj_`, `agt_`, `ses_`, `msg_`, `key_`, `sec_`,
//! `pkey_`): a prefix plus 20 characters of lowercase Crockford base32 (100 random bits).
//!
//! Responsible for: generating ids fast (a per-thread wyrand generator seeded from
//! `/dev/urandom`, no system call per id) and reading kernel randomness. Not responsible
//! for: secrets: ids are unique, not unguessable enough to be credentials; API keys and
//! tokens must come from [`fill_random`].

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Prefix of tenant ids.
pub const TENANT: &str = "ten_";
/// Prefix of user ids.
pub const USER: &str = "usr_";
/// Prefix of project ids.
pub const PROJECT: &str = "proj_";
/// Prefix of agent ids.
pub const AGENT: &str = "agt_";
/// Prefix of session ids.
pub const SESSION: &str = "ses_";
/// Prefix of message ids.
pub const MESSAGE: &str = "msg_";
/// Prefix of API key ids.
pub const KEY: &str = "key_";
/// Prefix of secret ids.
pub const SECRET: &str = "sec_";
/// Prefix of public key ids.
pub const PUBLIC_KEY: &str = "pkey_";
/// Prefix of tool ids.
pub const TOOL: &str = "tool_";
/// Prefix of deployment ids.
pub const DEPLOYMENT: &str = "dep_";
/// Prefix of feedback ids.
pub const FEEDBACK: &str = "fb_";

/// Fills `buf` from the kernel's random source (`/dev/urandom`).
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    File::open("/dev/urandom")?.read_exact(buf)
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    if fill_random(&mut b).is_ok() {
        return u64::from_le_bytes(b);
    }
    // No /dev/urandom (a bare container): mix time, pid and a stack address, which is
    // still unique per thread; ids need uniqueness, not secrecy.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    t ^ ((std::process::id() as u64) << 32) ^ (&local as *const u8 as u64)
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// wyrand: one multiply per 64 bits, passes BigCrush.
fn next_u64() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = (x as u128).wrapping_mul((x ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A new id: `prefix` followed by 20 random base32 characters.
pub fn new_id(prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 20);
    s.push_str(prefix);
    for word in [next_u64(), next_u64()] {
        for i in 0..10 {
            s.push(ALPHABET[((word >> (i * 5)) & 31) as usize] as char);
        }
    }
    s
}
