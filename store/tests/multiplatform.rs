//! Multi-platform images through the store's archive and lifecycle functions: `load` keeps an
//! index with every platform (and its attestations) the archive holds, `save` writes it back
//! with the same digest, listings show it as one image, and prune/rmi/GC treat it as one.

use std::collections::BTreeSet;
use std::fs;

use rbuild_store::archive::{SaveFormat, SaveTarget};
use rbuild_store::fsck::FsckOptions;
use rbuild_store::gc::PruneOptions;
use rbuild_store::refs::KIND_CONTAINER;
use rbuild_store::testing::{OciArchive, TarBuilder};
use rbuild_store::{Digest, Platform, Reference, Store, StoreOptions, Target};
use serde_json::Value;

fn store() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open_with(d.path().join("root"), StoreOptions::default()).unwrap();
    (d, s)
}

/// The same store through a new handle: this one's lease no longer protects what it wrote.
fn reopen(s: Store) -> Store {
    let root = s.root().to_path_buf();
    drop(s);
    Store::open_with(root, StoreOptions::default()).unwrap()
}

fn layer(tag: &str) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("etc").file(format!("etc/{tag}"), tag.as_bytes());
    t.finish()
}

fn digest(d: &Value) -> Digest {
    Digest::parse(d["digest"].as_str().unwrap()).unwrap()
}

fn blobs(s: &Store) -> BTreeSet<String> {
    fs::read_dir(s.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn fsck_ok(s: &Store) {
    let r = s
        .fsck(FsckOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
}

/// An archive naming `name` an index of linux/amd64 and linux/arm64 with an attestation for
/// the amd64 image; the descriptors of (index, amd64, arm64, attestation).
fn multi(name: Option<&str>) -> (OciArchive, [Value; 4]) {
    let mut a = OciArchive::new();
    let amd = a.image("linux", "amd64", &layer("amd64"));
    let arm = a.image("linux", "arm64", &layer("arm64"));
    let att = a.attestation(&amd);
    let index = a.index(&[amd.clone(), arm.clone(), att.clone()]);
    a.entry(&index, name);
    (a, [index, amd, arm, att])
}

fn platforms(t: &Target) -> Vec<String> {
    t.images().iter().map(|(p, _)| p.to_string()).collect()
}

#[test]
fn a_multi_platform_archive_loads_whole() {
    let (a, [index, amd, arm, att]) = multi(Some("docker.io/library/multi:1"));
    let archive = a.build();
    let (_d, s) = store();
    let report = s.load(&archive[..]).unwrap();
    assert_eq!(report.images.len(), 1);
    let loaded = &report.images[0].target;
    assert!(loaded.is_index());
    assert_eq!(loaded.digest(), &digest(&index));
    assert_eq!(platforms(loaded), ["linux/amd64", "linux/arm64"]);
    assert!(report.notes.is_empty(), "{:?}", report.notes);

    // Every blob of the archive is in the store: both platforms and the attestation.
    let mut want: BTreeSet<String> = BTreeSet::new();
    let mut r = tar::Archive::new(&archive[..]);
    for e in r.entries().unwrap() {
        let p = e.unwrap().path().unwrap().to_string_lossy().into_owned();
        if let Some(hex) = p.strip_prefix("blobs/sha256/") {
            want.insert(hex.to_string());
        }
    }
    assert_eq!(blobs(&s), want);
    for d in [&amd, &arm, &att] {
        assert!(s.has_blob(&digest(d)));
    }

    // The name points at the index; the platforms resolve by platform.
    let t = s.resolve_target("multi:1").unwrap();
    assert_eq!(t.digest(), &digest(&index));
    let arm64 = Platform::new("linux", "arm64", None);
    assert_eq!(
        s.resolve_image_for("multi:1", &arm64)
            .unwrap()
            .manifest_digest,
        digest(&arm)
    );

    // The attestation is kept but never an image: no platform picks it.
    let unknown = Platform::new("unknown", "unknown", None);
    assert!(s.resolve_image_for("multi:1", &unknown).is_err());
    assert!(t.image_for(&unknown).is_err());

    // One listing entry with the index as its ID; its size counts each blob once.
    let list = s.list_images().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id(), &digest(&index));
    let by_platform: u64 = t.images().iter().map(|(_, r)| r.size()).sum();
    assert_eq!(list[0].size(), by_platform);

    fsck_ok(&s);
    let s = reopen(s);
    s.collect_garbage().unwrap();
    assert_eq!(
        blobs(&s),
        want,
        "GC keeps every platform and the attestation"
    );
}

#[test]
fn layers_shared_by_platforms_count_once() {
    let mut a = OciArchive::new();
    let shared = layer("shared");
    let amd = a.image("linux", "amd64", &shared);
    let arm = a.image("linux", "arm64", &shared);
    let index = a.index(&[amd, arm]);
    a.entry(&index, Some("docker.io/library/shared:1"));
    let (_d, s) = store();
    s.load(&a.build()[..]).unwrap();
    let list = s.list_images().unwrap();
    let t = &list[0].target;
    let configs: u64 = t.images().iter().map(|(_, r)| r.manifest.config.size).sum();
    assert_eq!(list[0].size(), configs + shared.len() as u64);
}

#[test]
fn platforms_the_archive_lacks_are_left_out() {
    // The arm64 manifest is absent (never fetched): silently left out.
    let (mut a, [index, _, arm, _]) = multi(Some("docker.io/library/multi:1"));
    a.drop_blob(&arm);
    let (_d, s) = store();
    let report = s.load(&a.build()[..]).unwrap();
    assert_eq!(platforms(&report.images[0].target), ["linux/amd64"]);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    assert_eq!(
        s.resolve_target("multi:1").unwrap().digest(),
        &digest(&index)
    );
    fsck_ok(&s);

    // Its manifest is there but one of its blobs is not: left out with a note, and its
    // manifest is not stored either (fsck would find it incomplete).
    let mut b = OciArchive::new();
    let amd = b.image("linux", "amd64", &layer("amd64"));
    let arm_layer = layer("arm64-only");
    let arm = b.image("linux", "arm64", &arm_layer);
    let index = b.index(&[amd, arm.clone()]);
    b.entry(&index, Some("docker.io/library/partial:1"));
    let layer_desc = b.blob("application/vnd.oci.image.layer.v1.tar", &arm_layer);
    b.drop_blob(&layer_desc);
    let (_d2, s2) = store();
    let report = s2.load(&b.build()[..]).unwrap();
    assert_eq!(platforms(&report.images[0].target), ["linux/amd64"]);
    assert!(
        report.notes.iter().any(|n| n.contains("lacks its blob")),
        "{:?}",
        report.notes
    );
    assert!(!s2.has_blob(&digest(&arm)));
    assert_eq!(
        fs::read_dir(s2.root().join("ingest")).unwrap().count(),
        0,
        "what was left out is not left behind"
    );
    fsck_ok(&s2);
}

#[test]
fn an_index_without_the_host_platform_loads_with_a_note() {
    let host = Platform::host();
    let other = if host.architecture == "s390x" {
        "riscv64"
    } else {
        "s390x"
    };
    let mut a = OciArchive::new();
    let img = a.image("linux", other, &layer(other));
    let index = a.index(&[img]);
    a.entry(&index, Some("docker.io/library/foreign:1"));
    let (_d, s) = store();
    let report = s.load(&a.build()[..]).unwrap();
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains(&format!("has no {host} image")) && n.contains("--platform")),
        "{:?}",
        report.notes
    );
    let t = s.resolve_target("foreign:1").unwrap();
    let err = t.image_for(&host).unwrap_err().to_string();
    assert!(err.contains(&format!("linux/{other}")), "{err}");
    assert_eq!(s.list_images().unwrap().len(), 1);
}

