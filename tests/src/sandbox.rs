//! The sandbox a systemd unit's `[Service]` section asks for, rebuilt with `unshare` and `setpriv`
//! (neither this host nor the guests run systemd as PID 1): a mount namespace with a private
//! `/dev` (and the paths bound into it), a private `/tmp`, a read-only `/`, and the capability
//! bounding set. The watch tests run the unit's `watch` in it to show that it still sees and
//! does what it does outside.
use std::{
    ffi::{OsStr, OsString},
    path::Path,
    process::Command,
};

use anyhow::{Result, bail};

/// `[Service]` keys that change nothing a test of what watch sees can tell (process limits,
/// restarts, hardening of syscalls it does not make), each with why it is not rebuilt.
const NOT_REBUILT: &[(&str, &str)] = &[
    ("Type", "how systemd waits for it"),
    ("ExecStart", "the command itself"),
    ("Restart", "what systemd does after an exit"),
    ("RestartSec", "what systemd does after an exit"),
    ("DeviceAllow", "a cgroup device filter: the private /dev already holds only these nodes"),
    ("ProtectKernelModules", "watch loads no module"),
    ("ProtectClock", "watch sets no clock"),
    ("ProtectHostname", "watch sets no hostname"),
    ("RestrictRealtime", "watch asks for no realtime scheduling"),
    ("RestrictSUIDSGID", "watch makes no set-id file"),
    ("LockPersonality", "watch changes no personality"),
    ("MemoryDenyWriteExecute", "watch maps nothing writable and executable"),
    ("RestrictAddressFamilies", "watch opens TCP for /metrics only"),
    ("SystemCallArchitectures", "native already"),
];

/// Device nodes every `PrivateDevices=yes` /dev has.
const PRIVATE_DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

#[derive(Debug, Default)]
pub struct UnitSandbox {
    /// `CAP_BPF ...` as setpriv names them (`bpf`).
    caps: Vec<String>,
    no_new_privs: bool,
    private_devices: bool,
    /// `BindPaths=` (a leading `-`: skipped when missing).
    bind_paths: Vec<(String, bool)>,
    private_tmp: bool,
    read_only_root: bool,
    /// `LogsDirectory=`: `/var/log/NAME`, writable.
    logs: Option<String>,
    /// `LimitMEMLOCK=`, as `ulimit -l` takes it (KiB, or `unlimited`): before 5.11 BPF maps count
    /// against it, and the bounding set leaves no CAP_SYS_RESOURCE to raise it.
    memlock: Option<String>,
}

