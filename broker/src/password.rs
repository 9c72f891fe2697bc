//! Password hashing (argon2id, PHC strings) and bearer-token helpers.
//!
//! Every argon2 computation of the running broker goes through one [`Hasher`]: a fixed
//! set of worker threads, one per core, each reusing its own argon2 memory (19 MiB at
//! the default parameters). Memory is therefore bounded however many logins arrive at
//! once, and a queue with a bound and a deadline answers "busy" instead of growing.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

/// Hashing failed (only possible for absurd inputs, e.g. a password over 4 GiB).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordError(String);

/// The hasher's queue is full or its deadline passed: the caller should answer 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the broker is busy checking other passwords; try again in a moment")]
pub struct Busy;

/// Largest argon2 memory a stored hash may ask for (KiB): a tampered or foreign hash
/// must not make the broker allocate without bound.
const MAX_M_COST: u32 = 256 * 1024;
/// Most passes and lanes such a hash may ask for.
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 8;
/// How long a password check may wait in the queue.
const QUEUE_DEADLINE: Duration = Duration::from_secs(5);
/// Checks waiting per worker at most: about what one worker gets through before the
/// deadline (a check takes ~20 ms). Queued checks cost no argon2 memory.
const QUEUE_PER_WORKER: usize = 128;

/// Hashes a password with argon2id (default parameters) and a random salt; returns the
/// PHC string to store.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    hash_with(password, &mut Vec::new())
}

/// Whether `password` matches a stored PHC string. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    verify_with(password, hash, &mut Vec::new())
}

/// A fixed pool of hashing threads (see the module docs).
pub struct Hasher {
    jobs: SyncSender<Job>,
    /// Shared with the workers and exported on `/metrics`.
    computed: Counter,
}

struct Job {
    work: Work,
    queued: Instant,
    reply: oneshot::Sender<Result<Done, Busy>>,
}

enum Work {
    /// Check a password against a stored hash; `None`: against a dummy, so that
    /// unknown names cost the same time as known ones.
    Verify {
        password: String,
        hash: Option<String>,
    },
    Hash {
        password: String,
    },
}

enum Done {
    Verified(bool),
    Hashed(Result<String, PasswordError>),
}

impl Hasher {
    /// Starts `workers` threads (at least one).
    pub fn new(workers: usize) -> Hasher {
        let workers = workers.max(1);
        let (jobs, rx) = sync_channel::<Job>(workers * QUEUE_PER_WORKER);
        let rx = Arc::new(Mutex::new(rx));
        let computed = Counter::default();
        for n in 0..workers {
            let (rx, computed) = (rx.clone(), computed.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || work(&rx, &computed));
            if let Err(e) = spawned {
                tracing::error!("cannot start a password hashing thread: {e}");
            }
        }
        Hasher { jobs, computed }
    }

    /// argon2 computations done so far (checks and new hashes).
    pub fn computed(&self) -> u64 {
        self.computed.get()
    }

    /// The counter behind [`Hasher::computed`], for the metrics registry.
    pub fn computed_counter(&self) -> Counter {
        self.computed.clone()
    }

