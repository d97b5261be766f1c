//! Which mounts `all_mounts` (or `paths = []`) reports: the real file systems of
//! /proc/self/mountinfo, one mount point per device.
//!
//! Skipped: kernel and in-memory pseudo file systems (proc, sysfs, tmpfs, devtmpfs, cgroup,
//! ...), read-only images (squashfs: snaps are always 100% full), FUSE helpers, network file
//! systems (nfs, cifs, sshfs, ...: statvfs on a hung server blocks; list them in `paths` to
//! watch them) and overlay, except an overlay mounted on `/` (a container's root, the only
//! view of its disk). Bind mounts and repeated mounts of one device are reported once: the
//! mount of the device's root (`root == "/"`) first, then the shortest mount point.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One line of mountinfo that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor`.
    pub device: String,
    /// Path inside the file system that is mounted (`/` for the whole file system).
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// Pseudo, image and network file system types never reported by `all_mounts`.
const SKIPPED: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "iso9660",
    // network
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "9p",
    "afs",
];

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        let value = octal.map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')));
        if let (b'\\', Some(v)) = (b[i], value.and_then(|v| u8::try_from(v).ok())) {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/mountinfo text; malformed lines are skipped.
/// Line: `id parent major:minor root mount_point options [optional...] - fstype source super`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut l = left.split(' ');
            let _id = l.next()?;
            let _parent = l.next()?;
            let device = l.next()?.to_owned();
            let root = unescape(l.next()?);
            let mount_point = PathBuf::from(unescape(l.next()?));
            let fs_type = right.split(' ').next()?.to_owned();
            if fs_type.is_empty() {
                return None;
            }
            Some(Mount {
                device,
                root,
                mount_point,
                fs_type,
            })
        })
        .collect()
}

/// Whether `all_mounts` reports a mount of this type at this mount point.
pub fn is_real(m: &Mount) -> bool {
    let t = m.fs_type.as_str();
    if t == "overlay" {
        return m.mount_point == std::path::Path::new("/");
    }
    if t.starts_with("fuse") || t.starts_with("nfs") {
        return false;
    }
    !SKIPPED.contains(&t)
}

/// The mount points to report, one per device, sorted by path (pure).
pub fn real_mounts(mounts: &[Mount]) -> Vec<PathBuf> {
    let mut best: BTreeMap<&str, &Mount> = BTreeMap::new();
    for m in mounts.iter().filter(|m| is_real(m)) {
        let better = |old: &Mount| {
            let rank = |x: &Mount| (x.root != "/", x.mount_point.as_os_str().len());
            rank(m) < rank(old)
        };
        match best.get(m.device.as_str()) {
            Some(old) if !better(old) => {}
            _ => {
                best.insert(&m.device, m);
            }
        }
    }
    let mut out: Vec<PathBuf> = best.values().map(|m| m.mount_point.clone()).collect();
    out.sort();
    out
}

/// The real mounts of this process's mount namespace.
pub fn discover() -> std::io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(real_mounts(&parse_mountinfo(&text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
24 22 0:22 / /sys rw - sysfs sysfs rw
25 22 0:5 / /dev rw - devtmpfs udev rw
26 22 0:23 / /run rw - tmpfs tmpfs rw
27 22 8:2 / /home rw shared:3 - xfs /dev/sda2 rw
28 22 8:1 /var/lib/data /srv/data rw - ext4 /dev/sda1 rw
29 22 0:40 / /snap/core/1 ro - squashfs /dev/loop0 ro
30 22 0:41 / /mnt/nfs rw - nfs4 server:/export rw
31 22 0:42 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
32 22 8:3 / /mnt/with\\040space rw - ext4 /dev/sda3 rw
33 22 0:44 / /run/user/1000/gvfs rw - fuse.gvfsd-fuse gvfsd-fuse rw
34 27 8:2 /alice /home/alice/mirror rw - xfs /dev/sda2 rw
";

    #[test]
    fn keeps_real_filesystems_once_per_device() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts.len(), 13);
        assert_eq!(mounts[10].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(
            real_mounts(&mounts),
            ["/", "/home", "/mnt/with space"]
                .iter()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_container_root_overlay_counts() {
        let text = "1 0 0:50 / / rw - overlay overlay rw\n2 1 8:1 /etc/hosts /etc/hosts rw - ext4 /dev/sda1 rw\n";
        let got = real_mounts(&parse_mountinfo(text));
        assert_eq!(got, vec![PathBuf::from("/"), PathBuf::from("/etc/hosts")]);
    }

    #[test]
    fn bind_mount_of_a_subdir_is_used_when_it_is_the_only_view() {
        let text = "1 0 8:1 /data /srv rw - ext4 /dev/sda1 rw\n2 0 8:1 /data /srv/again/deeper rw - ext4 /dev/sda1 rw\n";
        assert_eq!(
            real_mounts(&parse_mountinfo(text)),
            vec![PathBuf::from("/srv")]
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse_mountinfo("garbage\n1 2 3\n\n").is_empty());
    }

    #[test]
    fn this_machine_has_at_least_one_real_mount() {
        let got = discover().expect("mountinfo");
        assert!(!got.is_empty(), "no real mount found");
        for p in &got {
            assert!(p.is_absolute());
        }
    }
}
