"""What the three services share: configuration, database, errors, auth protocol, events."""