impl UnitSandbox {
    /// Reads the `[Service]` section of `unit`; a key it neither rebuilds nor knows to be
    /// irrelevant is an error, so a new hardening line cannot pass the test unseen.
    pub fn parse(unit: &str) -> Result<Self> {
        let mut s = Self::default();
        let mut in_service = false;
        for line in unit.lines().map(str::trim) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
                continue;
            }
            if !in_service || line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else { bail!("not a key=value line: {line}") };
            match key {
                "CapabilityBoundingSet" => {
                    for cap in value.split_whitespace() {
                        let Some(name) = cap.strip_prefix("CAP_") else { bail!("capability {cap}") };
                        s.caps.push(name.to_ascii_lowercase());
                    }
                }
                "NoNewPrivileges" => s.no_new_privs = value == "yes",
                "PrivateDevices" => s.private_devices = value == "yes",
                "BindPaths" => {
                    for p in value.split_whitespace() {
                        let (optional, path) = p.strip_prefix('-').map_or((false, p), |p| (true, p));
                        s.bind_paths.push((path.to_owned(), optional));
                    }
                }
                "PrivateTmp" => s.private_tmp = value == "yes",
                "ProtectSystem" => s.read_only_root = value == "strict",
                // Under a read-only / already; /root stays readable as read-only asks.
                "ProtectHome" if value == "read-only" => {}
                "ProtectKernelLogs" if value == "yes" => s.caps.retain(|c| c != "syslog"),
                "LogsDirectory" => s.logs = Some(format!("/var/log/{value}")),
                "LimitMEMLOCK" => {
                    s.memlock = Some(match value {
                        "infinity" => "unlimited".to_owned(),
                        bytes => match bytes.parse::<u64>() {
                            Ok(b) => (b / 1024).to_string(),
                            Err(_) => bail!("LimitMEMLOCK={value}: infinity or a number of bytes"),
                        },
                    })
                }
                _ if NOT_REBUILT.iter().any(|(k, _)| *k == key) => {}
                _ => bail!(
                    "the sandbox test does not know {key}={value}: rebuild it or say why it does not matter"
                ),
            }
        }
        Ok(s)
    }

    /// The command that runs `program args` in the sandbox, with `writable` (directories the
    /// test writes through, e.g. its findings file's) left writable and `logs` bound on the
    /// unit's logs directory. It execs into the program: its pid is the program's.
    pub fn command(&self, writable: &[&Path], program: &Path, args: &[&OsStr]) -> Command {
        let mut script = String::from("set -e\nmount --make-rprivate /\nT=$(mktemp -d)\n");
        if self.private_devices {
            script += "mkdir \"$T/dev\"\nmount --bind /dev \"$T/dev\"\nmount -t tmpfs -o mode=755,nosuid tmpfs /dev\n";
            for node in PRIVATE_DEVICES {
                script += &format!("touch /dev/{node}\nmount --bind \"$T/dev/{node}\" /dev/{node}\n");
            }
        }
        for (path, optional) in &self.bind_paths {
            // A path under the private /dev comes from the host's, bound aside above.
            let source = match path.strip_prefix("/dev/") {
                Some(rest) if self.private_devices => format!("$T/dev/{rest}"),
                _ => path.clone(),
            };
            let bind = format!(
                "mkdir -p \"$(dirname {path})\"\n[ -d \"{source}\" ] && mkdir -p {path} || touch {path}\nmount --bind \"{source}\" {path}\n"
            );
            script += &if *optional { format!("if [ -e \"{source}\" ]; then\n{bind}fi\n") } else { bind };
        }
        if self.private_tmp {
            script += "mount -t tmpfs tmpfs /tmp\nmount -t tmpfs tmpfs /var/tmp\n";
        }
        if self.read_only_root {
            script += "mount -o remount,bind,ro /\n";
        }
        // After the read-only remount: each of these is a mount of its own (a bind copies the
        // read-only flag, so it is remounted writable).
        for dir in writable {
            script += &format!("mount --bind '{0}' '{0}'\nmount -o remount,bind,rw '{0}'\n", dir.display());
        }
        if let Some(limit) = &self.memlock {
            // Where raising it is refused (no CAP_SYS_RESOURCE: this project's host) it stays as
            // it is: from 5.11 BPF maps are charged to the memory cgroup, not to this limit.
            script += &format!("ulimit -l {limit} 2>/dev/null || true\n");
        }
        let mut setpriv: Vec<String> = vec!["setpriv".into()];
        let bounding: Vec<String> = self.caps.iter().map(|c| format!("+{c}")).collect();
        setpriv.push(format!("--bounding-set=-all,{}", bounding.join(",")));
        if self.no_new_privs {
            setpriv.push("--no-new-privs".into());
        }
        script += &format!("exec {} \"$@\"\n", setpriv.join(" "));
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"]).arg(script).arg("sandboxed");
        let mut argv: Vec<OsString> = vec![program.as_os_str().to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        cmd.args(argv);
        cmd
    }

    /// The unit's logs directory (`LogsDirectory=`), which the test replaces by a writable one.
    pub fn logs_directory(&self) -> Option<&str> {
        self.logs.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_hardening_key_is_an_error_and_protect_kernel_logs_takes_cap_syslog() {
        let err = UnitSandbox::parse("[Service]\nPrivateNetwork=yes\n").expect_err("unknown");
        assert!(err.to_string().contains("PrivateNetwork=yes"), "{err}");
        let s = UnitSandbox::parse(
            "[Unit]\nDescription=x\n[Service]\nCapabilityBoundingSet=CAP_BPF CAP_SYSLOG\nProtectKernelLogs=yes\n\
             BindPaths=-/dev/mapper/control\nPrivateDevices=yes\n",
        )
        .expect("parses");
        assert_eq!(s.caps, ["bpf"]);
        assert_eq!(s.memlock, None);
        let limited = UnitSandbox::parse("[Service]\nLimitMEMLOCK=infinity\n").expect("parses");
        assert_eq!(limited.memlock.as_deref(), Some("unlimited"));
        assert_eq!(s.bind_paths, [("/dev/mapper/control".to_owned(), true)]);
        assert!(s.private_devices && !s.private_tmp);
    }
}
