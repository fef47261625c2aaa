//! `restore --target` onto hostile paths: FIFOs and devices are streamed to and stay what
//! they are, links are refused and left alone, files are replaced only with --overwrite,
//! and a failed restore leaves nothing behind.

use crate::common;

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use common::vault::Vault;

/// A small real RDB (the parser accepts it, so the snapshot has no RDB error).
fn fixture() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rdb/plain.rdb")).expect("fixture")
}

/// A repository holding one snapshot of the fixture, saved as `dump.rdb`.
fn vault() -> (Vault, Vec<u8>) {
    let v = Vault::init();
    let data = fixture();
    v.backup_bytes("dump.rdb", &data);
    (v, data)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path_str(path)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// Reads a FIFO to its end on another thread (opening it blocks until the restore opens it).
fn read_fifo(path: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        std::fs::File::open(&path).expect("open fifo").read_to_end(&mut out).expect("read fifo");
        out
    })
}

/// Lets a reader still waiting in `open` go (when the restore never opened the FIFO).
fn release(fifo: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(fifo);
}

/// Flips one byte of every pack, so any restore fails its checks.
fn damage_packs(v: &Vault) {
    for pack in v.files("data") {
        let mut b = std::fs::read(&pack).unwrap();
        let at = b.len() / 2;
        b[at] ^= 0xff;
        std::fs::write(&pack, b).unwrap();
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    n.sort();
    n
}

#[test]
fn fifo_target_is_streamed_to_and_stays_a_fifo() {
    let (v, data) = vault();
    let fifo = v.dir.path().join("pipe");
    mkfifo(&fifo);
    let reader = read_fifo(&fifo);
    let out = v.ok(&["restore", "latest", "--target", path_str(&fifo)]);
    // Checked before the join: a FIFO renamed over would leave the reader waiting forever.
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a FIFO");
    release(&fifo);
    assert_eq!(reader.join().unwrap(), data, "the reader got the snapshot's bytes");
    assert!(out.contains("verified"), "{out}");
}

#[test]
fn fifo_target_with_damaged_data_fails_and_says_the_output_must_not_be_used() {
    let (v, _) = vault();
    damage_packs(&v);
    let fifo = v.dir.path().join("pipe");
    mkfifo(&fifo);
    let reader = read_fifo(&fifo);
    let err = v.fails(&["restore", "latest", "--target", path_str(&fifo)]);
    release(&fifo);
    reader.join().unwrap();
    assert!(err.contains(&format!("the bytes already written to {} are incomplete or wrong and must not be used", fifo.display())), "{err}");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a FIFO");
    assert_eq!(names_in(v.dir.path()).iter().filter(|n| n.contains("rdbvault")).count(), 0, "no temp file");
}

#[test]
fn stdout_with_damaged_data_says_the_output_must_not_be_used() {
    let (v, _) = vault();
    damage_packs(&v);
    let err = v.fails(&["restore", "latest", "--target", "-"]);
    assert!(err.contains("the bytes already written to standard output are incomplete or wrong and must not be used"), "{err}");
}

#[test]
fn dev_null_target_stays_a_character_device() {
    let (v, _) = vault();
    let out = v.ok(&["restore", "latest", "--target", "/dev/null"]);
    assert!(out.contains("restored /dev/null"), "{out}");
    let meta = std::fs::symlink_metadata("/dev/null").unwrap();
    assert!(meta.file_type().is_char_device(), "/dev/null is still a character device");
    assert_eq!(names_in(Path::new("/dev")).iter().filter(|n| n.contains("null.rdbvault")).count(), 0, "no temp file in /dev");
}

#[test]
fn symlink_target_is_refused_and_neither_link_nor_file_changes() {
    let (v, _) = vault();
    let real = v.dir.path().join("real.rdb");
    std::fs::write(&real, b"keep me").unwrap();
    let link = v.dir.path().join("link.rdb");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    for extra in [&[][..], &["--overwrite"][..]] {
        let mut args = vec!["restore", "latest", "--target", path_str(&link)];
        args.extend_from_slice(extra);
        let err = v.fails(&args);
        assert!(err.contains(&format!("{} is a symbolic link", link.display())), "{err}");
        assert_eq!(std::fs::read_link(&link).unwrap(), real, "the link is unchanged");
        assert_eq!(std::fs::read(&real).unwrap(), b"keep me", "what it points to is unchanged");
    }
}

#[test]
fn dangling_symlink_target_is_refused_and_not_followed() {
    let (v, _) = vault();
    let nowhere = v.dir.path().join("nowhere.rdb");
    let link = v.dir.path().join("link.rdb");
    std::os::unix::fs::symlink(&nowhere, &link).unwrap();
    let err = v.fails(&["restore", "latest", "--target", path_str(&link)]);
    assert!(err.contains(&format!("{} is a symbolic link", link.display())), "{err}");
    assert!(!nowhere.exists(), "nothing was created where the link points");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is still a link");
}

#[test]
fn symlink_to_a_directory_is_refused_but_its_path_with_a_slash_works() {
    let (v, data) = vault();
    let real = v.dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = v.dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = v.fails(&["restore", "latest", "--target", path_str(&link)]);
    assert!(err.contains(&format!("or {}/ to write into the directory it points to", link.display())), "{err}");
    assert!(names_in(&real).is_empty(), "nothing written through the link");
    let with_slash = format!("{}/", link.display());
    v.ok(&["restore", "latest", "--target", &with_slash]);
    assert_eq!(std::fs::read(real.join("dump.rdb")).unwrap(), data);
}

#[test]
fn existing_file_is_refused_without_overwrite_and_replaced_with_it_keeping_its_mode() {
    let (v, data) = vault();
    let target = v.dir.path().join("existing.rdb");
    std::fs::write(&target, b"old bytes").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = v.fails(&["restore", "latest", "--target", path_str(&target)]);
    assert!(err.contains(&format!("{} exists; pass --overwrite to replace it", target.display())), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"old bytes", "untouched");

    v.ok(&["restore", "latest", "--target", path_str(&target), "--overwrite"]);
    assert_eq!(std::fs::read(&target).unwrap(), data, "replaced");
    assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o640, "kept its mode");
}

