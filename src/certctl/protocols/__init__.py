"""Wire protocols certctl serves as a CA (RFC 5280 CRLs today; ACME, SCEP, EST and OCSP to come)."""
