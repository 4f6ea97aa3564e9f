"""Notifier plugins shipped with pg-jobmon."""
