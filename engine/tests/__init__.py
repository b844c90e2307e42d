"""Tests of the ADE engine (stdlib unittest)."""
