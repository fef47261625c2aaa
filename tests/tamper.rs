//! Tamper detection: one flipped byte at a random offset of each kind of
//! repository file is reported by `check --read-data` with the file's name,
//! and a restore that needs the damaged bytes fails naming the damage and
//! never leaves wrong data under the target name.

use crate::common;

use std::path::Path;

use rand::{Rng, SeedableRng};

use common::vault::{pack_header_start, random_data, Vault};

const TRIALS_PER_KIND: usize = 21;

/// The name messages use for a repository file.
fn display(kind: &str, file: &Path) -> String {
    let name = file.file_name().expect("name").to_string_lossy().into_owned();
    match kind {
        "config" => "config".into(),
        "data" => format!("data/{}/{}", &name[..2], name),
        _ => format!("{kind}/{name}"),
    }
}

#[test]
fn every_flipped_byte_is_found_and_never_restored() {
    let template = Vault::init_small_packs();
    let a = random_data(21, 150_000);
    let mut b = a.clone();
    b[20_000..60_000].copy_from_slice(&random_data(22, 40_000));
    let snaps = [(template.backup_bytes("a.rdb", &a), a), (template.backup_bytes("b.rdb", &b), b)];
    let mut rng = rand::rngs::StdRng::seed_from_u64(2024);
    let mut trials = 0;
    for kind in ["config", "keys", "data", "index", "snapshots"] {
        for _ in 0..TRIALS_PER_KIND {
            let repo = template.copy();
            let files = if kind == "config" { vec![repo.repo.join("config")] } else { repo.files(kind) };
            assert!(!files.is_empty(), "no {kind} files");
            let file = &files[rng.gen_range(0..files.len())];
            let mut bytes = std::fs::read(file).expect("read");
            let offset = rng.gen_range(0..bytes.len());
            bytes[offset] ^= rng.gen_range(1..=255u8);
            let in_blobs = kind == "data" && offset < pack_header_start(&std::fs::read(file).expect("read"));
            std::fs::write(file, &bytes).expect("write");
            let name = display(kind, file);
            let what = format!("{name} byte {offset}");
            trials += 1;

            let (ok, report) = repo.check(&["--read-data"]);
            assert!(!ok, "{what}: check passed: {report:#}");
            let problems = report["problems"].as_array().cloned().unwrap_or_default();
            let named = problems.iter().any(|p| {
                p["severity"] == "error" && (p["file"] == name.as_str() || p["message"].as_str().is_some_and(|m| m.contains(&name)))
            });
            assert!(named, "{what}: no error names the file: {report:#}");

            let mut failures = 0;
            for (id, want) in &snaps {
                match repo.try_restore(id) {
                    Ok(got) => assert!(&got == want, "{what}: restore of {id} produced wrong data"),
                    Err(msg) => {
                        failures += 1;
                        let names_damage = match kind {
                            "data" => msg.contains(&name),
                            "snapshots" => msg.contains(&name) && name.ends_with(id.as_str()),
                            _ => msg.contains(&name),
                        };
                        assert!(names_damage, "{what}: restore of {id} failed without naming the damage: {msg}");
                    }
                }
            }
            let expected_failures = match kind {
                "config" | "keys" => 2,
                "snapshots" => 1,
                _ if in_blobs => 1,
                _ => 0,
            };
            assert!(failures >= expected_failures, "{what}: {failures} restores failed, expected {expected_failures}");
            if kind == "index" {
                assert_eq!(failures, 0, "{what}: restore indexes the packs from their headers instead");
            }
            if kind == "data" && !in_blobs {
                assert_eq!(failures, 0, "{what}: header damage does not affect verified blob reads");
            }
        }
    }
    assert!(trials >= 100);
}
