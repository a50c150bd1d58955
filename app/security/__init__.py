"""Access control: named, scoped API keys (the key file, hashing, the key ring, `keys`)."""
