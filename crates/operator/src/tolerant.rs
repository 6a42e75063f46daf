//! Reading watched objects one at a time, so that one object kubedrs cannot read stops nothing else.
//!
//! A typed list or watch fails as a whole when one item does not deserialize (a field of the wrong type,
//! a number out of the range of its Rust type): one such HostPool, VMI or Node would stop every pool.
//! The reflectors therefore watch [`Tolerant<K>`]: each item is parsed on its own; one that does not parse
//! becomes [`Unreadable`] (its metadata, the field path and the error) instead of failing the list.
//! [`tolerate`] turns the watch stream back into one of `K` for the store: an unreadable object is left out
//! of the cache (and dropped from it when a readable version was there), recorded in [`Skipped`] (a log
//! line, the gauge `kubedrs_objects_skipped{kind}`, and through observe a `Unreadable` Event on the object),
//! and forgotten when it is fixed or deleted.
//!
//! Memory: an item is held as JSON only while it is parsed; the cache keeps the typed object alone.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// An object as the API server sent it: parsed, or not readable by kubedrs.
#[derive(Debug, Clone)]
pub enum Tolerant<K> {
    Read(K),
    /// Boxed: the common case, a readable object, stays small.
    Unreadable(Box<Unreadable>),
}

/// An object that did not deserialize: what kubedrs knows of it and why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unreadable {
    /// Its metadata when that much parses (else empty: the object cannot even be named).
    pub meta: ObjectMeta,
    /// The path of the field that failed, e.g. `spec.domain.cpu.cores` (`.` for the object itself).
    pub field: String,
    pub error: String,
}

/// The metadata of an object that did not parse as a whole (the other fields are skipped unread).
#[derive(Deserialize)]
struct MetadataOnly {
    #[serde(default)]
    metadata: ObjectMeta,
}

impl<K: DeserializeOwned> Tolerant<K> {
    /// Parses one object from its JSON text; never fails.
    pub fn from_json(json: &str) -> Self {
        let mut d = serde_json::Deserializer::from_str(json);
        match serde_path_to_error::deserialize::<_, K>(&mut d) {
            Ok(k) => Tolerant::Read(k),
            Err(e) => {
                let field = e.path().to_string();
                let meta = serde_json::from_str::<MetadataOnly>(json).map(|m| m.metadata).unwrap_or_default();
                Tolerant::Unreadable(Box::new(Unreadable { meta, field, error: without_position(e.into_inner()) }))
            }
        }
    }

    /// Parses one object built in a test.
    #[cfg(test)]
    pub fn from_value(value: &serde_json::Value) -> Self {
        Tolerant::from_json(&value.to_string())
    }
}

/// The error's message without serde_json's "at line 1 column 812": a place in one item's text, which the
/// user never sees (the field path says where).
fn without_position(e: serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&position).map(str::to_string).unwrap_or(text)
}

/// The item is taken as raw JSON text (checked, copied once) and parsed from it: a `serde_json::Value` tree
/// of every field, the modelled or not, cost a fifth of the operator's CPU while it listed pods.
impl<'de, K: DeserializeOwned> Deserialize<'de> for Tolerant<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Ok(Tolerant::from_json(raw.get()))
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Tolerant<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Tolerant::Read(k) => k.meta(),
            Tolerant::Unreadable(u) => &u.meta,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Tolerant::Read(k) => k.meta_mut(),
            Tolerant::Unreadable(u) => &mut u.meta,
        }
    }
}

/// An empty object of a kind with the given metadata: what the store needs to drop an object by name.
pub trait Stub: Sized {
    fn stub(meta: ObjectMeta) -> Self;
}

macro_rules! stub_default {
    ($($t:ty),*) => {$(
        impl Stub for $t {
            fn stub(meta: ObjectMeta) -> Self {
                Self { metadata: meta, ..Default::default() }
            }
        }
    )*};
}
stub_default!(k8s_openapi::api::core::v1::Node, k8s_openapi::api::core::v1::Namespace, k8s_openapi::api::core::v1::Pod);

