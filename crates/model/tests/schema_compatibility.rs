//! Issue 24, item 5: the schemas of what goes on topics evolve compatibly. Every version of a
//! message type (every `schemas/avro/<type>.vN.avsc`) is read by every newer reader (Avro
//! resolution) and by every older one, which learns the newer writer's schema from the schemas
//! topic exactly as the services do ([`SchemaVersions::learn`]); and each type writes its
//! newest file. A new version that breaks either direction fails here, before it ships.

use std::collections::BTreeMap;
use std::path::PathBuf;

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

use hookstream_model::codec::SchemaVersions;
use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::task::DeliveryTask;

/// Every `.avsc` under `schemas/avro`, by message type, oldest version first.
fn versions_by_type() -> BTreeMap<String, Vec<(u32, String)>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/avro");
    let mut types: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("schemas/avro") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a file name")
            .to_owned();
        let Some(stem) = name.strip_suffix(".avsc") else {
            continue;
        };
        let (message_type, version) = stem
            .rsplit_once(".v")
            .unwrap_or_else(|| panic!("{name}: not <type>.v<N>.avsc"));
        let version: u32 = version
            .parse()
            .unwrap_or_else(|_| panic!("{name}: the version is not a number"));
        let text = std::fs::read_to_string(&path).expect("the schema file");
        types
            .entry(message_type.to_owned())
            .or_default()
            .push((version, text));
    }
    for versions in types.values_mut() {
        versions.sort_by_key(|(version, _)| *version);
    }
    types
}

fn parse(text: &str) -> Schema {
    Schema::parse_str(text).expect("the schema parses")
}

#[test]
fn every_version_reads_every_other_version_of_its_type() {
    let types = versions_by_type();
    assert_eq!(
        types.keys().collect::<Vec<_>>(),
        ["dead_letter", "delivery_task"],
        "a new message type needs its place in this test and in schemas/README.md"
    );
    for (message_type, versions) in &types {
        let numbers: Vec<u32> = versions.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            numbers,
            (1..=versions.len() as u32).collect::<Vec<_>>(),
            "{message_type}: versions are numbered 1, 2, … without gaps"
        );
        for (i, (older, older_text)) in versions.iter().enumerate() {
            for (newer, newer_text) in &versions[i + 1..] {
                // A newer reader reads what an older writer wrote (records still on the topic).
                SchemaCompatibility::can_read(&parse(older_text), &parse(newer_text))
                    .unwrap_or_else(|e| {
                        panic!("{message_type} v{newer} cannot read v{older}: {e}")
                    });
                // An older reader reads what a newer writer wrote (a rolling upgrade with the
                // writer first), by learning the schema the writer registered.
                let older_reader = SchemaVersions::new(&[older_text]);
                let newer_writer = SchemaVersions::new(&[newer_text]);
                let (fingerprint, text) = newer_writer.current_schema();
                older_reader.learn(fingerprint, text).unwrap_or_else(|e| {
                    panic!("{message_type} v{older} cannot learn v{newer}: {e}")
                });
            }
        }
    }
}

#[test]
fn each_type_writes_its_newest_version_and_reads_every_one() {
    let types = versions_by_type();
    for (message_type, schemas) in [
        ("delivery_task", DeliveryTask::schemas()),
        ("dead_letter", DeadLetter::schemas()),
    ] {
        let versions = &types[message_type];
        let (_, newest) = versions.last().expect("a version");
        assert_eq!(
            schemas.current_schema().0,
            SchemaVersions::new(&[newest]).current_schema().0,
            "{message_type} writes its newest file"
        );
        for (version, text) in versions {
            let fingerprint = SchemaVersions::new(&[text]).current_schema().0;
            assert!(
                schemas.knows(fingerprint),
                "{message_type} v{version} is not among the versions this build reads"
            );
        }
    }
}
