"""`python -m experiments ...`: a thin command line over the invfeat library."""

INTERRUPTED_EXIT = 130  # stopped by Ctrl-C (what a shell reports); finished work is kept
