//! Warden's built-in `wasi:keyvalue` (store, atomics, batch;
//! `@0.2.0-draft`, the draft wasmCloud ships): an in-memory store, plain
//! data, no network, bounded in size. Under `warden run` an instance has
//! its own; under `warden serve` an app's instances share one (the
//! [`KeyValue`] the app's grants hold).
//!
//! Not wasmtime-wasi-keyvalue: its store is copied into each `open` and
//! lost on drop, and nothing bounds it. Every bucket name opens a bucket
//! of the same store, and all share its size bound; a write that would
//! pass it fails with `other("the key-value store is full ...")`.
//! Counters (`increment`) are decimal text, as wasmtime's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use self::generated::wasi::keyvalue::{atomics, batch, store};
use self::store::{Error, KeyResponse};
use crate::HasComponentCtx;

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
    });
}

/// The default bound on a store's size (`--keyvalue memory`): keys and
/// values, plus [`ENTRY_OVERHEAD`] per entry.
pub const DEFAULT_KEYVALUE_SIZE: u64 = 4 << 20;

/// What each entry counts against the bound beside its key and value (the
/// map's own bookkeeping), so many empty values cannot grow it unbounded.
pub const ENTRY_OVERHEAD: u64 = 64;

/// The most keys one `list-keys` call returns; its cursor continues.
pub const LIST_PAGE: usize = 1000;

/// An in-memory key-value store with a size bound.
#[derive(Debug)]
pub struct KeyValue {
    max_size: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    used: u64,
    /// (bucket, key) to value.
    entries: BTreeMap<(String, String), Vec<u8>>,
}

fn cost(bucket: &str, key: &str, value: &[u8]) -> u64 {
    (bucket.len() + key.len() + value.len()) as u64 + ENTRY_OVERHEAD
}

impl KeyValue {
    /// An empty store of at most `max_size` bytes.
    pub fn new(max_size: u64) -> Arc<KeyValue> {
        Arc::new(KeyValue {
            max_size,
            inner: Mutex::default(),
        })
    }

    /// Its bound.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.lock()
            .entries
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
    }

    fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), Error> {
        let mut inner = self.lock();
        let k = (bucket.to_string(), key.to_string());
        let old = inner.entries.get(&k).map_or(0, |v| cost(bucket, key, v));
        let new = cost(bucket, key, &value);
        let used = inner.used - old + new;
        if used > self.max_size {
            return Err(Error::Other(format!(
                "the key-value store is full: {} of its {} bytes are used, and this write needs {new}",
                inner.used, self.max_size
            )));
        }
        inner.used = used;
        inner.entries.insert(k, value);
        Ok(())
    }

    fn delete(&self, bucket: &str, key: &str) {
        let mut inner = self.lock();
        if let Some(v) = inner.entries.remove(&(bucket.to_string(), key.to_string())) {
            inner.used -= cost(bucket, key, &v);
        }
    }

    fn list(&self, bucket: &str, cursor: Option<u64>) -> KeyResponse {
        let inner = self.lock();
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        let mut keys: Vec<String> = inner
            .entries
            .range((bucket.to_string(), String::new())..)
            .take_while(|((b, _), _)| b == bucket)
            .skip(skip)
            .take(LIST_PAGE + 1)
            .map(|((_, k), _)| k.clone())
            .collect();
        let more = keys.len() > LIST_PAGE;
        keys.truncate(LIST_PAGE);
        KeyResponse {
            cursor: more.then(|| (skip + LIST_PAGE) as u64),
            keys,
        }
    }

    fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, Error> {
        let current = match self.get(bucket, key) {
            None => 0,
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    Error::Other(format!(
                        "the value of `{key}` is not a counter (decimal digits)"
                    ))
                })?,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| Error::Other(format!("incrementing `{key}` would overflow")))?;
        self.set(bucket, key, next.to_string().into_bytes())?;
        Ok(next)
    }
}

/// A bucket the guest opened: a name in the store.
pub struct Bucket {
    name: String,
}

/// What the generated host traits work on.
pub(crate) struct KvView<'a> {
    table: &'a mut ResourceTable,
    store: &'a KeyValue,
}

struct Kv;

impl HasData for Kv {
    type Data<'a> = KvView<'a>;
}

fn view<T: HasComponentCtx>(t: &mut T) -> KvView<'_> {
    t.component_ctx().keyvalue_view()
}

impl<'a> KvView<'a> {
    pub(crate) fn new(table: &'a mut ResourceTable, store: &'a KeyValue) -> Self {
        Self { table, store }
    }

