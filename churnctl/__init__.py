"""churnctl: nightly churn prediction and retention campaigns for e-commerce sellers."""

__version__ = "0.1.0"
