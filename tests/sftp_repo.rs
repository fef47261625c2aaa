//! Repositories on an SSH server, against OpenSSH's sshd on loopback (a generated
//! host key and user key; `ssh` reads a generated config through a PATH wrapper).

use crate::common;

use common::net::{exercise, lost_connection, transient_failure, Proxy, Sshd};
use common::vault::{Vault, PACK_TARGET};

#[test]
fn every_command_works_on_sftp() {
    let sshd = Sshd::start();
    let dir = sshd.repo_dir("repo");
    let url = format!("sftp://root@127.0.0.1:{}{}", sshd.port, dir.display());
    let v = Vault::init_remote(&url, sshd.client_env(sshd.port), None);
    exercise(&v);
    // Atomic writes leave no temp files behind, and the layout matches a local repository.
    let mut names = Vec::new();
    for kind in ["keys", "index", "snapshots", "locks"] {
        for e in std::fs::read_dir(dir.join(kind)).unwrap() {
            names.push(e.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    assert!(names.iter().all(|n| !n.starts_with('.')), "temp files left: {names:?}");
    assert!(dir.join("config").is_file());
}

#[test]
fn scp_style_url_and_clear_errors() {
    let sshd = Sshd::start();
    let env = sshd.client_env(sshd.port);
    // scp-like form: the port comes from ssh's own config, as with scp.
    let mut env_scp = env.clone();
    let cfg = sshd.dir.path().join(format!("ssh_config-{}", sshd.port));
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}  Port {}\n", sshd.port)).unwrap();
    env_scp.push(("RDBVAULT_REPOSITORY".into(), format!("sftp:root@127.0.0.1:{}", sshd.repo_dir("scp").display())));
    let run = |env: &[(String, String)], args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rdbvault"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RDBVAULT_PASSWORD", "pw")
            .output()
            .unwrap()
    };
    let out = run(&env_scp, &["init", "--kdf-memory-kib", "8192"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(sshd.repo_dir("scp").join("config").is_file());

    // A user the server refuses: one line naming the URL and what to check.
    let url = format!("sftp://nobody@127.0.0.1:{}/tmp/x", sshd.port);
    let out = run(&env, &["-r", &url, "snapshots"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&url), "{err}");
}

#[test]
fn sftp_lost_connection_mid_backup_recovers() {
    let (_sshd, proxy, v) = behind_proxy();
    lost_connection(&v, &proxy);
}

#[test]
fn sftp_transient_failures_are_retried_and_counted() {
    let (_sshd, proxy, v) = behind_proxy();
    transient_failure(&v, &proxy);
}

/// A repository on sshd reached through a proxy the test can cut, with small packs.
fn behind_proxy() -> (Sshd, Proxy, Vault) {
    let sshd = Sshd::start();
    let proxy = Proxy::start(sshd.port);
    let url = format!("sftp://root@127.0.0.1:{}{}", proxy.port, sshd.repo_dir("repo").display());
    let v = Vault::init_remote(&url, sshd.client_env(proxy.port), Some(PACK_TARGET));
    (sshd, proxy, v)
}
