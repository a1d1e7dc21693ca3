"""Masks and the scores they come from: magnitude, random, and pruning at initialization."""
