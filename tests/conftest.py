"""Shared pytest wiring: each real service the tests need lives in a plugin under tests/support/."""

pytest_plugins = [
    "support.controlplane",
    "support.s3server",
    "support.realnode",
    "support.helm",
    "support.memoryguard",
    "support.smtp",
]
