"""ACME server (RFC 8555, RFC 8738 IP identifiers, RFC 9773 renewal information) on the HTTPS listener."""
