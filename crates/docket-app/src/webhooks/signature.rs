//! The `X-Docket-Signature` of a webhook body: `sha256=` + hex HMAC-SHA256(secret, body)
//! (RFC 2104 over SHA-256, through `ring`'s `hmac`). Receivers recompute it with the secret
//! they were shown once; nothing here decides what is signed or when.

use ring::hmac;

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the value of `X-Docket-Signature`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_rfc_4231() {
        // Test case 2: key "Jefe".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a 131-byte key (longer than a block, hashed first).
        assert_eq!(
            signature(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
