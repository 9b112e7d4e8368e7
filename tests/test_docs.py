"""The documents a user of the repository reads: every link resolves inside the repository."""

from __future__ import annotations

import re

from sso.openapi import openapi_document
from tests.server import ROOT

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
DOCS = [ROOT / "README.md", ROOT / "SECURITY_AUDIT.md", *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "deploy" / "nginx" / "README.md"]  # fmt: skip


def test_every_relative_link_in_the_documents_resolves_inside_the_repository():
    """No link points outside the clone (../shared/SPEC.md did) or at a file that does not exist."""
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue  # an absolute URL
            resolved = (doc.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_readme_links_the_contract_and_the_contract_covers_every_endpoint():
    """The README points at docs/contract.md, which names every documented path and every configuration variable."""
    assert "](docs/contract.md)" in (ROOT / "README.md").read_text()
    contract = (ROOT / "docs" / "contract.md").read_text()
    for path in openapi_document()["paths"]:
        if path != "/openapi.json":
            assert f"`{path.replace('{user_id}', '<user_id>')}`" in contract, path
    settings = (ROOT / "config" / "settings.py").read_text()
    for variable in sorted(set(re.findall(r'"((?:SSO|REDIS)_[A-Z_]+)"', settings))):
        if not variable.startswith("SSO_RATE_LIMIT_"):
            assert f"`{variable}`" in contract, variable
