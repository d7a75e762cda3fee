"""CRL distribution points (RFC 5280 §4.2.1.13, §5): the HTTP routes that serve each CA's CRLs."""
