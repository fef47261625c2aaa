//! Every pair of commands run at once on one repository: each either succeeds or fails
//! naming the lock (or a snapshot a concurrent forget removed), and afterwards the
//! repository passes `check --read-data` and every snapshot restores to an input byte for byte.

use crate::common;

use std::process::{Child, Output, Stdio};

use common::data::fill;
use common::server::RedisServer;
use common::vault::{text, Vault};

/// The commands paired with each other. `{n}` becomes a number unique to the run.
const COMMANDS: &[&[&str]] = &[
    &["backup", "{input}"],
    &["restore", "latest", "--target", "{out}"],
    &["inspect", "latest"],
    &["diff", "{first}", "latest"],
    &["snapshots"],
    &["stats"],
    &["check", "--read-data"],
    &["forget", "--keep-last", "2", "--group-by", ""],
    &["prune", "--max-unused", "0%"],
    &["repair", "index"],
    &["unlock"],
];

/// Failures a concurrent command may meet: another's lock, or a snapshot just forgotten.
const ACCEPTED: &[&str] = &["repository is locked", "no snapshot matches"];

struct Fixture {
    vault: Vault,
    inputs: Vec<Vec<u8>>,
    first: String,
    runs: u32,
}

impl Fixture {
    fn spawn(&mut self, template: &[&str]) -> Child {
        self.runs += 1;
        let input = self.vault.dir.path().join(format!("in{}.rdb", self.runs % self.inputs.len() as u32));
        let out = self.vault.dir.path().join(format!("out{}.rdb", self.runs));
        let args: Vec<String> = template
            .iter()
            .map(|a| match *a {
                "{input}" => input.display().to_string(),
                "{out}" => out.display().to_string(),
                "{first}" => self.first.clone(),
                other => other.to_string(),
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.vault.cmd(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn rdbvault")
    }

    /// The repository is whole and every snapshot restores to one of the inputs.
    fn assert_consistent(&self, what: &str) {
        let (ok, report) = self.vault.check(&["--read-data"]);
        assert!(ok, "after {what}: check --read-data failed: {report}");
        for id in self.vault.snapshots() {
            let bytes = self.vault.try_restore(&id).unwrap_or_else(|e| panic!("after {what}: restore {id}: {e}"));
            assert!(self.inputs.contains(&bytes), "after {what}: snapshot {id} restored bytes that were never backed up");
        }
    }
}

fn outcome(cmd: &[&str], out: &Output) -> Result<(), String> {
    if out.status.success() {
        return Ok(());
    }
    let msg = text(out);
    if ACCEPTED.iter().any(|a| msg.contains(a)) {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed in a way a concurrent command must not cause: {msg}"))
    }
}

#[test]
fn every_pair_of_commands_at_once_leaves_a_consistent_repository() {
    let server = RedisServer::start(&[]);
    let mut inputs = Vec::new();
    for round in 0..3u64 {
        fill(&server, 300, round, 11 + round);
        inputs.push(server.save_rdb());
    }
    let vault = Vault::init_small_packs();
    for (i, data) in inputs.iter().enumerate() {
        std::fs::write(vault.dir.path().join(format!("in{i}.rdb")), data).expect("input");
    }
    let first = vault.backup(&vault.dir.path().join("in0.rdb"), &[]).0;
    let mut fx = Fixture { vault, inputs, first, runs: 0 };
    fx.spawn(COMMANDS[0]).wait().expect("second backup");

    let mut failures = Vec::new();
    let mut succeeded = 0;
    for (i, a) in COMMANDS.iter().enumerate() {
        for b in &COMMANDS[i..] {
            // Keep data to work on: the diff's first snapshot and at least one more.
            if fx.vault.snapshots().len() < 3 {
                fx.spawn(COMMANDS[0]).wait().expect("refill backup");
            }
            if !fx.vault.snapshots().contains(&fx.first) {
                let first = fx.vault.backup(&fx.vault.dir.path().join("in0.rdb"), &[]).0;
                fx.first = first;
            }
            let (ca, cb) = (fx.spawn(a), fx.spawn(b));
            let (oa, ob) = (ca.wait_with_output().expect("wait"), cb.wait_with_output().expect("wait"));
            succeeded += usize::from(oa.status.success()) + usize::from(ob.status.success());
            failures.extend(outcome(a, &oa).err());
            failures.extend(outcome(b, &ob).err());
            fx.assert_consistent(&format!("{a:?} with {b:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Most runs must really have done their work, not all bounced off a lock.
    let pairs = COMMANDS.len() * (COMMANDS.len() + 1) / 2;
    assert!(succeeded > pairs, "only {succeeded} of {} runs succeeded", 2 * pairs);
}
