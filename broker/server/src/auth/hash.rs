//! Password hashes as the credential files hold them, and SCRAM's keys for Kafka.
//!
//! Verified: `$7$` (PBKDF2-HMAC-SHA512, Mosquitto 2's format and Weir's own), `$6$` (one
//! SHA-512 of password then salt, Mosquitto 1's) and `$argon2id$` (PHC strings, Mosquitto 2.1's
//! option). Written: `$7$` only. Comparisons of derived bytes are constant-time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;
use weir_core::auth::scram::{ScramCredential, ScramMechanism};

/// PBKDF2 iterations `weir user add` uses by default: each CONNECT with a password pays for
/// them once, on the connection's shard (docs/security.md gives a measured scale).
pub const PBKDF2_ITERATIONS_DEFAULT: u32 = 10_000;
/// Fewest PBKDF2 iterations `weir user add` writes.
pub const PBKDF2_ITERATIONS_MIN: u32 = 1_000;
/// SCRAM iterations: RFC 7677's minimum, what Kafka clients expect.
pub const SCRAM_ITERATIONS: u32 = 4096;
/// Most PBKDF2 or SCRAM iterations a file may ask for: a hostile file cannot make one check
/// run for minutes.
pub const ITERATIONS_MAX: u32 = 10_000_000;
/// Salt bytes of new hashes.
const SALT_BYTES: usize = 16;

/// One password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$7$iterations$salt$hash`: PBKDF2-HMAC-SHA512 with a 64-byte output.
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// `$6$salt$hash`: SHA-512 of the password followed by the salt.
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
    /// A PHC string `$argon2id$v=19$m=...,t=...,p=...$salt$hash`.
    Argon2id(String),
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PasswordHash::Pbkdf2Sha512 { .. } => "PasswordHash($7$)",
            PasswordHash::Sha512 { .. } => "PasswordHash($6$)",
            PasswordHash::Argon2id(_) => "PasswordHash($argon2id$)",
        })
    }
}

impl PasswordHash {
    /// A new `$7$` hash of `password` with a random salt and [`PBKDF2_ITERATIONS_MIN`] to
    /// [`ITERATIONS_MAX`] iterations.
    pub fn new(password: &[u8], iterations: u32) -> anyhow::Result<PasswordHash> {
        check_iterations(iterations)?;
        let salt = random_salt()?;
        let mut hash = vec![0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, iterations, &mut hash);
        Ok(PasswordHash::Pbkdf2Sha512 {
            iterations,
            salt,
            hash,
        })
    }

    /// Parses a hash as a credential file writes it.
    pub fn parse(text: &str) -> Result<PasswordHash, String> {
        if text.starts_with("$argon2id$") {
            let parsed =
                argon2::PasswordHash::new(text).map_err(|e| format!("bad argon2id hash: {e}"))?;
            if parsed.salt.is_none() || parsed.hash.is_none() {
                return Err("an argon2id hash without its salt or hash".to_owned());
            }
            return Ok(PasswordHash::Argon2id(text.to_owned()));
        }
        let parts: Vec<&str> = text.split('$').collect();
        let b64 = |what: &str, s: &str| {
            B64.decode(s)
                .map_err(|e| format!("the {what} is not base64: {e}"))
        };
        match parts[..] {
            ["", "7", iterations, salt, hash] => {
                let iterations = parse_iterations(iterations)?;
                let (salt, hash) = (b64("salt", salt)?, b64("hash", hash)?);
                if hash.len() != 64 {
                    return Err(format!("a $7$ hash has 64 bytes, not {}", hash.len()));
                }
                Ok(PasswordHash::Pbkdf2Sha512 {
                    iterations,
                    salt,
                    hash,
                })
            }
            ["", "6", salt, hash] => {
                let (salt, hash) = (b64("salt", salt)?, b64("hash", hash)?);
                if hash.len() != 64 {
                    return Err(format!("a $6$ hash has 64 bytes, not {}", hash.len()));
                }
                Ok(PasswordHash::Sha512 { salt, hash })
            }
            _ => Err("not a password hash Weir reads ($7$, $6$ or $argon2id$)".to_owned()),
        }
    }

