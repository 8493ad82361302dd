//! Mounts with the new mount API: fsopen, fsconfig, fsmount, move_mount (for test scripts run
//! under `freezewatch record`). Usage: fw-fsmount FSTYPE SOURCE TARGET. Exit 0 when mounted; the
//! errno is printed otherwise.
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [fstype, source, target] = args.as_slice() else {
        eprintln!("usage: fw-fsmount FSTYPE SOURCE TARGET");
        return std::process::ExitCode::from(2);
    };
    match freezewatch_tests::fsmount_move(fstype, source, std::path::Path::new(target)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(errno) => {
            eprintln!("fw-fsmount: {}", std::io::Error::from_raw_os_error(errno));
            std::process::ExitCode::FAILURE
        }
    }
}
