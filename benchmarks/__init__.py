"""asv suites for fastconv, one module per concern; see README.md in this folder."""
