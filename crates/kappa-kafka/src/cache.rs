//! The local copy of the metadata kept in changelog topics, with the
//! changelog offset each partition is copied up to (its checkpoint), so a
//! restart restores only the tail.

use std::path::Path;

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use kappa_log::{LogError, TopicPartition};

/// Metadata and checkpoints in a local storage engine.
pub(crate) struct Cache {
    db: Database,
    metadata: Keyspace,
    checkpoints: Keyspace,
}

impl Cache {
    pub(crate) fn open(dir: &Path) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(|source| LogError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let db = Database::builder(dir).open().map_err(|e| match e {
            fjall::Error::Locked => LogError::AlreadyInUse {
                dir: dir.to_path_buf(),
                lock: dir.to_path_buf(),
            },
            other => LogError::from(other),
        })?;
        let metadata = db.keyspace("metadata", KeyspaceCreateOptions::default)?;
        let checkpoints = db.keyspace("checkpoints", KeyspaceCreateOptions::default)?;
        Ok(Self {
            db,
            metadata,
            checkpoints,
        })
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Bytes>, LogError> {
        Ok(self.metadata.get(key)?.map(Bytes::from))
    }

    pub(crate) fn page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        kappa_log::metadata_page_from(prefix, after, limit, |range| {
            self.metadata
                .range::<&[u8], _>(range)
                .map(fjall::Guard::into_inner)
        })
    }

    /// The changelog offset `tp` is copied up to (0: nothing yet).
    pub(crate) fn checkpoint(&self, tp: &TopicPartition) -> Result<u64, LogError> {
        Ok(self
            .checkpoints
            .get(checkpoint_key(tp))?
            .and_then(|v| v[..].try_into().ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Applies metadata changes and moves checkpoints, atomically.
    pub(crate) fn apply(
        &self,
        changes: &[(Bytes, Option<Bytes>)],
        checkpoints: &[(TopicPartition, u64)],
    ) -> Result<(), LogError> {
        let mut b = self.db.batch();
        for (k, v) in changes {
            match v {
                Some(v) => b.insert(&self.metadata, k.to_vec(), v.to_vec()),
                None => b.remove(&self.metadata, k.to_vec()),
            }
        }
        for (tp, at) in checkpoints {
            b.insert(&self.checkpoints, checkpoint_key(tp), at.to_be_bytes());
        }
        b.durability(Some(PersistMode::Buffer)).commit()?;
        Ok(())
    }
}

fn checkpoint_key(tp: &TopicPartition) -> Vec<u8> {
    let mut k = tp.topic.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&tp.partition.to_be_bytes());
    k
}
