//! The control plane's own certificate authority and keys, made with the `openssl` command: a CA, the API
//! server's serving certificate (valid for 127.0.0.1), one client certificate per user, and the key pair that
//! signs ServiceAccount tokens. Users are client certificates: the CN is the user name, each O a group.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pki {
    pub dir: PathBuf,
}

/// One identity: a client certificate and its key.
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed for the test control plane's certificates: {e}"));
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ec_key(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            name,
        ],
    );
}

impl Pki {
    /// A fresh CA, the serving certificate and the ServiceAccount signing key in `dir`.
    pub fn create(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("pki dir");
        ec_key(dir, "ca.key");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=fireweave-test-ca",
                "-days",
                "7",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                "ca.crt",
            ],
        );
        let pki = Self { dir: dir.to_path_buf() };
        // 10.96.0.1 is the `kubernetes` Service's ClusterIP in --service-cluster-ip-range 10.96.0.0/12.
        pki.sign(
            "apiserver",
            "/CN=kube-apiserver",
            "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,\
             DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
        );
        // RSA: the API server signs ServiceAccount tokens RS256 unless told otherwise.
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "sa.key",
            ],
        );
        openssl(dir, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
        pki
    }

    fn sign(&self, name: &str, subject: &str, extensions: &str) -> Identity {
        let key = format!("{name}.key");
        ec_key(&self.dir, &key);
        let (csr, ext) = (format!("{name}.csr"), format!("{name}.ext"));
        openssl(
            &self.dir,
            &["req", "-new", "-key", &key, "-subj", subject, "-out", &csr],
        );
        std::fs::write(self.dir.join(&ext), extensions).expect("extension file");
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "7",
                "-extfile",
                &ext,
                "-out",
                &format!("{name}.crt"),
            ],
        );
        let _ = std::fs::remove_file(self.dir.join(csr));
        let _ = std::fs::remove_file(self.dir.join(ext));
        Identity {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(key),
        }
    }

    /// A client certificate for `user` in `groups` (file names from `name`).
    pub fn client(&self, name: &str, user: &str, groups: &[&str]) -> Identity {
        let subject: String = groups.iter().map(|g| format!("/O={g}")).collect::<String>() + &format!("/CN={user}");
        self.sign(
            name,
            &subject,
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
        )
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// A kubeconfig for `server` that authenticates with a client certificate or a bearer token.
pub fn kubeconfig(server: &str, ca: &Path, user: &str, auth: Auth<'_>) -> String {
    let credentials = match auth {
        Auth::Certificate(id) => format!(
            "client-certificate: {}\n    client-key: {}",
            id.cert.display(),
            id.key.display()
        ),
        Auth::Token(token) => format!("token: {token}"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    \
         certificate-authority: {}\nusers:\n- name: {user}\n  user:\n    {credentials}\ncontexts:\n- name: test\n  \
         context:\n    cluster: test\n    user: {user}\ncurrent-context: test\n",
        ca.display()
    )
}

pub enum Auth<'a> {
    Certificate(&'a Identity),
    Token(&'a str),
}
