"""Reference galleries: products known by a few photos, matched by embedding similarity."""
