"""How the agent puts certificate material into the servers that use it."""
