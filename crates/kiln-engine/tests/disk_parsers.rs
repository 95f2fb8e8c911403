//! What kiln reads back from `.kiln/` may be anything: a file cut short by a full disk, bytes
//! flipped, an older or newer format, garbage. Reading it never panics: a cache entry that
//! does not parse is a miss (and is pruned), a state file that does not parse is an empty
//! state. Random bytes, and valid files with random damage, for each reader.

use std::path::Path;

use kiln_engine::{ActionRecord, Cache, Digest, Manifest, OutputFile, State, TargetRecord};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z/._-]{0,12}", Just("../escape".to_string()), Just("/abs".to_string()), "\\PC{0,6}"]
}

fn output() -> impl Strategy<Value = OutputFile> {
    (text(), digest(), any::<u64>(), any::<bool>(), prop::option::of(text()))
        .prop_map(|(path, digest, size, executable, link)| OutputFile { path, digest, size, executable, link })
}

fn record() -> impl Strategy<Value = ActionRecord> {
    let pairs = || prop::collection::vec((text(), digest()), 0..3);
    let manifest = (text(), text(), prop::collection::btree_map(text(), text(), 0..3), pairs(), pairs()).prop_map(
        |(action, dir, env, inputs, deps)| Manifest { action, dir, env, outputs: vec!["out".into()], inputs, deps },
    );
    (
        text(),
        digest(),
        manifest,
        prop::collection::vec(output(), 0..4),
        digest(),
        prop::option::of(digest()),
        any::<u64>(),
    )
        .prop_map(|(target, key, manifest, outputs, output_digest, log, duration_ms)| ActionRecord {
            target,
            key,
            manifest,
            outputs,
            output_digest,
            log,
            duration_ms,
        })
}

fn state() -> impl Strategy<Value = State> {
    let target =
        (digest(), digest(), prop::collection::vec(output(), 0..3), any::<u64>(), text(), prop::option::of(digest()))
            .prop_map(|(key, output_digest, outputs, duration_ms, reason, inputs_meta)| TargetRecord {
                key,
                output_digest,
                outputs,
                duration_ms,
                finished_at: "2026-12-01T00:00:00.000Z".into(),
                reason,
                inputs_meta,
                inputs_digest: None,
                outputs_meta: inputs_meta,
                image: None,
            });
    prop::collection::btree_map(text(), target, 0..4).prop_map(|targets| State { targets })
}

/// Damage to a file: bytes replaced, removed or added at random places, or the end cut off.
#[derive(Debug, Clone)]
enum Damage {
    Replace(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    Insert(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    let one = prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Replace(i, b)),
        any::<prop::sample::Index>().prop_map(Damage::Remove),
        (any::<prop::sample::Index>(), prop::sample::select(&b"{}[]\",:0-9e\\"[..]))
            .prop_map(|(i, b)| Damage::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
    ];
    prop::collection::vec(one, 1..4)
}

fn damaged(mut bytes: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
    for d in damage {
        match d {
            Damage::Replace(i, b) if !bytes.is_empty() => {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            Damage::Remove(i) if !bytes.is_empty() => {
                bytes.remove(i.index(bytes.len()));
            }
            Damage::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
            Damage::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
            _ => {}
        }
    }
    bytes
}

/// Puts `bytes` where the cache keeps the record of `key`, and reads it through every path
/// that reads records: a lookup, the stats, a prune.
fn read_record(dir: &Path, key: &Digest, bytes: &[u8], max_bytes: u64) {
    let actions = dir.join("cache/actions");
    std::fs::create_dir_all(&actions).expect("mkdir");
    std::fs::write(actions.join(format!("{}.json", key.hex())), bytes).expect("write");
    let cache = Cache::new(dir.to_path_buf(), dir.join("cache"));
    if let Some(record) = cache.lookup(key) {
        let _ = record.manifest.changes_since(&record.manifest.clone());
    }
    let _ = cache.stats();
    let _ = cache.prune(max_bytes);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_as_an_action_record(bytes in prop::collection::vec(any::<u8>(), 0..256), key in digest()) {
        let dir = tempfile::tempdir().expect("tempdir");
        read_record(dir.path(), &key, &bytes, u64::MAX);
        let cache = Cache::new(dir.path().to_path_buf(), dir.path().join("cache"));
        prop_assert!(cache.lookup(&key).is_none() || serde_json::from_slice::<ActionRecord>(&bytes).is_ok());
    }

    /// Regression: a record whose output sizes add up past u64::MAX panicked `kiln cache
    /// prune` ("attempt to add with overflow").
    #[test]
    fn damaged_action_records(record in record(), damage in damage(), max_bytes in any::<u64>()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = serde_json::to_vec(&record).expect("serializes");
        read_record(dir.path(), &record.key, &bytes, max_bytes);
        read_record(dir.path(), &record.key, &damaged(bytes, &damage), max_bytes);
    }

    #[test]
    fn random_bytes_as_the_state_file(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("targets.json");
        std::fs::write(&path, &bytes).expect("write");
        let state = State::load(&path);
        prop_assert!(state.targets.is_empty() || serde_json::from_slice::<State>(&bytes).is_ok());
    }

    #[test]
    fn damaged_state_files(state in state(), damage in damage()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("targets.json");
        state.save(dir.path(), &path).expect("saved");
        prop_assert_eq!(&State::load(&path), &state, "a state file reads back as written");
        let bytes = damaged(std::fs::read(&path).expect("read"), &damage);
        std::fs::write(&path, &bytes).expect("write");
        let loaded = State::load(&path);
        if serde_json::from_slice::<State>(&bytes).is_err() {
            prop_assert!(loaded.targets.is_empty(), "a state that does not parse is empty");
        }
    }
}
