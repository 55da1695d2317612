//! Whose fault a failed build was, read from how its process ended and from its log, the way an
//! operator reads an emerge failure. Pure: the tables below are real emerge output.
//!
//! The order of the checks is the order of blame. The machine's faults come first, because a
//! full disk or the OOM killer also makes the compile fail and then Portage reports a compile
//! error: blaming the package would spend its attempts on a broken drone. A fetch failure comes
//! next: no build ran at all. Anything else is the package's own.

use schemas::{ExitInfo, FailureClass};

/// A failure's class and the log line (or the exit) that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: FailureClass,
    pub signature: Option<String>,
}

/// Text in a log line that puts the blame on the machine.
const INFRASTRUCTURE: &[&str] = &[
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "Input/output error",
    "Cannot allocate memory",
    "virtual memory exhausted",
    "out of memory",
    "Out of memory",
    // The binhost the drone installs dependencies from (lib/portage/dbapi/bintree.py).
    "Error fetching binhost package info",
    // A binary package of a dependency that did not download (lib/_emerge/BinpkgVerifier.py).
    "Fetching Binary failed for",
    // emerge itself or a tool of the base system is missing.
    "emerge: command not found",
    "emerge: not found",
    // Portage's own machinery failing (its locks, its Python), not the ebuild.
    "portage.exception.PermissionDenied",
    "portage.exception.TryAgain",
    "Unable to obtain lock",
];

/// Text in a log line that says a source file could not be downloaded.
const FETCH: &[&str] = &[
    // lib/portage/package/ebuild/fetch.py
    "!!! Couldn't download '",
    // lib/_emerge/EbuildFetcher.py
    "Fetch failed for '",
    "!!! Some fetch errors were encountered",
];

/// Exit codes that mean the machine, not the build: the shell could not find or run the
/// command (127, 126), or the process was killed (137 = 128 + SIGKILL, the OOM killer's signal,
/// as a shell or supervisor reports it).
const INFRASTRUCTURE_CODES: &[i32] = &[126, 127, 137];
/// Signals that mean the machine: SIGKILL (the OOM killer, when the drone did not kill the
/// build itself: those ends are lost leases and never classified), SIGBUS.
const INFRASTRUCTURE_SIGNALS: &[i32] = &[9, 7];

/// Classifies a failed build by its exit and its log (the tail the drone kept; emerge prints
/// its error summary last).
pub fn classify(exit: &ExitInfo, log: &str) -> Classification {
    let lines: Vec<&str> = log.lines().map(str::trim).collect();
    let find = |needles: &[&str]| {
        lines
            .iter()
            .rev()
            .find(|line| needles.iter().any(|needle| line.contains(needle)))
            .map(|line| (*line).to_owned())
    };
    if let Some(line) = find(INFRASTRUCTURE).or_else(|| portage_crash(&lines)) {
        return Classification {
            class: FailureClass::Infrastructure,
            signature: Some(line),
        };
    }
    let killed = exit
        .signal
        .is_some_and(|signal| INFRASTRUCTURE_SIGNALS.contains(&signal));
    let unrunnable = exit
        .code
        .is_some_and(|code| INFRASTRUCTURE_CODES.contains(&code));
    if killed || unrunnable {
        return Classification {
            class: FailureClass::Infrastructure,
            signature: Some(exit.to_string()),
        };
    }
    if let Some(line) = find(FETCH) {
        return Classification {
            class: FailureClass::Fetch,
            signature: Some(line),
        };
    }
    // The package's own: Portage's `ERROR: cat/pkg-ver::repo failed (phase):` line when there
    // is one (bin/isolated-functions.sh), else the last line the build printed, else the exit.
    let signature = lines
        .iter()
        .rev()
        .find(|line| line.contains("ERROR: ") && line.contains(" failed"))
        .or_else(|| lines.iter().rev().find(|line| !line.is_empty()))
        .map(|line| (*line).to_owned())
        .unwrap_or_else(|| exit.to_string());
    Classification {
        class: FailureClass::Package,
        signature: Some(signature),
    }
}

