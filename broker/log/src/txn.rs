//! Transactions and what guards them: commits and the poisoning that follows a failed one,
//! syncs that make changes durable, the disk reserve checked before a write, the release of
//! pages freed by deletions, and the sorting of LMDB errors into `Full` and `Fatal`.

use std::path::Path;
use std::sync::atomic::Ordering;

use heed::{RoTxn, RwTxn, WithoutTls};
use weir_core::log_store::{Append, StoreError};

use crate::lmdb_log::{Durability, LmdbLog};
use crate::schema::i64_of;
use crate::schema::meta_key;

/// Free pages inside the LMDB file that the reserve check does not count on: every commit
/// frees the old copies of the pages it changed, and LMDB reuses them only two commits later,
/// so a few dozen pages always look free without being usable yet.
const PENDING_FREE_SLACK_BYTES: u64 = 256 << 10;

impl LmdbLog {
    /// Implements `LogStore::sync`. A failed sync poisons the log, as a failed commit does.
    pub(crate) fn sync_env(&self) -> Result<(), StoreError> {
        self.check_usable()?;
        self.env
            .force_sync()
            .map_err(|e| self.poison(format!("sync failed: {e}")))
    }

    /// Commits `txn`. A full map is `Full` (LMDB runs out of pages before it writes
    /// anything); any other failure is fatal and poisons the log: the failed step may have
    /// been the data sync that was to carry an earlier commit's meta page to disk, and a
    /// second sync would not report the same error again.
    pub(crate) fn commit(&self, txn: RwTxn) -> Result<(), StoreError> {
        match txn.commit() {
            Ok(()) => Ok(()),
            Err(error @ heed::Error::Mdb(heed::MdbError::MapFull | heed::MdbError::TxnFull)) => {
                Err(classify(error))
            }
            Err(error) => Err(self.poison(format!("commit failed: {error}"))),
        }
    }

    fn poison(&self, why: String) -> StoreError {
        self.poisoned.store(true, Ordering::SeqCst);
        StoreError::Fatal(why)
    }

    /// Refuses every write once a commit or sync has failed.
    pub(crate) fn check_usable(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Fatal(
                "an earlier commit or sync of the log failed; restart weir".into(),
            ));
        }
        Ok(())
    }

    /// After an administrative change: in fsync durability, make it durable before the
    /// caller is told it happened.
    pub(crate) fn make_durable(&self) -> Result<(), StoreError> {
        match self.durability {
            Durability::Fsync => self.sync_env(),
            Durability::Relaxed => Ok(()),
        }
    }

    pub(crate) fn write_txn(&self) -> Result<RwTxn<'_>, StoreError> {
        self.env.write_txn().map_err(classify)
    }

    pub(crate) fn read_txn(&self) -> Result<RoTxn<'_, WithoutTls>, StoreError> {
        self.env.read_txn().map_err(classify)
    }

    /// Refuses an append group that would eat into the disk reserve. Space LMDB already holds
    /// in its file (pages freed by deletions) needs no new disk, so only the part of the group
    /// that must grow the file counts against the reserve.
    pub(crate) fn check_disk_reserve(
        &self,
        txn: &RoTxn,
        appends: &[Append],
    ) -> Result<(), StoreError> {
        let wanted: u64 = appends.iter().map(|a| a.batch.len() as u64).sum();
        self.check_disk_reserve_bytes(txn, wanted)
    }

    /// [`LmdbLog::check_disk_reserve`] for a write of `wanted` bytes.
    pub(crate) fn check_disk_reserve_bytes(
        &self,
        txn: &RoTxn,
        wanted: u64,
    ) -> Result<(), StoreError> {
        if self.disk_reserve_bytes == 0 {
            return Ok(());
        }
        let Some(free) = free_disk_bytes(self.env.path()) else {
            return Ok(());
        };
        if free >= self.disk_reserve_bytes.saturating_add(wanted) {
            return Ok(());
        }
        let reusable = self
            .free_bytes_in_file(txn)?
            .saturating_sub(PENDING_FREE_SLACK_BYTES);
        let growth = wanted.saturating_sub(reusable);
        if growth > 0 && free < self.disk_reserve_bytes.saturating_add(growth) {
            return Err(StoreError::Full(format!(
                "the disk is nearly full: {free} bytes free, {} reserved \
                 (storage.disk_reserve_bytes)",
                self.disk_reserve_bytes
            )));
        }
        Ok(())
    }

    /// Bytes of pages inside the LMDB file that no table uses (freed, to be reused). An upper
    /// bound: pages freed by the latest commits are not reusable yet.
    fn free_bytes_in_file(&self, txn: &RoTxn) -> Result<u64, StoreError> {
        let main = self.env.stat();
        let mut used = 2 + main.branch_pages + main.leaf_pages + main.overflow_pages;
        for db in &self.tables {
            let stat = db.stat(txn).map_err(classify)?;
            used += stat.branch_pages + stat.leaf_pages + stat.overflow_pages;
        }
        let pages = self.env.info().last_page_number + 1;
        Ok((pages.saturating_sub(used) as u64).saturating_mul(u64::from(main.page_size)))
    }

    /// Commits a tiny transaction so that pages freed by the previous commit can be reused.
    ///
    /// LMDB reuses a page freed by transaction N only from transaction N + 2 on (the previous
    /// snapshot may still be read). When a deletion frees space in a full map, the next append
    /// is transaction N + 1 and, if it fails, commits nothing, so without this step a full map
    /// would stay full after space was freed.
    pub(crate) fn release_freed_pages(&self) -> Result<(), StoreError> {
        let bump = || -> Result<(), StoreError> {
            let mut txn = self.write_txn()?;
            let epoch = self
                .meta
                .get(&txn, meta_key::FREE_EPOCH)
                .map_err(classify)?
                .map_or(0, i64_of);
            self.meta
                .put(&mut txn, meta_key::FREE_EPOCH, &(epoch + 1).to_be_bytes())
                .map_err(classify)?;
            self.commit(txn)
        };
        // Only an optimisation for a full map: if even this does not fit, the next deletion
        // or commit releases the pages instead.
        match bump() {
            Err(StoreError::Full(_)) => Ok(()),
            other => other,
        }
    }
}

/// Sorts LMDB errors from reads and puts: a full map or transaction is `Full` (nothing was
/// written), anything else is `Fatal`. Commit errors go through [`LmdbLog::commit`].
pub(crate) fn classify(error: heed::Error) -> StoreError {
    use heed::MdbError;
    match &error {
        heed::Error::Mdb(MdbError::MapFull) => {
            StoreError::Full("the LMDB map is full (storage.map_size_bytes)".into())
        }
        heed::Error::Mdb(MdbError::TxnFull) => {
            StoreError::Full("the transaction has too many dirty pages".into())
        }
        _ => StoreError::Fatal(format!("LMDB: {error}")),
    }
}

/// Free bytes for unprivileged users on the file system holding `path`.
fn free_disk_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a pointer to a statvfs-sized buffer, as the call wants.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    #[allow(
        clippy::useless_conversion,
        reason = "the fields are 32-bit on 32-bit targets"
    )]
    let (blocks, block_size) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Some(blocks.saturating_mul(block_size))
}
