//! Who did it: a task's cgroup (and what its path says: the systemd unit, the container, the
//! Kubernetes pod) and its parent, as events and findings carry them, and the one line that names
//! them: "fsfreeze[8812] ← backup.sh[8790] in backup.service".
//!
//! The path shapes are those the common managers write under the cgroup2 root (systemd, docker
//! and podman with either cgroup driver, containerd's CRI plugin, cri-o, the kubelet's kubepods
//! tree); anything else is still shown as its path.
use serde::{Deserialize, Serialize};

/// A task's cgroup (v2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// The kernel's cgroup id (the inode number of its directory in the cgroup2 filesystem).
    pub id: u64,
    /// Its path below the cgroup2 root (`/system.slice/backup.service`); absent when the recorder
    /// could not find it (the cgroup was gone, or no cgroup2 hierarchy is mounted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The systemd unit the path names (`backup.service`, `session-3.scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The container id the path names (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The Kubernetes pod UID the path names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

impl Cgroup {
    /// A cgroup with its path, and what the path says.
    pub fn at(id: u64, path: String) -> Self {
        let (unit, container, pod) = classify(&path);
        Self { id, path: Some(path), unit, container, pod }
    }
}

/// The parent of a task (`real_parent`: the process that started it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    pub pid: u32,
    pub comm: String,
    /// The init of a PID namespace (the host's PID 1 included) or a child subreaper (a systemd
    /// user manager, a container shim): it outlives what it starts, so it holds no freeze its
    /// child made. Known for freeze_end events only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reaper: bool,
    /// It was already exiting when the freeze call returned: it holds nothing. Known for
    /// freeze_end events only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exiting: bool,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container id in one path component, in each manager's spelling: `docker-ID.scope`,
/// `cri-containerd-ID.scope`, `crio-ID.scope`, `libpod-ID.scope` (systemd driver), `libpod-ID`,
/// or the bare ID (cgroupfs driver).
fn container_in(component: &str) -> Option<&str> {
    let body = component.strip_suffix(".scope").unwrap_or(component);
    let id = ["docker-", "cri-containerd-", "crio-", "libpod-", ""]
        .iter()
        .find_map(|prefix| body.strip_prefix(prefix).filter(|id| is_container_id(id)))?;
    Some(id)
}

/// The pod UID in a kubepods component: `pod<UID>` (cgroupfs) or
/// `kubepods-<qos>-pod<UID with _ for ->.slice` (systemd).
fn pod_in(component: &str) -> Option<String> {
    let body = component.strip_suffix(".slice").unwrap_or(component);
    let (before, uid) = body.rsplit_once("pod")?;
    let prefix_ok = before.is_empty() || (before.starts_with("kubepods") && before.ends_with('-'));
    let uid = uid.replace('_', "-");
    let shape_ok = uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    (prefix_ok && shape_ok).then_some(uid)
}

/// What a cgroup path names: (systemd unit, container id, pod UID). The unit is the innermost
/// `.service`, else the innermost `.scope`, that is not a container's own scope.
pub fn classify(path: &str) -> (Option<String>, Option<String>, Option<String>) {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let container = components.iter().rev().find_map(|c| container_in(c)).map(str::to_owned);
    let pod = components.iter().find_map(|c| pod_in(c));
    let unit_of = |suffix: &str| {
        components
            .iter()
            .rev()
            .find(|c| c.ends_with(suffix) && container_in(c).is_none())
            .map(|c| (*c).to_owned())
    };
    let unit = unit_of(".service").or_else(|| unit_of(".scope"));
    (unit, container, pod)
}

/// "fsfreeze[8812] ← backup.sh[8790] in backup.service": the task, its parent, and where it runs
/// (the pod and container when there is one, else the unit, else the cgroup path).
pub fn describe(comm: &str, pid: u32, parent: Option<&Parent>, cgroup: Option<&Cgroup>) -> String {
    let mut s = format!("{comm}[{pid}]");
    if let Some(p) = parent {
        s.push_str(&format!(" ← {}[{}]", p.comm, p.pid));
    }
    if let Some(where_) = cgroup.and_then(place) {
        s.push_str(" in ");
        s.push_str(&where_);
    }
    s
}

