"""The lake: typed Delta tables and the few functions that read and write them."""
