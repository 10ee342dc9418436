//! Encryption at rest for upstream API keys (AES-256-GCM, a fresh nonce per value), and the
//! hashing of platform API-key secrets.
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use sha2::{Digest, Sha256};

pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl SecretBox {
    /// Any passphrase or random string: it is stretched to a 256-bit key with SHA-256.
    /// (`MAAS_SECRET_KEY` is expected to be high-entropy; the embedded mode generates one.)
    pub fn from_passphrase(secret: &str) -> Self {
        let key = Sha256::digest(secret.as_bytes());
        Self { cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)) }
    }

    pub fn encrypt(&self, plaintext: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self.cipher.encrypt(&nonce, plaintext.as_bytes()).expect("AES-GCM encryption cannot fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        B64.encode(out)
    }

    pub fn decrypt(&self, stored: &str) -> Option<String> {
        let raw = B64.decode(stored).ok()?;
        if raw.len() < 12 {
            return None;
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = self.cipher.decrypt(Nonce::from_slice(nonce), ct).ok()?;
        String::from_utf8(pt).ok()
    }
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(sha256(s))
}

pub fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// `len` random bytes as lowercase hex.
pub fn random_hex(len: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn roundtrip_and_fresh_nonce() {
        let b = SecretBox::from_passphrase("k");
        let a1 = b.encrypt("sk-upstream");
        let a2 = b.encrypt("sk-upstream");
        assert_ne!(a1, a2, "each encryption uses a new nonce");
        assert!(!a1.contains("sk-upstream"));
        assert_eq!(b.decrypt(&a1).as_deref(), Some("sk-upstream"));
        assert_eq!(SecretBox::from_passphrase("other").decrypt(&a1), None);
    }
}