#[test]
fn existing_file_inside_a_directory_target_needs_overwrite_too() {
    let (v, data) = vault();
    let dir = v.dir.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("dump.rdb"), b"old bytes").unwrap();
    let err = v.fails(&["restore", "latest", "--target", path_str(&dir)]);
    assert!(err.contains(&format!("{} exists; pass --overwrite to replace it", dir.join("dump.rdb").display())), "{err}");
    assert_eq!(std::fs::read(dir.join("dump.rdb")).unwrap(), b"old bytes");
    v.ok(&["restore", "latest", "--target", path_str(&dir), "--overwrite"]);
    assert_eq!(std::fs::read(dir.join("dump.rdb")).unwrap(), data);
    assert_eq!(names_in(&dir), ["dump.rdb"], "no temp file left");
}

#[test]
fn new_file_is_created_0600() {
    let (v, data) = vault();
    let target = v.dir.path().join("new.rdb");
    // Whatever the umask lets through (the test runs with the usual 022).
    assert_eq!(v.restore("latest", &target), data);
    assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn missing_directory_with_a_trailing_slash_is_created_0700() {
    let (v, data) = vault();
    let dir = v.dir.path().join("a/new/dir");
    let out = v.ok(&["restore", "latest", "--target", &format!("{}/", dir.display())]);
    assert!(out.contains("dump.rdb"), "{out}");
    assert_eq!(std::fs::read(dir.join("dump.rdb")).unwrap(), data);
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(dir.join("dump.rdb")).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn failed_restore_into_a_directory_leaves_no_temp_file() {
    let (v, _) = vault();
    damage_packs(&v);
    let dir = v.dir.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let err = v.fails(&["restore", "latest", "--target", path_str(&dir)]);
    assert!(err.contains("damaged"), "{err}");
    assert!(names_in(&dir).is_empty(), "left behind: {:?}", names_in(&dir));
}

/// Makes every file under `dir` (and `dir`) belong to `uid`, so that user can run the vault.
fn chown_tree(dir: &Path, uid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(uid)).unwrap();
    if std::fs::symlink_metadata(dir).unwrap().is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

#[test]
fn read_only_directory_gives_an_error_naming_it_and_leaves_nothing() {
    let (v, _) = vault();
    let ro = v.dir.path().join("readonly");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores permission bits: as root, run the restore as `nobody` owning the vault.
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    if as_root {
        chown_tree(v.dir.path(), 65534);
    }
    let run = |target: PathBuf| {
        let mut c = v.cmd(&["restore", "latest", "--target", path_str(&target)]);
        if as_root {
            c.uid(65534).gid(65534);
        }
        let o = c.output().unwrap();
        assert!(!o.status.success(), "restore into {} should fail", target.display());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = run(ro.join("dump.rdb"));
    assert!(err.contains(&format!("create a file in directory {}", ro.display())) && err.contains("Permission denied"), "{err}");
    let err = run(ro.join("sub/"));
    assert!(err.contains(&format!("create directory {}/sub/", ro.display())) && err.contains("Permission denied"), "{err}");
    assert!(names_in(&ro).is_empty(), "left behind: {:?}", names_in(&ro));
}