    /// One worker per core.
    pub fn per_core() -> Hasher {
        Hasher::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Whether `password` matches `hash` (`None`: an unknown user, checked against a
    /// dummy hash all the same).
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, Busy> {
        match self.submit(Work::Verify { password, hash }).await? {
            Done::Verified(ok) => Ok(ok),
            Done::Hashed(_) => Err(Busy),
        }
    }

    /// A PHC string for a new password.
    pub async fn hash(&self, password: String) -> Result<Result<String, PasswordError>, Busy> {
        match self.submit(Work::Hash { password }).await? {
            Done::Hashed(result) => Ok(result),
            Done::Verified(_) => Err(Busy),
        }
    }

    async fn submit(&self, work: Work) -> Result<Done, Busy> {
        let (reply, done) = oneshot::channel();
        let job = Job {
            work,
            queued: Instant::now(),
            reply,
        };
        match self.jobs.try_send(job) {
            Ok(()) => done.await.unwrap_or(Err(Busy)),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

fn work(jobs: &Mutex<Receiver<Job>>, computed: &Counter) {
    let mut memory = Vec::new();
    loop {
        let job = match crate::lock(jobs).recv() {
            Ok(job) => job,
            Err(_) => return, // the hasher is gone
        };
        if job.reply.is_closed() {
            continue; // the request was abandoned
        }
        if job.queued.elapsed() > QUEUE_DEADLINE {
            let _ = job.reply.send(Err(Busy));
            continue;
        }
        let done = match job.work {
            Work::Verify { password, hash } => Done::Verified(match hash {
                Some(hash) => verify_with(&password, &hash, &mut memory),
                None => {
                    let _ = verify_with(&password, dummy_hash(), &mut memory);
                    false
                }
            }),
            Work::Hash { password } => Done::Hashed(hash_with(&password, &mut memory)),
        };
        computed.inc();
        let _ = job.reply.send(Ok(done));
    }
}

/// A fixed hash for unknown user names (made once).
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("oriel-dummy-password").unwrap_or_default())
}

fn hash_with(password: &str, memory: &mut Vec<Block>) -> Result<String, PasswordError> {
    let err = |e: &dyn std::fmt::Display| PasswordError(e.to_string());
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::default();
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| err(&e))?;
    let mut out = vec![0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(
        Algorithm::Argon2id,
        Version::V0x13,
        &params,
        password,
        salt_bytes,
        &mut out,
        memory,
    )
    .map_err(|e| err(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| err(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| err(&e))?),
    };
    Ok(hash.to_string())
}

fn verify_with(password: &str, hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST || params.t_cost() > MAX_T_COST || params.p_cost() > MAX_P_COST
    {
        tracing::warn!("a stored password hash asks for more argon2 work than allowed");
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if argon2_into(
        algorithm, version, &params, password, salt_bytes, &mut out, memory,
    )
    .is_err()
    {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// argon2 into `out`, with `memory` grown to what `params` need and kept for next time.
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> argon2::Result<()> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    Argon2::new(algorithm, version, params.clone()).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        out,
        &mut memory[..blocks],
    )
}

/// A new random bearer token or host credential: 32 random bytes as 64 hex digits.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// SHA-256 hex of a token: what the store keeps instead of the token itself.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    oriel_protocol::api::to_hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() -> Result<(), PasswordError> {
        let hash = hash_password("correct horse")?;
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        // Random salt: the same password hashes differently.
        assert_ne!(hash, hash_password("correct horse")?);
        Ok(())
    }

    #[test]
    fn hashes_of_the_argon2_crate_verify_and_ours_verify_there() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"pw-123456", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("pw-123456", &theirs));
        let ours = hash_password("pw-123456").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"pw-123456", &parsed)
            .is_ok());
    }

    #[test]
    fn malformed_or_greedy_hashes_never_match() {
        assert!(!verify_password("x", ""));
        assert!(!verify_password("x", "not a phc string"));
        assert!(!verify_password("x", "$argon2id$v=19$m=19456,t=2,p=1$bad"));
        let greedy = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert!(!verify_password("x", greedy));
    }

    #[tokio::test]
    async fn the_pool_checks_and_says_busy_when_full() {
        let hasher = Hasher::new(1);
        let hash = hasher.hash("secret-pw".into()).await.unwrap().unwrap();
        assert_eq!(
            hasher.verify("secret-pw".into(), Some(hash.clone())).await,
            Ok(true)
        );
        assert_eq!(hasher.verify("nope".into(), Some(hash)).await, Ok(false));
        assert_eq!(hasher.verify("nope".into(), None).await, Ok(false));
        // More checks at once than one worker's queue holds: some are refused, none
        // waits without bound, and memory stays one worker's.
        let checks = (0..QUEUE_PER_WORKER + 64).map(|_| hasher.verify("x".into(), None));
        let results = futures_util::future::join_all(checks).await;
        assert!(results.contains(&Err(Busy)), "{results:?}");
        assert!(results.contains(&Ok(false)));
    }

    #[test]
    fn tokens_are_random_and_hashed_to_hex() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        let h = token_hash("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
