//! Certificates for TLS tests: a private CA made with Debian's `openssl`, and a server
//! certificate for 127.0.0.1 signed by it. Clients trust the server only when given the CA.
use std::path::Path;
use std::process::Command;

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`; returns the CA's PEM.
pub fn private_ca(dir: &Path) -> Vec<u8> {
    let openssl = |args: &[&str]| {
        let out = Command::new(super::daemons::require("/usr/bin/openssl", "openssl")).args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(&[&["req", "-x509"], &ec[..], &["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=maas test CA"]].concat());
    openssl(&[&["req"], &ec[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    ]);
    std::fs::read(dir.join("ca.pem")).unwrap()
}
