//! The container's mounts, as the shim sees them from inside the
//! container (`/proc/self/mountinfo`): the operator's volumes become the
//! guest's directory grants, read-only ones read-only. Mounts every
//! container gets (`/proc`, `/dev`, `/sys`, `/run`), the root itself, files
//! (`/etc/hosts`, `/etc/resolv.conf`) and Kubernetes' service-account
//! token are not the operator's data and are not granted.

use std::path::PathBuf;

/// One mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub path: PathBuf,
    /// Whether it is read-only (per mount or for the whole file system).
    pub read_only: bool,
}

/// Trees no mount under which is granted.
const SYSTEM: [&str; 4] = ["/proc", "/dev", "/sys", "/run"];

/// Kubernetes mounts the pod's service-account token here unless the pod
/// says `automountServiceAccountToken: false`; a guest gets no credentials
/// to the cluster it did not ask for.
const SERVICE_ACCOUNT: [&str; 2] = [
    "/var/run/secrets/kubernetes.io",
    "/run/secrets/kubernetes.io",
];

fn under(path: &str, tree: &str) -> bool {
    path == tree
        || path
            .strip_prefix(tree)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// mountinfo escapes space, tab, newline and backslash as `\NNN` (octal).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            d.iter().try_fold(0u16, |v, &c| {
                matches!(c, b'0'..=b'7').then(|| v * 8 + u16::from(c - b'0'))
            })
        });
        match octal {
            Some(v) if bytes[i] == b'\\' && v <= 0xff => {
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts in `mountinfo` (the text of `/proc/self/mountinfo`) that are
/// candidates for directory grants, in order, each path once (a later
/// mount over the same path wins).
pub fn parse(mountinfo: &str) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < 6 || dash < 6 || fields.len() < dash + 4 {
            continue;
        }
        let path = unescape(fields[4]);
        let ro = |opts: &str| opts.split(',').any(|o| o == "ro");
        let read_only = ro(fields[5]) || ro(fields[dash + 3]);
        if path == "/"
            || SYSTEM.iter().any(|t| under(&path, t))
            || SERVICE_ACCOUNT.iter().any(|t| under(&path, t))
        {
            continue;
        }
        mounts.retain(|m| m.path.as_os_str() != path.as_str());
        mounts.push(Mount {
            path: PathBuf::from(path),
            read_only,
        });
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
1 0 0:30 / / rw,relatime - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c
2 1 0:31 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
3 1 0:32 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
4 3 0:33 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw
5 1 0:34 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
6 1 0:35 / /run rw,nosuid,nodev - tmpfs tmpfs rw
7 1 8:1 /srv/data /data rw,relatime - ext4 /dev/sda1 rw
8 1 8:1 /srv/site /site ro,relatime - ext4 /dev/sda1 rw
9 1 8:1 /srv/hosts /etc/hosts rw,relatime - ext4 /dev/sda1 rw
10 1 0:40 / /var/run/secrets/kubernetes.io/serviceaccount ro,relatime - tmpfs tmpfs rw
11 1 8:1 /srv/my\\040files /my\\040files rw,relatime shared:3 - ext4 /dev/sda1 ro
12 1 8:1 /srv/proc /procurement rw,relatime - ext4 /dev/sda1 rw
garbage line
";

    #[test]
    fn volumes_are_kept_and_system_mounts_left_out() {
        let got = parse(SAMPLE);
        let shown: Vec<(String, bool)> = got
            .iter()
            .map(|m| (m.path.display().to_string(), m.read_only))
            .collect();
        assert_eq!(
            shown,
            [
                ("/data".to_string(), false),
                ("/site".to_string(), true),
                // A file mount is a candidate here; the workload keeps
                // directories only.
                ("/etc/hosts".to_string(), false),
                // Read-only for the whole file system, escapes undone.
                ("/my files".to_string(), true),
                // Only /proc itself and below it are system mounts.
                ("/procurement".to_string(), false),
            ]
        );
    }
}
