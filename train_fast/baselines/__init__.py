"""Classical controllers that learned policies are measured against."""
