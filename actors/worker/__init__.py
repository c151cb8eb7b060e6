"""The worker's actors."""
