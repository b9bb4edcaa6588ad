"""Fixtures for tests that talk to a real Dovecot. (Filled in by the test-bed work.)"""

from __future__ import annotations