macro_rules! stub_spec_default {
    ($($t:ty),*) => {$(
        impl Stub for $t {
            fn stub(meta: ObjectMeta) -> Self {
                let mut o = <$t>::new("", Default::default());
                o.metadata = meta;
                o
            }
        }
    )*};
}
stub_spec_default!(
    crate::kubevirt::VirtualMachine,
    crate::kubevirt::VirtualMachineInstance,
    crate::kubevirt::VirtualMachineInstanceMigration,
    crate::crd::HostPool
);

/// One object kubedrs skips, for the log, the metric and the Event observe raises on it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SkippedObject {
    /// `Node`, `VirtualMachineInstance`, `HostPool`...
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub field: String,
    pub error: String,
}

impl SkippedObject {
    /// The message of its Event and log line.
    pub fn message(&self) -> String {
        format!("kubedrs cannot read this object and skips it until it is fixed: field {}: {}", self.field, self.error)
    }
}

type SkipKey = (&'static str, Option<String>, String);

/// The objects every reflector skips now, shared by the reflectors, the passes and `/metrics`.
#[derive(Clone, Default)]
pub struct Skipped {
    objects: Arc<Mutex<BTreeMap<SkipKey, SkippedObject>>>,
    gauge: Family<Vec<(String, String)>, Gauge>,
}

impl Skipped {
    /// A registry that keeps `gauge` (`kubedrs_objects_skipped{kind}`) equal to its count per kind.
    pub fn new(gauge: Family<Vec<(String, String)>, Gauge>) -> Self {
        Skipped { objects: Arc::default(), gauge }
    }

    /// Every skipped object, sorted.
    pub fn list(&self) -> Vec<SkippedObject> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SkipKey, SkippedObject>> {
        self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, kind: &'static str, objects: &BTreeMap<SkipKey, SkippedObject>) {
        let n = objects.keys().filter(|k| k.0 == kind).count();
        self.gauge.get_or_create(&vec![("kind".to_string(), kind.to_string())]).set(n as i64);
    }

    fn skip(&self, o: SkippedObject) {
        let mut objects = self.lock();
        let key = (o.kind, o.namespace.clone(), o.name.clone());
        if objects.get(&key) != Some(&o) {
            tracing::warn!(
                kind = o.kind,
                namespace = o.namespace.as_deref().unwrap_or_default(),
                name = %o.name,
                field = %o.field,
                error = %o.error,
                "object skipped: kubedrs cannot read it"
            );
        }
        let kind = o.kind;
        objects.insert(key, o);
        self.count(kind, &objects);
    }

    fn forget(&self, kind: &'static str, namespace: Option<String>, name: String) {
        let mut objects = self.lock();
        if objects.remove(&(kind, namespace.clone(), name.clone())).is_some() {
            tracing::info!(kind, namespace = namespace.as_deref().unwrap_or_default(), %name, "object readable again");
            self.count(kind, &objects);
        }
    }

    /// After a full list: only the objects that list skipped stay skipped (the others were deleted or fixed
    /// while the watch was away).
    fn keep_only(&self, kind: &'static str, listed: &BTreeSet<SkipKey>) {
        let mut objects = self.lock();
        objects.retain(|k, _| k.0 != kind || listed.contains(k));
        self.count(kind, &objects);
    }
}

fn skipped(kind: &'static str, u: &Unreadable) -> SkippedObject {
    SkippedObject {
        kind,
        namespace: u.meta.namespace.clone(),
        name: u.meta.name.clone().unwrap_or_else(|| "(no name)".into()),
        field: u.field.clone(),
        error: u.error.clone(),
    }
}

/// What [`Tolerator::event`] makes of one watch event.
pub struct Tolerator<K> {
    kind: &'static str,
    skipped: Skipped,
    /// Unreadable objects of the list in progress.
    listing: BTreeSet<SkipKey>,
    _k: std::marker::PhantomData<fn() -> K>,
}

impl<K: Resource<DynamicType = ()> + Stub> Tolerator<K> {
    pub fn new(kind: &'static str, skipped: Skipped) -> Self {
        Tolerator { kind, skipped, listing: BTreeSet::new(), _k: std::marker::PhantomData }
    }

    /// The event for the store: readable objects pass; an unreadable one is recorded and, when it replaces
    /// a readable version, dropped from the store (`Delete`); nothing is passed for it during a list.
    pub fn event(&mut self, ev: watcher::Event<Tolerant<K>>) -> Option<watcher::Event<K>> {
        use watcher::Event as E;
        let key = |m: &ObjectMeta| (self.kind, m.namespace.clone(), m.name.clone().unwrap_or_default());
        Some(match ev {
            E::Init => {
                self.listing.clear();
                E::Init
            }
            E::InitApply(Tolerant::Read(k)) => E::InitApply(k),
            E::InitApply(Tolerant::Unreadable(u)) => {
                self.listing.insert(key(&u.meta));
                self.skipped.skip(skipped(self.kind, &u));
                return None;
            }
            E::InitDone => {
                self.skipped.keep_only(self.kind, &std::mem::take(&mut self.listing));
                E::InitDone
            }
            E::Apply(Tolerant::Read(k)) => {
                let (kind, ns, name) = key(k.meta());
                self.skipped.forget(kind, ns, name);
                E::Apply(k)
            }
            E::Apply(Tolerant::Unreadable(u)) => {
                self.skipped.skip(skipped(self.kind, &u));
                E::Delete(K::stub(u.meta))
            }
            E::Delete(t) => {
                let (kind, ns, name) = key(t.meta());
                self.skipped.forget(kind, ns, name);
                match t {
                    Tolerant::Read(k) => E::Delete(k),
                    Tolerant::Unreadable(u) => E::Delete(K::stub(u.meta)),
                }
            }
        })
    }
}

/// The watch stream of `Tolerant<K>` as one of `K` (see [`Tolerator::event`]); errors pass through.
pub fn tolerate<K, S>(
    stream: S,
    kind: &'static str,
    skipped: Skipped,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Stub + Send + 'static,
    S: Stream<Item = Result<watcher::Event<Tolerant<K>>, watcher::Error>> + Send,
{
    let mut t = Tolerator::<K>::new(kind, skipped);
    stream.filter_map(move |ev| {
        let out = match ev {
            Ok(ev) => t.event(ev).map(Ok),
            Err(e) => Some(Err(e)),
        };
        std::future::ready(out)
    })
}

/// Splits a one-shot list (the CLI's reads) into the readable objects and the skipped ones.
pub fn readable<K>(items: Vec<Tolerant<K>>, kind: &'static str) -> (Vec<K>, Vec<SkippedObject>) {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for t in items {
        match t {
            Tolerant::Read(k) => ok.push(k),
            Tolerant::Unreadable(u) => bad.push(skipped(kind, &u)),
        }
    }
    (ok, bad)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crd::HostPool;
    use crate::kubevirt::VirtualMachineInstance;
    use kube::core::ObjectList;
    use serde_json::json;

    fn pool(name: &str, status: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "kubedrs.io/v1alpha1", "kind": "HostPool",
            "metadata": {"name": name, "resourceVersion": "1"},
            "spec": {"nodeSelector": {"matchLabels": {"pool": name}}},
            "status": status,
        })
    }

    #[test]
    fn one_bad_item_does_not_fail_the_list_and_names_its_field() {
        // A date the API server's schema accepts (year 10000 in UTC) but the Rust type cannot hold.
        let list = json!({
            "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "5"},
            "items": [
                pool("bad", json!({"lastPassTime": "9999-12-31T23:59:59-23:59"})),
                pool("good", json!({"nodes": 3})),
                pool("huge", json!({"nodes": 4_294_967_296u64})),
            ],
        });
        // As kube reads a list: from the response text.
        let l: ObjectList<Tolerant<HostPool>> = serde_json::from_str(&list.to_string()).unwrap();
        let (ok, skipped) = readable(l.items, "HostPool");
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].metadata.name.as_deref(), Some("good"));
        assert_eq!(skipped.len(), 2);
        assert_eq!((skipped[0].name.as_str(), skipped[0].field.as_str()), ("bad", "status.lastPassTime"));
        assert_eq!((skipped[1].name.as_str(), skipped[1].field.as_str()), ("huge", "status.nodes"));
        assert!(skipped[1].error.contains("u32"), "{}", skipped[1].error);
        assert!(!skipped[1].error.contains("column"), "a position in the item's text: {}", skipped[1].error);
        assert!(skipped[1].message().contains("field status.nodes"));
    }

    #[test]
    fn a_wrong_typed_vmi_field_is_named_and_its_metadata_kept() {
        let v = json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "a", "namespace": "shop", "uid": "u1"},
            "spec": {"domain": {"cpu": {"cores": "four"}, "devices": {}}},
        });
        match Tolerant::<VirtualMachineInstance>::from_value(&v) {
            Tolerant::Unreadable(u) => {
                assert_eq!(u.field, "spec.domain.cpu.cores");
                assert_eq!(u.meta.namespace.as_deref(), Some("shop"));
                assert_eq!(u.meta.uid.as_deref(), Some("u1"));
            }
            Tolerant::Read(_) => panic!("cores: \"four\" was read"),
        }
        // Not even metadata: still no error, the object is nameless.
        match Tolerant::<VirtualMachineInstance>::from_value(&json!({"metadata": 3})) {
            Tolerant::Unreadable(u) => assert_eq!((u.meta.name, u.field.as_str()), (None, "metadata")),
            Tolerant::Read(_) => panic!("read"),
        }
    }

    fn read(name: &str, nodes: u64) -> Tolerant<HostPool> {
        Tolerant::from_value(&pool(name, json!({"nodes": nodes})))
    }

    fn gauge(s: &Skipped) -> i64 {
        s.gauge.get_or_create(&vec![("kind".to_string(), "HostPool".to_string())]).get()
    }

    fn name(e: &watcher::Event<HostPool>) -> String {
        match e {
            watcher::Event::Apply(k) | watcher::Event::InitApply(k) => {
                format!("apply {}", k.metadata.name.clone().unwrap())
            }
            watcher::Event::Delete(k) => format!("delete {}", k.metadata.name.clone().unwrap()),
            watcher::Event::Init => "init".into(),
            watcher::Event::InitDone => "done".into(),
        }
    }

    #[test]
    fn the_store_gets_the_readable_objects_and_the_skipped_ones_are_counted_until_fixed_or_gone() {
        use watcher::Event as E;
        let skipped = Skipped::default();
        let mut t = Tolerator::<HostPool>::new("HostPool", skipped.clone());
        let mut run = |evs: Vec<E<Tolerant<HostPool>>>| -> Vec<String> {
            evs.into_iter().filter_map(|e| t.event(e)).map(|e| name(&e)).collect()
        };
        let out = run(vec![E::Init, E::InitApply(read("a", 1)), E::InitApply(read("b", 1 << 32)), E::InitDone]);
        assert_eq!(out, ["init", "apply a", "done"]);
        assert_eq!(skipped.list().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(gauge(&skipped), 1);
        // A readable object turning unreadable leaves the store.
        assert_eq!(run(vec![E::Apply(read("a", 1 << 33))]), ["delete a"]);
        assert_eq!(gauge(&skipped), 2);
        // Fixed: back in the store, no longer skipped.
        assert_eq!(run(vec![E::Apply(read("a", 2))]), ["apply a"]);
        assert_eq!(gauge(&skipped), 1);
        // Deleted while the watch was away: a relist without it forgets it.
        assert_eq!(run(vec![E::Init, E::InitApply(read("a", 2)), E::InitDone]), ["init", "apply a", "done"]);
        assert!(skipped.list().is_empty());
        assert_eq!(gauge(&skipped), 0);
        // Deleted while unreadable: a delete of the stub (harmless for the store) and forgotten.
        run(vec![E::Apply(read("c", 1 << 40))]);
        assert_eq!(run(vec![E::Delete(read("c", 1 << 40))]), ["delete c"]);
        assert!(skipped.list().is_empty());
    }
}