fn place(cg: &Cgroup) -> Option<String> {
    let short = |id: &str| id.chars().take(12).collect::<String>();
    match (&cg.pod, &cg.container, &cg.unit, &cg.path) {
        (Some(pod), Some(c), _, _) => Some(format!("pod {}/container {}", short(pod), short(c))),
        (Some(pod), None, _, _) => Some(format!("pod {}", short(pod))),
        (None, Some(c), _, _) => Some(format!("container {}", short(c))),
        (None, None, Some(unit), _) => Some(unit.clone()),
        (None, None, None, Some(path)) if path != "/" => Some(format!("cgroup {path}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "91ab2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const POD: &str = "7f3c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";

    fn parts(path: &str) -> (Option<String>, Option<String>, Option<String>) {
        classify(path)
    }

    #[test]
    fn systemd_units_services_before_scopes() {
        assert_eq!(parts("/system.slice/backup.service"), (Some("backup.service".into()), None, None));
        assert_eq!(
            parts("/user.slice/user-1000.slice/user@1000.service/app.slice/sync.service"),
            (Some("sync.service".into()), None, None),
            "the innermost service: a user's own service, not user@1000.service"
        );
        assert_eq!(
            parts("/user.slice/user-1000.slice/session-3.scope"),
            (Some("session-3.scope".into()), None, None)
        );
        assert_eq!(parts("/"), (None, None, None));
        assert_eq!(parts("/init.scope"), (Some("init.scope".into()), None, None));
    }

    #[test]
    fn docker_and_podman_with_either_driver() {
        let docker_systemd = format!("/system.slice/docker-{CID}.scope");
        assert_eq!(
            parts(&docker_systemd),
            (None, Some(CID.into()), None),
            "a container's scope is not its unit"
        );
        assert_eq!(parts(&format!("/docker/{CID}")), (None, Some(CID.into()), None));
        assert_eq!(
            parts(&format!("/machine.slice/libpod-{CID}.scope/container")),
            (None, Some(CID.into()), None)
        );
        assert_eq!(parts(&format!("/libpod_parent/libpod-{CID}")), (None, Some(CID.into()), None));
        assert_eq!(
            parts(&format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope")),
            (Some("user@1000.service".into()), Some(CID.into()), None),
            "rootless podman under a user's manager"
        );
    }

    #[test]
    fn kubernetes_pods_with_containerd_and_cri_o() {
        let pod_systemd = POD.replace('-', "_");
        let burstable = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_systemd}.slice/cri-containerd-{CID}.scope"
        );
        assert_eq!(parts(&burstable), (None, Some(CID.into()), Some(POD.into())));
        let besteffort = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_systemd}.slice/crio-{CID}.scope"
        );
        assert_eq!(parts(&besteffort), (None, Some(CID.into()), Some(POD.into())));
        let guaranteed =
            format!("/kubepods.slice/kubepods-pod{pod_systemd}.slice/cri-containerd-{CID}.scope");
        assert_eq!(parts(&guaranteed), (None, Some(CID.into()), Some(POD.into())));
        assert_eq!(
            parts(&format!("/kubepods/burstable/pod{POD}/{CID}")),
            (None, Some(CID.into()), Some(POD.into()))
        );
        assert_eq!(
            parts(&format!("/kubepods/besteffort/pod{POD}/{CID}")),
            (None, Some(CID.into()), Some(POD.into()))
        );
        assert_eq!(parts(&format!("/kubepods/pod{POD}/{CID}")), (None, Some(CID.into()), Some(POD.into())));
        assert_eq!(
            parts(&format!("/kubepods/pod{POD}")),
            (None, None, Some(POD.into())),
            "the pod's own cgroup"
        );
    }

    #[test]
    fn near_misses_name_nothing() {
        assert_eq!(parts("/system.slice/docker-1234.scope"), (Some("docker-1234.scope".into()), None, None));
        assert_eq!(parts("/podcasts/pod1234"), (None, None, None));
        assert_eq!(parts("/freezewatch-test/a"), (None, None, None));
    }

    #[test]
    fn descriptions_read_as_a_person_would_say_it() {
        let parent = Parent { pid: 8790, comm: "backup.sh".into(), reaper: false, exiting: false };
        let unit = Cgroup::at(5, "/system.slice/backup.service".into());
        assert_eq!(
            describe("fsfreeze", 8812, Some(&parent), Some(&unit)),
            "fsfreeze[8812] ← backup.sh[8790] in backup.service"
        );
        let pod = Cgroup::at(6, format!("/kubepods/burstable/pod{POD}/{CID}"));
        assert_eq!(
            describe("fsfreeze", 1, None, Some(&pod)),
            "fsfreeze[1] in pod 7f3c1a2b-3c4/container 91ab2c3d4e5f"
        );
        let plain = Cgroup::at(7, "/freezewatch-test".into());
        assert_eq!(describe("dd", 2, None, Some(&plain)), "dd[2] in cgroup /freezewatch-test");
        let root = Cgroup::at(1, "/".into());
        assert_eq!(describe("dd", 2, None, Some(&root)), "dd[2]");
        assert_eq!(describe("dd", 2, None, Some(&Cgroup { id: 9, ..Default::default() })), "dd[2]");
    }
}
