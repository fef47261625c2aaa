//! A hostile repository: whoever can write it plants symbolic links, foreign
//! files and leftovers. Commands refuse links (naming them) or ignore foreign
//! files, and nothing outside the repository is ever written or deleted: a
//! canary folder next to it is compared after every command.

use crate::common;

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rdbvault::store::lock::LockInfo;
use rdbvault::store::staged::host_tag;
use rdbvault::store::{LocalBackend, Repository};

use common::vault::{random_data, text, Vault, PASSWORD};

/// A lock-, snapshot- and pack-like name (64 hex digits) for planted files.
const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Every entry under `dir`: relative path -> (mode, bytes or link target), links not followed.
fn tree(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).expect("read canary").flatten() {
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            let content = if meta.file_type().is_symlink() {
                std::fs::read_link(&path).expect("readlink").into_os_string().into_encoded_bytes()
            } else if meta.is_dir() {
                walk(root, &path, out);
                Vec::new()
            } else {
                std::fs::read(&path).expect("read")
            };
            out.insert(rel, (meta.mode(), content));
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A folder next to the repository, with files named like repository files, that no command may change.
struct Canary {
    dir: PathBuf,
    before: BTreeMap<PathBuf, (u32, Vec<u8>)>,
}

impl Canary {
    /// Copies `like` (a repository folder, if any) and adds victims of every name shape.
    fn new(vault: &Vault, like: Option<&Path>) -> Canary {
        let dir = vault.dir.path().join("canary");
        std::fs::create_dir_all(dir.join("ab")).expect("mkdir canary");
        if let Some(like) = like {
            for e in std::fs::read_dir(like).expect("read folder").flatten() {
                if e.path().is_file() {
                    std::fs::copy(e.path(), dir.join(e.file_name())).expect("copy");
                }
            }
        }
        for (name, body) in [(HEX, "hex-named victim"), ("victim.txt", "plain victim"), (".staged.tmp-0123456789ab", "old temp victim")] {
            std::fs::write(dir.join(name), body).expect("write victim");
            std::fs::write(dir.join("ab").join(name), body).expect("write victim");
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for p in [dir.join(".staged.tmp-0123456789ab"), dir.join("ab").join(".staged.tmp-0123456789ab")] {
            std::fs::File::options().write(true).open(&p).and_then(|f| f.set_modified(two_hours_ago)).expect("age victim");
        }
        let before = tree(&dir);
        Canary { dir, before }
    }

    /// Takes what the canary holds now as what it must keep holding.
    fn settle(&mut self) {
        self.before = tree(&self.dir);
    }

    fn assert_unchanged(&self, after: &str) {
        assert_eq!(tree(&self.dir), self.before, "something outside the repository changed after {after}");
    }
}

/// Runs every command that lists, writes or deletes repository files; after each, the canary is unchanged.
/// Returns each command's (success, output).
fn every_command(vault: &Vault, canary: &Canary) -> Vec<(&'static str, bool, String)> {
    let src = vault.dir.path().join("second.rdb");
    std::fs::write(&src, random_data(2, 120_000)).expect("write source");
    let target = vault.dir.path().join("restored.rdb");
    let commands: [(&str, Vec<&str>); 6] = [
        ("backup", vec!["backup", "--raw", src.to_str().expect("utf-8")]),
        ("unlock", vec!["unlock", "--remove-all"]),
        ("forget", vec!["forget", "--keep-last", "1", "--group-by", ""]),
        ("prune", vec!["prune", "--max-unused", "0%"]),
        ("check", vec!["check", "--read-data"]),
        ("restore", vec!["restore", "latest", "--target", target.to_str().expect("utf-8")]),
    ];
    let mut out = Vec::new();
    for (name, args) in commands {
        let o = vault.run(&args);
        canary.assert_unchanged(name);
        out.push((name, o.status.success(), text(&o)));
        let _ = std::fs::remove_file(&target);
    }
    out
}

/// A repository with one snapshot.
fn repo_with_a_snapshot() -> Vault {
    let vault = Vault::init();
    vault.backup_bytes("first.rdb", &random_data(1, 200_000));
    vault
}

/// The pack subfolder (`data/xx`) of some pack.
fn a_pack_folder(vault: &Vault) -> String {
    let pack = vault.files("data").into_iter().find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')).expect("a pack");
    let sub = pack.parent().expect("subfolder").file_name().expect("name").to_string_lossy().into_owned();
    format!("data/{sub}")
}

#[test]
fn a_folder_replaced_by_a_link_is_refused_by_every_command_and_nothing_outside_changes() {
    for folder in ["locks", "snapshots", "index", "keys", "data", "pack"] {
        let vault = repo_with_a_snapshot();
        let folder = if folder == "pack" { a_pack_folder(&vault) } else { folder.to_string() };
        let real = vault.repo.join(&folder);
        let canary = Canary::new(&vault, Some(&real));
        std::fs::rename(&real, vault.dir.path().join("moved-away")).expect("move folder");
        symlink(&canary.dir, &real).expect("plant link");
        let refusal = format!("{} is a symbolic link where the repository should have a folder", real.display());

        for (command, ok, msg) in every_command(&vault, &canary) {
            // unlock touches only locks/, forget only snapshots/ and locks/: they may run when another folder is a link.
            let may_run = (command == "unlock" && folder != "locks") || (command == "forget" && !["locks", "snapshots", "keys"].contains(&folder.as_str()));
            if !(ok && may_run) {
                assert!(!ok, "{command} with {folder} a link must fail: {msg}");
                assert!(msg.contains(&refusal), "{command} with {folder} a link names it: {msg}");
                assert!(msg.contains("never follows links inside a repository"), "{command}: says why: {msg}");
            }
        }

        // Put back, the repository is whole again.
        std::fs::remove_file(&real).expect("remove link");
        std::fs::rename(vault.dir.path().join("moved-away"), &real).expect("move back");
        vault.ok(&["check", "--read-data"]);
    }
}

#[test]
fn the_repository_folder_itself_may_be_a_link() {
    let vault = Vault::init();
    let real = vault.dir.path().join("real-repo");
    std::fs::rename(&vault.repo, &real).expect("move");
    symlink(&real, &vault.repo).expect("link the root");
    let data = random_data(3, 100_000);
    let id = vault.backup_bytes("a.rdb", &data);
    vault.ok(&["prune"]);
    vault.ok(&["check", "--read-data"]);
    assert_eq!(vault.try_restore(&id).expect("restore"), data);
}

#[test]
fn a_file_replaced_by_a_link_is_never_followed_or_deleted() {
    // A lock, a snapshot and an index file that are links: ignored (warned about), never followed or deleted.
    for folder in ["locks", "snapshots", "index"] {
        let vault = repo_with_a_snapshot();
        let canary = Canary::new(&vault, None);
        let link = vault.repo.join(folder).join(HEX);
        symlink(canary.dir.join(HEX), &link).expect("plant link");
        let lists_it = if folder == "locks" { "unlock" } else { "restore" };
        for (command, ok, msg) in every_command(&vault, &canary) {
            assert!(ok, "{command} with a linked file in {folder}/: {msg}");
            if command == lists_it {
                assert!(msg.contains(&format!("warning: {folder}/{HEX}: a symbolic link in place of a repository file")), "{command} warns: {msg}");
            }
        }
        assert!(std::fs::symlink_metadata(&link).is_ok(), "{folder}/{HEX} is not deleted");
        let problems = vault.check_passes(&[]);
        assert!(
            problems.iter().any(|p| p["kind"] == "foreign" && p["file"] == format!("{folder}/{HEX}") && p["severity"] == "warning"),
            "check names {folder}/{HEX}: {problems:?}"
        );
    }

    // A hard link to a file outside: never written through (rdbvault only creates new
    // files and renames them into place); removing the repository's name leaves the other.
    let vault = repo_with_a_snapshot();
    let canary = Canary::new(&vault, None);
    std::fs::hard_link(canary.dir.join(HEX), vault.repo.join("locks").join(HEX)).expect("plant hard link");
    every_command(&vault, &canary);

    // A pack that is a link is not read through: the pack counts as missing.
    let vault = repo_with_a_snapshot();
    let mut canary = Canary::new(&vault, None);
    let pack = vault.files("data").into_iter().find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')).expect("pack");
    std::fs::copy(&pack, canary.dir.join("ab").join("pack-copy")).expect("copy pack");
    canary.settle();
    std::fs::remove_file(&pack).expect("remove pack");
    symlink(canary.dir.join("ab").join("pack-copy"), &pack).expect("plant link");
    let first = &vault.snapshots()[0];
    let target = vault.dir.path().join("first.out");
    let msg = vault.fails_text(&["restore", first, "--target", target.to_str().expect("utf-8")]);
    assert!(msg.contains(&format!("{} is a symbolic link where the repository should have a file", pack.display())), "{msg}");
    let msg = vault.fails_text(&["check"]);
    assert!(msg.contains("is missing") && msg.contains("a symbolic link in place of a repository file"), "{msg}");
    every_command(&vault, &canary);
    assert!(std::fs::symlink_metadata(&pack).is_ok(), "the link is not deleted");

    // The config as a link: every command refuses it.
    let vault = repo_with_a_snapshot();
    let config = vault.repo.join("config");
    let mut canary = Canary::new(&vault, None);
    std::fs::rename(&config, canary.dir.join("config-moved")).expect("move config");
    canary.settle();
    symlink(canary.dir.join("config-moved"), &config).expect("plant link");
    for (command, ok, msg) in every_command(&vault, &canary) {
        assert!(!ok, "{command} with a linked config: {msg}");
        assert!(msg.contains(&format!("{} is a symbolic link where the repository should have a file", config.display())), "{command}: {msg}");
    }
}

#[test]
fn foreign_files_are_ignored_named_by_check_and_never_deleted() {
    let vault = repo_with_a_snapshot();
    let canary = Canary::new(&vault, None);
    let pack_folder = a_pack_folder(&vault);
    let other_folder = if pack_folder == "data/00" { "data/01" } else { "data/00" };
    let planted = [
        "locks/README".to_string(),
        format!("locks/{}", &HEX[..63]),
        "snapshots/notes.json".to_string(),
        "index/.nfs0000000001".to_string(),
        "keys/old-key.txt".to_string(),
        format!("{pack_folder}/notes.txt"),
        format!("{other_folder}/{}", "ff".repeat(32)),
        "data/notes.txt".to_string(),
        "README".to_string(),
    ];
    for p in &planted {
        std::fs::write(vault.repo.join(p), "not rdbvault's").expect("plant");
    }
    std::fs::create_dir(vault.repo.join("locks").join("subfolder")).expect("plant folder");
    // A fifo under a snapshot's name: listing looks at it without opening it, so nothing hangs.
    let fifo = std::ffi::CString::new(vault.repo.join("snapshots").join(HEX).into_os_string().into_encoded_bytes()).expect("path");
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    for (command, ok, msg) in every_command(&vault, &canary) {
        assert!(ok, "{command} with foreign files: {msg}");
        if command == "unlock" {
            assert!(msg.contains("warning: locks/README: not a repository file"), "unlock warns: {msg}");
        }
    }
    for p in &planted {
        assert_eq!(std::fs::read_to_string(vault.repo.join(p)).expect("still there"), "not rdbvault's", "{p}");
    }
    assert!(vault.repo.join("locks/subfolder").is_dir());
    let problems = vault.check_passes(&[]);
    for p in planted.iter().chain([&"locks/subfolder".to_string(), &format!("snapshots/{HEX}")]) {
        assert!(
            problems.iter().any(|f| f["kind"] == "foreign" && f["file"] == p.as_str() && f["severity"] == "warning"),
            "check names {p}: {problems:?}"
        );
    }
    let quiet = vault.run(&["-q", "unlock"]);
    assert!(quiet.status.success() && quiet.stderr.is_empty(), "--quiet hides the warnings: {}", text(&quiet));
}

/// Runs `args` with umask 022 in effect.
fn with_umask_022(vault: &Vault, args: &[&str]) {
    run_with_umask_022(vault.cmd(args));
}

fn run_with_umask_022(mut cmd: std::process::Command) {
    // SAFETY: umask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
}

#[test]
fn repository_files_are_0600_and_folders_0700_whatever_the_umask() {
    let vault = Vault::init();
    std::fs::remove_dir_all(&vault.repo).expect("remove the test's repository");
    with_umask_022(&vault, &["init", "--kdf-memory-kib", "8192"]);
    let src = vault.dir.path().join("a.rdb");
    std::fs::write(&src, random_data(4, 200_000)).expect("write");
    with_umask_022(&vault, &["backup", "--raw", src.to_str().expect("utf-8")]);
    let pw = vault.dir.path().join("new-password");
    std::fs::write(&pw, "another password\n").expect("write");
    with_umask_022(&vault, &["key", "add", "--kdf-memory-kib", "8192", "--new-password-file", pw.to_str().expect("utf-8")]);
    let mut files = 0;
    for (path, (mode, _)) in tree(&vault.repo) {
        let want = if vault.repo.join(&path).is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode & 0o777, want, "{} is {:o}", path.display(), mode & 0o777);
        files += 1;
    }
    assert!(files > 260, "init made the layout ({files} entries)");
    assert_eq!(std::fs::metadata(&vault.repo).expect("stat").permissions().mode() & 0o777, 0o700, "a folder init made");

    // An existing folder keeps its own mode; what init makes in it is 0700.
    let existing = vault.dir.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut init = std::process::Command::new(env!("CARGO_BIN_EXE_rdbvault"));
    init.arg("-r").arg(&existing).args(["init", "--kdf-memory-kib", "8192"]).env("RDBVAULT_PASSWORD", PASSWORD);
    run_with_umask_022(init);
    assert_eq!(std::fs::metadata(&existing).expect("stat").permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::metadata(existing.join("data/ab")).expect("stat").permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(existing.join("config")).expect("stat").permissions().mode() & 0o777, 0o600);
}

/// The staged files anywhere in the repository.
fn staged_files(vault: &Vault) -> Vec<PathBuf> {
    let mut all = vault.files("");
    all.retain(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".staged.tmp-")));
    all
}