    /// Whether `password` is the one hashed.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut derived = vec![0u8; hash.len()];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut derived);
                bool::from(derived.ct_eq(hash))
            }
            PasswordHash::Sha512 { salt, hash } => {
                let derived = Sha512::new()
                    .chain_update(password)
                    .chain_update(salt)
                    .finalize();
                bool::from(derived.as_slice().ct_eq(hash))
            }
            PasswordHash::Argon2id(text) => {
                use argon2::PasswordVerifier;
                argon2::PasswordHash::new(text).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password, &parsed)
                        .is_ok()
                })
            }
        }
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$7${iterations}${}${}",
                B64.encode(salt),
                B64.encode(hash)
            ),
            PasswordHash::Sha512 { salt, hash } => {
                write!(f, "$6${}${}", B64.encode(salt), B64.encode(hash))
            }
            PasswordHash::Argon2id(text) => f.write_str(text),
        }
    }
}

/// SCRAM keys of `password` (RFC 5802's StoredKey and ServerKey): what the users file keeps
/// for Kafka's SCRAM-SHA-256 and SCRAM-SHA-512, never the password.
pub fn scram_credential(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> ScramCredential {
    let mut salted = vec![0u8; mechanism.hash(b"").len()];
    match mechanism {
        ScramMechanism::Sha256 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted)
        }
        ScramMechanism::Sha512 => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut salted)
        }
    }
    ScramCredential {
        mechanism,
        iterations,
        salt: salt.to_vec(),
        stored_key: mechanism.hash(&mechanism.hmac(&salted, b"Client Key")),
        server_key: mechanism.hmac(&salted, b"Server Key"),
    }
}

/// [`scram_credential`] with a random salt and [`SCRAM_ITERATIONS`].
pub fn new_scram_credential(
    mechanism: ScramMechanism,
    password: &[u8],
) -> anyhow::Result<ScramCredential> {
    Ok(scram_credential(
        mechanism,
        password,
        &random_salt()?,
        SCRAM_ITERATIONS,
    ))
}

/// `iterations,salt,stored_key,server_key` (base64), as the users file holds a credential.
pub fn scram_field(credential: &ScramCredential) -> String {
    format!(
        "{},{},{},{}",
        credential.iterations,
        B64.encode(&credential.salt),
        B64.encode(&credential.stored_key),
        B64.encode(&credential.server_key)
    )
}

/// Parses [`scram_field`]'s text.
pub fn parse_scram_field(mechanism: ScramMechanism, text: &str) -> Result<ScramCredential, String> {
    let name = mechanism.name();
    let parts: Vec<&str> = text.split(',').collect();
    let [iterations, salt, stored, server] = parts[..] else {
        return Err(format!("{name}: expected iterations,salt,stored,server"));
    };
    let b64 = |s: &str| B64.decode(s).map_err(|e| format!("{name}: {e}"));
    let iterations = parse_iterations(iterations)?;
    if iterations < SCRAM_ITERATIONS {
        return Err(format!("{name}: at least {SCRAM_ITERATIONS} iterations"));
    }
    Ok(ScramCredential {
        mechanism,
        iterations,
        salt: b64(salt)?,
        stored_key: b64(stored)?,
        server_key: b64(server)?,
    })
}

/// Whether a new hash may have `iterations`: [`PBKDF2_ITERATIONS_MIN`] to [`ITERATIONS_MAX`].
pub fn check_iterations(iterations: u32) -> anyhow::Result<()> {
    if !(PBKDF2_ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
        anyhow::bail!(
            "iterations are {PBKDF2_ITERATIONS_MIN} to {ITERATIONS_MAX}, not {iterations}"
        );
    }
    Ok(())
}

fn parse_iterations(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=ITERATIONS_MAX).contains(&n) => Ok(n),
        _ => Err(format!("iterations {text:?} are not 1 to {ITERATIONS_MAX}")),
    }
}

