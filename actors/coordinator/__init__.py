"""The coordinator's actors."""
