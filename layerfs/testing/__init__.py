"""Test helpers that outside drivers can run against themselves."""
