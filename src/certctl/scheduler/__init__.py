"""Periodic work under a leader lease (renewal scan, stuck-job recovery) and the durable job worker."""
