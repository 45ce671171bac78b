"""One contract suite for the cloud interface and the seed API above it, run on every cloud."""
