"""The certificates and keys a control plane on 127.0.0.1 needs, made with `cryptography`.

What envtest (controller-runtime's pkg/internal/testing) makes, plus what the controller manager
and the scheduler need to log in as themselves:

- `ca`: the cluster CA. It signs the serving certificate of all three servers (127.0.0.1,
  localhost and the in-cluster names of the `kubernetes` Service) and every client certificate;
  the API server trusts it for clients (`--client-ca-file`) and the controller manager signs
  CertificateSigningRequests with it (`--cluster-signing-*`).
- `front-proxy-ca` and `front-proxy-client`: the aggregation layer's request-header identity.
- `sa.key` / `sa.pub`: the ServiceAccount token signing key pair.
- one client certificate per identity (`admin` in `system:masters`, `system:kube-controller-manager`,
  `system:kube-scheduler`), as kubeadm makes them; and, on demand (`node_client`), a kubelet's:
  `system:node:<name>` in `system:nodes`, the identity the Node authorizer and the NodeRestriction
  admission plugin scope to that node.

The serving certificate names every address a pod may reach the API server at: besides loopback
and the `kubernetes` Service's, the bridge address of each pod network tests/real/netns.py can make
(`10.244.X.1`, 256 of them), where the node agent forwards to the API server. The network is made
after the control plane starts, and its /24 is chosen then, so the certificate names them all.

EC P-256 keys throughout: generated in microseconds, where RSA-2048 takes tens of milliseconds each.
Nothing here is fit for a cluster anyone else can reach: keys live unencrypted in the state dir.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
# The names a client may use for the API server: loopback, and what pods see in the cluster.
SERVING_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local")  # fmt: skip


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path

    def pem(self) -> tuple[bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes()


@dataclass(frozen=True)
class Pki:
    ca: KeyPair
    front_proxy_ca: KeyPair
    front_proxy_client: KeyPair
    serving: KeyPair
    service_account_key: Path
    service_account_pub: Path
    clients: dict[str, KeyPair]  # by the name of the kubeconfig that uses it


class _Authority:
    @classmethod
    def load(cls, pair: KeyPair) -> _Authority:
        authority = cls.__new__(cls)
        authority.cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        authority.key, authority.name = key, authority.cert.subject
        return authority

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def sign(
        self, common_name: str, *, organizations: tuple[str, ...] = (), serving: bool = False,
        ips: tuple[str, ...] = (),
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if serving else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if serving:
            names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVING_NAMES]
            names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


def _write(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> KeyPair:
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(_private_pem(key))
    pair.key.chmod(0o600)
    return pair


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip


def create(
    directory: Path, *, service_ip: str, advertise_ip: str = "127.0.0.1",
    pod_gateways: tuple[str, ...] = (),
) -> Pki:  # fmt: skip
    """Write a fresh PKI into `directory`; `service_ip` is the first address of the service range
    (the `kubernetes` Service's ClusterIP), which the serving certificate must name too, as it
    names `pod_gateways` (where pods reach the API server)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _Authority("turnout-ca")
    front = _Authority("turnout-front-proxy-ca")
    ca_pair = _write(directory, "ca", ca.cert, ca.key)
    front_pair = _write(directory, "front-proxy-ca", front.cert, front.key)
    ips = tuple(dict.fromkeys(("127.0.0.1", advertise_ip, service_ip, *pod_gateways)))
    serving = _write(directory, "serving", *ca.sign("kube-apiserver", serving=True, ips=ips))
    front_client = _write(directory, "front-proxy-client", *front.sign("front-proxy-client"))
    clients = {
        "admin": _write(directory, "admin", *ca.sign("admin", organizations=("system:masters",))),
        "kube-controller-manager": _write(directory, "kube-controller-manager",
                                          *ca.sign("system:kube-controller-manager")),
        "kube-scheduler": _write(directory, "kube-scheduler", *ca.sign("system:kube-scheduler")),
        "kube-proxy": _write(directory, "kube-proxy", *ca.sign("system:kube-proxy")),
    }  # fmt: skip
    sa_key = ec.generate_private_key(ec.SECP256R1())
    sa_private, sa_public = directory / "sa.key", directory / "sa.pub"
    sa_private.write_bytes(_private_pem(sa_key))
    sa_private.chmod(0o600)
    sa_public.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Pki(ca_pair, front_pair, front_client, serving, sa_private, sa_public, clients)


def node_client(directory: Path, node: str) -> KeyPair:
    """A kubelet's client certificate for Node `node`, signed by the cluster CA of `directory`
    (written there as `node-<node>.crt/.key`)."""
    ca = _Authority.load(KeyPair(directory / "ca.crt", directory / "ca.key"))
    signed = ca.sign(f"system:node:{node}", organizations=("system:nodes",))
    return _write(directory, f"node-{node}", *signed)
