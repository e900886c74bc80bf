//! Who may talk to the daemon: root, or a member of its group, by the peer credentials the
//! kernel gives for the socket's other end (SO_PEERCRED), never by anything the client says.
use nix::unistd::{Gid, Group, Uid, User, getgrouplist};
use tokio::net::UnixStream;

/// The credentials of a connected client, as the kernel recorded them at connect().
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// The client's uid.
    pub uid: u32,
    /// The client's gid.
    pub gid: u32,
    /// The client's pid, for logs (it may be gone by the time the request is read).
    pub pid: Option<i32>,
}

impl Peer {
    /// The credentials of the process at the other end of `stream`.
    pub fn of(stream: &UnixStream) -> Peer {
        match stream.peer_cred() {
            Ok(cred) => Peer {
                uid: cred.uid(),
                gid: cred.gid(),
                pid: cred.pid(),
            },
            // Unknown credentials are nobody's: refused below unless root is nobody.
            Err(_) => Peer {
                uid: u32::MAX,
                gid: u32::MAX,
                pid: None,
            },
        }
    }
}

/// The access rule: root, or members of one group.
#[derive(Clone, Debug)]
pub struct AccessPolicy {
    /// The group allowed besides root, with its name for messages.
    pub group: Option<(Gid, String)>,
}

impl AccessPolicy {
    /// The policy for `--group NAME` (or root only without one).
    pub fn new(group: Option<&str>) -> anyhow::Result<AccessPolicy> {
        let group = match group {
            None => None,
            Some(name) => {
                let g = Group::from_name(name)?.ok_or_else(|| crate::Error::Invalid {
                    field: "--group",
                    value: name.to_owned(),
                    expected: "an existing group (see /etc/group), e.g. one made with \
                               `groupadd --system chaos`"
                        .into(),
                })?;
                Some((g.gid, g.name))
            }
        };
        Ok(AccessPolicy { group })
    }

    /// The socket's group: the allowed group, or root's.
    pub fn socket_gid(&self) -> Gid {
        self.group
            .as_ref()
            .map_or(Gid::from_raw(0), |(gid, _)| *gid)
    }

    /// Ok if `peer` may use the daemon, else the message a refused client gets.
    pub fn check(&self, peer: &Peer) -> Result<(), String> {
        if peer.uid == 0 {
            return Ok(());
        }
        let Some((gid, name)) = &self.group else {
            return Err(format!(
                "uid {} may not use this chaos daemon: it only accepts root (start it with \
                 --group GROUP to let a group's members in)",
                peer.uid
            ));
        };
        if peer.gid == gid.as_raw() || self.member(peer.uid, *gid) {
            return Ok(());
        }
        Err(format!(
            "uid {} (gid {}) may not use this chaos daemon: it accepts root and members of \
             group {name} (gid {})",
            peer.uid,
            peer.gid,
            gid.as_raw()
        ))
    }

    /// Whether the user `uid` is a member of `gid` by the group database.
    fn member(&self, uid: u32, gid: Gid) -> bool {
        let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
            return false;
        };
        let Ok(name) = std::ffi::CString::new(user.name) else {
            return false;
        };
        getgrouplist(&name, user.gid).is_ok_and(|groups| groups.contains(&gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            uid,
            gid,
            pid: None,
        }
    }

    #[test]
    fn root_only_without_a_group() {
        let policy = AccessPolicy { group: None };
        assert!(policy.check(&peer(0, 0)).is_ok());
        let refused = policy.check(&peer(65534, 65534)).unwrap_err();
        assert!(
            refused.contains("uid 65534") && refused.contains("--group"),
            "{refused}"
        );
    }

    #[test]
    fn the_group_by_gid() {
        let policy = AccessPolicy {
            group: Some((Gid::from_raw(4242), "chaos".into())),
        };
        assert!(policy.check(&peer(65534, 4242)).is_ok());
        let refused = policy.check(&peer(65534, 65534)).unwrap_err();
        assert!(refused.contains("group chaos (gid 4242)"), "{refused}");
    }
}
