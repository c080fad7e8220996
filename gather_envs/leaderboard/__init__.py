"""Leaderboard kit: verified submissions (records + metadata) and a static site ranking them."""
