"""`python -m experiments ...`: a thin command line over the invfeat library."""
