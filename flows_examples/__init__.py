"""Example Prefect 3 flows logged by pg-jobmon: copy what you need (see the README)."""