    fn bucket(&self, b: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(b)?.name.clone())
    }
}

/// Link the built-in `wasi:keyvalue` interfaces.
pub(crate) fn link<T: HasComponentCtx>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    generated::Imports::add_to_linker::<T, Kv>(linker, view::<T>)
}

type R<T> = wasmtime::Result<Result<T, Error>>;

impl store::Host for KvView<'_> {
    fn open(&mut self, identifier: String) -> R<Resource<Bucket>> {
        Ok(Ok(self.table.push(Bucket { name: identifier })?))
    }
}

impl store::HostBucket for KvView<'_> {
    fn get(&mut self, b: Resource<Bucket>, key: String) -> R<Option<Vec<u8>>> {
        let name = self.bucket(&b)?;
        Ok(Ok(self.store.get(&name, &key)))
    }

    fn set(&mut self, b: Resource<Bucket>, key: String, value: Vec<u8>) -> R<()> {
        let name = self.bucket(&b)?;
        Ok(self.store.set(&name, &key, value))
    }

    fn delete(&mut self, b: Resource<Bucket>, key: String) -> R<()> {
        let name = self.bucket(&b)?;
        self.store.delete(&name, &key);
        Ok(Ok(()))
    }

    fn exists(&mut self, b: Resource<Bucket>, key: String) -> R<bool> {
        let name = self.bucket(&b)?;
        Ok(Ok(self.store.get(&name, &key).is_some()))
    }

    fn list_keys(&mut self, b: Resource<Bucket>, cursor: Option<u64>) -> R<KeyResponse> {
        let name = self.bucket(&b)?;
        Ok(Ok(self.store.list(&name, cursor)))
    }

    fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    fn increment(&mut self, b: Resource<Bucket>, key: String, delta: u64) -> R<u64> {
        let name = self.bucket(&b)?;
        Ok(self.store.increment(&name, &key, delta))
    }
}

impl batch::Host for KvView<'_> {
    fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> R<Vec<Option<(String, Vec<u8>)>>> {
        let name = self.bucket(&b)?;
        Ok(Ok(keys
            .into_iter()
            .map(|k| self.store.get(&name, &k).map(|v| (k, v)))
            .collect()))
    }

    fn set_many(&mut self, b: Resource<Bucket>, pairs: Vec<(String, Vec<u8>)>) -> R<()> {
        let name = self.bucket(&b)?;
        for (k, v) in pairs {
            if let Err(e) = self.store.set(&name, &k, v) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    fn delete_many(&mut self, b: Resource<Bucket>, keys: Vec<String>) -> R<()> {
        let name = self.bucket(&b)?;
        for k in keys {
            self.store.delete(&name, &k);
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_bounded_and_frees_what_is_deleted() {
        let kv = KeyValue::new(ENTRY_OVERHEAD + 10);
        assert!(kv.set("", "k", b"123456789".to_vec()).is_ok());
        let full = kv.set("", "k2", b"x".to_vec()).unwrap_err();
        assert!(matches!(full, Error::Other(m) if m.contains("is full")));
        // Replacing a value counts only the difference.
        assert!(kv.set("", "k", b"12345678".to_vec()).is_ok());
        kv.delete("", "k");
        assert!(kv.set("", "k2", b"x".to_vec()).is_ok());
        assert_eq!(kv.get("", "k2"), Some(b"x".to_vec()));
        assert_eq!(kv.get("other", "k2"), None);
    }

    #[test]
    fn counters_are_decimal_and_lists_page() {
        let kv = KeyValue::new(DEFAULT_KEYVALUE_SIZE);
        assert_eq!(kv.increment("b", "n", 2).unwrap(), 2);
        assert_eq!(kv.increment("b", "n", 3).unwrap(), 5);
        assert_eq!(kv.get("b", "n"), Some(b"5".to_vec()));
        kv.set("b", "text", b"abc".to_vec()).unwrap();
        assert!(kv.increment("b", "text", 1).is_err());
        kv.set("b", "max", u64::MAX.to_string().into_bytes())
            .unwrap();
        assert!(kv.increment("b", "max", 1).is_err());
        for i in 0..(LIST_PAGE + 5) {
            kv.set("many", &format!("{i:05}"), vec![]).unwrap();
        }
        let first = kv.list("many", None);
        assert_eq!(first.keys.len(), LIST_PAGE);
        let rest = kv.list("many", first.cursor);
        assert_eq!(rest.keys.len(), 5);
        assert_eq!(rest.cursor, None);
        assert_eq!(kv.list("b", None).keys, vec!["max", "n", "text"]);
    }
}
