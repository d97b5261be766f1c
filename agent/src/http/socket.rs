//! The admin routes' Unix socket: created with mode 0600 (bound inside a fresh 0700 directory,
//! made 0600, then renamed into place, so no other user can connect even for an instant),
//! refusing to replace anything but a stale socket, accepting only peers of the socket owner's
//! uid or root (checked again with SO_PEERCRED), and removed when the server stops.

use opsfleet_report::ErrorChain;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::serve::Listener;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{admin_router, HttpError};
use crate::runner::control::ControlHandle;

/// A bound admin socket.
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Uid owning the socket file: the only non-root peer accepted.
    owner: u32,
}

impl AdminSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates the socket at `path` with mode 0600.
pub fn bind_admin_socket(path: &Path) -> Result<AdminSocket, HttpError> {
    let err = |reason: &str, source: Option<std::io::Error>| HttpError::Socket {
        path: path.to_owned(),
        reason: reason.to_owned(),
        source,
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(err("it has no parent directory", None));
    };
    std::fs::create_dir_all(dir).map_err(|e| err("cannot create its directory", Some(e)))?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A stale socket of an earlier run (a live agent holds the sled lock, so there
            // is none).
            std::fs::remove_file(path)
                .map_err(|e| err("cannot remove the stale socket", Some(e)))?;
        }
        Ok(_) => return Err(err("something that is not a socket is in the way", None)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("cannot look at the path", Some(e))),
    }
    let staging = dir.join(format!(
        ".{}.{}.d",
        name.to_string_lossy(),
        std::process::id()
    ));
    if std::fs::symlink_metadata(&staging).is_ok() {
        let _ = std::fs::remove_file(staging.join("s"));
        std::fs::remove_dir(&staging)
            .map_err(|e| err("cannot remove a stale staging directory", Some(e)))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| err("cannot create the staging directory", Some(e)))?;
    let tmp = staging.join("s");
    let bound = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&tmp)
            .map_err(|e| err("cannot bind", Some(e)))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err("cannot set mode 0600", Some(e)))?;
        std::fs::rename(&tmp, path).map_err(|e| err("cannot move it into place", Some(e)))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&staging);
    let listener = bound?;
    let owner = std::fs::symlink_metadata(path)
        .map_err(|e| err("cannot stat it", Some(e)))?
        .uid();
    listener
        .set_nonblocking(true)
        .map_err(|e| err("cannot make it non-blocking", Some(e)))?;
    let listener =
        UnixListener::from_std(listener).map_err(|e| err("cannot register it", Some(e)))?;
    Ok(AdminSocket {
        listener,
        path: path.to_owned(),
        owner,
    })
}

impl Listener for AdminSocket {
    type Io = UnixStream;
    type Addr = PathBuf;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    debug!(error = %ErrorChain(&e), "admin socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(c) if c.uid() == self.owner || c.uid() == 0 => {
                    return (stream, self.path.clone())
                }
                Ok(c) => warn!(uid = c.uid(), "admin socket peer of another user refused"),
                Err(e) => {
                    warn!(error = %ErrorChain(&e), "admin socket peer without credentials refused")
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.path.clone())
    }
}

/// Serves the admin routes on `socket` until `cancel`, then removes the socket file.
pub async fn serve_admin_socket(
    socket: AdminSocket,
    control: ControlHandle,
    cancel: CancellationToken,
) -> Result<(), HttpError> {
    let path = socket.path.clone();
    info!(path = %path.display(), "admin socket listening");
    let served = axum::serve(socket, admin_router(control, None))
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await;
    if let Err(e) = std::fs::remove_file(&path) {
        debug!(path = %path.display(), error = %ErrorChain(&e), "admin socket not removed");
    }
    served.map_err(|source| HttpError::SocketServe { path, source })
}
