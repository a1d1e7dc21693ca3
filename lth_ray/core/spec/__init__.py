"""Typed recipe and member settings, presets, and the command-line options generated from them."""