#[test]
fn an_index_of_which_the_archive_holds_nothing_is_refused() {
    let (mut a, [_, amd, arm, att]) = multi(Some("docker.io/library/multi:1"));
    a.drop_blob(&amd).drop_blob(&arm).drop_blob(&att);
    let (_d, s) = store();
    let before = blobs(&s);
    let err = s.load(&a.build()[..]).unwrap_err().to_string();
    assert!(err.contains("holds no image"), "{err}");
    assert_eq!(blobs(&s), before);
}

#[test]
fn save_round_trips_the_index() {
    let (a, [index, _, arm, att]) = multi(Some("docker.io/library/multi:1"));
    let (_d, s) = store();
    s.load(&a.build()[..]).unwrap();
    let target = s.resolve_target("multi:1").unwrap();
    let item = SaveTarget {
        target: target.clone(),
        names: vec![Reference::parse("multi:1").unwrap()],
    };
    let one = s
        .save_targets(std::slice::from_ref(&item), SaveFormat::Oci, Vec::new())
        .unwrap();
    let two = s
        .save_targets(std::slice::from_ref(&item), SaveFormat::Oci, Vec::new())
        .unwrap();
    assert_eq!(one, two, "deterministic");

    let (_d2, s2) = store();
    let report = s2.load(&one[..]).unwrap();
    assert_eq!(report.images[0].target.digest(), &digest(&index));
    assert_eq!(
        platforms(&report.images[0].target),
        ["linux/amd64", "linux/arm64"]
    );
    assert_eq!(blobs(&s2), blobs(&s), "every blob, the attestation's too");
    assert!(s2.has_blob(&digest(&att)));
    assert_eq!(
        s2.resolve_target("multi:1").unwrap().digest(),
        &digest(&index)
    );

    // One platform's image on its own.
    let arm_only = SaveTarget {
        target: Target::Image(
            target
                .image_for(&Platform::new("linux", "arm64", None))
                .unwrap()
                .clone(),
        ),
        names: vec![Reference::parse("multi:arm").unwrap()],
    };
    let archive = s
        .save_targets(&[arm_only], SaveFormat::Oci, Vec::new())
        .unwrap();
    let (_d3, s3) = store();
    let report = s3.load(&archive[..]).unwrap();
    assert!(!report.images[0].target.is_index());
    assert_eq!(report.images[0].target.digest(), &digest(&arm));

    // A docker-archive holds one platform: an index is refused.
    let err = s
        .save_targets(&[item], SaveFormat::Docker, Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("docker-archive holds one platform"), "{err}");
}

