"""Certificates for the local control plane, made with the openssl command line.

Each component gets its own client identity (the names kube-apiserver's Node and
RBAC authorizers expect), so the local cluster authorizes exactly like a real one.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "ferry-node"


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate subject: the user name and its groups."""

    file_stem: str
    common_name: str
    organization: str | None = None


CLIENTS = (
    ClientIdentity("admin", "ferry-admin", "system:masters"),
    ClientIdentity("controller-manager", "system:kube-controller-manager"),
    ClientIdentity("scheduler", "system:kube-scheduler"),
    ClientIdentity("node", f"system:node:{NODE_NAME}", "system:nodes"),
    ClientIdentity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
)

APISERVER_SANS = (
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    "IP:127.0.0.1",
    "IP:10.0.0.1",
)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _signed_cert(pki: Path, stem: str, subject: str, extensions: str) -> None:
    key, csr, crt = pki / f"{stem}.key", pki / f"{stem}.csr", pki / f"{stem}.crt"
    _openssl("genrsa", "-out", str(key), "2048")
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    with tempfile.NamedTemporaryFile("w", suffix=".ext") as ext:
        ext.write(extensions)
        ext.flush()
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"),
            "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "3650",
            "-extfile", ext.name, "-out", str(crt),
        )
    csr.unlink()


def ensure_pki(pki: Path) -> None:
    """Create the CA, serving and client certificates and the SA key once."""
    if (pki / "complete").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", str(pki / "ca.key"), "2048")
    _openssl(
        "req", "-x509", "-new", "-key", str(pki / "ca.key"), "-subj", "/CN=ferry-local-ca",
        "-days", "3650", "-out", str(pki / "ca.crt"),
    )
    _signed_cert(
        pki, "apiserver", "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={','.join(APISERVER_SANS)}\n",
    )
    for client in CLIENTS:
        subject = f"/CN={client.common_name}"
        if client.organization:
            subject = f"/O={client.organization}{subject}"
        _signed_cert(
            pki, client.file_stem, subject,
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\n",
        )
    _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    (pki / "complete").write_text("ok\n")
