//! The process's journal: every transaction the sender signs is told to it before its first broadcast
//! (the service writes each to its audit trail). A journal that fails holds the broadcast back; the
//! next track tries again, so nothing signed leaves unrecorded (a retried one may be told twice).
//! One per process, set once at start; without one, nothing is told.

use std::sync::{Arc, OnceLock};

use alloy::primitives::{Address, B256};

use crate::Error;

/// A signed transaction as the journal records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed<'a> {
    /// The caller's send id.
    pub id: &'a str,
    /// What the caller recorded with it (a batch id, a bundle's operations).
    pub context: &'a str,
    /// The signing key.
    pub from: Address,
    /// The call's target (the key itself for a cancellation).
    pub to: Address,
    /// Its nonce.
    pub nonce: u64,
    /// The signed transaction's hash.
    pub hash: B256,
    /// Whether it is the zero-value self-transfer that cancels the call.
    pub cancel: bool,
}

/// Records signed transactions.
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// Records `tx`; an error holds its broadcast back.
    fn signed<'a>(
        &'a self,
        tx: Signed<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;
}

static JOURNAL: OnceLock<Arc<dyn Journal>> = OnceLock::new();

/// Sets the process's journal; `false` (and nothing changed) if one was set before.
pub fn set_journal(journal: Arc<dyn Journal>) -> bool {
    JOURNAL.set(journal).is_ok()
}

/// Tells the journal, if there is one.
pub(crate) async fn tell(tx: Signed<'_>) -> Result<(), Error> {
    match JOURNAL.get() {
        Some(journal) => journal.signed(tx).await.map_err(Error::Journal),
        None => Ok(()),
    }
}