/// A Python traceback from Portage itself (not from a build system the ebuild runs).
fn portage_crash(lines: &[&str]) -> Option<String> {
    let traceback = lines
        .iter()
        .position(|line| line.starts_with("Traceback (most recent call last):"))?;
    // Portage's own modules, not the build directory (`/var/tmp/portage/...`).
    let in_portage = lines[traceback..].iter().any(|line| {
        line.contains("site-packages/portage/")
            || line.contains("site-packages/_emerge/")
            || line.contains("/usr/lib/portage/")
    });
    in_portage.then(|| {
        lines[traceback..]
            .iter()
            .rev()
            .find(|line| !line.is_empty())
            .map(|line| (*line).to_owned())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPILE_ERROR: &str = r#"
x86_64-pc-linux-gnu-gcc -O2 -pipe -c zutil.c -o zutil.o
zutil.c:42:5: error: implicit declaration of function 'frobnicate' [-Wimplicit-function-declaration]
   42 |     frobnicate();
      |     ^~~~~~~~~~
make: *** [Makefile:305: zutil.o] Error 1
 * ERROR: sys-libs/zlib-1.3.1::gentoo failed (compile phase):
 *   emake failed
 *
 * If you need support, post the output of `emerge --info '=sys-libs/zlib-1.3.1::gentoo'`,
 * the complete build log and the output of `emerge -pqv '=sys-libs/zlib-1.3.1::gentoo'`.
 * The complete build log is located at '/var/tmp/portage/sys-libs/zlib-1.3.1/temp/build.log'.
"#;

    const CONFIGURE_ERROR: &str = r#"
checking for libcurl >= 7.75.0... no
configure: error: Package requirements (libcurl >= 7.75.0) were not met
 * ERROR: net-misc/foo-2.0::gentoo failed (configure phase):
 *   econf failed
"#;

    const TEST_FAILURE: &str = r#"
FAIL: test_roundtrip (tests.test_codec.TestCodec)
Ran 412 tests in 3.2s
FAILED (failures=1)
 * ERROR: dev-python/bar-1.4::gentoo failed (test phase):
 *   pytest failed with python3.12
"#;

    const NO_SPACE: &str = r#"
/usr/libexec/gcc/x86_64-pc-linux-gnu/13/cc1plus: error while writing: No space left on device
make[2]: *** [CMakeFiles/qtbase.dir/build.make:1234: corelib.o] Error 1
 * ERROR: dev-qt/qtbase-6.7.2::gentoo failed (compile phase):
 *   ninja -v -j16 -l16 failed
"#;

    const OOM: &str = r#"
[2210/34105] CXX obj/v8/v8_base/wasm-compiler.o
FAILED: obj/v8/v8_base/wasm-compiler.o
x86_64-pc-linux-gnu-g++: fatal error: Killed signal terminated program cc1plus
virtual memory exhausted: Cannot allocate memory
 * ERROR: www-client/chromium-129.0.6668.58::gentoo failed (compile phase):
"#;

    const FETCH_FAILED: &str = r#"
>>> Downloading 'https://distfiles.gentoo.org/distfiles/ab/foo-1.0.tar.xz'
--2026-12-02 10:01:02--  https://distfiles.gentoo.org/distfiles/ab/foo-1.0.tar.xz
HTTP request sent, awaiting response... 404 Not Found
!!! Couldn't download 'foo-1.0.tar.xz'. Aborting.
 * Fetch failed for 'app-misc/foo-1.0', Log file:
 *  '/var/tmp/portage/app-misc/foo-1.0/temp/build.log'
"#;

    const BINHOST_DOWN: &str = r#"
!!! [Errno 111] Connection refused
!!! Error fetching binhost package info from 'http://swarm.example:8090/staging/amd64'
"#;

    const BINARY_DEPENDENCY: &str = r#"
>>> Emerging binary (1 of 2) dev-libs/openssl-3.3.2::gentoo
!!! Fetching Binary failed for 'dev-libs/openssl-3.3.2'
"#;

    const PORTAGE_CRASH: &str = r#"
Traceback (most recent call last):
  File "/usr/lib/python3.12/site-packages/_emerge/main.py", line 1255, in emerge_main
  File "/usr/lib/python3.12/site-packages/portage/locks.py", line 231, in _lockfile_iteration
PermissionError: [Errno 13] Permission denied: '/var/db/pkg/.lock'
"#;

    const BUILD_SYSTEM_TRACEBACK: &str = r#"
Traceback (most recent call last):
  File "/var/tmp/portage/dev-python/baz-1.0/work/baz-1.0/setup.py", line 12, in <module>
ModuleNotFoundError: No module named 'setuptools_scm'
 * ERROR: dev-python/baz-1.0::gentoo failed (compile phase):
"#;

    #[test]
    fn real_emerge_failures_are_classified_by_whose_fault_they_are() {
        use FailureClass::*;
        let code = ExitInfo::code;
        let signal = |s| ExitInfo {
            code: None,
            signal: Some(s),
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, ExitInfo, &str, FailureClass, Option<&str>)> = vec![
            ("a compile error", code(1), COMPILE_ERROR, Package, Some("* ERROR: sys-libs/zlib-1.3.1::gentoo failed (compile phase):")),
            ("a configure error", code(1), CONFIGURE_ERROR, Package, Some("* ERROR: net-misc/foo-2.0::gentoo failed (configure phase):")),
            ("a failing test suite", code(1), TEST_FAILURE, Package, Some("* ERROR: dev-python/bar-1.4::gentoo failed (test phase):")),
            ("a build system's own traceback", code(1), BUILD_SYSTEM_TRACEBACK, Package, Some("* ERROR: dev-python/baz-1.0::gentoo failed (compile phase):")),
            ("no Portage summary: the last line", code(2), "step one\nit broke\n\n", Package, Some("it broke")),
            ("no output at all", code(1), "", Package, Some("exit status 1")),
            ("a full disk under a compile error", code(1), NO_SPACE, Infrastructure, Some("/usr/libexec/gcc/x86_64-pc-linux-gnu/13/cc1plus: error while writing: No space left on device")),
            ("out of memory under a compile error", code(1), OOM, Infrastructure, Some("virtual memory exhausted: Cannot allocate memory")),
            ("the binhost unreachable", code(1), BINHOST_DOWN, Infrastructure, Some("!!! Error fetching binhost package info from 'http://swarm.example:8090/staging/amd64'")),
            ("a dependency's binary package not fetched", code(1), BINARY_DEPENDENCY, Infrastructure, Some("!!! Fetching Binary failed for 'dev-libs/openssl-3.3.2'")),
            ("Portage itself crashed", code(1), PORTAGE_CRASH, Infrastructure, Some("PermissionError: [Errno 13] Permission denied: '/var/db/pkg/.lock'")),
            ("emerge missing", code(127), "sh: 1: emerge: not found", Infrastructure, Some("sh: 1: emerge: not found")),
            ("killed by the OOM killer", signal(9), "[1234/5678] CXX foo.o", Infrastructure, Some("killed by signal 9")),
            ("killed, as a shell reports it", code(137), "", Infrastructure, Some("exit status 137")),
            ("a distfile that would not download", code(1), FETCH_FAILED, Fetch, Some("* Fetch failed for 'app-misc/foo-1.0', Log file:")),
            ("killed by the operator's signal", signal(15), "", Package, Some("killed by signal 15")),
        ];
        for (what, exit, log, class, signature) in cases {
            let got = classify(&exit, log);
            assert_eq!(got.class, class, "{what}");
            assert_eq!(got.signature.as_deref(), signature, "{what}");
        }
    }
}
