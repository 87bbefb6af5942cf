"""The published contract shared by client and server: what goes on the wire."""
