"""Faces in frames: MediaPipe landmarks, pure-numpy geometry, the aligned eye crop."""
