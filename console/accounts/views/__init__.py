"""Console pages of the accounts domain: sign-in, teams, projects, members."""
