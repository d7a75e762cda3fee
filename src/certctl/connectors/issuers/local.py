"""Issuer type ``local``: certctl's own CA hierarchy signs the certificate."""

from __future__ import annotations

from typing import ClassVar, Protocol

from cryptography import x509
from pydantic import Field

from certctl.connectors.issuers.base import IssuanceRequest, IssuedCertificate, IssuerConnector, IssuerOptions
from certctl.pki.builder import build_leaf
from certctl.pki.keys import PrivateKey


class LocalIssuerOptions(IssuerOptions):
    ca: str = Field(min_length=1, max_length=200, description="Id or name of the issuing CA")


class SigningCa(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def certificate(self) -> x509.Certificate: ...
    @property
    def chain_pem(self) -> str: ...


class LocalIssuer(IssuerConnector):
    type_name: ClassVar[str] = "local"
    options_model: ClassVar[type[IssuerOptions]] = LocalIssuerOptions

    def sign(
        self, *, ca: SigningCa, ca_key: PrivateKey, request: IssuanceRequest, urls: tuple[str, str, str]
    ) -> IssuedCertificate:
        crl_url, ca_issuers_url, ocsp_url = urls
        certificate = build_leaf(
            issuer_cert=ca.certificate,
            issuer_key=ca_key,
            public_key=request.public_key,
            common_name=request.common_name,
            dns_names=request.dns_names,
            ip_addresses=request.ip_addresses,
            emails=request.emails,
            not_before=request.not_before,
            not_after=request.not_after,
            ekus=request.ekus,
            must_staple=request.must_staple,
            crl_url=crl_url,
            ca_issuers_url=ca_issuers_url,
            ocsp_url=ocsp_url,
        )
        return IssuedCertificate(certificate=certificate, chain_pem=ca.chain_pem, issuer_ca_id=ca.id)
