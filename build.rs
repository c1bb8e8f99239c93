//! Generates the C header from the Rust sources with cbindgen.
//!
//! The header goes to `$OUT_DIR/tokenchecker.h`; the committed copy in `include/` is compared
//! with it by `tests/header.rs` (so a stale header fails the tests) and refreshed by
//! `scripts/update-header` (which sets TOKENCHECKER_UPDATE_HEADER=1).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=TOKENCHECKER_UPDATE_HEADER");
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let version = std::env::var("CARGO_PKG_VERSION").unwrap();
    let mut parts = version.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    });
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    // ELF SONAME libtokenchecker.so.MAJOR (scripts/install adds the .so.MAJOR and .so.X.Y.Z
    // names). Programs linked with -ltokenchecker record that name, so the directory they load
    // from needs a libtokenchecker.so.MAJOR link to libtokenchecker.so.
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_vendor = std::env::var("CARGO_CFG_TARGET_VENDOR").unwrap_or_default();
    if std::env::var("CARGO_CFG_TARGET_FAMILY").as_deref() == Ok("unix")
        && target_vendor != "apple"
        && target_os != "aix"
    {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtokenchecker.so.{major}");
        // Cargo writes only libtokenchecker.so: add the SONAME link beside it (OUT_DIR is
        // <target>/<profile>/build/<pkg>-<hash>/out), so programs linked in the checkout load.
        #[cfg(unix)]
        if let Some(profile_dir) = out_dir.ancestors().nth(3) {
            let link = profile_dir.join(format!("libtokenchecker.so.{major}"));
            if std::fs::symlink_metadata(&link).is_err() {
                let _ = std::os::unix::fs::symlink("libtokenchecker.so", &link);
            }
        }
    }
    // The ABI generation lives in src/lib.rs (`ABI_VERSION`); read it from there.
    let lib_rs = std::fs::read_to_string(crate_dir.join("src/lib.rs")).expect("read src/lib.rs");
    let abi: u32 = lib_rs
        .lines()
        .find_map(|l| l.strip_prefix("pub const ABI_VERSION: u32 = "))
        .and_then(|v| v.trim_end_matches(';').trim().parse().ok())
        .expect("src/lib.rs defines ABI_VERSION");
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    config.after_includes = Some(format!(
        "\n#define TOKENCHECKER_VERSION \"{version}\"\n\
         #define TOKENCHECKER_VERSION_MAJOR {major}\n\
         #define TOKENCHECKER_VERSION_MINOR {minor}\n\
         #define TOKENCHECKER_VERSION_PATCH {patch}\n\
         #define TOKENCHECKER_ABI_VERSION {abi}\n\n\
         /* What tc_authorize_answer reports in *out_matched when no principal matched. */\n\
         #define TC_NO_MATCH SIZE_MAX\n"
    ));
    let header = match cbindgen::generate_with_config(&crate_dir, config) {
        Ok(bindings) => {
            let mut buf = Vec::new();
            bindings.write(&mut buf);
            buf
        }
        Err(e) => panic!("cbindgen failed: {e}"),
    };
    std::fs::write(out_dir.join("tokenchecker.h"), &header).expect("write the header");
    if std::env::var_os("TOKENCHECKER_UPDATE_HEADER").is_some() {
        let dest = crate_dir.join("include").join("tokenchecker.h");
        if std::fs::read(&dest).ok().as_deref() != Some(&header[..]) {
            std::fs::write(dest, &header).expect("write include/tokenchecker.h");
        }
    }
}
