//! The config file through the binary: `config check|show|hash-password`, `--profile`,
//! and `--log-format json`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::handmade::Rdb;
use common::vault::{text, Vault, PASSWORD};

/// `rdbvault` with no repository, password or config from the environment; HOME and
/// XDG_CONFIG_HOME point into `dir`.
fn bare(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rdbvault"));
    c.args(args);
    for var in ["RDBVAULT_REPOSITORY", "RDBVAULT_PASSWORD", "RDBVAULT_PASSWORD_FILE", "RDBVAULT_PASSWORD_COMMAND", "RDBVAULT_CONFIG", "RDBVAULT_PROFILE", "REDISCLI_AUTH"] {
        c.env_remove(var);
    }
    c.env("HOME", dir).env("XDG_CONFIG_HOME", dir.join("xdg")).env("XDG_CACHE_HOME", dir.join("cache"));
    c.output().expect("run rdbvault")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `toml` as the config file in `dir` and runs `config check` on it; returns
/// (success, stderr) and the path.
fn check(dir: &Path, toml: &str) -> (bool, String, PathBuf) {
    let path = dir.join("rdbvault.toml");
    std::fs::write(&path, toml).expect("write config");
    let o = bare(dir, &["--config", path.to_str().expect("utf-8"), "config", "check"]);
    (o.status.success(), stderr(&o), path)
}

const GOOD: &str = r#"
[repositories.main]
repository = "/srv/backups/repo"
password_file = "/etc/rdbvault/password"

[sources.cache]
redis = "redis://default:s3cret@127.0.0.1:6379/0"
connect_timeout = 5

[profiles.prod]
repository = "main"
source = "cache"
keep_daily = 7
keep_within = "2d"
tags = ["prod"]

[schedules.nightly]
profile = "prod"
job = "backup"
cron = "0 3 * * *"

[schedules.verify]
profile = "prod"
job = "check"
every = "1d"
check_read_data_subset = "1/10"

[serve]
listen = "127.0.0.1:8077"
webhook = "https://hooks.example.com/notify?token=abc"
"#;

#[test]
fn a_valid_file_passes_and_show_redacts_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, err, path) = check(dir.path(), GOOD);
    assert!(ok, "{err}");
    let o = bare(dir.path(), &["--config", path.to_str().expect("utf-8"), "config", "check"]);
    assert_eq!(text(&o).trim(), format!("{} is valid: 1 repository, 1 source, 1 profile, 2 schedules", path.display()));

    let insecure = GOOD.replace("password_file = \"/etc/rdbvault/password\"", "password = \"hunter2\"\ninsecure_password = true");
    std::fs::write(&path, &insecure).expect("write");
    let o = bare(dir.path(), &["--config", path.to_str().expect("utf-8"), "config", "show"]);
    let shown = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("password = \"<redacted>\""), "{shown}");
    assert!(shown.contains("redis://default:<redacted>@127.0.0.1:6379/0"), "{shown}");
}

#[test]
fn the_default_file_is_found_through_rdbvault_config_and_xdg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = bare(dir.path(), &["config", "check"]);
    assert!(!o.status.success());
    let xdg = dir.path().join("xdg/rdbvault/config.toml");
    assert_eq!(stderr(&o).trim(), format!("error: {}: cannot read it: No such file or directory (os error 2)", xdg.display()));
    std::fs::create_dir_all(xdg.parent().expect("parent")).expect("mkdir");
    std::fs::write(&xdg, GOOD).expect("write");
    assert!(bare(dir.path(), &["config", "check"]).status.success());
}

