"""Visualisations: the paper's figures and Zeiler & Fergus' tools, as PNGs."""
