"""Real network faults: namespaces, routers with nftables and tc, and a truth table."""
