"""Test harness for Reel: isolated network namespaces, a private Janus, synthetic aiortc publishers."""
