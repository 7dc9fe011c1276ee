"""Models of the recommender: two-tower retrieval, ranker, popularity baselines."""