#[test]
fn prune_and_rmi_treat_an_index_as_one_image() {
    // Untagged: dangling as a whole; prune removes every blob of it.
    let (a, _) = multi(None);
    let (_d, s) = store();
    s.load(&a.build()[..]).unwrap();
    let list = s.list_images().unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].names.is_empty());
    let s = reopen(s);
    let r = s.prune(&PruneOptions::default()).unwrap();
    assert_eq!(r.images.len(), 1);
    assert!(blobs(&s).is_empty(), "{:?}", blobs(&s));
    fsck_ok(&s);

    // Tagged: kept by prune; prune -a keeps it while a container uses one platform.
    let (a, [index, _, arm, _]) = multi(Some("docker.io/library/multi:1"));
    s.load(&a.build()[..]).unwrap();
    let s = reopen(s);
    assert!(s.prune(&PruneOptions::default()).unwrap().images.is_empty());
    s.set_ref(KIND_CONTAINER, "c1", &[digest(&arm)]).unwrap();
    let all = PruneOptions {
        all_images: true,
        ..PruneOptions::default()
    };
    assert!(s.prune(&all).unwrap().images.is_empty());
    assert!(s.remove("multi:1", false).is_err(), "in use by c1");
    s.remove_ref(KIND_CONTAINER, "c1").unwrap();

    // rmi by name: the index goes, and GC collects its platforms unless named otherwise.
    let amd_record = s
        .resolve_image_for("multi:1", &Platform::new("linux", "amd64", None))
        .unwrap();
    s.tag(&amd_record, &Reference::parse("amd:only").unwrap())
        .unwrap();
    let removed = s.remove("multi:1", false).unwrap();
    assert!(removed.deleted);
    assert_eq!(removed.id.as_ref(), Some(&digest(&index)));
    assert!(!s.has_blob(&digest(&index)));
    assert!(!s.has_blob(&digest(&arm)));
    for b in amd_record.blobs() {
        assert!(s.has_blob(&b), "the separately named amd64 image keeps {b}");
    }
    fsck_ok(&s);
    let s = reopen(s);
    let r = s.prune(&all).unwrap();
    assert_eq!(r.images.len(), 1);
    assert!(blobs(&s).is_empty());
}

#[test]
fn nested_indexes_and_self_listing_indexes_are_bounded() {
    // An index wrapped in an index loads whole.
    let (mut a, [inner, ..]) = multi(None);
    let outer = a.index(std::slice::from_ref(&inner));
    let mut a2 = a.clone();
    a2.entry(&outer, Some("docker.io/library/wrapped:1"));
    let (_d, s) = store();
    let report = s.load(&a2.build()[..]).unwrap();
    assert_eq!(
        report.images.len(),
        2,
        "the untagged inner entry and the outer"
    );
    let t = s.resolve_target("wrapped:1").unwrap();
    assert_eq!(platforms(&t), ["linux/amd64", "linux/arm64"]);
    fsck_ok(&s);

    // An index claiming to list itself: its blob cannot hash to its own name.
    let mut b = OciArchive::new();
    let img = b.image("linux", "amd64", &layer("x"));
    let fake = Digest::of(b"not the index").to_string();
    let looping = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [img, {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": fake, "size": 10}],
    });
    let bytes = serde_json::to_vec(&looping).unwrap();
    b.raw_blob(&fake, &bytes);
    let d = b.blob("application/vnd.oci.image.index.v1+json", &bytes);
    b.entry(&d, Some("docker.io/library/loop:1"));
    let (_d, s) = store();
    let before = (blobs(&s), fs::read(s.root().join("index.json")).unwrap());
    assert!(s.load(&b.build()[..]).is_err());
    assert_eq!(
        (blobs(&s), fs::read(s.root().join("index.json")).unwrap()),
        before
    );

    // Five levels of indexes: refused, store unchanged.
    let mut c = OciArchive::new();
    let mut next = c.image("linux", "amd64", &layer("deep"));
    for _ in 0..5 {
        next = c.index(&[next]);
    }
    c.entry(&next, Some("docker.io/library/deep:1"));
    let (_d, s) = store();
    let before = (blobs(&s), fs::read(s.root().join("index.json")).unwrap());
    let err = s.load(&c.build()[..]).unwrap_err().to_string();
    assert!(err.contains("nest deeper than 4 levels"), "{err}");
    assert_eq!(
        (blobs(&s), fs::read(s.root().join("index.json")).unwrap()),
        before
    );
}
