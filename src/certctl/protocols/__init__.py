"""Wire protocols certctl serves as a CA (RFC 5280 CRLs, RFC 6960 OCSP; ACME, SCEP, EST to come)."""
