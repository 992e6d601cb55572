//! Links the gateway's `dist` binary with the code that start-up and requests run placed
//! together, at the front of its code: `link/symbol-order.txt` (written by
//! `scripts/symbol-order`) handed to lld as `--symbol-ordering-file`.
//!
//! Why: fat LTO lays functions out in no order that helps at run time, so the code one request
//! runs was spread over the binary's 14 MB of code. The kernel maps a binary's code 64 KiB at a
//! time around each page it touches, so an idle gateway kept 7.4 MiB of it resident; placed
//! together, 2.3 MiB. A request at a low rate also finds its code on fewer pages, and costs less
//! CPU (BENCHMARKS.md, issue 18).
//!
//! Only for the `dist` profile: the file lists symbols as the symbol table names them, and those
//! names carry a hash of the build's settings (the profile, the features, the compiler's version,
//! the dependencies), so another profile's build would match none of them. Only for
//! `x86_64-unknown-linux-gnu`, and only when the linker takes the option: lld does (rustup's Rust
//! 1.90 and later link with it by default), GNU ld does not. That is found by linking an empty
//! program with it, with the build's own flags and linker, rather than guessed from versions.
//! `OPEN_BEDROCK_SYMBOL_ORDER=0` at build time turns it off (to measure the difference). A
//! function the file names and the binary lacks is skipped without a warning, and one it does not
//! name comes after the named ones, so an out-of-date file costs only the layout's gain; a build
//! with another compiler or another `Cargo.lock` than the file was written for gets a warning,
//! since fewer names then match (a dependency's change renames the gateway's own symbols too: the
//! hash in a name covers the crate's dependencies).
//!
//! Hand-written (no crate does this): a few checks and four link arguments.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

const ORDER_FILE: &str = "link/symbol-order.txt";
const OFF: &str = "OPEN_BEDROCK_SYMBOL_ORDER";

fn main() {
    let var = |name: &str| env::var(name).unwrap_or_default();
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR"));
    let lock_file = manifest_dir.join("Cargo.lock");
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    // Only a file that exists: cargo reruns a script whose watched path is missing on every build.
    if lock_file.exists() {
        println!("cargo:rerun-if-changed=Cargo.lock");
    }
    println!("cargo:rerun-if-env-changed={OFF}");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let out_dir = PathBuf::from(var("OUT_DIR"));
    if var(OFF) == "0"
        || var("TARGET") != "x86_64-unknown-linux-gnu"
        || profile_dir(&out_dir) != Some(OsStr::new("dist"))
    {
        return;
    }
    let file = manifest_dir.join(ORDER_FILE);
    let Ok(order) = std::fs::read_to_string(&file) else {
        return;
    };
    if !takes_ordering(&out_dir) {
        println!(
            "cargo:warning=the linker does not take --symbol-ordering-file (lld does): \
             the binary is linked without {ORDER_FILE}'s code layout"
        );
        return;
    }
    for arg in ordering_args(&file) {
        println!("cargo:rustc-link-arg-bin=open-bedrock-server={arg}");
    }
    // The names carry the compiler's version: another compiler's build matches few of them.
    let rustc = rustc()
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    let written = header(&order, "written with").unwrap_or("an unknown compiler");
    if written != rustc {
        println!(
            "cargo:warning={ORDER_FILE} was written with {written}, this build is {rustc}: \
             little of its code layout applies (scripts/symbol-order rewrites it)"
        );
    }
    // The names carry a hash of the dependencies: another Cargo.lock renames many of them. (No
    // Cargo.lock here, in a workspace's member or a dependency's build: nothing to compare.)
    let Ok(lock) = std::fs::read(&lock_file) else {
        return;
    };
    let lock = format!("{:016x}", fnv1a(&lock));
    if header(&order, "for Cargo.lock") != Some(lock.as_str()) {
        println!(
            "cargo:warning={ORDER_FILE} was written for another Cargo.lock: part of its code \
             layout applies (scripts/symbol-order rewrites it)"
        );
    }
}

/// The value of the order file's header line `# <name>: <value>`.
fn header<'a>(order: &'a str, name: &str) -> Option<&'a str> {
    order
        .lines()
        .find_map(|l| l.strip_prefix("# ")?.strip_prefix(name)?.strip_prefix(": "))
}

/// FNV-1a, 64 bits: the fingerprint of Cargo.lock that `scripts/symbol-order` writes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The compiler cargo builds with.
fn rustc() -> Command {
    Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
}

/// The profile's directory of a build script's `OUT_DIR` (`target/dist/build/<pkg>/out`, or
/// `target/<triple>/dist/build/<pkg>/out`): `dist` for the dist profile.
fn profile_dir(out_dir: &Path) -> Option<&OsStr> {
    out_dir.parent()?.parent()?.parent()?.file_name()
}

/// The link arguments that order the code by `file` (`-Xlinker`, not `-Wl,`: a path may hold a
/// comma).
fn ordering_args(file: &Path) -> Vec<String> {
    vec![
        "-Xlinker".into(),
        format!("--symbol-ordering-file={}", file.display()),
        "-Xlinker".into(),
        "--no-warn-symbol-ordering".into(),
    ]
}

/// Whether the linker takes the ordering: an empty program linked with it (and an empty order
/// file) by the compiler, flags and linker of this build.
fn takes_ordering(out_dir: &Path) -> bool {
    let source = out_dir.join("symbol_order_probe.rs");
    let order = out_dir.join("symbol_order_probe.txt");
    if std::fs::write(&source, "fn main() {}\n").is_err() || std::fs::write(&order, "").is_err() {
        return false;
    }
    let mut rustc = rustc();
    rustc
        .arg("--target")
        .arg(env::var("TARGET").unwrap_or_default())
        .arg("-o")
        .arg(out_dir.join("symbol_order_probe"))
        .arg(&source);
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        rustc.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        rustc.arg("-C").arg(format!("linker={linker}"));
    }
    for arg in ordering_args(&order) {
        rustc.arg("-C").arg(format!("link-arg={arg}"));
    }
    rustc.output().is_ok_and(|out| out.status.success())
}
