//! The handover protocol on the Unix socket between the old and the new process.
//!
//! First, from old to new: `SWUP`, a big-endian `u32` length and that many bytes of
//! JSON ([`Handoff`]); the listening sockets ride on the first bytes as one
//! `SCM_RIGHTS` message, in the order of [`Handoff::sockets`]. Then both sides
//! exchange one JSON [`Message`] per line.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::UpgradeError;
use crate::persist::SavedState;
use crate::server::HealthSeed;

const MAGIC: &[u8; 4] = b"SWUP";
/// The protocol version; a new process refuses a handover it does not understand.
pub const VERSION: u32 = 1;
/// Most sockets one handover carries (the kernel allows 253 per message).
pub const MAX_SOCKETS: usize = 200;
/// Largest handover document accepted.
const MAX_HANDOFF_BYTES: usize = 64 << 20;

/// What the old process hands over, besides the descriptors.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handoff {
    pub version: u32,
    /// The old process.
    pub pid: u32,
    /// The old process's upgrade generation.
    pub generation: u32,
    /// One entry per descriptor, in order.
    pub sockets: Vec<SocketRecord>,
    pub health: Vec<HealthSeed>,
    pub state: SavedState,
}

/// What a handed-over descriptor is.
#[derive(Debug, Serialize, Deserialize)]
pub struct SocketRecord {
    /// The traffic listener's name (`None` for the admin listener).
    pub name: Option<String>,
    pub admin: bool,
    /// The address the old config asked for.
    pub configured: SocketAddr,
}

/// The messages after the handoff.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// New → old: serving traffic on the handed-over sockets.
    Ready { pid: u32 },
    /// New → old: could not start.
    Failed { error: String },
    /// Old → new: stopped accepting; here are the final runtime changes.
    Go { state: SavedState },
    /// New → old: admin listener up, ready to be the main process.
    Serving,
    /// Old → new: systemd knows the new process as the main one.
    Main,
}

/// Sends the handoff with its descriptors. Blocking.
pub fn send_handoff(
    stream: &UnixStream,
    handoff: &Handoff,
    fds: &[BorrowedFd<'_>],
) -> Result<(), UpgradeError> {
    let body = serde_json::to_vec(handoff).map_err(|e| UpgradeError::Protocol(e.to_string()))?;
    let length = u32::try_from(body.len())
        .map_err(|_| UpgradeError::Protocol("handoff too large".into()))?;
    let mut prefix = [0u8; 8];
    prefix[..4].copy_from_slice(MAGIC);
    prefix[4..].copy_from_slice(&length.to_be_bytes());
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(UpgradeError::Protocol(
            "too many sockets for one message".into(),
        ));
    }
    let sent = rustix::net::sendmsg(
        stream,
        &[IoSlice::new(&prefix)],
        &mut control,
        SendFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    let mut writer = stream;
    writer.write_all(&prefix[sent..])?;
    writer.write_all(&body)?;
    writer.flush()?;
    Ok(())
}

/// Receives the handoff and its descriptors. Blocking.
pub fn receive_handoff(stream: &UnixStream) -> Result<(Handoff, Vec<OwnedFd>), UpgradeError> {
    let mut prefix = [0u8; 8];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut prefix)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if received.flags.contains(ReturnFlags::CTRUNC) {
        return Err(UpgradeError::Protocol(format!(
            "more than {MAX_SOCKETS} sockets were handed over"
        )));
    }
    if received.bytes == 0 {
        return Err(UpgradeError::Protocol(
            "the old process closed the socket".into(),
        ));
    }
    let mut reader = stream;
    reader.read_exact(&mut prefix[received.bytes..])?;
    if &prefix[..4] != MAGIC {
        return Err(UpgradeError::Protocol("not a Switchyard handover".into()));
    }
    let length = u32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]) as usize;
    if length > MAX_HANDOFF_BYTES {
        return Err(UpgradeError::Protocol(format!(
            "handoff of {length} bytes is too large"
        )));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let handoff: Handoff =
        serde_json::from_slice(&body).map_err(|e| UpgradeError::Protocol(e.to_string()))?;
    if handoff.version != VERSION {
        return Err(UpgradeError::Protocol(format!(
            "handover version {} (this binary speaks {VERSION})",
            handoff.version
        )));
    }
    if handoff.sockets.len() != fds.len() {
        return Err(UpgradeError::Protocol(format!(
            "{} sockets described, {} received",
            handoff.sockets.len(),
            fds.len()
        )));
    }
    Ok((handoff, fds))
}

/// The message half of the link, after the handoff.
pub struct Link {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Link {
    /// Wraps a connected stream (made non-blocking here).
    pub fn new(stream: UnixStream) -> std::io::Result<Link> {
        stream.set_nonblocking(true)?;
        let (reader, writer) = tokio::net::UnixStream::from_std(stream)?.into_split();
        Ok(Link {
            lines: BufReader::new(reader).lines(),
            writer,
        })
    }

    /// Sends one message.
    pub async fn send(&mut self, message: &Message) -> Result<(), UpgradeError> {
        let mut line =
            serde_json::to_vec(message).map_err(|e| UpgradeError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Receives the next message; an error when the other side closed.
    pub async fn receive(&mut self) -> Result<Message, UpgradeError> {
        match self.lines.next_line().await? {
            Some(line) => {
                serde_json::from_str(&line).map_err(|e| UpgradeError::Protocol(e.to_string()))
            }
            None => Err(UpgradeError::Protocol(
                "the other process closed the link".into(),
            )),
        }
    }
}

/// Borrows every descriptor, in order.
pub fn borrow_all<T: AsFd>(items: &[T]) -> Vec<BorrowedFd<'_>> {
    items.iter().map(AsFd::as_fd).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_and_state_cross_a_real_unix_socket() {
        let (old, new) = UnixStream::pair().unwrap();
        let listeners = [
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        ];
        let addresses: Vec<SocketAddr> =
            listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let handoff = Handoff {
            version: VERSION,
            pid: 7,
            generation: 2,
            sockets: vec![
                SocketRecord {
                    name: Some("web".into()),
                    admin: false,
                    configured: addresses[0],
                },
                SocketRecord {
                    name: None,
                    admin: true,
                    configured: addresses[1],
                },
            ],
            health: vec![],
            state: SavedState::default(),
        };
        let sender =
            std::thread::spawn(move || send_handoff(&old, &handoff, &borrow_all(&listeners)));
        let (received, fds) = receive_handoff(&new).unwrap();
        sender.join().unwrap().unwrap();
        assert_eq!(received.pid, 7);
        assert_eq!(received.generation, 2);
        let got: Vec<SocketAddr> = fds
            .into_iter()
            .map(|fd| std::net::TcpListener::from(fd).local_addr().unwrap())
            .collect();
        assert_eq!(got, addresses, "the same listening sockets, in order");
    }
}
