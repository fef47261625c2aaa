//! `rdbvault key add|list|remove|passwd`.

use std::path::PathBuf;

use rdbvault::crypto::KdfParams;
use rdbvault::store::Repository;

use super::{open_repo, output, password, Global};

#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// Add a password (a new key file).
    Add(NewKeyArgs),
    /// List the passwords (key files); `*` marks the one in use.
    List,
    /// Remove a password by its key file's id (or unique prefix).
    Remove {
        /// Key file id or prefix.
        id: String,
    },
    /// Change the password in use (adds a key file for the new one, then removes the current one).
    Passwd(NewKeyArgs),
}

#[derive(clap::Args, Debug)]
pub struct NewKeyArgs {
    /// Read the new password from this file (else RDBVAULT_NEW_PASSWORD, else a prompt).
    #[arg(long)]
    pub new_password_file: Option<PathBuf>,
    /// Argon2id memory cost in KiB for the new password (default: as the current key).
    #[arg(long)]
    pub kdf_memory_kib: Option<u32>,
}

fn new_key(repo: &Repository, a: &NewKeyArgs) -> anyhow::Result<(zeroize::Zeroizing<String>, KdfParams)> {
    let pw = password::new_password(a.new_password_file.as_deref())?;
    let mut kdf = rdbvault::store::keys::current_params(repo)?;
    // A key file of an older rdbvault has one lane: a new one gets today's lanes.
    kdf.p_cost = kdf.p_cost.max(KdfParams::default().p_cost);
    if let Some(m) = a.kdf_memory_kib {
        kdf = KdfParams { m_cost: m, ..kdf };
    }
    Ok((pw, kdf))
}

pub fn run(g: &Global, c: KeyCommand) -> anyhow::Result<()> {
    let repo = open_repo(g)?;
    match c {
        KeyCommand::Add(a) => {
            let (pw, kdf) = new_key(&repo, &a)?;
            let name = repo.add_key(pw.as_bytes(), kdf)?;
            done(g, "added", "added key file", &name)
        }
        KeyCommand::Passwd(a) => {
            let (pw, kdf) = new_key(&repo, &a)?;
            let name = rdbvault::store::keys::passwd(&repo, pw.as_bytes(), kdf)?;
            done(g, "changed password", "changed password; new key file", &name)
        }
        KeyCommand::Remove { id } => {
            let name = rdbvault::store::keys::remove(&repo, &id)?;
            done(g, "removed", "removed key file", &name)
        }
        KeyCommand::List => {
            let keys = rdbvault::store::keys::list(&repo)?;
            if g.json {
                return output::print_json(&keys);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    let mark = if k.current { "*" } else { " " };
                    let id = format!("{mark}{}", k.id.get(..8).unwrap_or(&k.id));
                    vec![id, output::time(&k.created), k.host.clone(), k.username.clone()]
                })
                .collect();
            let left = output::Align::Left;
            print!("{}", output::table(&[(" ID", left), ("Created", left), ("Host", left), ("User", left)], &rows));
            println!("{}", output::plural(keys.len(), "key file"));
            Ok(())
        }
    }
}

/// `result` for JSON, `text` (naming the key file) for people.
fn done(g: &Global, result: &str, text: &str, name: &str) -> anyhow::Result<()> {
    if g.json {
        return output::print_json(&serde_json::json!({ "result": result, "key": name }));
    }
    if !g.quiet {
        println!("{text} {}", &name[..8.min(name.len())]);
    }
    Ok(())
}
