"""Slack: Events API (HTTP or Socket Mode) → the core dispatcher; replies with the Web API."""