fn random_salt() -> anyhow::Result<Vec<u8>> {
    let mut salt = vec![0u8; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness for a salt: {e}"))?;
    Ok(salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with Python's hashlib (an independent implementation): `$7$` as Mosquitto 2 writes
    /// it (101 iterations, its default), `$6$` as Mosquitto 1 did.
    const SEVEN: &str = "$7$101$MDEyMzQ1Njc4OWFi$EO/lLlkeUgIiBaS8G8UK0ZMP1u508TA7Tl+AdJ1cEsmlbGyEPAERErpfq84j1kepISs0UzmcdL4ucgZ2uodxfQ==";
    const SIX: &str = "$6$d2Vpci1zYWx0LTYt$NTSb+7R6sVewAswJqj1rzmQm5Tcgk++BAFswdUhgRUSVhwq5leZvMGyE0CrP60o5XWVGXbtBEgFuyqJl3PQ4UA==";

    #[test]
    fn mosquitto_hashes_verify_their_password_only() {
        for text in [SEVEN, SIX] {
            let hash = PasswordHash::parse(text).unwrap();
            assert!(hash.verify(b"secret"), "{text}");
            assert!(!hash.verify(b"secret "), "{text}");
            assert!(!hash.verify(b""), "{text}");
            assert_eq!(hash.to_string(), text);
        }
    }

    #[test]
    fn argon2id_hashes_verify() {
        use argon2::PasswordHasher;
        let salt = argon2::password_hash::SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let text = argon2::Argon2::default()
            .hash_password(b"secret", &salt)
            .unwrap()
            .to_string();
        let hash = PasswordHash::parse(&text).unwrap();
        assert!(hash.verify(b"secret"));
        assert!(!hash.verify(b"Secret"));
    }

    #[test]
    fn new_hashes_round_trip_with_a_fresh_salt() {
        let a = PasswordHash::new(b"pw", 1000).unwrap();
        let b = PasswordHash::new(b"pw", 1000).unwrap();
        assert_ne!(a, b, "salted");
        let parsed = PasswordHash::parse(&a.to_string()).unwrap();
        assert!(parsed.verify(b"pw"));
        assert!(!parsed.verify(b"pW"));
    }

    #[test]
    fn new_hashes_need_iterations_within_the_range() {
        assert!(PasswordHash::new(b"pw", PBKDF2_ITERATIONS_MIN - 1).is_err());
        assert!(PasswordHash::new(b"pw", ITERATIONS_MAX + 1).is_err());
        assert!(PasswordHash::new(b"pw", PBKDF2_ITERATIONS_MIN).is_ok());
    }

    #[test]
    fn broken_hashes_are_refused_with_a_reason() {
        for text in [
            "",
            "plain",
            "$7$0$AAAA$AAAA",
            "$7$99999999999$AAAA$AAAA",
            "$7$101$!!$AAAA",
            "$7$101$AAAA$AAAA",
            "$6$AAAA",
            "$argon2id$nonsense",
            "$5$abc$def",
        ] {
            assert!(PasswordHash::parse(text).is_err(), "{text:?}");
        }
    }

    /// RFC 7677's parameters (password "pencil", its salt, 4096 iterations); the keys were
    /// computed with Python's hashlib and hmac.
    #[test]
    fn scram_keys_match_an_independent_computation() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let sha256 = scram_credential(ScramMechanism::Sha256, b"pencil", &salt, 4096);
        assert_eq!(
            B64.encode(&sha256.stored_key),
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
        );
        assert_eq!(
            B64.encode(&sha256.server_key),
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        let sha512 = scram_credential(ScramMechanism::Sha512, b"pencil", &salt, 4096);
        assert_eq!(
            B64.encode(&sha512.stored_key),
            "6AAub3065EYRmyFpM2RNwqK+eGnrkYuEWbXn19LsEmBqzu8QaCXNc1FwpnX9NhH2hK/60dzj9DoO5DvVkOHbvg=="
        );
        assert_eq!(
            B64.encode(&sha512.server_key),
            "jZHbYjC1aHh0/hKbxyBuGFjDrgjgKTT1esA7awWiKcRZ0o/0b1yWEebBeSVkkCFewf91nLDfKF24mvD5nmE6rA=="
        );
        let field = scram_field(&sha512);
        assert_eq!(
            parse_scram_field(ScramMechanism::Sha512, &field).unwrap(),
            sha512
        );
        assert!(parse_scram_field(ScramMechanism::Sha512, "100,AA==,AA==,AA==").is_err());
    }
}
