//! The SFTP builder: OpenDAL's service runs the system `ssh`, so keys, agent,
//! `~/.ssh/config` and `known_hosts` work exactly as for `ssh` itself.

use opendal::services::Sftp;

use super::object::{Atomicity, ObjectBackend};
use crate::error::Result;

/// What to check when the server refuses us.
const AUTH_HINT: &str = "check that `ssh` to this host works without a password prompt (key or agent, known_hosts) and that the user may write the directory";

/// A backend for a directory on an SSH server; `url` is the location for messages.
pub fn open(user: Option<&str>, host: &str, port: Option<u16>, path: &str, url: String) -> Result<ObjectBackend> {
    let endpoint = match port {
        Some(p) => format!("ssh://{host}:{p}"),
        None => host.to_string(),
    };
    let (user, path) = (user.map(str::to_string), path.to_string());
    let make = move || {
        let builder = Sftp::default().endpoint(&endpoint).root(&path).known_hosts_strategy("strict");
        match &user {
            Some(u) => builder.user(u),
            None => builder,
        }
    };
    ObjectBackend::new(make, url, AUTH_HINT, Atomicity::TempRename)
}
