//! The server side of SCRAM (RFC 5802, with SHA-256 and SHA-512 as RFC 7677 and Kafka use
//! them), sans-IO: messages in, messages out. The caller supplies the user's stored
//! credential and the server's nonce (this crate reads no randomness).
//!
//! An unknown user gets a made-up salt and the exchange fails at its end, as a wrong password
//! does, so the first answer does not tell which user names exist. Channel binding is refused
//! (`p=`), as are Kafka's delegation tokens (`tokenauth`); a message over
//! [`SCRAM_MESSAGE_BYTES_MAX`] is refused before it is parsed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Longest SCRAM message accepted, bytes.
pub const SCRAM_MESSAGE_BYTES_MAX: usize = 4096;
/// The iterations an unknown user's made-up first answer names: RFC 7677's minimum, what
/// real users' keys have.
const UNKNOWN_USER_ITERATIONS: u32 = 4096;

/// A SCRAM hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramMechanism {
    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism a SASL name names.
    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// The mechanism's hash of `data`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC of `data` under `key` with the mechanism's hash.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes a key of any length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramMechanism::Sha256 => mac::<Hmac<Sha256>>(key, data),
            ScramMechanism::Sha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }
}

/// What a server keeps for one user and mechanism: never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// The mechanism the keys are for.
    pub mechanism: ScramMechanism,
    /// PBKDF2 iterations of the salted password.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.mechanism.name();
        write!(f, "ScramCredential({name}, {} iterations)", self.iterations)
    }
}

/// Why an exchange failed; each ends it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// Over [`SCRAM_MESSAGE_BYTES_MAX`].
    #[error("SCRAM message of {0} bytes, over {SCRAM_MESSAGE_BYTES_MAX}")]
    TooLong(usize),
    /// Not what the step expects.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for something this server does not do.
    #[error("unsupported in SCRAM: {0}")]
    Unsupported(&'static str),
    /// The final message's nonce is not the one of this exchange.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// Unknown user or wrong password.
    #[error("authentication failed")]
    Failed,
    /// A message after the exchange ended.
    #[error("SCRAM exchange already over")]
    Over,
}

/// One exchange, server side.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

#[derive(Debug)]
enum State {
    First,
    Final {
        user: String,
        client_first_bare: String,
        server_first: String,
        /// The client's nonce and the server's, joined.
        nonce: String,
        /// Bytes of `nonce` that are the client's.
        client_nonce_len: usize,
        /// `None`: an unknown user; the exchange will fail.
        credential: Option<ScramCredential>,
    },
    Over,
}

impl ScramServer {
    /// A new exchange with `mechanism`.
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::First,
        }
    }

    /// Takes the client-first message; returns the server-first. `lookup` gives the named
    /// user's credential; `server_nonce` is printable ASCII without `,` (random, per exchange).
    pub fn first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::First) {
            return Err(ScramError::Over);
        }
        self.state = State::Over;
        let text = checked(message)?;
        let bare = match text
            .strip_prefix("n,,")
            .or_else(|| text.strip_prefix("y,,"))
        {
            Some(bare) => bare,
            None if text.starts_with("p=") => {
                return Err(ScramError::Unsupported("channel binding"));
            }
            None => match text
                .strip_prefix("n,a=")
                .and_then(|rest| rest.split_once(','))
            {
                Some((_, bare)) => bare,
                None => return Err(ScramError::Malformed("the GS2 header")),
            },
        };
        let mut fields = bare.split(',');
        let user = fields
            .next()
            .and_then(|f| f.strip_prefix("n="))
            .ok_or(ScramError::Malformed("no user name"))?;
        let user = decode_name(user)?;
        let client_nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .filter(|n| valid_nonce(n))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if fields.any(|f| f.starts_with("tokenauth")) {
            return Err(ScramError::Unsupported("delegation tokens"));
        }
        if !valid_nonce(server_nonce) {
            return Err(ScramError::Malformed("the server nonce"));
        }
        let credential = lookup(&user);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            // A salt that stays the same for a name, so two tries look alike.
            None => (
                self.mechanism.hash(user.as_bytes())[..16].to_vec(),
                UNKNOWN_USER_ITERATIONS,
            ),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        self.state = State::Final {
            user,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
            client_nonce_len: client_nonce.len(),
            credential,
        };
        Ok(server_first.into_bytes())
    }

    /// Takes the client-final message; returns the user and the server-final message.
    pub fn finish(&mut self, message: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let State::Final {
            user,
            client_first_bare,
            server_first,
            nonce,
            client_nonce_len,
            credential,
        } = std::mem::replace(&mut self.state, State::Over)
        else {
            return Err(ScramError::Over);
        };
        let text = checked(message)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut fields = without_proof.split(',');
        let binding = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding field"))?;
        if binding != "biws" && binding != "eSws" {
            return Err(ScramError::Unsupported("channel binding"));
        }
        let given = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        // librdkafka (every version to 2.0 at least) puts its own nonce before the whole
        // combined one; Kafka's server takes that too (it checks only the end), and so does
        // this one, but nothing else.
        let doubled = given.strip_prefix(&nonce[..client_nonce_len]) == Some(nonce.as_str());
        if given != nonce && !doubled {
            return Err(ScramError::NonceMismatch);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("the proof is not base64"))?;
        let credential = credential.ok_or(ScramError::Failed)?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = self
            .mechanism
            .hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::Failed);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let stored_key = self.mechanism.hash(&client_key);
        if !bool::from(stored_key.ct_eq(&credential.stored_key)) {
            return Err(ScramError::Failed);
        }
        let server_signature = self
            .mechanism
            .hmac(&credential.server_key, auth_message.as_bytes());
        Ok((
            user,
            format!("v={}", B64.encode(server_signature)).into_bytes(),
        ))
    }
}

fn checked(message: &[u8]) -> Result<&str, ScramError> {
    if message.len() > SCRAM_MESSAGE_BYTES_MAX {
        return Err(ScramError::TooLong(message.len()));
    }
    std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// A SCRAM `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_name(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        out.push(match escape {
            Some("=2C") => ',',
            Some("=3D") => '=',
            _ => return Err(ScramError::Malformed("a user name escape")),
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("an empty user name"));
    }
    Ok(out)
}

/// Printable ASCII without `,`, not empty.
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// A SCRAM client for tests: the credential a server keeps for a password, and the proofs
/// the client sends.
#[cfg(test)]
pub(crate) struct TestClient {
    /// What the server keeps.
    pub(crate) credential: ScramCredential,
    client_key: Vec<u8>,
}

#[cfg(test)]
impl TestClient {
    /// The client of `password`, its keys salted with `salt` over 4096 iterations.
    pub(crate) fn new(mechanism: ScramMechanism, password: &[u8], salt: &[u8]) -> TestClient {
        let mut salted = vec![0u8; mechanism.hash(b"").len()];
        match mechanism {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, 4096, &mut salted)
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, 4096, &mut salted)
            }
        }
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let credential = ScramCredential {
            mechanism,
            iterations: 4096,
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(&salted, b"Server Key"),
        };
        TestClient {
            credential,
            client_key,
        }
    }

    /// ClientProof over `auth_message`.
    pub(crate) fn proof(&self, auth_message: &str) -> Vec<u8> {
        let mechanism = self.credential.mechanism;
        let signature = mechanism.hmac(&self.credential.stored_key, auth_message.as_bytes());
        (self.client_key.iter().zip(&signature))
            .map(|(a, b)| a ^ b)
            .collect()
    }
}

#[cfg(test)]
mod tests;
