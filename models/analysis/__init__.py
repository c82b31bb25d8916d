"""Content analysis: speech to text, shot detection."""
