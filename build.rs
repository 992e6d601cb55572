//! Links the gateway's binary with the code that start-up and requests run placed together, at
//! the front of its code: `link/symbol-order.txt` (written by `scripts/symbol-order`) handed to
//! lld as `--symbol-ordering-file`.
//!
//! Why: fat LTO lays functions out in no order that helps at run time, so the code one request
//! runs was spread over the binary's 14 MB of code. The kernel maps a binary's code 64 KiB at a
//! time around each page it touches, so an idle gateway kept about 7.4 MiB of it resident; placed
//! together, about half of that. A request at a low rate also finds its code on fewer pages, and
//! costs less CPU (BENCHMARKS.md, issue 18).
//!
//! Only where the linker is known to be lld: release and dist builds (debug builds gain nothing)
//! for `x86_64-unknown-linux-gnu` with Rust 1.90 or later (its default linker is the bundled
//! lld) and no linker chosen in Cargo's configuration or `RUSTFLAGS`; GNU ld would refuse the
//! option. `OPEN_BEDROCK_SYMBOL_ORDER=0` turns it off (to measure the difference). A function the
//! file names and the binary lacks is skipped without a warning, and one it does not name comes
//! after the named ones, so an out-of-date file costs only the layout's gain.
//!
//! Hand-written (no crate does this): it is a few environment checks and two link arguments.

use std::env;
use std::path::Path;
use std::process::Command;

const ORDER_FILE: &str = "link/symbol-order.txt";
const OFF: &str = "OPEN_BEDROCK_SYMBOL_ORDER";

fn main() {
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed={OFF}");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let rustc = rustc_version(&var("RUSTC"));
    let wanted = var(OFF) != "0"
        && var("PROFILE") == "release"
        && var("TARGET") == "x86_64-unknown-linux-gnu"
        && var("RUSTC_LINKER").is_empty()
        && !var("CARGO_ENCODED_RUSTFLAGS")
            .split('\x1f')
            .any(|flag| flag.contains("linker") || flag.contains("fuse-ld"))
        && links_with_lld(&rustc);
    if !wanted {
        return;
    }
    let file = Path::new(&var("CARGO_MANIFEST_DIR")).join(ORDER_FILE);
    let Ok(order) = std::fs::read_to_string(&file) else {
        return;
    };
    let bin = "cargo:rustc-link-arg-bin=open-bedrock-server";
    println!("{bin}=-Wl,--symbol-ordering-file={}", file.display());
    println!("{bin}=-Wl,--no-warn-symbol-ordering");
    // The names carry the compiler's version: another compiler's build matches few of them.
    let written = order
        .lines()
        .find_map(|l| l.strip_prefix("# written with: "))
        .unwrap_or("an unknown compiler");
    if written != rustc {
        println!(
            "cargo:warning={ORDER_FILE} was written with {written}, this build is {rustc}: \
             little of its code layout applies (scripts/symbol-order rewrites it)"
        );
    }
}

/// What `rustc --version` prints: "rustc 1.95.0 (59807616e 2026-04-14)".
fn rustc_version(rustc: &str) -> String {
    Command::new(rustc)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Whether `version` (as `rustc --version` prints it) is 1.90 or later, whose default linker
/// for the target is the bundled lld.
fn links_with_lld(version: &str) -> bool {
    let mut version = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
