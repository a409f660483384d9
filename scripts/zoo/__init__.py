"""weir's model zoo: the code behind scripts/make-zoo (run that, not these modules)."""
