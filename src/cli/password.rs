//! Where the repository password comes from: env, file, command or a prompt.

use std::io::IsTerminal;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use super::Global;

/// Finds the password; `confirm` asks twice when prompting (for new passwords).
pub fn get(g: &Global, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    let sources = Sources { file: g.password_file.as_deref(), command: g.password_command.as_deref(), flag: "--password", env: "RDBVAULT_PASSWORD" };
    from(&sources, confirm, "enter repository password: ")
}

/// Whether the password is at hand without asking anyone (a file or the environment), so a
/// missing repository need not be ruled out before it is read.
pub fn at_hand(g: &Global) -> bool {
    g.password_file.is_some() || (g.password_command.is_none() && std::env::var_os("RDBVAULT_PASSWORD").is_some())
}

/// The password of a second repository (`copy --to-repo`): its own flags, then
/// `RDBVAULT_TO_PASSWORD`, then a prompt.
pub fn destination(file: Option<&std::path::Path>, command: Option<&str>) -> anyhow::Result<Zeroizing<String>> {
    let sources = Sources { file, command, flag: "--to-password", env: "RDBVAULT_TO_PASSWORD" };
    from(&sources, false, "enter the destination repository's password: ")
}

/// Where one repository's password may come from, and the names the messages use.
struct Sources<'a> {
    file: Option<&'a std::path::Path>,
    command: Option<&'a str>,
    /// `--password` or `--to-password` (`-file` / `-command` appended).
    flag: &'static str,
    env: &'static str,
}

fn from(s: &Sources<'_>, confirm: bool, question: &str) -> anyhow::Result<Zeroizing<String>> {
    let flag = s.flag;
    if let Some(path) = s.file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("read password file {}", path.display()))?,
        );
        return first_line(&text, &format!("password file {}", path.display()));
    }
    if let Some(cmd) = s.command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("run {flag}-command"))?;
        if !out.status.success() {
            bail!("{flag}-command failed ({})", out.status);
        }
        let text = Zeroizing::new(String::from_utf8(out.stdout).with_context(|| format!("{flag}-command printed non-UTF-8"))?);
        return first_line(&text, &format!("{flag}-command output"));
    }
    if let Ok(pw) = std::env::var(s.env) {
        let pw = Zeroizing::new(pw);
        if pw.is_empty() {
            bail!("{} is set but empty", s.env);
        }
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password given: set {}, or use {flag}-file or {flag}-command", s.env);
    }
    prompt(confirm, question)
}

fn prompt(confirm: bool, question: &str) -> anyhow::Result<Zeroizing<String>> {
    let pw = Zeroizing::new(rpassword::prompt_password(question).context("read password")?);
    if pw.is_empty() {
        bail!("an empty password is not allowed");
    }
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("enter it again: ").context("read password")?);
        if *again != *pw {
            bail!("the two passwords differ");
        }
    }
    Ok(pw)
}

fn first_line(text: &str, what: &str) -> anyhow::Result<Zeroizing<String>> {
    let line = Zeroizing::new(text.lines().next().unwrap_or("").to_string());
    if line.is_empty() {
        bail!("{what} is empty");
    }
    Ok(line)
}

/// A new password (for `key add` / `key passwd`): from `file`, else
/// `RDBVAULT_NEW_PASSWORD`, else a prompt asked twice.
pub fn new_password(file: Option<&std::path::Path>) -> anyhow::Result<Zeroizing<String>> {
    if let Some(path) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("read new password file {}", path.display()))?,
        );
        return first_line(&text, &format!("new password file {}", path.display()));
    }
    if let Ok(pw) = std::env::var("RDBVAULT_NEW_PASSWORD") {
        let pw = Zeroizing::new(pw);
        if pw.is_empty() {
            bail!("RDBVAULT_NEW_PASSWORD is set but empty");
        }
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no new password given: use --new-password-file or set RDBVAULT_NEW_PASSWORD");
    }
    eprintln!("new password:");
    prompt(true, "enter repository password: ")
}
