"""Evaluation: top-1/top-5 counting, centre crop and the paper's 10-crop average."""