#[test]
fn a_killed_backup_leaves_staged_files_that_check_names_and_the_next_backup_or_prune_removes() {
    let template = repo_with_a_snapshot();
    let src = template.dir.path().join("big.rdb");
    std::fs::write(&src, random_data(5, 300_000)).expect("write");
    // Abort at the first pack's rename: its staged file stays behind.
    let killed = (1..20)
        .map(|n| {
            let vault = template.copy();
            std::fs::copy(&src, vault.dir.path().join("big.rdb")).expect("copy source");
            let out = vault.run_failpoint(&["backup", "--raw", vault.dir.path().join("big.rdb").to_str().expect("utf-8")], &format!("before-op:{n}"));
            assert!(!out.status.success(), "the failpoint fires");
            vault
        })
        .find(|v| staged_files(v).iter().any(|p| p.parent() == Some(&v.repo.join("data"))))
        .expect("a kill point that leaves a staged pack");
    let left = staged_files(&killed);
    let names: Vec<String> = left.iter().map(|p| p.strip_prefix(&killed.repo).expect("inside").display().to_string()).collect();

    let problems = killed.check_passes(&[]);
    for name in &names {
        let found = problems.iter().find(|p| p["kind"] == "staged-file" && p["file"] == name.as_str());
        let found = found.unwrap_or_else(|| panic!("check names {name}: {problems:?}"));
        assert_eq!(found["severity"], "warning");
        let msg = found["message"].as_str().expect("message");
        assert!(msg.contains("is gone") && msg.contains("`rdbvault prune` or the next backup removes it"), "{msg}");
    }

    let by_prune = killed.copy();
    by_prune.ok(&["prune"]);
    assert_eq!(staged_files(&by_prune), Vec::<PathBuf>::new(), "prune removes them at once");
    std::fs::write(killed.dir.path().join("c.rdb"), random_data(6, 50_000)).expect("write");
    killed.ok(&["backup", "--raw", killed.dir.path().join("c.rdb").to_str().expect("utf-8")]);
    assert_eq!(staged_files(&killed), Vec::<PathBuf>::new(), "the next backup removes them at once");
    assert!(killed.check_passes(&[]).iter().all(|p| p["kind"] != "staged-file"));
}

