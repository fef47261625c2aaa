//! Where the repository password comes from: env, file, command or a prompt.

use std::io::IsTerminal;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use super::Global;

/// Finds the password; `confirm` asks twice when prompting (for new passwords).
pub fn get(g: &Global, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Some(path) = &g.password_file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("read password file {}", path.display()))?,
        );
        return first_line(&text, &format!("password file {}", path.display()));
    }
    if let Some(cmd) = &g.password_command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("run --password-command")?;
        if !out.status.success() {
            bail!("--password-command failed ({})", out.status);
        }
        let text = Zeroizing::new(String::from_utf8(out.stdout).context("--password-command printed non-UTF-8")?);
        return first_line(&text, "--password-command output");
    }
    if let Ok(pw) = std::env::var("RDBVAULT_PASSWORD") {
        let pw = Zeroizing::new(pw);
        if pw.is_empty() {
            bail!("RDBVAULT_PASSWORD is set but empty");
        }
        return Ok(pw);
    }
    prompt(confirm)
}

fn prompt(confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    if !std::io::stdin().is_terminal() {
        bail!("no password given: set RDBVAULT_PASSWORD, or use --password-file or --password-command");
    }
    let pw = Zeroizing::new(rpassword::prompt_password("enter repository password: ").context("read password")?);
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
    prompt(true)
}
