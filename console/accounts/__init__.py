"""Accounts: users, teams, projects, members and invitations, sign-in and its lockout."""
