"""Probing, transcoding and packaging media with FFmpeg (never through a shell)."""
