"""Quality of experience: playback-beacon aggregates, a network simulator and QoE-aware ranking."""