#[test]
fn staged_files_of_live_writers_are_kept() {
    let vault = repo_with_a_snapshot();
    let repo = Repository::open(Arc::new(LocalBackend::new(&vault.repo)), PASSWORD.as_bytes()).expect("open");
    let here = host_tag(&rdbvault::host::hostname());
    let other = host_tag("otherhost");
    let mut running = std::process::Command::new("sleep").arg("60").spawn().expect("spawn");
    let mut gone = std::process::Command::new("true").spawn().expect("spawn");
    let gone_pid = gone.id();
    gone.wait().expect("wait");
    // Another host's backup holds a shared lock as pid 4242.
    LockInfo { host: "otherhost".into(), pid: 4242, ..LockInfo::new(false) }.save(&repo).expect("lock");

    let staged = |folder: &str, owner: &str, pid: u32| vault.repo.join(folder).join(format!(".staged.tmp-{owner}-{pid}-00000000000a"));
    let kept = [
        staged("data", &here, running.id()),
        staged("data", &other, 4242),
        staged("locks", &other, 4243),
        vault.repo.join("index/.staged.tmp-00000000000b"),
    ];
    let removed = [staged("data", &here, gone_pid), staged("snapshots", &other, 4243)];
    for p in kept.iter().chain(&removed) {
        std::fs::write(p, "partial").expect("write staged");
    }
    let problems = vault.check_passes(&[]);
    let named: Vec<&str> = problems.iter().filter(|p| p["kind"] == "staged-file").filter_map(|p| p["file"].as_str()).collect();
    assert_eq!(named.len(), removed.len(), "check names only stale ones: {named:?}");
    std::fs::write(vault.dir.path().join("c.rdb"), random_data(7, 50_000)).expect("write");
    vault.ok(&["backup", "--raw", vault.dir.path().join("c.rdb").to_str().expect("utf-8")]);
    running.kill().expect("kill");
    running.wait().expect("wait");
    for p in &kept {
        assert!(p.exists(), "{} is kept", p.display());
    }
    for p in &removed {
        assert!(!p.exists(), "{} is removed", p.display());
    }
}
