"""A schema-only hashicorp/google provider, so `terraform validate` runs offline.

The schema comes from the npm package @cdktf/provider-google, whose jsii assembly describes
every resource and data source of the provider version it was generated from.
"""

from __future__ import annotations

from pathlib import Path

# hashicorp/google version -> (@cdktf/provider-google version generated from it, npm integrity).
VALIDATED_PROVIDER_VERSIONS: dict[str, tuple[str, str]] = {
    "6.50.0": (
        "16.12.1",
        "sha512-KqNA/5RiFT07r0PSZ6/07cJ2zESUgbj1JchVj21iBFBZVUbD+578xA/k8eq/r0cbyEgLmg9eYWeVslaYah4DCQ==",
    ),
    "5.40.0": (
        "13.29.0",
        "sha512-jKBwfgjk10S9RElI2d1+RA//GepAP3XKHD4KgTr63NvLJn+Uscz+e3M1ArlL5lMx4hMPaKh7tiqurZx6TK28+w==",
    ),
}

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[2]
# Git-ignored: downloaded assemblies, converted schemas, the provider mirror.
CACHE_DIR = REPO_ROOT / ".cache" / "tf-schema-provider"
