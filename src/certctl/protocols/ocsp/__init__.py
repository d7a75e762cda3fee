"""OCSP responder (RFC 6960, RFC 5019 profile): the HTTP routes relying parties query for status."""
