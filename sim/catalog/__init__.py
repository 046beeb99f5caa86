"""Instance types Karpenter can launch: shapes and prices from a catalog, allocatable by AWS formulas."""
