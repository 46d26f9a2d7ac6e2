"""The provider process Terraform starts: go-plugin handshake, then tfplugin5 over gRPC.

It serves the schema and accepts every configuration the schema accepts (no diagnostics), which
is all `terraform validate` asks of a provider; planning or applying anything is unimplemented.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import os
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tf_schema_provider.wire import echo_prepared_config

# go-plugin's handshake with Terraform (plugin.HandshakeConfig in Terraform's plugin package).
MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
CORE_PROTOCOL_VERSION = 1
PLUGIN_PROTOCOL_VERSION = 5
HEALTH_SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}
EMPTY = b""

Handler = Callable[[bytes, grpc.ServicerContext], bytes]


def _answer(response: bytes) -> Handler:
    return lambda request, context: response


def _service(name: str, methods: dict[str, Handler]) -> grpc.GenericRpcHandler:
    # No (de)serializers: requests arrive and answers leave as raw protobuf bytes.
    return grpc.method_handlers_generic_handler(
        name, {method: grpc.unary_unary_rpc_method_handler(h) for method, h in methods.items()}
    )


def self_signed_certificate() -> tuple[bytes, bytes, bytes]:
    """(key PEM, certificate PEM, certificate DER) for localhost, as go-plugin's AutoMTLS makes."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tf-schema-provider"),
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                key_cert_sign=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return (
        key_pem,
        certificate.public_bytes(serialization.Encoding.PEM),
        certificate.public_bytes(serialization.Encoding.DER),
    )


def serve(schema: bytes) -> None:
    """Serve until Terraform asks go-plugin's controller to shut down (or kills the process)."""
    stopped = threading.Event()

    def shutdown(request: bytes, context: grpc.ServicerContext) -> bytes:
        stopped.set()
        return EMPTY

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_send_message_length", 256 * 1024 * 1024)],
    )
    server.add_generic_rpc_handlers(
        [
            _service(
                "tfplugin5.Provider",
                {
                    "GetSchema": _answer(schema),
                    "PrepareProviderConfig": lambda request, context: echo_prepared_config(request),
                    "ValidateResourceTypeConfig": _answer(EMPTY),
                    "ValidateDataSourceConfig": _answer(EMPTY),
                    "Configure": _answer(EMPTY),
                    "Stop": _answer(EMPTY),
                },
            ),
            _service("grpc.health.v1.Health", {"Check": _answer(HEALTH_SERVING)}),
            _service("plugin.GRPCController", {"Shutdown": shutdown}),
        ]
    )
    handshake = [str(CORE_PROTOCOL_VERSION), str(PLUGIN_PROTOCOL_VERSION), "tcp"]
    client_certificate = os.environ.get("PLUGIN_CLIENT_CERT")
    if client_certificate:
        # AutoMTLS: Terraform trusts only the certificate we print in the handshake line. It
        # does not authenticate itself in return: required, Terraform 1.0.3 sent no certificate
        # (its own is ECDSA P-521, not among the signature algorithms grpcio's BoringSSL asks
        # for). Harmless here: a loopback listener that lives seconds and serves a public schema.
        key_pem, certificate_pem, certificate_der = self_signed_certificate()
        credentials = grpc.ssl_server_credentials(
            [(key_pem, certificate_pem)], require_client_auth=False
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
        handshake += [f"127.0.0.1:{port}", "grpc"]
        handshake.append(base64.b64encode(certificate_der).decode().rstrip("="))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
        handshake += [f"127.0.0.1:{port}", "grpc"]
    server.start()
    sys.stdout.write("|".join(handshake) + "\n")
    sys.stdout.flush()
    stopped.wait()
    server.stop(grace=0.5).wait()


def main() -> None:
    """Entry point of the provider executable in the filesystem mirror."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schema", type=Path, required=True, help="encoded GetSchema answer")
    arguments = parser.parse_args()
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write("This is a Terraform provider plugin: Terraform runs it.\n")
        sys.exit(1)
    serve(arguments.schema.read_bytes())


if __name__ == "__main__":
    main()
