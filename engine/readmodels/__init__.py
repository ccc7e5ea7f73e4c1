"""Read models: the tables inline projections keep, and the projections themselves."""
