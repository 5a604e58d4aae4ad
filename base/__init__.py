"""What every floor shares: the clock, the error tree, the table metadata and its column types."""