#[test]
fn errors_name_file_line_column_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &str, &str); 8] = [
        // (replace this, with this, expected message after "FILE:")
        ("keep_daily = 7", "keep_daily = \"seven\"", "13:14: profiles.prod.keep_daily: invalid type: string \"seven\", expected u32"),
        ("password_file = \"/etc", "passwrd_file = \"/etc", "4:1: repositories.main.passwrd_file: unknown field `passwrd_file`"),
        ("repository = \"main\"", "repository = \"mian\"", "11:14: profiles.prod.repository: no [repositories.mian] in this file"),
        ("profile = \"prod\"\njob = \"backup\"", "profile = \"dev\"\njob = \"backup\"", "18:11: schedules.nightly.profile: no [profiles.dev] in this file"),
        ("source = \"cache\"", "source = \"db\"", "12:10: profiles.prod.source: no [sources.db] in this file"),
        ("cron = \"0 3 * * *\"", "cron = \"0 27 * * *\"", "20:8: schedules.nightly.cron: cron \"0 27 * * *\": hour field \"27\": 27 is outside 0-23"),
        ("every = \"1d\"", "every = \"often\"", "25:9: schedules.verify.every: \"often\" is not an interval like 30m, 6h or 1d"),
        ("password_file = \"/etc/rdbvault/password\"", "password = \"hunter2\"", "4:12: repositories.main.password: a password in the config file is readable by anyone who can read the file"),
    ];
    for (from, to, want) in cases {
        assert!(GOOD.contains(from), "{from}");
        let (ok, err, path) = check(dir.path(), &GOOD.replacen(from, to, 1));
        assert!(!ok, "{to} was accepted");
        let want = format!("error: {}:{want}", path.display());
        assert!(err.starts_with(&want), "for {to:?}:\n got: {err}\nwant: {want}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    // A profile's hooks take a time limit.
    let hooks = |t: &str| GOOD.replacen("tags = [\"prod\"]", &format!("tags = [\"prod\"]\nhooks = {{ before = \"true\", timeout = \"{t}\" }}"), 1);
    let (ok, err, _) = check(dir.path(), &hooks("2m"));
    assert!(ok, "{err}");
    let (ok, err, path) = check(dir.path(), &hooks("10x"));
    assert!(!ok);
    let want = format!("error: {}:16:38: profiles.prod.hooks: timeout \"10x\" is not a time limit: write a whole number and s, m or h (30s, 10m, 1h)", path.display());
    assert!(err.starts_with(&want), "\n got: {err}\nwant: {want}");
}

#[test]
fn hash_password_prints_an_argon2id_hash_the_config_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Command::new(env!("CARGO_BIN_EXE_rdbvault"));
    let mut child = c
        .args(["config", "hash-password"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), b"open sesame\n").expect("write");
    let o = child.wait_with_output().expect("wait");
    let hash = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(rdbvault::ops::config::verify_password(&hash, "open sesame"));
    assert!(!rdbvault::ops::config::verify_password(&hash, "open sesame!"));
    let (ok, err, _) = check(dir.path(), &format!("{GOOD}token_hash = \"{hash}\"\n"));
    assert!(ok, "{err}");
    let (ok, err, path) = check(dir.path(), &format!("{GOOD}token_hash = \"open sesame\"\n"));
    assert!(!ok);
    assert!(err.starts_with(&format!("error: {}:31:14: serve.token_hash: not an Argon2id hash", path.display())), "{err}");
}

#[test]
fn a_profile_gives_a_command_its_repository_password_source_and_flags() {
    let v = Vault::init();
    let dir = v.dir.path();
    std::fs::write(dir.join("pw"), format!("{PASSWORD}\n")).expect("pw");
    let rdb = dir.join("dump.rdb");
    std::fs::write(&rdb, Rdb::new("7.0.0").string(0, b"k", b"v", None).bytes()).expect("rdb");
    let config = format!(
        "[repositories.main]\nrepository = {:?}\npassword_file = {:?}\n\n[sources.file]\nrdb = {:?}\n\n[profiles.prod]\nrepository = \"main\"\nsource = \"file\"\ntags = [\"prod\", \"nightly\"]\nkeep_last = 1\n",
        v.repo.display().to_string(),
        dir.join("pw").display().to_string(),
        rdb.display().to_string()
    );
    let path = dir.join("rdbvault.toml");
    std::fs::write(&path, config).expect("config");
    let cfg = path.to_str().expect("utf-8");
    for _ in 0..2 {
        let o = bare(dir, &["--config", cfg, "--profile", "prod", "--json", "backup"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let snaps = v.json(&["snapshots"]);
    assert_eq!(snaps.as_array().map(Vec::len), Some(2), "{snaps:#}");
    assert_eq!(snaps[0]["tags"], serde_json::json!(["prod", "nightly"]));
    // Flags win over the profile.
    let o = bare(dir, &["--config", cfg, "--profile", "prod", "--json", "backup", "--tag", "adhoc"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(v.json(&["snapshots"])[2]["tags"], serde_json::json!(["adhoc"]));
    // The profile's retention: keep_last = 1.
    let o = bare(dir, &["--config", cfg, "--profile", "prod", "forget"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(v.snapshots().len(), 1);
    // RDBVAULT_PROFILE works like --profile; an unknown profile is named.
    let o = bare(dir, &["--config", cfg, "--profile", "dev", "snapshots"]);
    assert_eq!(stderr(&o).trim(), format!("error: no profile \"dev\" in {cfg} (its profiles: prod)"));
}

#[test]
fn log_format_json_writes_one_object_per_line_on_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nothing-here");
    let o = bare(dir.path(), &["--log-format", "json", "-r", missing.to_str().expect("utf-8"), "snapshots"]);
    assert_eq!(o.status.code(), Some(10));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stderr).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["level"], "error");
    assert_eq!(lines[0]["message"], format!("{} is not an rdbvault repository (no config file)", missing.display()));
    assert!(lines[0]["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{lines:?}");
    // Text stays the default.
    let o = bare(dir.path(), &["-r", missing.to_str().expect("utf-8"), "snapshots"]);
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
}
