//! Socket activation: listening sockets systemd opened for us (`LISTEN_FDS` from
//! fd 3 on, `LISTEN_PID` naming this process, `LISTEN_FDNAMES` their
//! `FileDescriptorName=`s), matched to listeners by name or by address (see
//! [`crate::server::InheritedSockets`]).

use crate::server::InheritedSocket;

/// Why the sockets systemd passed cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("LISTEN_FDS socket {index} (`{name}`) is not a listening TCP socket: {source}")]
    NotTcp {
        index: usize,
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Takes ownership of the sockets passed by socket activation, if they are meant
/// for this process. Must run before any other thread starts: the crate that owns
/// the descriptors clears `LISTEN_FDS` and `LISTEN_PID` from the environment.
pub fn take_listen_fds() -> Result<Vec<InheritedSocket>, ActivationError> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us || std::env::var_os("LISTEN_FDS").is_none() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut fds = listenfd::ListenFd::from_env();
    let mut sockets = Vec::new();
    for index in 0..fds.len() {
        let name = names.get(index).filter(|n| !n.is_empty()).cloned();
        let not_tcp = |source| ActivationError::NotTcp {
            index,
            name: name.clone().unwrap_or_else(|| "unnamed".into()),
            source,
        };
        let listener = match fds.take_tcp_listener(index) {
            Ok(Some(listener)) => listener,
            Ok(None) => continue,
            Err(e) => return Err(not_tcp(e)),
        };
        if !socket2::SockRef::from(&listener)
            .is_listener()
            .map_err(not_tcp)?
        {
            return Err(not_tcp(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the socket is not listening (use ListenStream=, not Accept=yes)",
            )));
        }
        sockets.push(InheritedSocket::activated(name, listener));
    }
    Ok(sockets)
}
