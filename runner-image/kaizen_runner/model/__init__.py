"""`kaizen-runner model`: check a folder's readiness, upload it as a PrivateModel version, download one."""
