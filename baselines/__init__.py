"""Watch-time baselines reimplemented on the shared backbone (one model per file)."""
