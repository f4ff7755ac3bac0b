"""Benchmarks: scripts that measure speed and size (see README.md here); not tests."""
