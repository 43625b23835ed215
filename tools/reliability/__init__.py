"""Reliability and security suite: delivery chaos, API fuzzing, attacks (make reliability)."""
