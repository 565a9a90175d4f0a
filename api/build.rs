//! Bundles GraphiQL for the page at `/`: its browser build and React's, fetched from the npm registry
//! at build time (`npm pack`, pinned by version and by the registry's sha512 integrity), so the hub
//! serves them itself and no browser ever loads code from a CDN.
//!
//! Without npm or the registry the hub still builds, and `/` says that GraphiQL is not bundled; under
//! CI (`CI=true`) that is an error. `HUB_NPM_TARBALLS` names a folder of already downloaded tarballs
//! (`graphiql-3.8.3.tgz`, ...) for an offline build.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha512};

struct Package {
    name: &'static str,
    version: &'static str,
    /// The registry's `dist.integrity` of the tarball.
    integrity: &'static str,
    /// (path in the tarball, file name served under `/assets/vendor/`).
    files: &'static [(&'static str, &'static str)],
}

const PACKAGES: &[Package] = &[
    Package {
        name: "graphiql",
        version: "3.8.3",
        integrity: "sha512-cuPDYtXVKV86Pu5PHBX642Odi/uVEE2y1Jxq5rGO/Qy1G2lRp7ZZ7a/T30RzxhuLSWo9zUbzq0P3U49//H0Ugw==",
        files: &[
            ("package/graphiql.min.js", "graphiql.min.js"),
            ("package/graphiql.min.css", "graphiql.min.css"),
            ("package/LICENSE", "graphiql.LICENSE"),
        ],
    },
    Package {
        name: "react",
        version: "18.3.1",
        integrity: "sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ==",
        files: &[
            (
                "package/umd/react.production.min.js",
                "react.production.min.js",
            ),
            ("package/LICENSE", "react.LICENSE"),
        ],
    },
    Package {
        name: "react-dom",
        version: "18.3.1",
        integrity: "sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw==",
        files: &[
            (
                "package/umd/react-dom.production.min.js",
                "react-dom.production.min.js",
            ),
            ("package/LICENSE", "react-dom.LICENSE"),
        ],
    },
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HUB_NPM_TARBALLS");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let vendor = out.join("vendor");
    fs::create_dir_all(&vendor).expect("OUT_DIR is writable");
    let mut bundled = true;
    for package in PACKAGES {
        if let Err(why) = vendor_package(package, &out, &vendor) {
            bundled = false;
            if env::var("CI").as_deref() == Ok("true") {
                panic!("GraphiQL's assets must be bundled under CI: {why}");
            }
            println!("cargo:warning=GraphiQL is not bundled in this build: {why}");
        }
    }
    if !bundled {
        // Empty stand-ins, so the hub builds; `/` says what is missing.
        for package in PACKAGES {
            for (_, name) in package.files {
                let path = vendor.join(name);
                if !path.exists() {
                    fs::write(&path, b"").expect("OUT_DIR is writable");
                }
            }
        }
    }
    println!("cargo:rustc-env=HUB_GRAPHIQL_BUNDLED={bundled}");
}

fn vendor_package(package: &Package, out: &Path, vendor: &Path) -> Result<(), String> {
    let present = package
        .files
        .iter()
        .all(|(_, name)| fs::metadata(vendor.join(name)).is_ok_and(|meta| meta.len() > 0));
    if present {
        return Ok(());
    }
    let tarball = tarball(package, out)?;
    let bytes = fs::read(&tarball).map_err(|err| format!("{}: {err}", tarball.display()))?;
    let integrity = format!("sha512-{}", STANDARD.encode(Sha512::digest(&bytes)));
    if integrity != package.integrity {
        return Err(format!(
            "{}@{} does not match its pinned integrity ({integrity})",
            package.name, package.version
        ));
    }
    let unpacked = out
        .join("npm")
        .join(format!("{}-{}", package.name, package.version));
    fs::create_dir_all(&unpacked).map_err(|err| err.to_string())?;
    let mut tar = Command::new("tar");
    tar.arg("-xzf").arg(&tarball).arg("-C").arg(&unpacked);
    for (inside, _) in package.files {
        tar.arg(inside);
    }
    run(&mut tar)?;
    for (inside, name) in package.files {
        fs::copy(unpacked.join(inside), vendor.join(name))
            .map_err(|err| format!("{inside} of {}: {err}", package.name))?;
    }
    Ok(())
}

/// The package's tarball: from `HUB_NPM_TARBALLS` when set, else by `npm pack` (npm's cache first).
fn tarball(package: &Package, out: &Path) -> Result<PathBuf, String> {
    let file = format!("{}-{}.tgz", package.name, package.version);
    if let Ok(dir) = env::var("HUB_NPM_TARBALLS") {
        return Ok(Path::new(&dir).join(file));
    }
    let dir = out.join("npm");
    fs::create_dir_all(&dir).map_err(|err| err.to_string())?;
    run(Command::new("npm")
        .args(["pack", "--silent", "--ignore-scripts", "--pack-destination"])
        .arg(&dir)
        .arg(format!("{}@{}", package.name, package.version)))?;
    Ok(dir.join(file))
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|err| format!("{command:?} did not start: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}
