"""Tests of the registries simulator (the other side of the contract)."""
